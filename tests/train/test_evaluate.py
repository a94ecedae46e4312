import math

import pytest
import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.train import evaluate


def reference(scores, gt, exclude, k):
    """Loop-per-user reference of the metrics (dense)."""
    out = {'recall': [], 'precision': [], 'hit': [], 'ndcg': [],
           'ndcg_kgat': []}
    for u in range(scores.size(0)):
        truth = set(gt[u].nonzero().view(-1).tolist())
        if not truth:
            continue
        s = scores[u].clone()
        for ex in exclude:
            s[ex[u]] = -math.inf
        ranked = s.argsort(descending=True, stable=True)[:k].tolist()
        hits = [1.0 if i in truth else 0.0 for i in ranked]
        dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(truth), k)))
        kdcg = sum(1 / math.log2(r + 2) for r in range(int(sum(hits))))
        out['recall'].append(sum(hits) / len(truth))
        out['precision'].append(sum(hits) / k)
        out['hit'].append(float(sum(hits) > 0))
        out['ndcg'].append(dcg / idcg)
        out['ndcg_kgat'].append(dcg / kdcg if kdcg > 0 else 0.0)
    return {f'{m}@{k}': sum(v) / len(v) for m, v in out.items()}


def csr(dense):
    r, c = dense.nonzero().t()
    return UserItemCSR.from_pairs(r, c, dense.size(0), dense.size(1))


def test_hand_computed():
    r"""Two users, five items, scores rank items 0 > 1 > 2 > 3 > 4.

    user 0: train {0}, test {1, 4} -> ranking without 0: 1 2 3 4
    user 1: train {},  test {}     -> not counted
    """
    scores = torch.tensor([[5., 4., 3., 2., 1.], [5., 4., 3., 2., 1.]])
    train = csr(torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]).bool())
    test = csr(torch.tensor([[0, 1, 0, 0, 1], [0, 0, 0, 0, 0]]).bool())
    res = evaluate(lambda u: scores[u], test, [train], ks=[2], kgat_ndcg=True)
    assert res['num_users'] == 1
    assert res['recall@2'] == pytest.approx(0.5)
    assert res['precision@2'] == pytest.approx(0.5)
    assert res['hit@2'] == 1.0
    assert res['ndcg@2'] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert res['ndcg_kgat@2'] == pytest.approx(1.0)


@pytest.mark.parametrize('seed', range(3))
@pytest.mark.parametrize('ks', [[1], [5, 20], [3, 10, 40]])
@pytest.mark.parametrize('batch_size', [1, 7, 4096])
def test_matches_dense_reference(seed, ks, batch_size):
    g = torch.Generator().manual_seed(seed)
    U, I = 23, 31
    scores = torch.randn(U, I, generator=g)
    train = torch.rand(U, I, generator=g) < 0.2
    valid = (torch.rand(U, I, generator=g) < 0.1) & ~train
    test = (torch.rand(U, I, generator=g) < 0.15) & ~train & ~valid
    res = evaluate(lambda u: scores[u], csr(test), [csr(train), csr(valid)],
                   ks=ks, batch_size=batch_size, kgat_ndcg=True)
    assert res['num_users'] == int(test.any(1).sum())
    for k in ks:
        ref = reference(scores, test, [train, valid], min(k, I))
        for m in ('recall', 'hit', 'ndcg', 'ndcg_kgat'):
            assert res[f'{m}@{k}'] == pytest.approx(ref[f'{m}@{min(k, I)}'],
                                                    abs=1e-6)
        assert res[f'precision@{k}'] == pytest.approx(
            ref[f'precision@{min(k, I)}'] * min(k, I) / k, abs=1e-6)


