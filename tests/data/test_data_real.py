"""Integration test on the real Last.FM data of the shared dataset folder
(never copied into the repository)."""
from pathlib import Path

import pytest
import torch

from kgsampler.data import KGRecDataset, read_kg

LASTFM = (Path(__file__).resolve().parents[2] / '..' / 'shared' / 'datasets'
          / 'lastfm')


@pytest.fixture(scope='module')
def lastfm():
    if not (LASTFM / 'train.txt').is_file():
        pytest.skip(f'../shared/datasets/lastfm not found: {LASTFM}')
    return KGRecDataset.from_kgat(LASTFM)


def test_lastfm_counts(lastfm):
    s = lastfm.statistics()
    assert lastfm.name == 'lastfm'
    assert (s['num_users'], s['num_items']) == (1815, 3846)
    assert (s['num_entities'], s['num_relations']) == (9366, 60)
    assert s['num_train'] + s['num_valid'] == 16794
    assert s['num_test'] == 4202
    assert s['num_triples'] == 15518
    assert lastfm.relation_name(0) == 'award.competitor.award_nominations'
    assert bool((lastfm.train_pos.degree() >= 1).all())


def test_lastfm_graph(lastfm):
    data = lastfm.data
    assert data.validate()
    num_items = lastfm.num_items
    offset = {'item': 0, 'entity': num_items}
    parts = []
    for src, name, dst in data.edge_types:
        if name != 'kg':
            continue
        store = data[src, name, dst]
        ei = store.edge_index
        parts.append(torch.stack([ei[0] + offset[src], store.relation,
                                  ei[1] + offset[dst]], dim=1))
    got = torch.cat(parts)
    file = read_kg(LASTFM / 'kg_final.txt')
    key = lambda t: ((t[:, 0] * 100 + t[:, 1]) * 10**5 + t[:, 2]).sort()[0]
    assert got.size(0) == file.size(0)
    assert torch.equal(key(got), key(file))
    assert data['user', 'interacts', 'item'].edge_index.size(1) == \
        lastfm.train_pos.nnz
    homo = lastfm.homogeneous_kg()
    assert homo.num_nodes == 1815 + 9366
    assert bool((homo.edge_index[0] != homo.edge_index[1]).all())
