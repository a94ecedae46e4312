import pytest
import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler import DNS, PNS, RNS, EmbeddingScorer, Sampler, Scorer


@pytest.fixture
def tiny():
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


def scorer(num_users=4, num_items=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return EmbeddingScorer(torch.randn(num_users, 8, generator=g),
                           torch.randn(num_items, 8, generator=g))


def build(name, pos, **kwargs):
    if name == 'rns':
        return RNS(pos, **kwargs)
    if name == 'pns':
        return PNS(pos, **kwargs)
    return DNS(pos, scorer=scorer(pos.num_rows, pos.num_cols), **kwargs)


@pytest.mark.parametrize('name', ['rns', 'pns', 'dns'])
@pytest.mark.parametrize('membership', ['dense', 'bitmap', 'search'])
@pytest.mark.parametrize('num_neg', [1, 3])
def test_never_a_training_positive(tiny, name, membership, num_neg):
    torch.manual_seed(0)
    sampler = build(name, tiny, membership=membership)
    users = torch.tensor([0, 1, 2, 3]).repeat(50)
    out = sampler.sample(users, torch.zeros_like(users), num_neg)
    assert out.neg_items.shape == (200, num_neg)
    assert out.neg_items.dtype == torch.long
    dense = tiny.to_dense()
    assert not dense[users.view(-1, 1), out.neg_items].any()
    # user 2 has exactly one possible negative
    assert (out.neg_items[users == 2] == 5).all()


@pytest.mark.parametrize('name', ['rns', 'pns', 'dns'])
@pytest.mark.parametrize('seed', range(5))
def test_property_random_matrices(name, seed):
    g = torch.Generator().manual_seed(seed)
    U, I = 40, 25
    dense = torch.rand(U, I, generator=g) < torch.rand(U, 1, generator=g)
    dense[:, -1] = False  # every user keeps a negative
    r, c = dense.nonzero().t()
    pos = UserItemCSR.from_pairs(r, c, U, I)
    torch.manual_seed(seed)
    sampler = build(name, pos, max_rounds=1)
    users = torch.randint(U, (500, ), generator=g)
    out = sampler.sample(users, torch.randint(I, (500, ), generator=g), 4)
    assert not dense[users.view(-1, 1), out.neg_items].any()


def test_batch_of_one(tiny):
    out = RNS(tiny).sample(torch.tensor([1]), torch.tensor([2]))
    assert out.neg_items.shape == (1, 1)


def test_exact_uniform_is_uniform_over_non_positives(tiny):
    torch.manual_seed(0)
    sampler = RNS(tiny)
    draws = sampler.exact_uniform_negatives(torch.zeros(40000,
                                                        dtype=torch.long))
    counts = torch.bincount(draws, minlength=6).float()
    assert counts[:2].sum() == 0
    freq = counts[2:] / counts.sum()
    assert torch.allclose(freq, torch.full((4, ), 0.25), atol=0.01)


def test_rns_is_uniform(tiny):
    torch.manual_seed(0)
    users = torch.full((40000, ), 1)
    out = RNS(tiny).sample(users, torch.full_like(users, 2))
    freq = torch.bincount(out.neg_items.view(-1), minlength=6).float() / 40000
    expected = torch.tensor([0.2, 0.2, 0.0, 0.2, 0.2, 0.2])
    assert torch.allclose(freq, expected, atol=0.01)


def test_pns_follows_popularity():
    r"""Items 0..3 have 4, 3, 2, 1 training interactions (users 0..3);
    user 4 has none, so PNS's distribution for it is count^alpha."""
    rows = torch.tensor([0, 1, 2, 3, 0, 1, 2, 0, 1, 0])
    cols = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 2, 3])
    pos = UserItemCSR.from_pairs(rows, cols, 5, 4)
    torch.manual_seed(0)
    for alpha in (1.0, 0.5):
        users = torch.full((50000, ), 4)
        out = PNS(pos, alpha=alpha).sample(users, torch.zeros_like(users))
        freq = torch.bincount(out.neg_items.view(-1), minlength=4) / 50000
        w = torch.tensor([4., 3., 2., 1.]).pow(alpha)
        assert torch.allclose(freq, w / w.sum(), atol=0.01)


def test_dns_picks_best_candidate(tiny):
    class Fixed:
        def score(self, users, items):
            return items.float()  # higher id = higher score

    torch.manual_seed(0)
    sampler = DNS(tiny, scorer=Fixed(), num_candidates=64)
    users = torch.full((100, ), 3)
    out = sampler.sample(users, torch.zeros_like(users))
    assert (out.neg_items == 5).all()  # 64 draws out of 6 items: max found