def test_on_device(device):
    """Scores and positives on :obj:`device`: the metrics of the dense
    loop-per-user reference."""
    g = torch.Generator().manual_seed(0)
    U, I = 23, 31
    scores = torch.randn(U, I, generator=g)
    train = torch.rand(U, I, generator=g) < 0.2
    test = (torch.rand(U, I, generator=g) < 0.15) & ~train
    seen = []

    def score_fn(u):
        seen.append(u.device)
        return dev_scores[u]

    dev_scores = scores.to(device)
    res = evaluate(score_fn, csr(test).to(device), [csr(train).to(device)],
                   ks=[5, 20], batch_size=7, kgat_ndcg=True, per_user=True)
    assert seen and all(d == dev_scores.device for d in seen)
    assert res['users'].device == dev_scores.device
    assert all(v.device == dev_scores.device
               for v in res['per_user'].values())
    assert res['num_users'] == int(test.any(1).sum())
    for k in (5, 20):
        ref = reference(scores, test, [train], k)
        for m in ('recall', 'precision', 'hit', 'ndcg', 'ndcg_kgat'):
            assert res[f'{m}@{k}'] == pytest.approx(ref[f'{m}@{k}'],
                                                    abs=1e-6)


def test_metrics_of_a_perfect_and_a_worst_ranking():
    r"""Four users, six items, each user's test items ranked first
    (perfect) or last (worst); user 3 has no test item (not counted)::

              item 0 1 2 3 4 5
        user 0      t t . . . .
        user 1      . . t . . .
        user 2      t t t t . .
    """
    test = torch.zeros(4, 6, dtype=torch.bool)
    test[0, [0, 1]] = test[1, 2] = True
    test[2, :4] = True
    perfect = test.float()
    res = evaluate(lambda u: perfect[u], csr(test), ks=[1, 2, 3],
                   kgat_ndcg=True)
    assert res['num_users'] == 3
    for k in (1, 2, 3):
        assert res[f'hit@{k}'] == 1.0
        assert res[f'ndcg@{k}'] == pytest.approx(1.0)
        assert res[f'ndcg_kgat@{k}'] == pytest.approx(1.0)
    # recall@2: 2/2, 1/1, 2/4; precision@2: 2/2, 1/2, 2/2
    assert res['recall@2'] == pytest.approx((1 + 1 + 0.5) / 3)
    assert res['precision@2'] == pytest.approx((1 + 0.5 + 1) / 3)
    assert res['precision@3'] == pytest.approx((2 / 3 + 1 / 3 + 1) / 3)
    worst = -test.float()
    res = evaluate(lambda u: worst[u], csr(test), ks=[2, 3], kgat_ndcg=True)
    # no test item in anyone's top 2; in the top 3 only user 2's (4 of its
    # 6 items are test items), at rank 3
    for m in ('recall', 'precision', 'hit', 'ndcg', 'ndcg_kgat'):
        assert res[f'{m}@2'] == 0.0
    assert res['hit@3'] == pytest.approx(1 / 3)
    assert res['recall@3'] == pytest.approx(0.25 / 3)
    assert res['precision@3'] == pytest.approx(1 / 9)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert res['ndcg@3'] == pytest.approx(0.5 / idcg / 3)
    assert res['ndcg_kgat@3'] == pytest.approx(0.5 / 3)


def test_per_user_output():
    scores = torch.randn(4, 6)
    test = csr(torch.eye(4, 6).bool())
    res = evaluate(lambda u: scores[u], test, per_user=True)
    assert res['per_user']['ndcg@20'].shape == (4, )
    assert torch.equal(res['users'], torch.arange(4))


