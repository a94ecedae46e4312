import math

import pytest
import torch
import torch.nn.functional as F

from kgsampler import Trainer
from kgsampler.data import KGRecDataset, make_synthetic
from kgsampler.recommender.base import Recommender
from kgsampler.recommender.nfm import NFM
from kgsampler.sampler import DNS, RNS

# the item features of the hand-drawn KG below: {item: {entity: count}}
ITEM_ENTITIES = {0: {5: 1}, 1: {5: 1, 7: 1}, 2: {6: 2}, 3: {7: 1}, 4: {}}


@pytest.fixture(scope='module')
def ds():
    r"""Four users, five items (entities 0-4) and three attribute entities
    A = 5, B = 6, C = 7; relations 0 (genre) and 1 (creator)::

        u0 ── i0 ──genre──► A(5) ◄──genre── i1 ── u0, u2
                                            i1 ──creator──► C(7)
        u1 ── i2 ──genre──► B(6)    (i2 also ──creator──► B: count 2)
        u1 ── i3 ──creator──► C(7)
        u3 ── i4                    (no KG triple)
        u0 ── i2

    Test pairs: (u0, i3), (u1, i0), (u2, i2), (u3, i0).
    """
    train = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 2], [1, 3], [2, 1],
                          [3, 4]])
    test = torch.tensor([[0, 3], [1, 0], [2, 2], [3, 0]])
    kg = torch.tensor([[0, 0, 5], [1, 0, 5], [1, 1, 7], [2, 0, 6],
                       [2, 1, 6], [3, 1, 7]])
    return KGRecDataset(train, test, kg, num_users=4, num_items=5,
                        num_entities=8, num_relations=2, valid_ratio=0.0)


def dense_features(ds, users, items):
    """x for every (user, item) pair, written from the picture: one-hot
    user, one-hot item (feature U + i) and the item's entity counts."""
    U = ds.num_users
    X = torch.zeros(users.numel(), U + ds.num_entities)
    for row, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
        X[row, u] = 1
        X[row, U + i] = 1
        for e, c in ITEM_ENTITIES[i].items():
            X[row, U + e] += c
    return X


def dense_scores(model, X):
    V = model.feat_emb.weight
    w = model.feat_linear.weight.view(-1)
    f_bi = 0.5 * ((X @ V).pow(2) - X.pow(2) @ V.pow(2))
    return model.mlp(f_bi).view(-1) + X @ w


@pytest.mark.parametrize('user', [0, 3])
@pytest.mark.parametrize('item', [0, 1, 2, 4])
def test_bi_interaction_is_the_pairwise_sum(ds, user, item):
    torch.manual_seed(0)
    model = NFM(ds, embedding_dim=6)
    V, U = model.feat_emb.weight, ds.num_users
    feats = [V[user], V[U + item]] + [c * V[U + e] for e, c in
                                      ITEM_ENTITIES[item].items()]
    pairwise = sum(feats[a] * feats[b] for a in range(len(feats))
                   for b in range(a + 1, len(feats)))
    s, q, _ = model.item_side()
    got = model.bi_interaction(V[user], s[item], q[item])
    assert torch.allclose(got, pairwise, atol=1e-6)


@pytest.mark.parametrize('hidden_dims', [[], [8], [8, 4]])
@pytest.mark.parametrize('num_users', [1, 4])
def test_score_and_full_scores_match_dense_reference(ds, hidden_dims,
                                                     num_users):
    torch.manual_seed(0)
    model = NFM(ds, embedding_dim=6, hidden_dims=hidden_dims, dropout=0.5)
    torch.nn.init.normal_(model.feat_linear.weight)  # not the zero init
    model.eval()  # no dropout
    users = torch.arange(num_users)
    items = torch.arange(ds.num_items).expand(num_users, -1)
    X = dense_features(ds, users.repeat_interleave(ds.num_items),
                       items.reshape(-1))
    ref = dense_scores(model, X).view(num_users, ds.num_items)
    assert torch.allclose(model.score(users, items), ref, atol=1e-5)
    full = model.full_scores(users)
    assert full.shape == (num_users, ds.num_items)
    assert torch.allclose(full, ref, atol=1e-5)
    sub = torch.tensor([[4, 0]]).expand(num_users, -1)  # B=1 works too
    assert torch.allclose(model.score(users, sub), ref[:, [4, 0]],
                          atol=1e-5)


@pytest.mark.parametrize('reg', [0.0, 0.3])
def test_loss_is_bpr_plus_l2_of_the_used_features(ds, reg):
    torch.manual_seed(0)
    model = NFM(ds, embedding_dim=6, hidden_dims=[5], dropout=0.0, reg=reg)
    users, pos = torch.tensor([0, 1, 0]), torch.tensor([1, 2, 0])
    neg = torch.tensor([[3, 4], [0, 1], [4, 4]])
    U, V = ds.num_users, model.feat_emb.weight
    sp = dense_scores(model, dense_features(ds, users, pos))
    sn = dense_scores(model, dense_features(
        ds, users.repeat_interleave(2), neg.reshape(-1))).view(3, 2)
    ref = -F.logsigmoid(sp.view(-1, 1) - sn).mean()

    def sq(i):  # sum_f ||x_f v_f||^2 over the item's features
        return V[U + i].pow(2).sum() + sum(
            c * c * V[U + e].pow(2).sum() for e, c in
            ITEM_ENTITIES[i].items())
    l2 = sum(V[u].pow(2).sum() + sq(p) + (sq(n[0]) + sq(n[1])) / 2
             for u, p, n in zip(users.tolist(), pos.tolist(),
                                neg.tolist())) / 3 / 2
    assert torch.allclose(model.loss(users, pos, neg), ref + reg * l2,
                          atol=1e-5)