class FavouritePerUser:
    r"""A recommender whose scores depend on the user: user :math:`u`
    scores item :math:`i` as :math:`-|i - f_u|`, highest at its favourite
    :math:`f_u` (none a training positive of its user in :func:`tiny`).
    Records every call."""
    fav = torch.tensor([4, 0, 5, 2])

    def __init__(self):
        self.calls = []

    def score(self, users, items):
        self.calls.append((users.clone(), items.clone()))
        return -(items - self.fav[users].view(-1, 1)).abs().float()


@pytest.mark.parametrize('num_neg', [1, 3])
def test_dns_picks_each_rows_users_hardest(tiny, num_neg):
    torch.manual_seed(0)
    scorer = FavouritePerUser()
    sampler = DNS(tiny, scorer=scorer, num_candidates=64)
    users = torch.tensor([0, 1, 2, 3]).repeat(25)[torch.randperm(100)]
    out = sampler.sample(users, torch.zeros_like(users), num_neg)
    # 64 candidates among at most 6 items: each user's favourite is found
    assert torch.equal(out.neg_items,
                       scorer.fav[users].view(-1, 1).expand(-1, num_neg))
    # one call: the batch's own users, num_neg * M candidates per row
    (u, items), = scorer.calls
    assert torch.equal(u, users)
    assert items.shape == (100, num_neg * 64)


@pytest.mark.parametrize('num_neg', [1, 2, 4])
@pytest.mark.parametrize('num_candidates', [1, 3])
def test_dns_matches_a_dense_reference(num_neg, num_candidates):
    """Negative :math:`n` of a row is the best of candidates
    :math:`nM .. nM + M - 1` of that row, under the row's own user."""
    g = torch.Generator().manual_seed(num_neg)
    U, I = 9, 30
    dense = torch.rand(U, I, generator=g) < 0.4
    dense[:, 0] = False
    r, c = dense.nonzero().t()
    pos = UserItemCSR.from_pairs(r, c, U, I)
    user_emb, item_emb = torch.randn(U, 5, generator=g), torch.randn(I, 5,
                                                                     generator=g)

    class Recorder(EmbeddingScorer):
        def score(self, users, items):
            self.seen = items.clone()
            return super().score(users, items)

    scorer = Recorder(user_emb, item_emb)
    users = torch.randint(U, (40, ), generator=g)
    torch.manual_seed(0)
    out = DNS(pos, scorer=scorer, num_candidates=num_candidates).sample(
        users, torch.zeros_like(users), num_neg)
    cand = scorer.seen.view(40, num_neg, num_candidates)
    assert not dense[users.view(-1, 1, 1), cand].any()
    ref_scores = (user_emb[users].view(40, 1, 1, 5) * item_emb[cand]).sum(-1)
    best = cand.gather(-1, ref_scores.argmax(-1, keepdim=True)).view(40,
                                                                     num_neg)
    assert torch.equal(out.neg_items, best)


def test_membership_backends_agree_with_dense():
    g = torch.Generator().manual_seed(1)
    dense = torch.rand(30, 17, generator=g) < 0.3
    r, c = dense.nonzero().t()
    pos = UserItemCSR.from_pairs(r, c, 30, 17)
    from kgsampler.utils._membership import Membership
    users = torch.randint(30, (1000, ), generator=g)
    items = torch.randint(17, (1000, ), generator=g)
    ref = dense[users, items]
    for method in ('dense', 'bitmap', 'search'):
        assert torch.equal(Membership(pos, method)(users, items), ref)
    assert Membership(pos).method == 'dense'
    assert Membership(pos, max_dense_bytes=1).method == 'bitmap'
    assert Membership(pos, max_dense_bytes=1,
                      max_bitmap_bytes=1).method == 'search'
    with pytest.raises(ValueError, match=r"'method' must be 'auto', 'dense'"):
        Membership(pos, 'hash')


def test_embedding_scorer_is_a_scorer():
    s = scorer()
    assert isinstance(s, Scorer)
    users, items = torch.tensor([0, 1]), torch.tensor([[0, 1, 2], [3, 4, 5]])
    ref = (s.user_emb[users].unsqueeze(1) * s.item_emb[items]).sum(-1)
    assert torch.allclose(s.score(users, items), ref)
    sim = s.similarity(torch.tensor([0, 1]), items)
    ref = (s.item_emb[[0, 1]].unsqueeze(1) * s.item_emb[items]).sum(-1)
    assert torch.allclose(sim, ref)


