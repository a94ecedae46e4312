import math

import pytest
import torch

from kgsampler import MF, NFM, LightGCN, Trainer, make_synthetic
from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler import DENS, DENSFactors


class VectorScorer(torch.nn.Module):
    r"""A frozen recommender with given user and item vectors; its score is
    their inner product (or, with :obj:`shift`, that plus a constant, which
    is then not an inner product)."""
    def __init__(self, user_vec, item_vec, shift=0.0):
        super().__init__()
        self.register_buffer('u', user_vec.float())
        self.register_buffer('v', item_vec.float())
        self.num_users, self.num_items = self.u.size(0), self.v.size(0)
        self.shift = shift

    def user_representations(self, users):
        return self.u[users]

    def item_representations(self, items):
        return self.v[items]

    def score(self, users, items):
        return (self.v[items] @ self.u[users].unsqueeze(-1)).squeeze(-1) + \
            self.shift


class ScoreOnly:
    """A recommender with a score but no vectors."""
    num_users, num_items = 2, 6

    def score(self, users, items):
        return items.float()


@pytest.fixture
def pos() -> UserItemCSR:
    r"""Two users over 6 items (x: training positive)::

              i0 i1 i2 i3 i4 i5
        u0     x  x
        u1           x  x

    Item vectors (d = 2), user vectors u0 = u1 = (1, 1)::

        i0 ( 1, 1)   i1 ( 2, 0)   i2 ( 3, 0)
        i3 ( 0, 2)   i4 (-1, 1)   i5 (-2,-1)

    Scores u.n: i2 3, i3 2, i4 0, i5 -3 (u0's non-positives): DNS picks i2.
    """
    return UserItemCSR.from_pairs(torch.tensor([0, 0, 1, 1]),
                                  torch.tensor([0, 1, 2, 3]), 2, 6)


def hand_scorer():
    items = torch.tensor([[1., 1.], [2., 0.], [3., 0.], [0., 2.],
                          [-1., 1.], [-2., -1.]])
    return VectorScorer(torch.ones(2, 2), items)


def set_dimension_gates(s: DENS) -> None:
    r"""Gates that pass dimension 0 as the relevant factor and dimension 1 as
    the irrelevant one, whatever the inputs."""
    with torch.no_grad():
        for lin in (s.user_gate, s.item_gate, s.pos_gate, s.neg_gate):
            lin.weight.zero_()
            lin.bias.zero_()
        s.item_gate.bias.copy_(torch.tensor([30., -30.]))
        s.neg_gate.bias.copy_(torch.tensor([30., -30.]))


@pytest.mark.parametrize('epoch,expected', [
    (0, 3),    # weight 1: argmax u.n_ir = n[1] -> i3 (DNS: i2)
    (1, 3),    # weight 0.75: 0.75 n[1] - 0.25 n[0] -> i3
    (4, 5),    # weight 0: argmax -u.n_r = -n[0] -> i5 (the easiest)
    (9, 5),
])
def test_selection_rule_hand_made(pos, epoch, expected):
    torch.manual_seed(0)
    s = DENS(pos, scorer=hand_scorer(), num_candidates=64, warmup=4)
    set_dimension_gates(s)
    for e in range(epoch + 1):
        s.on_epoch_start(e + 1)
    assert s.relevant_weight == pytest.approx(max(0.0, 1 - epoch / 4))
    users = torch.zeros(20, dtype=torch.long)
    out = s.sample(users, torch.zeros(20, dtype=torch.long), num_neg=2)
    # 64 uniform candidates among 4 non-positives: every one is present
    assert (out.neg_items == expected).all()
    w = s.relevant_weight
    ref = torch.tensor([[w * 3 - 3, w * 2, w * 0 + 1, w * -3 + 2]])
    got = s.selection_scores(users[:1], users[:1],
                             torch.tensor([[2, 3, 4, 5]]))
    assert torch.allclose(got, ref, atol=1e-6)