def test_errors():
    test = csr(torch.eye(3).bool())
    zeros = lambda u: torch.zeros(u.numel(), 3)  # noqa: E731
    for ks in ([0], [True], [], 20, '20'):
        with pytest.raises(ValueError, match=r"evaluate: 'ks' must be a "
                                             r"sequence of positive ints"):
            evaluate(zeros, test, ks=ks)
    for size in (0, 1.5):
        with pytest.raises(ValueError, match=r"'batch_size' must be a "
                                             r"positive int"):
            evaluate(zeros, test, batch_size=size)
    with pytest.raises(TypeError, match=r"'ground_truth' must be a "
                                        r"UserItemCSR \(got Tensor\)"):
        evaluate(zeros, torch.eye(3))
    with pytest.raises(ValueError, match=r"'exclude\[0\]' must have the "
                                         r"shape of 'ground_truth'"):
        evaluate(zeros, test, [csr(torch.eye(2).bool())])
    with pytest.raises(ValueError, match=r"must return shape \[3, 3\]"):
        evaluate(lambda u: torch.zeros(u.numel(), 2), test)


@pytest.fixture
def five_users():
    r"""Five users, eight items, random scores; user 2 has no test item.

    test: u0 {1, 4}, u1 {0}, u2 {}, u3 {2, 5, 7}, u4 {6}
    """
    scores = torch.randn(5, 8, generator=torch.Generator().manual_seed(0))
    test = torch.zeros(5, 8, dtype=torch.bool)
    for u, items in {0: [1, 4], 1: [0], 3: [2, 5, 7], 4: [6]}.items():
        test[u, items] = True
    return scores, csr(test)


def test_users_subset_matches_the_full_run(five_users):
    scores, test = five_users
    full = evaluate(lambda u: scores[u], test, ks=[3], kgat_ndcg=True,
                    per_user=True)
    assert full['users'].tolist() == [0, 1, 3, 4]
    sub = evaluate(lambda u: scores[u], test, ks=[3], kgat_ndcg=True,
                   per_user=True, users=torch.tensor([1, 4]))
    assert sub['num_users'] == 2 and sub['users'].tolist() == [1, 4]
    for key, v in full['per_user'].items():
        assert torch.equal(sub['per_user'][key], v[[1, 3]]), key
        assert sub[key] == pytest.approx(float(v[[1, 3]].mean()))
    # no users at all: every mean is 0, nothing is scored
    calls = []
    empty = evaluate(lambda u: calls.append(u) or scores[u], test, ks=[3],
                     users=torch.empty(0, dtype=torch.long))
    assert empty['num_users'] == 0 and calls == []
    assert {k: v for k, v in empty.items() if k != 'num_users'} == {
        f'{m}@3': 0.0 for m in ('recall', 'precision', 'hit', 'ndcg')}


@pytest.mark.parametrize('users,error,match', [
    (torch.tensor([0., 1.]), TypeError, r"'users' must be None or a 1-dim "
     r"torch.long tensor \(got torch.float32\)"),
    (torch.tensor([[0, 1]]), TypeError, r"1-dim torch.long tensor \(got "
     r"torch.int64\)"),
    ([0, 1], TypeError, r"1-dim torch.long tensor \(got <class 'list'>\)"),
    (torch.tensor([-1, 0]), ValueError, r"'users' must hold ids of users "
     r"with at least one ground-truth item \(got \[-1, 0\]\)"),
    (torch.tensor([0, 5]), ValueError, r"at least one ground-truth item "
     r"\(got \[0, 5\]\)"),
    (torch.tensor([0, 2]), ValueError, r"\(got \[0, 2\]\)"),  # u2: none
    (torch.tensor([0, 1, 3, 4, 0, 1, 3, 4, 0, 1, 2]), ValueError,
     r"\(got \[0, 1, 3, 4, 0, 1, 3, 4, 0, 1\]\)$"),  # first 10 ids shown
])
def test_users_errors(five_users, users, error, match):
    scores, test = five_users
    with pytest.raises(error, match=match):
        evaluate(lambda u: scores[u], test, users=users)


def test_valid_users_at_the_edges(five_users):
    # ids 0 and num_rows - 1 are valid
    scores, test = five_users
    res = evaluate(lambda u: scores[u], test, users=torch.tensor([0, 4]))
    assert res['num_users'] == 2


