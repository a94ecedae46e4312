import pytest
import torch
import torch.nn.functional as F

from kgsampler.recommender import MF, Recommender
from kgsampler.sampler import Scorer


def test_mf_shapes_and_loss():
    torch.manual_seed(0)
    model = MF(5, 7, embedding_dim=4, reg=0.1)
    assert isinstance(model, Recommender) and isinstance(model, Scorer)
    assert str(model) == 'MF(5, 7, embedding_dim=4)'
    users, pos = torch.tensor([0, 3]), torch.tensor([1, 6])
    neg = torch.tensor([[2, 3, 4], [0, 0, 5]])
    U, V = model.user_emb.weight, model.item_emb.weight
    assert model.score(users, neg).shape == (2, 3)
    assert torch.allclose(model.score(users, neg),
                          (U[users, None] * V[neg]).sum(-1))
    assert model.full_scores(torch.tensor([4])).shape == (1, 7)
    assert torch.allclose(model.similarity(pos, neg),
                          (V[pos, None] * V[neg]).sum(-1))
    bpr = -F.logsigmoid((U[users] * V[pos]).sum(-1, keepdim=True) -
                        (U[users, None] * V[neg]).sum(-1)).mean()
    l2 = (U[users].pow(2).sum(-1) + V[pos].pow(2).sum(-1) +
          V[neg].pow(2).sum(-1).mean(-1)).mean() / 2
    assert torch.allclose(model.loss(users, pos, neg), bpr + 0.1 * l2)


def test_reset_parameters():
    model = MF(3, 3)
    before = model.user_emb.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.user_emb.weight)


def test_errors():
    with pytest.raises(ValueError, match=r"MF: 'num_users' must be a "
                       r"positive int \(got 0\)"):
        MF(0, 3)
    for reg in (-1.0, float('nan'), 'a'):
        with pytest.raises(ValueError, match=r"MF: 'reg' must be a finite "
                                             r"non-negative number"):
            MF(3, 3, reg=reg)
    with pytest.raises(ValueError, match=r"MF: 'num_users' must be a "
                       r"positive int \(got True\)"):
        MF(True, 3)