def test_errors(tiny):
    rns = RNS(tiny)
    u = torch.tensor([0, 1])
    with pytest.raises(TypeError, match=r"RNS: 'users' must be torch.long"):
        rns.sample(u.float(), u)
    with pytest.raises(ValueError, match=r"'users' must lie in \[0, 4\)"):
        rns.sample(torch.tensor([7]), torch.tensor([0]))
    with pytest.raises(ValueError, match=r"'pos_items' must be 1-D"):
        rns.sample(u, u.view(2, 1))
    with pytest.raises(ValueError, match=r"same length \(got 2 and 1\)"):
        rns.sample(u, torch.tensor([0]))
    with pytest.raises(ValueError, match=r"'num_neg' must be a positive int"):
        rns.sample(u, u, num_neg=0)
    with pytest.raises(ValueError, match=r"'num_neg' must be a positive int "
                                         r"\(got True\)"):
        rns.sample(u, u, num_neg=True)
    for alpha in (-1, float('nan'), float('inf')):
        with pytest.raises(ValueError, match=r"PNS: 'alpha' must be a finite"):
            PNS(tiny, alpha=alpha)
    for k in (0, True):
        with pytest.raises(ValueError, match=r"DNS: 'num_candidates'"):
            DNS(tiny, num_candidates=k)
    with pytest.raises(ValueError, match=r"RNS: 'max_rounds' must be a "
                                         r"non-negative int \(got True\)"):
        RNS(tiny, max_rounds=True)
    with pytest.raises(ValueError, match=r"RNS: 'monitor_pos' must have the "
                                         r"shape of 'train_pos'"):
        RNS(tiny, monitor_pos=UserItemCSR.from_pairs(
            torch.tensor([0]), torch.tensor([0]), 2, 2))
    with pytest.raises(RuntimeError, match=r"DNS: no scorer set"):
        DNS(tiny).sample(u, u)
    with pytest.raises(TypeError, match=r"'scorer' must implement"):
        DNS(tiny, scorer=object())
    with pytest.raises(TypeError, match=r"'train_pos' must be a UserItemCSR"):
        RNS(torch.zeros(3))
    full = UserItemCSR.from_pairs(torch.zeros(6, dtype=torch.long),
                                  torch.arange(6), 2, 6)
    with pytest.raises(ValueError, match=r"user 0 has every one of the 6"):
        RNS(full).sample(torch.tensor([1, 0]), torch.tensor([0, 0]))


def test_sampler_is_abstract(tiny):
    with pytest.raises(TypeError, match=r"Can't instantiate abstract class "
                                        r"Sampler.*_sample"):
        Sampler(tiny)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
@pytest.mark.parametrize('name', ['rns', 'pns', 'dns'])
def test_cuda_device(tiny, name):
    sampler = build(name, tiny).to('cuda')
    if name == 'dns':
        s = sampler.scorer
        s.user_emb, s.item_emb = s.user_emb.cuda(), s.item_emb.cuda()
    users = torch.tensor([0, 1, 2, 3], device='cuda')
    out = sampler.sample(users, users, 2)
    assert out.neg_items.device.type == 'cuda'
    assert not tiny.to_dense().cuda()[users.view(-1, 1), out.neg_items].any()


@pytest.mark.parametrize('name', ['rns', 'pns', 'dns'])
def test_false_negative_rate_counts_held_out_positives(tiny, name):
    held_out = UserItemCSR.from_pairs(torch.tensor([1, 1, 3]),
                                      torch.tensor([0, 3, 5]), 4, 6)
    torch.manual_seed(0)
    sampler = build(name, tiny, monitor_pos=held_out)
    users = torch.tensor([0, 1, 2, 3]).repeat(25)
    out = sampler.sample(users, torch.zeros_like(users), 2)
    expected = held_out.to_dense()[users.view(-1, 1), out.neg_items].sum()
    stats = sampler.summary_stats()
    assert stats['num_false_negative'] == int(expected) > 0
    assert stats['false_negative_rate'] == pytest.approx(int(expected) / 200)
    sampler.reset_stats()
    assert sampler.summary_stats()['num_false_negative'] == 0
    assert 'false_negative_rate' not in build(name, tiny).summary_stats()
    with pytest.raises(TypeError, match=r"'monitor_pos' must be a UserItem"):
        build(name, tiny, monitor_pos=torch.zeros(2))
