"""Interaction-only data (no KG): KG-free samplers and recommenders train on
it, KG walks say that they need a KG."""
import pytest
import torch

from kgsampler import (DNS, MF, PNS, RNS, KGPolicy, KGRecDataset, LightGCN,
                       RandomWalk, Trainer)


@pytest.fixture(scope='module')
def ds(tmp_path_factory):
    r"""RecBole files of 12 users x 10 items, no ``.kg``: user ``u`` saw
    items ``u % 10, (u + 1) % 10, ..., (u + 4) % 10``."""
    d = tmp_path_factory.mktemp('plain')
    rows = ''.join(f'u{u}\ti{(u + k) % 10}\n' for u in range(12)
                   for k in range(5))
    (d / 'plain.inter').write_text('user_id:token\titem_id:token\n' + rows)
    out = KGRecDataset.from_recbole(str(d), name='plain')
    assert out.kg.shape == (0, 3)
    return out


@pytest.mark.parametrize('recommender', ['mf', 'lightgcn'])
@pytest.mark.parametrize('sampler', ['rns', 'pns', 'dns'])
def test_kg_free_training(ds, recommender, sampler):
    torch.manual_seed(0)
    model = (MF(ds.num_users, ds.num_items, 8) if recommender == 'mf' else
             LightGCN.from_dataset(ds, embedding_dim=8, num_layers=2))
    s = {'rns': lambda: RNS(ds.train_pos), 'pns': lambda: PNS(ds.train_pos),
         'dns': lambda: DNS(ds.train_pos, num_candidates=4)}[sampler]()
    res = Trainer(model, s, ds, batch_size=16, max_epochs=2,
                  progress=False).fit()
    assert 0.0 <= res.test['ndcg@20'] <= 1.0


@pytest.mark.parametrize('cls', [KGPolicy, RandomWalk])
def test_kg_walks_need_a_kg(ds, cls):
    with pytest.raises(ValueError, match=rf"{cls.__name__}.from_dataset: the "
                       r"dataset 'plain' has no KG triples, and this sampler "
                       r"walks item -> KG entity -> item paths"):
        cls.from_dataset(ds, MF(ds.num_users, ds.num_items, 8))
