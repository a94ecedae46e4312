import pytest
import torch

from kgsampler.data import KGRecDataset, make_synthetic

SMALL = dict(num_users=300, num_items=400, num_genres=8, num_creators=40,
             num_eras=5)


@pytest.fixture(scope='module')
def default():
    return make_synthetic()


def equal(a: KGRecDataset, b: KGRecDataset) -> bool:
    return all(
        torch.equal(getattr(a, s).indptr, getattr(b, s).indptr)
        and torch.equal(getattr(a, s).indices, getattr(b, s).indices)
        for s in ('train_pos', 'valid_pos', 'test_pos', 'exposed')) and \
        torch.equal(a.kg, b.kg)


def test_deterministic_for_seed():
    a, b = make_synthetic(**SMALL, seed=1), make_synthetic(**SMALL, seed=1)
    assert equal(a, b)
    assert not equal(a, make_synthetic(**SMALL, seed=2))


def test_default_sizes(default):
    s = default.statistics()
    assert default.name == 'synthetic'
    assert (s['num_users'], s['num_items']) == (2500, 2000)
    assert s['num_entities'] == 2000 + 20 + 200 + 10
    assert s['num_relations'] == 4
    total = s['num_train'] + s['num_valid'] + s['num_test']
    assert 80_000 <= total <= 130_000
    assert 0.15 <= s['num_test'] / total <= 0.25
    deg = default.train_pos.degree()
    assert bool((deg >= 1).all())


def test_kg(default):
    kg = default.kg
    I = default.num_items  # noqa: E741
    assert kg.size(0) > 0 and default.data.validate()
    head, rel, tail = kg.unbind(1)
    # Every item has at least one genre, creator and era:
    for r in range(3):
        m = rel == r
        assert bool((head[m] < I).all()) and bool((tail[m] >= I).all())
        assert torch.unique(head[m]).numel() == I
    assert default.relation_names == ['genre', 'creator', 'era',
                                      'main_genre']
    t = int(kg[rel == 0][0, 2])
    assert default.entity_name(t).startswith('genre:')
    assert default.entity_name(3) == 'item:3'
    assert ('entity', 'kg', 'entity') in default.data.edge_types


def test_exposed_are_negatives(default):
    exposed = default.exposed.to_dense()
    pos = (default.train_pos.to_dense() | default.valid_pos.to_dense()
           | default.test_pos.to_dense())
    assert default.exposed.nnz > 0
    assert not bool((exposed & pos).any())


def recall_at_20(ds: KGRecDataset, scores: torch.Tensor) -> float:
    seen = ds.train_pos.to_dense() | ds.valid_pos.to_dense()
    scores = scores.masked_fill(seen, float('-inf'))
    top = scores.topk(20, dim=1).indices
    test = ds.test_pos.to_dense()
    n = test.sum(1).float()
    hit = test.gather(1, top).sum(1).float()
    m = n > 0
    return float((hit[m] / n[m].clamp(max=20)).mean())


def test_personalisation_pays(default):
    ds = default
    x = (ds.train_pos.to_dense() | ds.valid_pos.to_dense()).float()
    pop = x.sum(0).expand(ds.num_users, -1)
    norm = x.sum(0).clamp(min=1).sqrt()
    sim = (x.T @ x) / norm.view(-1, 1) / norm.view(1, -1)
    sim.fill_diagonal_(0)
    r_pop, r_knn = recall_at_20(ds, pop), recall_at_20(ds, x @ sim)
    assert r_pop < 0.2
    assert r_knn > 3 * r_pop


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_users=0), r"'num_users' must be an int >= 1 \(got 0\)"),
    (dict(min_combos=3, max_combos=2), r"'max_combos' must be an int >= 3"),
    (dict(choice_rate=1.5), r"'choice_rate' must be a float in \[0, 1\]"),
    (dict(test_ratio=1.0), r"'test_ratio' must be a float in \[0, 1\)"),
    (dict(noise=-1), r"'noise' must be a non-negative float"),
    (dict(num_items=3, min_combo_items=5), r"no attribute combination"),
])
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match='make_synthetic: ' + match):
        make_synthetic(**{**SMALL, **kwargs})
