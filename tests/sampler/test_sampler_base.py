"""The helpers of :class:`Sampler` that subclasses draw through, against
dense references."""
import pytest
import torch

from kgsampler.data import KGRecDataset
from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import (EmbeddingScorer, SamplerOutput,
                                    check_update_batch, optimizer_follow)
from kgsampler.sampler.dns import DNS
from kgsampler.sampler.popularity import PNS
from kgsampler.sampler.uniform import RNS


@pytest.fixture
def tiny() -> UserItemCSR:
    r"""Four users, six items; ``x`` marks a training positive::

              item 0  1  2  3  4  5
        user 0     x  x  .  .  .  .
        user 1     .  .  x  .  .  .
        user 2     x  x  x  x  x  .     (one possible negative: item 5)
        user 3     .  .  .  .  .  .     (no positives)
    """
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 2, 2])
    cols = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4])
    return UserItemCSR.from_pairs(rows, cols, 4, 6)


def random_pos(seed, U=15, I=12, density=0.6):
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(U, I, generator=g) < density
    dense[torch.arange(U), torch.randint(I, (U, ), generator=g)] = False
    r, c = dense.nonzero().t()
    return UserItemCSR.from_pairs(r, c, U, I), dense


@pytest.mark.parametrize('seed', range(3))
def test_exact_uniform_negatives_cover_exactly_the_non_positives(seed):
    pos, dense = random_pos(seed)
    torch.manual_seed(seed)
    s = RNS(pos)
    users = torch.arange(15).repeat_interleave(600).view(15, 600)
    draws = s.exact_uniform_negatives(users)
    assert draws.shape == (15, 600) and draws.dtype == torch.long
    counts = torch.zeros(15, 12).scatter_add_(1, draws, torch.ones(15, 600))
    # support: every non-positive, never a positive
    assert torch.equal(counts > 0, ~dense)
    # uniform over the non-positives of each row
    free = (~dense).sum(1, keepdim=True)
    freq = counts / 600
    assert torch.allclose(freq[~dense], (1 / free).expand(-1, 12)[~dense],
                          atol=0.09)


@pytest.mark.parametrize('max_rounds', [0, 1, 4])
def test_uniform_negatives_without_and_with_rejection(max_rounds):
    pos, dense = random_pos(0, density=0.8)
    torch.manual_seed(0)
    s = RNS(pos, max_rounds=max_rounds)
    users = torch.randint(15, (50, 40))
    items = s.uniform_negatives(users)
    assert items.shape == (50, 40)
    assert not dense[users, items].any()


def test_redraw_positives_stops_after_max_rounds(tiny):
    s = RNS(tiny, max_rounds=3)
    users = torch.tensor([0, 1, 2, 3])
    items = torch.tensor([0, 2, 4, 4])  # positive, positive, positive, free
    calls = []

    def always_positive(n):
        calls.append(n)
        return torch.zeros(n, dtype=torch.long)  # item 0

    bad = s.redraw_positives(users, items, always_positive)
    # users 0 and 2 have item 0 as a positive; user 1 does not
    assert bad.tolist() == [True, False, True, False]
    assert items.tolist() == [0, 0, 0, 4]
    assert calls == [3, 2, 2]  # at most max_rounds rounds, only bad entries
    calls.clear()
    items = torch.tensor([3, 3, 5, 0])  # no positive at all
    assert not s.redraw_positives(users, items, always_positive).any()
    assert calls == []


def test_replace_positives_replaces_exactly_the_positives(tiny):
    torch.manual_seed(0)
    s = RNS(tiny)
    users = torch.tensor([0, 1, 2, 3])
    items = torch.tensor([[0, 2, 5], [2, 2, 0], [0, 5, 4], [0, 1, 2]])
    before = items.clone()
    dense = tiny.to_dense()
    bad = s.replace_positives(users, items)
    assert torch.equal(bad, dense[users.view(-1, 1), before])
    assert torch.equal(items[~bad], before[~bad])
    assert not dense[users.view(-1, 1), items].any()
    assert (items[2] == 5).all()