def test_factors_and_scores_dense_reference(pos):
    torch.manual_seed(1)
    rec = VectorScorer(torch.randn(2, 3), torch.randn(6, 3))
    s = DENS(pos, scorer=rec, warmup=10)
    for e in range(3):
        s.on_epoch_start(e)
    users = torch.tensor([0, 1, 1])
    pos_items = torch.tensor([1, 2, 3])
    items = torch.tensor([[2, 3, 4], [0, 4, 5], [5, 1, 0]])
    f = s.factors(users, pos_items, items)
    assert isinstance(f, DENSFactors)
    sc = s.selection_scores(users, pos_items, items)
    W = {k: (getattr(s, k).weight.detach(), getattr(s, k).bias.detach())
         for k in ('user_gate', 'item_gate', 'pos_gate', 'neg_gate')}

    def lin(k, x):
        return W[k][0] @ x + W[k][1]

    w = 1 - 2 / 10
    for b in range(3):
        u, p = rec.u[users[b]], rec.v[pos_items[b]]
        g_p = torch.sigmoid(lin('item_gate', p) + lin('user_gate', u))
        p_r = p * g_p
        assert torch.allclose(f.pos_relevant[b], p_r, atol=1e-6)
        assert torch.allclose(f.pos_irrelevant[b], p - p_r, atol=1e-6)
        for k in range(3):
            n = rec.v[items[b, k]]
            g_n = torch.sigmoid(lin('neg_gate', n) + lin('pos_gate', p_r))
            assert torch.allclose(f.neg_relevant[b, k], n * g_n, atol=1e-6)
            assert torch.allclose(f.neg_irrelevant[b, k], n - n * g_n,
                                  atol=1e-6)
            ref = w * (u @ n) - u @ (n * g_n)
            assert sc[b, k].item() == pytest.approx(ref.item(), abs=1e-5)


def test_gate_loss_dense_reference(pos):
    torch.manual_seed(2)
    rec = VectorScorer(torch.randn(2, 3), torch.randn(6, 3))
    s = DENS(pos, scorer=rec)
    users, pos_items = torch.tensor([0, 1]), torch.tensor([0, 3])
    out = s.sample(users, pos_items, num_neg=3)
    with torch.no_grad():
        f = s.factors(users, pos_items, out.neg_items)
    ref = 0.0
    for b in range(2):
        u = rec.u[users[b]]
        spr, spir = u @ f.pos_relevant[b], u @ f.pos_irrelevant[b]
        snr, snir = f.neg_relevant[b] @ u, f.neg_irrelevant[b] @ u
        ref += (math.log(1 + math.exp(spir - spr))
                + math.log(1 + torch.exp(snr - snir).sum())
                + math.log(1 + torch.exp(snr - spr).sum())
                + math.log(1 + torch.exp(spir - snir).sum())) / 4
    logs = s.update(users, pos_items, out)
    assert logs['sampler_gate_loss'].item() == pytest.approx(ref / 2,
                                                             rel=1e-5)


@pytest.mark.parametrize('num_neg', [1, 3])
@pytest.mark.parametrize('num_candidates', [1, 4])
def test_never_a_training_positive(pos, num_neg, num_candidates, device):
    torch.manual_seed(0)
    model = MF(2, 6, embedding_dim=4).to(device)
    s = DENS(pos, scorer=model, num_candidates=num_candidates).to(device)
    users = torch.tensor([0, 1, 1, 0], device=device).repeat(50)
    items = torch.tensor([0, 2, 3, 1], device=device).repeat(50)
    out = s.sample(users, items, num_neg)
    assert out.neg_items.device == users.device
    assert out.neg_items.dtype == torch.long
    assert out.neg_items.shape == (200, num_neg)
    s.update(users, items, out)
    dense = pos.to_dense().to(device)
    assert not dense[users.view(-1, 1), out.neg_items].any()


def test_batch_of_one(pos):
    torch.manual_seed(0)
    s = DENS(pos, scorer=MF(2, 6, embedding_dim=4))
    out = s.sample(torch.tensor([1]), torch.tensor([2]), num_neg=2)
    assert out.neg_items.shape == (1, 2)
    assert not set(out.neg_items.view(-1).tolist()) & {2, 3}
    logs = s.update(torch.tensor([1]), torch.tensor([2]), out)
    assert torch.isfinite(logs['sampler_gate_loss'])


def test_gates_learn_on_a_fixed_recommender(pos):
    torch.manual_seed(3)
    rec = VectorScorer(torch.randn(2, 8), torch.randn(6, 8))
    s = DENS(pos, scorer=rec, lr=1e-2)
    before = [p.detach().clone() for p in s.parameters()]
    users = torch.tensor([0, 0, 1, 1])
    pos_items = torch.tensor([0, 1, 2, 3])
    out = s.sample(users, pos_items, num_neg=2)
    s.update(users, pos_items, out)
    first = s.diagnostics()
    for _ in range(200):
        s.update(users, pos_items, out)
    s.update(users, pos_items, out)
    last = s.diagnostics()
    assert all(not torch.equal(a, b) for a, b in zip(before,
                                                     s.parameters()))
    assert last['gate_loss'] < first['gate_loss'] - 0.05
    assert last['pos_relevant_wins'] >= first['pos_relevant_wins']
    assert 'dns_agreement' not in last  # no sampling since the last call