def test_defaults_and_batches(five_users):
    scores, test = five_users
    res = evaluate(lambda u: scores[u], test)
    assert set(res) == {'recall@20', 'precision@20', 'hit@20', 'ndcg@20',
                        'num_users'}  # no ndcg_kgat, no per-user tensors
    sizes = []
    evaluate(lambda u: sizes.append(u.numel()) or scores[u], test,
             batch_size=3)
    assert sizes == [3, 1]
    # the default batch of 4096 users: 4097 users are scored in two calls
    truth = torch.zeros(4097, 2, dtype=torch.bool)
    truth[:, 0] = True
    big = csr(truth)
    sizes = []
    evaluate(lambda u: sizes.append(u.numel()) or torch.zeros(u.numel(), 2),
             big)
    assert sizes == [4096, 1]


# ------------------------------------------ PyG's LinkPred metrics agree
def pyg_metrics(scores, gt, exclude, ks):
    r"""recall/precision/hit/NDCG@K from :mod:`torch_geometric.metrics`
    over the users with a ground-truth item, after masking :obj:`exclude`
    (dense [U, I] bool) the way :func:`evaluate` does."""
    lp = pytest.importorskip('torch_geometric.metrics',
                             reason='torch_geometric.metrics is missing')
    classes = {'recall': lp.LinkPredRecall, 'precision': lp.LinkPredPrecision,
               'hit': lp.LinkPredHitRatio, 'ndcg': lp.LinkPredNDCG}
    coll = lp.LinkPredMetricCollection({f'{m}@{k}': cls(k) for m, cls in
                                        classes.items() for k in ks})
    users = gt.any(1).nonzero().view(-1)
    s = scores[users].masked_fill(exclude[users], -math.inf)
    top = s.topk(max(ks), dim=-1).indices
    coll.update(top, gt[users].nonzero().t())
    return {k: float(v) for k, v in coll.compute().items()}


def test_pyg_linkpred_metrics_agree_on_a_hand_drawn_case():
    r"""Three users, six items; scores rank items 0 > 1 > ... > 5 for
    everyone; user 0's training item 0 is masked::

        user 0: train {0}, test {1, 4}   ranking 1 2 3 4 5 -> hits at 1, 4
        user 1: train {},  test {5}      ranking 0 1 2 3 4 5 -> hit at 6
        user 2: no test item (not evaluated)
    """
    scores = torch.arange(6, 0, -1).float().repeat(3, 1)
    gt = torch.zeros(3, 6, dtype=torch.bool)
    gt[0, [1, 4]] = True
    gt[1, 5] = True
    train = torch.zeros(3, 6, dtype=torch.bool)
    train[0, 0] = True
    ours = evaluate(lambda u: scores[u], csr(gt), [csr(train)], ks=[1, 4])
    theirs = pyg_metrics(scores, gt, train, [1, 4])
    for key, v in theirs.items():
        assert ours[key] == pytest.approx(v, abs=1e-6), key
    # by hand: recall@4 = (2/2 + 0) / 2, ndcg@1 = (1 + 0) / 2
    assert ours['recall@4'] == pytest.approx(0.5)
    assert ours['ndcg@1'] == pytest.approx(0.5)
    d = 1 / math.log2(2) + 1 / math.log2(5)
    assert ours['ndcg@4'] == pytest.approx(d / (1 + 1 / math.log2(3)) / 2)


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('ks', [[20], [1, 5, 10]])
def test_pyg_linkpred_metrics_agree_on_random_data(seed, ks):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(40, 30, generator=g)
    train = torch.rand(40, 30, generator=g) < 0.2
    gt = (torch.rand(40, 30, generator=g) < 0.15) & ~train
    ours = evaluate(lambda u: scores[u], csr(gt), [csr(train)], ks=ks,
                    batch_size=7)
    theirs = pyg_metrics(scores, gt, train, ks)
    assert set(theirs) <= set(ours)
    for key, v in theirs.items():
        assert ours[key] == pytest.approx(v, abs=1e-6), key