def test_index_checks(tiny):
    s = RNS(tiny)
    u = torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"^RNS: 'users' must be a "
                                        r"torch.Tensor \(got list\)$"):
        s.sample([0, 1], u)
    with pytest.raises(TypeError, match=r"^RNS: 'pos_items' must be "
                                        r"torch.long \(got torch.int32\)$"):
        s.sample(u, u.int())
    with pytest.raises(ValueError, match=r"^RNS: 'users' must be 1-D of "
                                         r"shape \[B\] \(got shape "
                                         r"\(1, 2\)\)$"):
        s.sample(u.view(1, 2), u)
    with pytest.raises(ValueError, match=r"^RNS: 'users' must lie in \[0, 4\) "
                                         r"\(got range \[-1, 1\]\)$"):
        s.sample(torch.tensor([-1, 1]), u)
    with pytest.raises(ValueError, match=r"^RNS: 'pos_items' must lie in "
                                         r"\[0, 6\) \(got range \[0, 6\]\)$"):
        s.sample(u, torch.tensor([0, 6]))
    # the bounds themselves are fine; an empty batch too
    out = s.sample(torch.tensor([3, 0]), torch.tensor([5, 0]))
    assert out.neg_items.shape == (2, 1)
    empty = torch.zeros(0, dtype=torch.long)
    assert s.sample(empty, empty, 2).neg_items.shape == (0, 2)


def test_check_update_batch():
    check_update_batch('X', torch.tensor([0, 1]), torch.tensor([2, 3]), 2)
    with pytest.raises(ValueError, match=r"^X.update: 'users' must be the 1-D "
                                         r"torch.long tensor of the 3 rows "
                                         r"'output' was sampled for \(got "
                                         r"torch.int64 of shape \(2,\)\)$"):
        check_update_batch('X', torch.tensor([0, 1]), torch.tensor([2, 3]), 3)
    with pytest.raises(ValueError, match=r"'pos_items' .* \(got torch.float32 "
                                         r"of shape \(2,\)\)"):
        check_update_batch('X', torch.tensor([0, 1]), torch.zeros(2), 2)
    with pytest.raises(ValueError, match=r"'users' .* \(got list of shape "
                                         r"\(\)\)"):
        check_update_batch('X', [0, 1], torch.tensor([2, 3]), 2)
    with pytest.raises(ValueError, match=r"'users' .* of shape \(1, 2\)"):
        check_update_batch('X', torch.tensor([[0, 1]]), torch.tensor([2, 3]),
                           2)


def test_sampler_output_narrow():
    out = SamplerOutput(torch.arange(8).view(4, 2),
                        log_prob=torch.arange(8.).view(4, 2),
                        fallback=torch.zeros(4, 2, dtype=torch.bool))
    assert (out.batch_size, out.num_neg) == (4, 2)
    part = out.narrow(1, 2)
    assert part.neg_items.tolist() == [[2, 3], [4, 5]]
    assert part.log_prob.tolist() == [[2., 3.], [4., 5.]]
    assert part.fallback.shape == (2, 2) and part.paths is None
    assert out.narrow(0, 4).neg_items.shape == (4, 2)
    assert out.narrow(4, 0).neg_items.shape == (0, 2)
    for start, length in ((3, 2), (-1, 1), (0, 5), (1.0, 1), (0, -1)):
        with pytest.raises(ValueError, match=r"^SamplerOutput.narrow: rows "
                                             r"\[.*\) must lie in \[0, 4\)"):
            out.narrow(start, length)


def test_stats_and_false_negative_counts(tiny):
    held_out = UserItemCSR.from_pairs(torch.tensor([3]), torch.tensor([0]),
                                      4, 6)
    torch.manual_seed(0)
    s = PNS(tiny, monitor_pos=held_out, max_rounds=0)
    users = torch.tensor([0, 1, 2, 3]).repeat(50)
    out = s.sample(users, torch.zeros_like(users), 3)
    st = s.summary_stats()
    assert st['num_sampled'] == 600
    assert st['num_fallback'] == int(out.fallback.sum()) > 0
    assert st['fallback_rate'] == pytest.approx(
        float(out.fallback.float().mean()))
    fn = int((out.neg_items[users == 3] == 0).sum())
    assert st['num_false_negative'] == fn > 0
    assert st['false_negative_rate'] == pytest.approx(fn / 600)
    s.sample(users, torch.zeros_like(users), 1)
    assert s.summary_stats()['num_sampled'] == 800
    s.reset_stats()
    st = s.summary_stats()
    assert st['num_sampled'] == st['num_fallback'] == 0
    assert st['fallback_rate'] == 0.0 and st['num_false_negative'] == 0


