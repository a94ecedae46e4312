"""Every sampler with every recommender: one epoch on a tiny synthetic
dataset, then full-ranking evaluation; no training positive is ever a
negative, the losses are finite and the metrics present. A new sampler in
``tests/conftest.py``'s registry or a new recommender here gets it too."""
import math

import pytest
import torch

from kgsampler import APR
from kgsampler import (CKE, KGAT, MF, NFM, LightGCN, MixGCF, RippleNet,
                       Trainer, make_synthetic)
from kgsampler.recommender import Recommender

RECOMMENDERS = {
    'MF': lambda ds: MF(ds.num_users, ds.num_items, embedding_dim=8),
    'APR': lambda ds: APR(ds.num_users, ds.num_items, embedding_dim=8),
    'LightGCN': lambda ds: LightGCN.from_dataset(ds, embedding_dim=8,
                                                 num_layers=2),
    'CKE': lambda ds: CKE(ds, embedding_dim=8, kg_embedding_dim=8),
    'KGAT': lambda ds: KGAT(ds, embedding_dim=8, kge_dim=8,
                            layer_sizes=(8, 4), kg_batch_size=64),
    'NFM': lambda ds: NFM(ds, embedding_dim=8, hidden_dims=(8, )),
    'RippleNet': lambda ds: RippleNet(ds, embedding_dim=8, num_memory=4),
}

#: The recommenders with ``layer_embeddings()`` (what MixGCF needs).
LAYERED = {'LightGCN'}


@pytest.fixture(scope='module')
def ds():
    return make_synthetic(num_users=24, num_items=30, num_genres=3,
                          num_creators=4, num_eras=2, seed=0)


def test_every_recommender_is_listed():
    import kgsampler.recommender as rec
    shipped = {n for n in rec.__all__ if isinstance(getattr(rec, n), type)
               and issubclass(getattr(rec, n), Recommender)
               and n != 'Recommender'}
    assert shipped == set(RECOMMENDERS)


class Guard:
    """Wraps a sampler's ``sample`` to check every draw against the
    training positives (dense)."""
    def __init__(self, sampler, train_dense):
        self.inner, self.dense, self.calls = sampler.sample, train_dense, 0
        sampler.sample = self

    def __call__(self, users, pos_items, num_neg=1):
        out = self.inner(users, pos_items, num_neg)
        hit = self.dense[users.view(-1, 1).expand_as(out.neg_items),
                         out.neg_items]
        assert not bool(hit.any()), 'a training positive was returned'
        self.calls += 1
        return out


@pytest.mark.parametrize('rec_name', sorted(RECOMMENDERS))
def test_one_epoch(ds, rec_name, sampler_name, make_sampler):
    torch.manual_seed(0)
    model = RECOMMENDERS[rec_name](ds)
    if sampler_name == 'MixGCF' and rec_name not in LAYERED:
        # MixGCF mixes per-layer embeddings: the others get a clear error
        with pytest.raises(TypeError, match=rf'MixGCF: the recommender '
                           rf'{type(model).__name__} has no '
                           rf'layer_embeddings\(\)'):
            MixGCF.from_dataset(ds, scorer=model)
        return
    sampler = make_sampler(ds, scorer=model)
    guard = Guard(sampler, ds.train_pos.to_dense().bool())
    res = Trainer(model, sampler, ds, batch_size=32, max_epochs=1,
                  num_neg=2, progress=False).fit()
    assert guard.calls > 0
    assert math.isfinite(res.history[-1]['loss'])
    for k in ('ndcg@20', 'recall@20', 'precision@20', 'hit@20'):
        assert 0.0 <= res.test[k] <= 1.0 and 0.0 <= res.valid[k] <= 1.0
