"""NMRN's adversarial sampler: key-value memory translation generator,
hinge reward (:class:`kgsampler.sampler.NMRN`)."""
import pytest
import torch
import torch.nn.functional as F

from kgsampler.recommender import MF
from kgsampler.sampler import NMRN, Adversarial, EmbeddingScorer


def ranked_scorer():
    """A frozen recommender scoring item j as j for every user."""
    return EmbeddingScorer(torch.ones(3, 1),
                           torch.arange(6, dtype=torch.float).view(-1, 1))


@pytest.mark.parametrize('temperature', [1.0, 0.5])
def test_logits_are_the_translation_memory_score(pos, temperature):
    torch.manual_seed(0)
    s = NMRN(pos, scorer=ranked_scorer(), embedding_dim=3, memory_size=2,
             temperature=temperature)
    users = torch.tensor([0, 2])
    items = torch.tensor([[2, 3, 4], [1, 2, 1]])
    P, Q = s.user_emb.weight, s.item_emb.weight
    K, V = s.keys, s.values
    ref = torch.empty(2, 3)
    for b, u in enumerate(users.tolist()):  # dense, slot by slot
        a = torch.stack([P[u] @ K[m] for m in range(2)])
        w = a.exp() / a.exp().sum()
        m_u = w[0] * V[0] + w[1] * V[1]
        assert torch.allclose(s.memory_read(users[b:b + 1])[0], m_u)
        for k, j in enumerate(items[b].tolist()):
            ref[b, k] = -((P[u] + m_u - Q[j]) ** 2).sum() / temperature
    assert torch.allclose(s.logits(users, items), ref, atol=1e-6)


@pytest.mark.parametrize('margin', [0.0, 1.0, 2.5])
def test_reward_is_the_hinge_loss(pos, margin):
    s = NMRN(pos, scorer=ranked_scorer(), embedding_dim=3, margin=margin)
    f_pos = torch.tensor([[2.0], [0.5]])
    f_neg = torch.tensor([[0.0, 1.5, 3.0], [0.5, -3.0, 1.0]])
    ref = torch.tensor([[max(0.0, margin + n - p) for n in row]
                        for p, row in zip([2.0, 0.5], f_neg.tolist())])
    users, items = torch.tensor([0, 1]), torch.tensor([1, 2])
    assert torch.equal(s.reward(users, items, torch.zeros(2, 3).long(),
                                f_pos, f_neg), ref)


def test_update_is_the_exact_pool_policy_gradient(pos):
    torch.manual_seed(0)
    model = ranked_scorer()
    s = NMRN(pos, scorer=model, num_candidates=3, embedding_dim=3,
             memory_size=2, margin=1.0)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 4])
    out = s.sample(users, items, 2)
    cand = out.candidates.view(3, -1)
    logp = F.log_softmax(s.logits(users, cand).view(3, 2, 3), -1)
    f_pos = model.score(users, items.view(-1, 1))
    reward = (1.0 + model.score(users, cand) - f_pos).clamp_min(0).view(
        3, 2, 3)
    pi = logp.exp().detach()
    ref = -(pi * (reward - (pi * reward).sum(-1, keepdim=True)) *
            logp).sum(-1).mean()
    grads = torch.autograd.grad(ref, list(s.parameters()))
    before = [p.detach().clone() for p in s.parameters()]
    s.optimizer = torch.optim.SGD(s.parameters(), lr=1.0)
    logs = s.update(users, items, out)
    for b, p, g in zip(before, s.parameters(), grads):
        assert torch.allclose(b - p.detach(), g, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads[2:])  # the memory learns
    assert torch.allclose(logs['sampler_reward'], (pi * reward).sum(-1).mean())


@pytest.mark.parametrize('num_neg', [1, 3])
def test_never_a_positive(pos, num_neg, device):
    torch.manual_seed(0)
    model = MF(3, 6, embedding_dim=4).to(device)
    s = NMRN(pos, scorer=model, num_candidates=4, embedding_dim=4).to(device)
    users = torch.tensor([0, 1, 2], device=device).repeat(40)
    items = torch.tensor([1, 2, 5], device=device).repeat(40)
    out = s.sample(users, items, num_neg)
    assert out.neg_items.shape == (120, num_neg)
    assert out.neg_items.device == users.device
    dense = pos.to_dense().to(device)
    assert not dense[users.view(-1, 1), out.neg_items].any()
    assert not dense[users.view(-1, 1, 1), out.candidates].any()
    s.update(users, items, out)
    one = s.sample(torch.tensor([2], device=device),
                   torch.tensor([5], device=device))  # B = 1
    assert one.neg_items.shape == (1, 1) and one.neg_items.item() in (1, 2)


