import pytest
import torch
import torch.nn.functional as F

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender import MF
from kgsampler.sampler import Adversarial, AdversarialOutput, EmbeddingScorer


@pytest.fixture
def pos() -> UserItemCSR:
    r"""Three users over 8 items (x: training positive)::

              i0 i1 i2 i3 i4 i5 i6 i7
        u0     x  x
        u1           x
        u2     x           x  x  x  x
    """
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 2, 2])
    cols = torch.tensor([0, 1, 2, 0, 4, 5, 6, 7])
    return UserItemCSR.from_pairs(rows, cols, 3, 8)


def ranked_scorer(num_users=3, num_items=8):
    r"""A frozen recommender that scores item :math:`j` as :math:`j` for
    every user (1-d embeddings)."""
    return EmbeddingScorer(torch.ones(num_users, 1),
                           torch.arange(num_items, dtype=torch.float)
                           .view(-1, 1))


@pytest.mark.parametrize('num_neg', [1, 3])
@pytest.mark.parametrize('num_candidates', [1, 4])
def test_shapes_and_never_a_positive(pos, num_neg, num_candidates, device):
    torch.manual_seed(0)
    model = MF(3, 8, embedding_dim=4).to(device)
    s = Adversarial(pos, scorer=model, num_candidates=num_candidates,
                    embedding_dim=4).to(device)
    users = torch.tensor([0, 1, 2, 2], device=device).repeat(50)
    items = torch.tensor([0, 2, 4, 7], device=device).repeat(50)
    out = s.sample(users, items, num_neg)
    assert out.neg_items.device == users.device
    s.update(users, items, out)  # the generator step runs on the device
    s.cpu()
    users, items = users.cpu(), items.cpu()
    out = s.sample(users, items, num_neg)
    assert isinstance(out, AdversarialOutput)
    assert out.neg_items.shape == (200, num_neg)
    assert out.candidates.shape == (200, num_neg, num_candidates)
    dense = pos.to_dense()
    assert not dense[users.view(-1, 1), out.neg_items].any()
    assert not dense[users.view(-1, 1, 1), out.candidates].any()
    # the negative is one of its pool, with the generator's log-probability
    assert (out.candidates == out.neg_items.unsqueeze(-1)).any(-1).all()
    logits = s.logits(users, out.candidates.view(200, -1)).view(
        200, num_neg, num_candidates)
    ref = F.log_softmax(logits, -1).gather(
        -1, (out.candidates == out.neg_items.unsqueeze(-1)).float()
        .argmax(-1, keepdim=True)).squeeze(-1)
    assert torch.allclose(out.log_prob, ref, atol=1e-6)
    one = s.sample(torch.tensor([1]), torch.tensor([2]))  # B = 1
    assert one.neg_items.shape == (1, 1) and one.neg_items.item() != 2


def test_update_is_the_exact_policy_gradient_over_the_pool(pos):
    torch.manual_seed(0)
    model = ranked_scorer()
    s = Adversarial(pos, scorer=model, num_candidates=5, embedding_dim=4)
    users, items = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 4])
    out = s.sample(users, items, 2)
    # dense reference: sum_j pi_j (R_j - Rbar) grad log pi_j, averaged
    cand = out.candidates.view(3, -1)
    logits = s.logits(users, cand).view(3, 2, 5)
    logp = F.log_softmax(logits, -1)
    f_pos = model.score(users, items.view(-1, 1))
    reward = F.softplus(model.score(users, cand) - f_pos).view(3, 2, 5)
    pi = logp.exp().detach()
    advantage = reward - (pi * reward).sum(-1, keepdim=True)
    ref = -(pi * advantage * logp).sum(-1).mean()
    grads = torch.autograd.grad(ref, list(s.parameters()))
    before = [p.detach().clone() for p in s.parameters()]
    s.optimizer = torch.optim.SGD(s.parameters(), lr=1.0)
    logs = s.update(users, items, out)
    for b, p, g in zip(before, s.parameters(), grads):
        assert torch.allclose(b - p.detach(), g, atol=1e-6)
    assert torch.allclose(logs['sampler_reward'], (pi * reward).sum(-1).mean())
    assert torch.allclose(logs['sampler_gain'], ((pi * reward).sum(-1) -
                                                 reward.mean(-1)).mean())


