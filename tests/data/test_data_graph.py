import pytest
import torch

from kgsampler.data import (HomogeneousKG, KGRecDataset, build_hetero_data,
                            to_homogeneous_kg)

KG_TYPES = [('item', 'kg', 'entity'), ('entity', 'kg', 'item'),
            ('item', 'kg', 'item'), ('entity', 'kg', 'entity')]


def global_triples(data, num_items):
    """(head, relation, tail) global entity ids from the forward edge types
    of a HeteroData."""
    offset = {'item': 0, 'entity': num_items}
    out = []
    for et in data.edge_types:
        src, name, dst = et
        if name != 'kg':
            continue
        ei, rel = data[et].edge_index, data[et].relation
        out += list(zip((ei[0] + offset[src]).tolist(), rel.tolist(),
                        (ei[1] + offset[dst]).tolist()))
    return out


def test_hetero_data(kgat_dir, tiny):
    ds = KGRecDataset.from_kgat(kgat_dir, valid_ratio=0.0)
    data = ds.data
    assert data is ds.data  # cached
    assert data.validate()
    assert data['user'].num_nodes == 3
    assert data['item'].num_nodes == 4
    assert data['entity'].num_nodes == 2
    assert data.num_relations == 2
    assert set(KG_TYPES) <= set(data.edge_types)
    # One triple of every kind, local ids:
    ie = data['item', 'kg', 'entity']
    assert sorted(zip(*ie.edge_index.tolist(), ie.relation.tolist())) == [
        (0, 0, 0), (1, 0, 0), (2, 1, 0), (3, 1, 0)]
    assert data['item', 'kg', 'item'].edge_index.tolist() == [[0], [1]]
    assert data['entity', 'kg', 'entity'].edge_index.tolist() == [[0], [1]]
    assert data['entity', 'kg', 'item'].edge_index.tolist() == [[1], [3]]
    assert data['entity', 'kg', 'item'].relation.tolist() == [1]
    # No triple lost, none added:
    triples = global_triples(data, ds.num_items)
    assert len(triples) == 7 and set(triples) == tiny['kg']


def test_reverse_edges_match(kgat_dir):
    data = KGRecDataset.from_kgat(kgat_dir).data
    for src, name, dst in data.edge_types:
        if name.startswith('rev_'):
            continue
        fwd = data[src, name, dst]
        rev = data[dst, 'rev_' + name, src]
        assert torch.equal(rev.edge_index, fwd.edge_index.flip(0))
        if name == 'kg':
            assert torch.equal(rev.relation, fwd.relation)
            assert rev.relation.dtype == torch.long
    assert len(data.edge_types) == 2 * (1 + len(KG_TYPES))


def test_interactions_are_train_only(kgat_dir):
    ds = KGRecDataset.from_kgat(kgat_dir, valid_ratio=0.5)
    assert ds.valid_pos.nnz > 0
    ei = ds.data['user', 'interacts', 'item'].edge_index
    edges = set(zip(*ei.tolist()))
    train = set(zip(ds.train_pos.row_ids().tolist(),
                    ds.train_pos.indices.tolist()))
    valid = set(zip(ds.valid_pos.row_ids().tolist(),
                    ds.valid_pos.indices.tolist()))
    test = set(zip(ds.test_pos.row_ids().tolist(),
                   ds.test_pos.indices.tolist()))
    assert edges == train and ei.size(1) == len(train)
    assert not edges & (valid | test)


def test_items_only_kg_has_no_entity_type():
    train = torch.tensor([[0, 0], [1, 1], [1, 2]])
    kg = torch.tensor([[0, 0, 1], [2, 0, 1]])
    ds = KGRecDataset(train, torch.empty(0, 2, dtype=torch.long), kg,
                      valid_ratio=0.0)
    data = build_hetero_data(ds)
    assert data.validate()
    assert 'entity' not in data.node_types
    assert data.edge_types == [('user', 'interacts', 'item'),
                               ('item', 'rev_interacts', 'user'),
                               ('item', 'kg', 'item'),
                               ('item', 'rev_kg', 'item')]


def test_homogeneous_kg(kgat_dir):
    ds = KGRecDataset.from_kgat(kgat_dir, valid_ratio=0.0)
    homo = to_homogeneous_kg(ds)
    assert isinstance(homo, HomogeneousKG)
    assert ds.homogeneous_kg() is ds.homogeneous_kg()
    U = 3
    assert homo.num_nodes == 3 + 6 and homo.item_offset == U
    assert homo.node_type().tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2]
    assert homo.item_to_node(torch.tensor([0, 5])).tolist() == [3, 8]
    assert homo.node_to_item(torch.tensor([3, 8])).tolist() == [0, 5]
    edges = set(zip(*homo.edge_index.tolist()))
    expected = set()
    for u, i in zip(ds.train_pos.row_ids().tolist(),
                    ds.train_pos.indices.tolist()):
        expected |= {(u, U + i), (U + i, u)}
    for h, _, t in ds.kg.tolist():
        expected |= {(U + h, U + t), (U + t, U + h)}
    assert edges == expected
    assert homo.edge_index.size(1) == len(expected)  # no duplicates
    # Coalesced: sorted by (source, target).
    key = homo.edge_index[0] * homo.num_nodes + homo.edge_index[1]
    assert bool((key[1:] > key[:-1]).all())


def test_homogeneous_kg_drops_self_loops_and_merges_relations():
    train = torch.tensor([[0, 0], [0, 1]])
    # A self-loop and the same (head, tail) under two relations:
    kg = torch.tensor([[0, 0, 0], [0, 0, 2], [0, 1, 2], [2, 0, 0]])
    ds = KGRecDataset(train, torch.empty(0, 2, dtype=torch.long), kg,
                      valid_ratio=0.0)
    homo = ds.homogeneous_kg()
    assert bool((homo.edge_index[0] != homo.edge_index[1]).all())
    edges = set(zip(*homo.edge_index.tolist()))
    assert edges == {(0, 1), (1, 0), (0, 2), (2, 0), (1, 3), (3, 1)}


def test_graph_builders_check_type():
    with pytest.raises(TypeError, match=r"build_hetero_data: 'dataset' must "
                       r"be a KGRecDataset \(got dict\)"):
        build_hetero_data({})
    with pytest.raises(TypeError, match=r"to_homogeneous_kg: 'dataset'"):
        to_homogeneous_kg(None)
