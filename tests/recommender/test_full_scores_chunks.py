import pytest
import torch

from kgsampler.data import make_synthetic
from kgsampler.recommender import NFM, RippleNet
from kgsampler.recommender import base
from kgsampler.recommender.base import Recommender


class ScoreOnly(Recommender):
    """A user's model with `score` only: ranks with the base full_scores."""
    def __init__(self, num_users, num_items):
        super().__init__()
        self.num_users, self.num_items = num_users, num_items
        self.u = torch.nn.Embedding(num_users, 4)
        self.i = torch.nn.Embedding(num_items, 4)

    def score(self, users, items):
        return (self.u(users).unsqueeze(1) * self.i(items)).sum(-1)


@pytest.fixture(scope='module')
def data():
    torch.manual_seed(0)
    return make_synthetic(num_users=23, num_items=17, num_genres=3,
                          num_creators=4, num_eras=2)


@pytest.mark.parametrize('build', [
    lambda d: ScoreOnly(d.num_users, d.num_items),
    lambda d: NFM(d, embedding_dim=6, hidden_dims=[5]),
    lambda d: RippleNet(d, embedding_dim=4, num_memory=3),
])
@pytest.mark.parametrize('chunk', [1, 40, 500])
def test_chunked_full_scores_equal_one_chunk(data, build, chunk,
                                             monkeypatch):
    """Ranking users a few at a time (into one preallocated output) gives
    every row of the single-chunk result, in order; B = 0 works."""
    torch.manual_seed(0)
    model = build(data).eval()
    users = torch.tensor([5, 0, 22, 5, 13, 7, 1])
    with torch.no_grad():
        whole = model.full_scores(users)
        monkeypatch.setattr(base, 'FULL_SCORES_CHUNK', chunk)
        parts = model.full_scores(users)
        empty = model.full_scores(users[:0])
    assert parts.shape == whole.shape == (7, data.num_items)
    assert torch.allclose(parts, whole, atol=1e-6)
    ref = model.score(users, torch.arange(data.num_items).expand(7, -1))
    assert torch.allclose(parts, ref, atol=1e-5)
    assert empty.shape == (0, data.num_items)


def test_a_score_of_the_wrong_shape_is_an_error(data):
    """The base full_scores refuses a score that would broadcast into the
    output (e.g. one row for every user)."""
    class OneRow(ScoreOnly):
        def score(self, users, items):
            return super().score(users, items)[:1]

    model = OneRow(data.num_users, data.num_items)
    with pytest.raises(ValueError, match=r"OneRow.full_scores: 'score' must "
                                         r"return shape \[3, 17\] \(got "
                                         r"\(1, 17\)\)"):
        model.full_scores(torch.tensor([0, 1, 2]))