def test_generator_learns_the_hard_items_and_only_it_learns(pos):
    torch.manual_seed(0)
    model = MF(3, 8, embedding_dim=4)
    with torch.no_grad():  # the recommender scores item j as j
        model.user_emb.weight.zero_()
        model.user_emb.weight[:, 0] = 1.0
        model.item_emb.weight.zero_()
        model.item_emb.weight[:, 0] = torch.arange(8.0)
    frozen = [p.detach().clone() for p in model.parameters()]
    s = Adversarial(pos, scorer=model, num_candidates=4, embedding_dim=4,
                    lr=0.05)
    users = torch.tensor([0, 1]).repeat(64)
    items = torch.tensor([0, 2]).repeat(64)

    def mean_score():
        torch.manual_seed(1)
        return s.sample(users, items, 4).neg_items.float().mean()

    start = mean_score()
    for _ in range(100):
        s.update(users, items, s.sample(users, items))
    assert mean_score() > start + 0.5  # drawn towards the high-scored items
    for a, b in zip(frozen, model.parameters()):
        assert torch.equal(a, b) and b.grad is None


def test_module_behaviour(pos):
    s = Adversarial(pos, scorer=ranked_scorer(), embedding_dim=4)
    assert s.learnable and s.requires_scorer
    assert 'scorer' not in dict(s.named_modules())
    names = [n for n, _ in s.named_parameters()]
    assert names == ['user_emb.weight', 'item_emb.weight']
    before = s.user_emb.weight.detach().clone()
    s.reset_parameters()
    assert not torch.equal(before, s.user_emb.weight)
    assert repr(s) == ('Adversarial(num_users=3, num_items=8, '
                       'num_candidates=4, temperature=1.0)')
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    s.update(users, items, s.sample(users, items))  # Adam has moments now
    assert s.to('cpu') is s
    s.double()
    assert s.user_emb.weight.dtype == torch.float64
    s.update(users, items, s.sample(users, items))
    s.float()
    s.update(users, items, s.sample(users, items))


@pytest.mark.parametrize('kwargs,error,match', [
    ({'num_candidates': 0}, ValueError, r"'num_candidates' must be a positive "
     r"int \(got 0\)"),
    ({'embedding_dim': True}, ValueError, r"'embedding_dim' must be a "
     r"positive int \(got True\)"),
    ({'temperature': 0.0}, ValueError, r"'temperature' must be positive "
     r"\(got 0.0\)"),
    ({'lr': float('nan')}, TypeError, r"'lr' must be a finite number"),
    ({'weight_decay': -1.0}, ValueError, r"'weight_decay' must be "
     r"non-negative \(got -1.0\)"),
])
def test_argument_errors(pos, kwargs, error, match):
    with pytest.raises(error, match='Adversarial: ' + match):
        Adversarial(pos, **kwargs)


def test_update_errors(pos):
    s = Adversarial(pos, scorer=ranked_scorer(), embedding_dim=4)
    users, items = torch.tensor([0, 1]), torch.tensor([0, 2])
    out = s.sample(users, items)
    with pytest.raises(TypeError, match=r"'output' must come from "
                                        r"Adversarial.sample"):
        s.update(users, items, None)
    with pytest.raises(ValueError, match=r"'users' must be the 1-D "
                                         r"torch.long tensor of the 2 rows"):
        s.update(users[:1], items, out)
    with pytest.raises(RuntimeError, match='no scorer set'):
        Adversarial(pos).sample(users, items)
