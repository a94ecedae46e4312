"""AdvIR: the adversarial sampler (:class:`kgsampler.sampler.AdvIR`) and
the adversarially trained recommender (:class:`kgsampler.recommender.APR`)."""
import pytest
import torch
import torch.nn.functional as F

from kgsampler.recommender import APR, MF
from kgsampler.recommender.base import bpr_l2
from kgsampler.sampler import Adversarial, AdvIR, EmbeddingScorer


def make_apr(epsilon=0.5, adv_weight=1.0, reg=0.0, seed=0):
    torch.manual_seed(seed)
    return APR(3, 6, embedding_dim=4, reg=reg, epsilon=epsilon,
               adv_weight=adv_weight)


def fd_grad(f, x, h=1e-4):
    """Central finite-difference gradient of the scalar f at x (float64)."""
    g = torch.zeros_like(x)
    for k in range(x.numel()):
        e = torch.zeros_like(x).view(-1)
        e[k] = h
        e = e.view_as(x)
        g.view(-1)[k] = (f(x + e) - f(x - e)) / (2 * h)
    return g


# ------------------------------------------------------------------- APR
@pytest.mark.parametrize('num_neg', [1, 3])
def test_perturbation_is_the_l2_bounded_gradient_direction(num_neg):
    model = make_apr(epsilon=0.3).double()
    users, items = torch.tensor([0, 1, 2, 2]), torch.tensor([1, 2, 3, 5])
    neg = torch.tensor([[3, 4, 5], [0, 1, 3], [1, 2, 1],
                        [2, 1, 2]])[:, :num_neg]
    u, p, n = (model.user_emb(users), model.item_emb(items),
               model.item_emb(neg))
    d = model.perturbations(u, p, n)
    du, dp, dn = d.user, d.pos, d.neg
    # dense reference: finite-difference gradient of the mean BPR loss with
    # respect to each embedding row, normalised row by row, times epsilon
    refs = [fd_grad(lambda x: bpr_l2(x, p, n, x, p, n, 0.0), u.detach()),
            fd_grad(lambda x: bpr_l2(u, x, n, u, x, n, 0.0), p.detach()),
            fd_grad(lambda x: bpr_l2(u, p, x, u, p, x, 0.0), n.detach())]
    for d, g in zip((du, dp, dn), refs):
        assert not d.requires_grad
        assert torch.allclose(d.norm(dim=-1), torch.full(d.shape[:-1], 0.3,
                                                         dtype=d.dtype))
        assert torch.allclose(d, 0.3 * g / g.norm(dim=-1, keepdim=True),
                              atol=1e-6)
    # it is the worst case to first order: no other direction of the same
    # norm increases the loss more (random directions, dense evaluation)
    worst = bpr_l2(u + du, p + dp, n + dn, u, p, n, 0.0)
    torch.manual_seed(1)
    for _ in range(20):
        r = [0.3 * F.normalize(torch.randn_like(t), dim=-1) for t in (u, p, n)]
        other = bpr_l2(u + r[0], p + r[1], n + r[2], u, p, n, 0.0)
        assert other < worst


@pytest.mark.parametrize('adv_weight', [0.0, 0.5, 2.0])
@pytest.mark.parametrize('reg', [0.0, 1e-2])
def test_loss_is_bpr_plus_weighted_adversarial_bpr(adv_weight, reg):
    model = make_apr(epsilon=0.2, adv_weight=adv_weight, reg=reg).double()
    users, items = torch.tensor([0, 2]), torch.tensor([0, 4])
    neg = torch.tensor([[3, 5], [1, 2]])
    u, p, n = (model.user_emb.weight[users], model.item_emb.weight[items],
               model.item_emb.weight[neg])

    def bpr(u, p, n):  # dense: mean of -log sigmoid over the 4 triples
        return sum(-F.logsigmoid(u[b] @ p[b] - u[b] @ n[b, j])
                   for b in range(2) for j in range(2)) / 4
    gu = fd_grad(lambda x: bpr(x, p, n), u.detach())
    gp = fd_grad(lambda x: bpr(u, x, n), p.detach())
    gn = fd_grad(lambda x: bpr(u, p, x), n.detach())
    eps = [0.2 * g / g.norm(dim=-1, keepdim=True) for g in (gu, gp, gn)]
    l2 = sum(u[b].pow(2).sum() + p[b].pow(2).sum() +
             n[b].pow(2).sum(-1).mean() for b in range(2)) / 4
    ref = bpr(u, p, n) + reg * l2 + adv_weight * bpr(u + eps[0], p + eps[1],
                                                     n + eps[2])
    loss = model.loss(users, items, neg)
    assert torch.allclose(loss, ref, atol=1e-6)
    loss.backward()  # the perturbation is a constant: gradients flow to E
    assert model.user_emb.weight.grad is not None