def test_module_basics(ds):
    model = NFM(ds, embedding_dim=4, hidden_dims=[3])
    assert isinstance(model, Recommender)
    assert str(model) == ('NFM(4, 5, num_entities=8, embedding_dim=4, '
                          'hidden_dims=[3])')
    before = model.feat_emb.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.feat_emb.weight)
    rep = model.item_representations(torch.tensor([[1, 2]]))
    assert rep.shape == (1, 2, 4)
    s = model.item_side()[0]
    assert torch.allclose(model.similarity(torch.tensor([1]),
                                           torch.tensor([[2, 3]])),
                          (s[[2, 3]] @ s[1]).view(1, 2))
    # the feature buffers follow the module but stay out of its state
    assert 'feat_col' not in model.state_dict()
    assert model.full_scores(torch.zeros(0, dtype=torch.long)).shape == (0, 5)


def test_errors(ds):
    with pytest.raises(ValueError, match=r"NFM: 'embedding_dim' must be a "
                                         r"positive int \(got 0\)"):
        NFM(ds, embedding_dim=0)
    with pytest.raises(ValueError, match=r"NFM: 'hidden_dims' must be a "
                                         r"list of positive ints \(got"):
        NFM(ds, hidden_dims=[8, 0])
    with pytest.raises(ValueError, match=r"NFM: 'hidden_dims' must be"):
        NFM(ds, hidden_dims='64')
    with pytest.raises(ValueError, match=r"NFM: 'dropout' must be a float "
                                         r"in \[0, 1\) \(got 1.0\)"):
        NFM(ds, dropout=1.0)
    for reg in (-1.0, math.nan, True):
        with pytest.raises(ValueError, match=r"NFM: 'reg' must be a finite "
                                             r"non-negative number"):
            NFM(ds, reg=reg)
    with pytest.raises(TypeError, match=r"NFM: 'dataset' must be a "
                                        r"KGRecDataset .* \(got int"):
        NFM(3)
    model = NFM(ds)
    with pytest.raises(ValueError, match=r"NFM.score: 'users' must be \(B\) "
                                         r"and 'items' \(B, K\) \(got shapes "
                                         r"\(2,\) and \(2,\)\)"):
        model.score(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"NFM.loss: 'pos_items' must have "
                                         r"the shape of 'users'"):
        model.loss(torch.tensor([0]), torch.tensor([0, 1]),
                   torch.tensor([[2]]))
    with pytest.raises(ValueError, match=r"NFM.full_scores: 'users' must be "
                                         r"\(B\) \(got shape \(1, 1\)\)"):
        model.full_scores(torch.tensor([[0]]))


@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_one_trainer_epoch(sampler):
    torch.manual_seed(0)
    data = make_synthetic(num_users=40, num_items=30, num_genres=3,
                          num_creators=5, num_eras=2)
    model = NFM(data, embedding_dim=8, hidden_dims=[8])
    neg = RNS(data.train_pos) if sampler == 'rns' else \
        DNS(data.train_pos, scorer=model, num_candidates=4)
    res = Trainer(model, neg, data, lr=1e-2, batch_size=64, max_epochs=1,
                  progress=False).fit()
    assert res.epochs_run == 1
    assert math.isfinite(res.history[-1]['loss'])
    assert all(math.isfinite(v) for v in res.test.values()
               if isinstance(v, float))
    assert 0 <= res.test['ndcg@20'] <= 1


@pytest.mark.parametrize('items', [[[4]], [[1, 1], [0, 4]], [[2, 3, 2]]])
def test_item_side_of_given_items_equals_the_full_table(ds, items):
    torch.manual_seed(0)
    model = NFM(ds, embedding_dim=6)
    torch.nn.init.normal_(model.feat_linear.weight)
    items = torch.tensor(items)
    full = model.item_side()
    part = model.item_side(items)
    assert part[0].shape == (*items.shape, 6) and part[2].shape == items.shape
    for a, b in zip(part, full):
        assert torch.allclose(a, b[items], atol=1e-6)


def test_a_step_touches_only_the_batch_features(ds):
    """With sparse gradients, a loss on (u0, i0 vs i3) reaches the rows of
    u0, i0 (+ its tail A = 5), i3 (+ its tail C = 7), nothing else."""
    torch.manual_seed(0)
    model = NFM(ds, embedding_dim=4, sparse=True)
    model.loss(torch.tensor([0]), torch.tensor([0]),
               torch.tensor([[3]])).backward()
    grad = model.feat_emb.weight.grad.coalesce()
    U = ds.num_users
    assert sorted(grad.indices().view(-1).tolist()) == \
        [0, U + 0, U + 3, U + 5, U + 7]
