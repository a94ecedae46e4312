"""The recommender contract: ``score`` is all a model must implement; the
loss, full ranking and an auxiliary phase have defaults the Trainer uses."""
import pytest
import torch

from kgsampler import Trainer
from kgsampler.data import make_synthetic
from kgsampler.recommender import Recommender
from kgsampler.sampler import RNS


class Dot(Recommender):
    """The 15-line recommender of the manual: only ``score``."""
    def __init__(self, num_users, num_items, dim=8):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.user = torch.nn.Embedding(num_users, dim)
        self.item = torch.nn.Embedding(num_items, dim)

    def score(self, users, items):
        return (self.item(items) * self.user(users).unsqueeze(1)).sum(-1)


class WithAux(Dot):
    """Adds two auxiliary steps per epoch, pulling ``bias`` towards 3."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.bias = torch.nn.Parameter(torch.zeros(()))
        self.phases = 0

    def auxiliary_losses(self, batch_size):
        for _ in range(2):
            yield (self.bias - 3) ** 2
        self.phases += 1  # runs once the phase is over


@pytest.fixture(scope='module')
def ds():
    return make_synthetic(num_users=30, num_items=20, num_genres=3,
                          num_creators=4, num_eras=2)


@pytest.mark.parametrize('num_users', [1, 3, 30])
def test_default_full_scores_match_score(ds, num_users):
    model = Dot(30, 20)
    users = torch.arange(num_users)
    dense = model.user(users) @ model.item.weight.t()
    assert model.full_scores(users).shape == (num_users, 20)
    assert torch.allclose(model.full_scores(users), dense, atol=1e-6)


def test_default_full_scores_empty_batch():
    out = Dot(3, 5).full_scores(torch.zeros(0, dtype=torch.long))
    assert out.shape == (0, 5)


def test_default_loss_is_bpr_on_score():
    model = Dot(4, 6)
    users, pos = torch.tensor([0, 3]), torch.tensor([1, 2])
    neg = torch.tensor([[4, 5, 0], [1, 0, 5]])
    s_pos = model.score(users, pos.view(-1, 1))
    s_neg = model.score(users, neg)
    ref = -torch.log(torch.sigmoid(s_pos - s_neg)).mean()
    assert torch.allclose(model.loss(users, pos, neg), ref, atol=1e-6)


def test_trainer_fits_a_score_only_model(ds):
    torch.manual_seed(0)
    model = Dot(ds.num_users, ds.num_items)
    trainer = Trainer(model, RNS(ds.train_pos), ds, lr=0.05,
                      batch_size=64, max_epochs=3, progress=False)
    res = trainer.fit()
    assert res.epochs_run == 3
    assert 'auxiliary_loss' not in res.history[0]
    assert all(torch.isfinite(torch.tensor(h['loss'])) for h in res.history)
    assert res.history[-1]['loss'] < res.history[0]['loss']
    assert 'ndcg@20' in res.test


def test_trainer_runs_the_auxiliary_phase_each_epoch(ds):
    torch.manual_seed(0)
    model = WithAux(ds.num_users, ds.num_items)
    trainer = Trainer(model, RNS(ds.train_pos), ds, lr=0.1,
                      batch_size=64, max_epochs=4, progress=False)
    res = trainer.fit()
    assert model.phases == 4
    assert [h['auxiliary_steps'] for h in res.history] == [2.0] * 4
    losses = [h['auxiliary_loss'] for h in res.history]
    assert losses == sorted(losses, reverse=True) and losses[-1] < losses[0]
    # the best epoch's state is restored: 2 Adam steps of ~lr each per epoch
    assert float(model.bias) > 0.15 * res.best_epoch
