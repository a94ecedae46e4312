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
    """Scores and positives on :obj:`device`: the same metrics as on CPU."""
    g = torch.Generator().manual_seed(0)
    U, I = 23, 31
    scores = torch.randn(U, I, generator=g)
    train = torch.rand(U, I, generator=g) < 0.2
    test = (torch.rand(U, I, generator=g) < 0.15) & ~train
    ref = evaluate(lambda u: scores[u], csr(test), [csr(train)], ks=[5, 20],
                   batch_size=7, kgat_ndcg=True)
    dev_scores = scores.to(device)
    res = evaluate(lambda u: dev_scores[u], csr(test).to(device),
                   [csr(train).to(device)], ks=[5, 20], batch_size=7,
                   kgat_ndcg=True)
    assert res.keys() == ref.keys()
    for key in ref:
        assert res[key] == pytest.approx(ref[key], abs=1e-6)


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