def test_from_dataset_monitors_the_validation_split():
    train = torch.tensor([[u, i] for u in range(4) for i in range(5)
                          if (u + i) % 2 == 0])
    ds = KGRecDataset(train, torch.tensor([[0, 1]]),
                      torch.tensor([[0, 0, 5]]), num_users=4, num_items=5,
                      num_entities=6, valid_ratio=0.3, seed=0)
    assert ds.valid_pos.nnz > 0
    s = RNS.from_dataset(ds, max_rounds=2)
    assert s.monitor is not None and s.max_rounds == 2
    assert s.train_pos is ds.train_pos
    assert 'false_negative_rate' in s.summary_stats()
    assert RNS.from_dataset(ds, track_false_negatives=False).monitor is None
    scorer = EmbeddingScorer(torch.randn(4, 2), torch.randn(5, 2))
    assert DNS.from_dataset(ds, scorer=scorer).scorer is scorer
    assert RNS.from_dataset(ds).scorer is None


def test_embedding_scorer_with_modules_and_repr():
    user = torch.nn.Embedding(3, 4)
    item = torch.nn.Embedding(5, 4)
    s = EmbeddingScorer(user, item)
    users, items = torch.tensor([2, 0]), torch.tensor([[4, 1, 0], [3, 3, 2]])
    ref = (user.weight[users].unsqueeze(1) * item.weight[items]).sum(-1)
    assert torch.allclose(s.score(users, items), ref)
    sim = s.similarity(torch.tensor([1]), torch.tensor([[0, 1]]))
    assert torch.allclose(sim, item.weight[[0, 1]] @ item.weight[1])
    one = s.score(torch.tensor([1]), torch.tensor([[2]]))
    assert one.shape == (1, 1)  # B = 1, K = 1
    assert repr(s) == 'EmbeddingScorer()'


def test_optimizer_follow_moves_the_moments():
    p = torch.nn.Parameter(torch.ones(3))
    opt = torch.optim.Adam([p], lr=0.1)
    p.sum().backward()
    opt.step()
    p.data = p.data.double()
    optimizer_follow(opt)
    state = opt.state[p]
    assert state['exp_avg'].dtype == state['exp_avg_sq'].dtype == \
        torch.float64
    assert state['step'].dtype == torch.float32  # the counter stays


def test_set_scorer_and_reprs(tiny):
    s = DNS(tiny, num_candidates=5)
    with pytest.raises(TypeError, match=r"^DNS: 'scorer' must implement "
                                        r"score\(users, items\) \(got int\)$"):
        s.set_scorer(3)
    scorer = EmbeddingScorer(torch.randn(4, 2), torch.randn(6, 2))
    s.set_scorer(scorer)
    assert s.scorer is scorer
    assert repr(s) == 'DNS(num_candidates=5)'
    assert repr(RNS(tiny)) == 'RNS(num_items=6)'
    assert repr(PNS(tiny, alpha=0.5)) == 'PNS(alpha=0.5)'
    assert RNS(tiny).lookahead == 1 and not RNS(tiny).learnable
    assert DNS.requires_scorer and not RNS.requires_scorer
    assert DNS(tiny).num_candidates == 8 and RNS(tiny).max_rounds == 4


def test_dns_does_not_track_gradients_of_the_recommender(tiny):
    user = torch.nn.Parameter(torch.randn(4, 3))
    item = torch.nn.Parameter(torch.randn(6, 3))
    out = DNS(tiny, scorer=EmbeddingScorer(user, item)).sample(
        torch.tensor([0, 1]), torch.tensor([0, 2]), 2)
    assert not out.neg_items.requires_grad and out.log_prob is None
    assert user.grad is None


def test_pns_draws_follow_the_cdf_and_alpha_zero_is_uniform(tiny):
    r"""In :func:`tiny` items 0, 1, 2 have 2, 2, 2 interactions, items 3, 4
    one, item 5 none: user 3 (no positives) sees :math:`count^\alpha`, and
    with :math:`\alpha = 0` every item (also the never-seen 5) uniformly."""
    torch.manual_seed(0)
    users = torch.full((30000, ), 3)
    for alpha, expected in ((1.0, [2, 2, 2, 1, 1, 0]),
                            (2.0, [4, 4, 4, 1, 1, 0]),
                            (0.0, [1, 1, 1, 1, 1, 1])):
        out = PNS(tiny, alpha=alpha).sample(users, torch.zeros_like(users))
        freq = torch.bincount(out.neg_items.view(-1), minlength=6) / 30000
        w = torch.tensor(expected, dtype=torch.float)
        assert torch.allclose(freq, w / w.sum(), atol=0.012), alpha
        assert not out.fallback.any()
    with pytest.raises(ValueError, match=r"^PNS: 'alpha' must be a finite "
                                         r"non-negative number \(got True\)$"):
        PNS(tiny, alpha=True)
    with pytest.raises(ValueError, match=r"\(got '1'\)$"):
        PNS(tiny, alpha='1')
    assert PNS(tiny).max_rounds == 10