def test_zero_epsilon_is_mf():
    apr, mf = make_apr(epsilon=0.0, reg=1e-2), MF(3, 6, embedding_dim=4)
    mf.load_state_dict(apr.state_dict())
    users, items = torch.tensor([0, 1]), torch.tensor([1, 2])
    neg = torch.tensor([[3], [4]])
    assert torch.equal(apr.loss(users, items, neg), mf.loss(users, items, neg))
    assert torch.equal(apr.full_scores(users), mf.full_scores(users))


def test_pair_losses_match_each_triple_alone():
    model = make_apr(epsilon=0.4, adv_weight=1.5).double()
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    cand = torch.tensor([[2, 3, 2], [0, 5, 4], [1, 2, 1]])
    out = model.pair_losses(users, items, cand)
    assert out.shape == (3, 3)
    for b in range(3):  # B = 1, K = 1 each: the batch loss of one triple
        for k in range(3):
            ref = model.loss(users[b:b + 1], items[b:b + 1],
                             cand[b:b + 1, k:k + 1])
            assert torch.allclose(out[b, k], ref, atol=1e-9)


@pytest.mark.parametrize('kwargs,error,match', [
    ({'epsilon': -0.1}, ValueError, r"APR: 'epsilon' must be non-negative "
     r"\(got -0.1\)"),
    ({'adv_weight': float('inf')}, TypeError, r"APR: 'adv_weight' must be a "
     r"finite number \(got inf\)"),
    ({'epsilon': True}, TypeError, r"APR: 'epsilon' must be a finite number "
     r"\(got True\)"),
    ({'reg': -1.0}, ValueError, r"MF: 'reg' must be a finite non-negative"),
])
def test_apr_argument_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        APR(3, 6, **kwargs)


def test_apr_module_behaviour():
    model = make_apr()
    assert repr(model) == ('APR(3, 6, embedding_dim=4, epsilon=0.5, '
                           'adv_weight=1.0)')
    before = model.user_emb.weight.detach().clone()
    model.reset_parameters()
    assert not torch.equal(before, model.user_emb.weight)


# ------------------------------------------------------------------ AdvIR
@pytest.mark.parametrize('num_neg', [1, 2])
def test_advir_never_returns_a_positive(pos, num_neg, device):
    model = make_apr().to(device)
    s = AdvIR(pos, scorer=model, num_candidates=3, embedding_dim=4).to(device)
    users = torch.tensor([0, 1, 2], device=device).repeat(40)
    items = torch.tensor([0, 2, 3], device=device).repeat(40)
    out = s.sample(users, items, num_neg)
    assert out.neg_items.device == users.device
    dense = pos.to_dense().to(device)
    assert not dense[users.view(-1, 1), out.neg_items].any()
    assert not dense[users.view(-1, 1, 1), out.candidates].any()
    s.update(users, items, out)
    one = s.sample(torch.tensor([2], device=device),
                   torch.tensor([3], device=device))  # B = 1
    assert one.neg_items.shape == (1, 1) and one.neg_items.item() in (1, 2)


@pytest.mark.parametrize('apr', [True, False])
def test_advir_reward_is_the_recommenders_loss(pos, apr):
    model = make_apr(epsilon=0.3, adv_weight=2.0) if apr else \
        MF(3, 6, embedding_dim=4)
    s = AdvIR(pos, scorer=model, num_candidates=3, embedding_dim=4)
    assert s.adversarial_reward is apr
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0])
    out = s.sample(users, items, 2)
    cand = out.candidates.view(3, -1)
    f_pos = model.score(users, items.view(-1, 1))
    f_neg = model.score(users, cand)
    reward = s.reward(users, items, cand, f_pos, f_neg)
    if apr:  # dense reference: each triple's APR loss on its own
        ref = torch.stack([torch.stack([
            model.loss(users[b:b + 1], items[b:b + 1], cand[b:b + 1, k:k + 1])
            for k in range(6)]) for b in range(3)]).detach()
        assert (reward > F.softplus(f_neg - f_pos)).all()
    else:
        ref = F.softplus(f_neg - f_pos)
    assert torch.allclose(reward, ref, atol=1e-6)
    # the update's reported reward is that reward under the generator
    logits = s.logits(users, cand).view(3, 2, 3)
    pi = F.softmax(logits, -1).detach()
    logs = s.update(users, items, out)
    assert torch.allclose(logs['sampler_reward'],
                          (pi * reward.view(3, 2, 3)).sum(-1).mean(),
                          atol=1e-6)