def test_generator_learns_the_hard_items(pos):
    torch.manual_seed(0)
    s = NMRN(pos, scorer=ranked_scorer(), num_candidates=3, embedding_dim=4,
             memory_size=4, margin=2.0, lr=0.05)
    params = [p.detach().clone() for p in s.parameters()]
    users = torch.tensor([0, 1]).repeat(64)
    items = torch.tensor([0, 2]).repeat(64)

    def mean_item():
        torch.manual_seed(1)
        return s.sample(users, items, 4).neg_items.float().mean()

    start = mean_item()
    gains = [float(s.update(users, items, s.sample(users, items))
                   ['sampler_gain']) for _ in range(150)]
    assert mean_item() > start + 0.5  # drawn towards the high-scored items
    # untrained: about a uniform pick; trained: far harder than uniform
    assert abs(gains[0]) < 0.3 and sum(gains[-10:]) / 10 > 1.0
    assert all(not torch.equal(a, b) for a, b in zip(params, s.parameters()))


def test_module_behaviour(pos):
    s = NMRN(pos, scorer=ranked_scorer(), embedding_dim=4, memory_size=5)
    assert isinstance(s, Adversarial) and s.learnable and s.requires_scorer
    assert [n for n, _ in s.named_parameters()] == [
        'keys', 'values', 'user_emb.weight', 'item_emb.weight']
    assert s.keys.shape == s.values.shape == (5, 4)
    assert set(s.state_dict()) >= {'keys', 'values'}
    before = s.keys.detach().clone()
    s.reset_parameters()
    assert not torch.equal(before, s.keys)
    assert len(s.optimizer.param_groups[0]['params']) == 4
    assert repr(s) == ('NMRN(num_users=3, num_items=6, num_candidates=4, '
                       'memory_size=5, margin=1.0)')
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    s.update(users, items, s.sample(users, items))
    s.double()
    assert s.keys.dtype == torch.float64
    s.update(users, items, s.sample(users, items))


@pytest.mark.parametrize('kwargs,error,match', [
    ({'memory_size': 0}, ValueError, r"NMRN: 'memory_size' must be a "
     r"positive int \(got 0\)"),
    ({'margin': -1.0}, ValueError, r"NMRN: 'margin' must be non-negative "
     r"\(got -1.0\)"),
    ({'margin': 'a'}, TypeError, r"NMRN: 'margin' must be a finite number "
     r"\(got 'a'\)"),
    ({'num_candidates': 1.5}, ValueError, r"NMRN: 'num_candidates' must be "
     r"a positive int \(got 1.5\)"),
])
def test_argument_errors(pos, kwargs, error, match):
    with pytest.raises(error, match=match):
        NMRN(pos, **kwargs)


def test_update_errors(pos):
    s = NMRN(pos, scorer=ranked_scorer(), embedding_dim=4)
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    out = s.sample(users, items)
    with pytest.raises(TypeError, match=r"NMRN.update: 'output' must come "
                                        r"from NMRN.sample"):
        s.update(users, items, None)
    with pytest.raises(ValueError, match=r"NMRN.update: 'users' must be the "
                                         r"1-D torch.long tensor of the 2"):
        s.update(users[:1], items, out)


def test_packaged_config_builds_nmrn():
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from kgsampler import make_synthetic
    cfg = OmegaConf.load(Path(__file__).resolve().parents[2] / 'conf' /
                         'sampler' / 'nmrn.yaml')
    ds = make_synthetic(num_users=12, num_items=15, num_genres=2,
                        num_creators=2, num_eras=2, seed=0)
    s = instantiate(cfg, dataset=ds,
                    scorer=MF(ds.num_users, ds.num_items, embedding_dim=4))
    assert type(s) is NMRN
    assert (s.memory_size, s.margin, s.num_candidates) == (8, 1.0, 4)
