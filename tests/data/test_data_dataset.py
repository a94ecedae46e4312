import math
import warnings

import numpy as np
import pytest
import torch

from kgsampler.data import KGRecDataset, UserItemCSR, split_per_user


def pair_set(csr: UserItemCSR):
    return set(zip(csr.row_ids().tolist(), csr.indices.tolist()))


def random_pairs(num_users=200, num_items=300, nnz=5000, seed=0):
    gen = torch.Generator().manual_seed(seed)
    u = torch.randint(0, num_users, (nnz, ), generator=gen)
    i = torch.randint(0, num_items, (nnz, ), generator=gen)
    key = torch.unique(u * num_items + i)
    return torch.stack([key // num_items, key % num_items], dim=1)


def make(train=None, test=None, kg=None, **kwargs):
    train = random_pairs() if train is None else train
    test = torch.empty(0, 2, dtype=torch.long) if test is None else test
    kg = torch.empty(0, 3, dtype=torch.long) if kg is None else kg
    return KGRecDataset(train, test, kg, **kwargs)


def test_from_kgat(kgat_dir, tiny):
    ds = KGRecDataset.from_kgat(kgat_dir, valid_ratio=0.0)
    assert ds.name == 'tiny'
    assert (ds.num_users, ds.num_items, ds.num_entities,
            ds.num_relations) == (3, 4, 6, 2)
    for csr in (ds.train_pos, ds.valid_pos, ds.test_pos):
        assert (csr.num_rows, csr.num_cols) == (3, 4)
    assert pair_set(ds.train_pos) == tiny['train']
    assert ds.valid_pos.nnz == 0
    assert pair_set(ds.test_pos) == tiny['test']
    assert ds.kg.dtype == torch.long and ds.kg.shape == (7, 3)
    assert {tuple(t) for t in ds.kg.tolist()} == tiny['kg']
    assert KGRecDataset.from_kgat(kgat_dir, name='mine').name == 'mine'


def test_names(kgat_dir):
    ds = KGRecDataset.from_kgat(kgat_dir)
    assert ds.relation_name(1) == 'similar to'
    assert ds.entity_name(0) == 'book_a'
    assert ds.entity_name(4) == 'm.0e'
    assert ds.entity_name(5) == 'entity 5'  # list shorter than entities
    with pytest.raises(ValueError, match=r"entity_name: 'i' must lie in "
                       r"\[0, 6\) \(got 6\)"):
        ds.entity_name(6)
    with pytest.raises(ValueError, match=r"relation_name: 'r'.*\(got -1\)"):
        ds.relation_name(-1)
    plain = make()
    assert plain.relation_names is None
    assert plain.entity_name(3) == 'entity 3'


def test_statistics_summary_repr(kgat_dir):
    ds = KGRecDataset.from_kgat(kgat_dir, valid_ratio=0.0)
    assert ds.statistics() == {
        'num_users': 3, 'num_items': 4, 'num_entities': 6,
        'num_relations': 2, 'num_train': 7, 'num_valid': 0, 'num_test': 3,
        'num_triples': 7
    }
    assert math.isclose(ds.density, 10 / 12)
    text = ds.summary()
    for word in ('users', 'items', 'entities', 'relations', 'train', 'valid',
                 'test', 'triples', 'density', '0.83333'):
        assert word in text
    assert repr(ds) == ("KGRecDataset(name='tiny', users=3, items=4, "
                        "entities=6, relations=2, train=7, valid=0, "
                        "test=3, triples=7)")


def test_inferred_and_given_sizes():
    train = torch.tensor([[0, 1], [2, 3]])
    kg = torch.tensor([[1, 0, 9], [3, 4, 2]])
    ds = make(train, kg=kg, valid_ratio=0.0)
    assert (ds.num_users, ds.num_items, ds.num_entities,
            ds.num_relations) == (3, 4, 10, 5)
    ds = make(train, kg=kg, num_users=5, num_items=6, num_entities=12,
              num_relations=7, relation_names=['a'])
    assert (ds.num_users, ds.num_items, ds.num_entities,
            ds.num_relations) == (5, 6, 12, 7)
    ds = make(train, kg=kg, relation_names=list('abcdefgh'),
              entity_names=['e'] * 11)
    assert (ds.num_entities, ds.num_relations) == (11, 8)


@pytest.mark.parametrize('kwargs,error,match', [
    (dict(train=np.zeros((2, 2), dtype=np.int64)), TypeError,
     r"KGRecDataset: 'train_pairs' must be a torch.Tensor \(got ndarray\)"),
    (dict(train=torch.zeros(2, 2)), TypeError,
     r"'train_pairs' must be torch.long \(got torch.float32\)"),
    (dict(test=torch.zeros(2, 3, dtype=torch.long)), ValueError,
     r"'test_pairs' must have shape \[N, 2\] \(got \(2, 3\)\)"),
    (dict(kg=torch.zeros(3, dtype=torch.long)), ValueError,
     r"'kg' must have shape \[N, 3\] \(got \(3,\)\)"),
    (dict(kg=torch.tensor([[0, -1, 2]])), ValueError,
     r"'kg' must hold non-negative ids \(got minimum -1\)"),
    (dict(train=torch.empty(0, 2, dtype=torch.long)), ValueError,
     r"'train_pairs' must not be empty"),
    (dict(num_users=10), ValueError,
     r"'num_users' must cover every user id \(needs at least 200, got 10\)"),
    (dict(num_items=-1), ValueError, r"'num_items' must be a non-negative"),
    (dict(num_entities=5), ValueError, r"'num_entities' must cover"),
    (dict(valid_ratio=1.0), ValueError,
     r"'valid_ratio' must be a float in \[0, 1\) \(got 1.0\)"),
    (dict(valid_ratio=-0.1), ValueError, r"'valid_ratio'"),
    (dict(seed=1.5), TypeError, r"'seed' must be an int \(got 1.5\)"),
    (dict(relation_names='abc'), TypeError, r"'relation_names' must be a "
     r"list of str"),
])
def test_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        make(**kwargs)


def test_duplicates_and_overlap_warn():
    train = torch.tensor([[0, 1], [0, 1], [1, 2]])
    test = torch.tensor([[0, 1], [1, 0]])
    kg = torch.tensor([[0, 0, 3], [0, 0, 3], [2, 0, 3]])
    with pytest.warns(UserWarning) as record:
        ds = make(train, test, kg)
    messages = ' | '.join(str(w.message) for w in record)
    assert "removed 1 duplicate rows from 'train_pairs'" in messages
    assert "removed 1 duplicate rows from 'kg'" in messages
    assert '1 (user, item) pairs are both in train and test' in messages
    assert ds.kg.size(0) == 2 and ds.test_pos.nnz == 2
    assert ds.train_pos.nnz + ds.valid_pos.nnz == 2


def test_split_ratio_zero():
    pairs = random_pairs()
    ds = make(pairs, valid_ratio=0.0)
    assert ds.valid_pos.nnz == 0
    assert ds.valid_pos.num_rows == ds.num_users
    assert pair_set(ds.train_pos) == {tuple(p) for p in pairs.tolist()}


@pytest.mark.parametrize('ratio', [0.1, 0.5, 0.9])
def test_split_counts_and_union(ratio):
    pairs = random_pairs()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        ds = make(pairs, valid_ratio=ratio)
    n = torch.bincount(pairs[:, 0], minlength=ds.num_users)
    expected = torch.minimum(torch.floor(ratio * n.double() + 0.5).long(),
                             (n - 1).clamp(min=0))
    assert torch.equal(ds.valid_pos.degree(), expected)
    assert bool((ds.train_pos.degree()[n > 0] >= 1).all())
    train, valid = pair_set(ds.train_pos), pair_set(ds.valid_pos)
    assert not train & valid
    assert train | valid == {tuple(p) for p in pairs.tolist()}


def test_split_small_users():
    # Users with 1, 2, 5, 15 items and ratio 0.1: 0, 0, 1 (0.5 rounds up),
    # 2 (1.5 rounds up) validation items.
    sizes = [1, 2, 5, 15]
    pairs = torch.tensor([[u, i] for u, s in enumerate(sizes)
                          for i in range(s)])
    ds = make(pairs, valid_ratio=0.1)
    assert ds.valid_pos.degree().tolist() == [0, 0, 1, 2]
    ds = make(pairs, valid_ratio=0.99)
    assert ds.train_pos.degree().tolist() == [1, 1, 1, 1]


def test_split_determinism():
    pairs = random_pairs()
    a, b = make(pairs, seed=3), make(pairs, seed=3)
    c = make(pairs, seed=4)
    assert torch.equal(a.valid_pos.indices, b.valid_pos.indices)
    assert torch.equal(a.valid_pos.indptr, b.valid_pos.indptr)
    assert pair_set(a.valid_pos) != pair_set(c.valid_pos)
    # Input order does not matter, only the seed:
    perm = torch.randperm(pairs.size(0), generator=torch.Generator()
                          .manual_seed(1))
    d = make(pairs[perm], seed=3)
    assert torch.equal(a.valid_pos.indices, d.valid_pos.indices)


def test_split_per_user_validation():
    csr = UserItemCSR.from_pairs(torch.tensor([0]), torch.tensor([0]), 1, 1)
    with pytest.raises(ValueError, match=r"split_per_user: 'ratio'.*got 1"):
        split_per_user(csr, 1, torch.Generator())
    with pytest.raises(TypeError, match=r"split_per_user: 'pos' must be"):
        split_per_user(torch.zeros(1), 0.1, torch.Generator())


def test_to_device(kgat_dir):
    ds = KGRecDataset.from_kgat(kgat_dir)
    data = ds.data
    assert ds.to('cpu') is ds
    assert ds.device == torch.device('cpu')
    assert ds.data is data  # the cache survives
    assert ds.train_pos.device == torch.device('cpu')