def test_advir_generator_learns_and_recommender_is_frozen(pos):
    model = make_apr(epsilon=0.1)
    with torch.no_grad():  # the recommender scores item j as j
        model.user_emb.weight.zero_()
        model.user_emb.weight[:, 0] = 1.0
        model.item_emb.weight.zero_()
        model.item_emb.weight[:, 0] = torch.arange(6.0)
    frozen = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(0)
    s = AdvIR(pos, scorer=model, num_candidates=3, embedding_dim=4, lr=0.05)
    gen = [p.detach().clone() for p in s.parameters()]
    users = torch.tensor([0, 1]).repeat(64)
    items = torch.tensor([0, 2]).repeat(64)
    gains = [float(s.update(users, items, s.sample(users, items))
                   ['sampler_gain']) for _ in range(100)]
    # untrained: about a uniform pick; trained: far harder than uniform
    assert abs(gains[0]) < 0.15 and sum(gains[-10:]) / 10 > 1.0
    assert all(not torch.equal(a, b) for a, b in zip(gen, s.parameters()))
    for a, b in zip(frozen, model.parameters()):
        assert torch.equal(a, b) and b.grad is None


def test_advir_is_an_adversarial_sampler(pos):
    s = AdvIR(pos, scorer=EmbeddingScorer(torch.ones(3, 1),
                                          torch.ones(6, 1)), embedding_dim=4)
    assert isinstance(s, Adversarial) and s.learnable
    assert not s.adversarial_reward
    assert repr(s) == ('AdvIR(num_users=3, num_items=6, num_candidates=4, '
                       'temperature=1.0)')


@pytest.mark.parametrize('kwargs,error,match', [
    ({'num_candidates': 0}, ValueError, r"AdvIR: 'num_candidates' must be a "
     r"positive int \(got 0\)"),
    ({'lr': 'a'}, TypeError, r"AdvIR: 'lr' must be a finite number"),
    ({'temperature': -1.0}, ValueError, r"AdvIR: 'temperature' must be "
     r"positive \(got -1.0\)"),
])
def test_advir_argument_errors(pos, kwargs, error, match):
    with pytest.raises(error, match=match):
        AdvIR(pos, **kwargs)


def test_advir_update_errors(pos):
    s = AdvIR(pos, scorer=make_apr(), embedding_dim=4)
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    with pytest.raises(TypeError, match=r"AdvIR.update: 'output' must come "
                                        r"from AdvIR.sample"):
        s.update(users, items, None)
    with pytest.raises(RuntimeError, match='AdvIR: no scorer set'):
        AdvIR(pos).sample(users, items)


def test_advir_diagnostics_say_whether_the_reward_is_adversarial(pos):
    assert AdvIR(pos, scorer=make_apr(), embedding_dim=4).diagnostics() == {
        'adversarial_reward': 1.0}
    assert AdvIR(pos, scorer=MF(3, 6, embedding_dim=4), embedding_dim=4) \
        .diagnostics() == {'adversarial_reward': 0.0}


@pytest.mark.parametrize('group,name,cls', [('sampler', 'advir', AdvIR),
                                            ('recommender', 'apr', APR)])
def test_packaged_configs_build_the_classes(group, name, cls):
    from pathlib import Path

    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from kgsampler import make_synthetic
    conf = (Path(__file__).resolve().parents[2] / 'conf' / group /
            f'{name}.yaml')
    cfg = OmegaConf.load(conf)
    ds = make_synthetic(num_users=12, num_items=15, num_genres=2,
                        num_creators=2, num_eras=2, seed=0)
    if group == 'sampler':
        obj = instantiate(cfg, dataset=ds, scorer=make_apr())
    else:
        obj = instantiate(cfg, num_users=ds.num_users, num_items=ds.num_items)
        assert (obj.epsilon, obj.adv_weight) == (0.5, 1.0)
    assert type(obj) is cls