def test_trainer_logs_the_diagnostics():
    ds = make_synthetic(num_users=24, num_items=30, num_genres=3,
                        num_creators=4, num_eras=2, seed=0)
    torch.manual_seed(0)
    model = LightGCN.from_dataset(ds, embedding_dim=8, num_layers=2)
    s = DENS.from_dataset(ds, scorer=model, num_candidates=4, warmup=2)
    before = s.neg_gate.weight.detach().clone()
    res = Trainer(model, s, ds, batch_size=32, max_epochs=3,
                  progress=False).fit()
    h = res.history
    assert [r['sampler_relevant_weight'] for r in h] == [1.0, 0.5, 0.0]
    for r in h:
        assert math.isfinite(r['sampler_gate_loss'])
        assert 0.0 <= r['sampler_dns_agreement'] <= 1.0
    # weight 1: mostly DNS's pick; weight 0: the least relevant candidate
    assert h[0]['sampler_dns_agreement'] > h[2]['sampler_dns_agreement']
    assert not torch.equal(before, s.neg_gate.weight)


def test_repr_and_module(pos):
    s = DENS(pos, scorer=hand_scorer(), num_candidates=3, warmup=7)
    assert repr(s) == 'DENS(num_candidates=3, warmup=7, embedding_dim=2)'
    assert 'scorer' not in dict(s.named_children())
    s.reset_parameters()
    assert DENS.supports(hand_scorer())
    assert not DENS.supports(ScoreOnly())


@pytest.mark.parametrize('kwargs,err,match', [
    ({'num_candidates': 0}, ValueError, "'num_candidates' must be a positive"),
    ({'warmup': -1}, ValueError, "'warmup' must be an int >= 0"),
    ({'lr': 0.0}, ValueError, "'lr' must be positive"),
    ({'lr': 'a'}, TypeError, "'lr' must be a finite number"),
    ({'weight_decay': -1.0}, ValueError, "'weight_decay' must be non-neg"),
    ({'embedding_dim': 0}, ValueError, "'embedding_dim' must be a positive"),
    ({'embedding_dim': 3}, ValueError,
     r"'embedding_dim' must be the size of VectorScorer's vectors, 2 "
     r"\(got 3\)"),
])
def test_argument_errors(pos, kwargs, err, match):
    with pytest.raises(err, match=match):
        DENS(pos, scorer=hand_scorer(), **kwargs)


def test_needs_scorer_or_dim(pos):
    with pytest.raises(ValueError, match="pass 'scorer' or 'embedding_dim'"):
        DENS(pos)
    s = DENS(pos, embedding_dim=2)
    with pytest.raises(RuntimeError, match='DENS: no scorer set'):
        s.sample(torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"vectors have size 4, the gates "
                                         r"'embedding_dim'=2"):
        s.set_scorer(MF(2, 6, embedding_dim=4))


def test_recommender_without_vectors(pos):
    with pytest.raises(TypeError, match='ScoreOnly has no user vectors'):
        DENS(pos, scorer=ScoreOnly())
    with pytest.raises(TypeError, match="score is not the inner product"):
        DENS(pos, scorer=VectorScorer(torch.ones(2, 2), torch.ones(6, 2),
                                      shift=1.0))
    with pytest.raises(TypeError, match="'scorer' must implement score"):
        DENS(pos, scorer=object())
    ds = make_synthetic(num_users=24, num_items=30, num_genres=3,
                        num_creators=4, num_eras=2, seed=0)
    nfm = NFM(ds, embedding_dim=8, hidden_dims=(8, ))
    with pytest.raises(TypeError, match='DENS needs .* NFM has no user'):
        DENS.from_dataset(ds, scorer=nfm)


def test_update_errors(pos):
    s = DENS(pos, scorer=hand_scorer())
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    out = s.sample(users, items)
    with pytest.raises(TypeError, match="DENS.update: 'output' must be"):
        s.update(users, items, out.neg_items)
    with pytest.raises(ValueError, match="DENS.update: 'users' must be"):
        s.update(users[:1], items, out)
