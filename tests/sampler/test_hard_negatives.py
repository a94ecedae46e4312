import inspect
import itertools
import math
from pathlib import Path

import pytest
import torch
import yaml

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.ahns import AHNS
from kgsampler.sampler.base import EmbeddingScorer
from kgsampler.sampler.hard_negative import DNSMN, SoftmaxNS
from kgsampler.sampler.srns import SRNS

CONF = Path(__file__).resolve().parents[2] / 'conf' / 'sampler'

#: the score of every item for every user in the 1-d scorer below
ITEM_SCORES = [0.3, -1.0, 2.0, 1.1, -0.4, 0.7]


@pytest.fixture
def tiny():
    r"""Four users, six items; ``x`` marks a training positive::

              item 0  1  2  3  4  5
        user 0     x  x  .  .  .  .
        user 1     .  .  x  .  .  .     (five negatives: 0, 1, 3, 4, 5)
        user 2     x  x  x  x  x  .     (one possible negative: item 5)
        user 3     .  .  .  .  .  .     (no positives)

    The scorer :func:`line_scorer` gives item :math:`j` the score
    :obj:`ITEM_SCORES[j]` for every user (1-d embeddings, users 1)::

        item    1     4     0     5     3     2
        score  -1.0  -0.4   0.3   0.7   1.1   2.0
    """
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 2, 2])
    cols = torch.tensor([0, 1, 2, 0, 1, 2, 3, 4])
    return UserItemCSR.from_pairs(rows, cols, 4, 6)


def line_scorer(device='cpu', user_scale=1.0):
    return EmbeddingScorer(torch.full((4, 1), user_scale, device=device),
                           torch.tensor(ITEM_SCORES,
                                        device=device).view(-1, 1))


def random_scorer(num_users=4, num_items=6, seed=0, device='cpu'):
    g = torch.Generator().manual_seed(seed)
    return EmbeddingScorer(torch.randn(num_users, 8, generator=g).to(device),
                           torch.randn(num_items, 8, generator=g).to(device))


def build(name, pos, scorer, **kwargs):
    if name == 'dnsmn':
        return DNSMN(pos, scorer=scorer, num_candidates=4, top_m=2, **kwargs)
    if name == 'softmax':
        return SoftmaxNS(pos, scorer=scorer, num_candidates=4, **kwargs)
    if name == 'ahns':
        return AHNS(pos, scorer=scorer, num_candidates=4, **kwargs)
    return SRNS(pos, scorer=scorer, memory_size=3, num_refresh=4,
                pool_size=5, warmup=0, **kwargs)


NAMES = ['dnsmn', 'softmax', 'ahns', 'srns']


def chi_square(counts, probs):
    n = sum(counts)
    return sum((c - n * p) ** 2 / (n * p) for c, p in zip(counts, probs)
               if p > 0)


# ------------------------------------------------------------ all samplers
@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('membership', ['dense', 'bitmap', 'search'])
@pytest.mark.parametrize('num_neg', [1, 3])
def test_never_a_training_positive(tiny, name, membership, num_neg, device):
    torch.manual_seed(0)
    sampler = build(name, tiny, random_scorer(device=device),
                    membership=membership).to(device)
    users = torch.tensor([0, 1, 2, 3], device=device).repeat(50)
    pos = torch.tensor([0, 2, 4, 0], device=device).repeat(50)
    for epoch in range(3):  # SRNS: three pools, the memory refreshed
        sampler.on_epoch_start(epoch)
        out = sampler.sample(users, pos, num_neg)
        assert out.neg_items.shape == (200, num_neg)
        assert out.neg_items.dtype == torch.long
        assert out.neg_items.device == users.device
        dense = tiny.to(device).to_dense()
        assert not dense[users.view(-1, 1), out.neg_items].any()
        assert (out.neg_items[users == 2] == 5).all()  # its only negative


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('seed', range(3))
def test_random_matrices_and_batch_of_one(name, seed):
    g = torch.Generator().manual_seed(seed)
    U, I = 30, 20
    dense = torch.rand(U, I, generator=g) < torch.rand(U, 1, generator=g)
    dense[:, -1] = False  # every user keeps a negative
    r, c = dense.nonzero().t()
    pos = UserItemCSR.from_pairs(r, c, U, I)
    sampler = build(name, pos, random_scorer(U, I, seed))
    torch.manual_seed(seed)
    users = torch.randint(U, (64, ))
    out = sampler.sample(users, torch.randint(I, (64, )), 2)
    assert not dense[users.view(-1, 1), out.neg_items].any()
    one = sampler.sample(users[:1], torch.zeros(1, dtype=torch.long), 1)
    assert one.neg_items.shape == (1, 1)
    assert not dense[users[0], one.neg_items[0, 0]]


@pytest.mark.parametrize('name', NAMES)
def test_determinism(tiny, name):
    outs = []
    for _ in range(2):
        torch.manual_seed(7)
        sampler = build(name, tiny, random_scorer())
        users = torch.tensor([0, 1, 3, 1, 0])
        pos = torch.tensor([0, 2, 5, 2, 1])
        draws = []
        for epoch in range(3):
            sampler.on_epoch_start(epoch)
            draws.append(sampler.sample(users, pos, 2).neg_items)
        outs.append(torch.stack(draws))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize('name', NAMES)
def test_needs_a_scorer(tiny, name):
    sampler = build(name, tiny, None)
    with pytest.raises(RuntimeError, match='no scorer set'):
        sampler.sample(torch.tensor([0]), torch.tensor([0]))


@pytest.mark.parametrize('file,cls', [('dns_mn.yaml', DNSMN),
                                      ('softmax.yaml', SoftmaxNS),
                                      ('ahns.yaml', AHNS),
                                      ('srns.yaml', SRNS)])
def test_conf_names_the_constructor(file, cls):
    cfg = yaml.safe_load((CONF / file).read_text())
    assert cfg.pop('_target_').endswith(f'.{cls.__name__}.from_dataset')
    assert cfg.pop('track_false_negatives') is True
    params = set(inspect.signature(cls.__init__).parameters) | {'membership'}
    assert set(cfg) <= params, set(cfg) - params
    sig = inspect.signature(cls.__init__).parameters
    for k, v in cfg.items():  # the conf's defaults are the constructor's
        if k in sig:
            assert sig[k].default == v, k


@pytest.mark.parametrize('file', ['dns_mn.yaml', 'softmax.yaml', 'ahns.yaml',
                                  'srns.yaml'])
def test_conf_instantiates(tiny, file):
    from types import SimpleNamespace

    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    cfg = OmegaConf.create(yaml.safe_load((CONF / file).read_text()))
    if file == 'srns.yaml':  # the tiny graph has 6 items
        cfg.pool_size, cfg.memory_size = 6, 2
    valid = UserItemCSR.from_pairs(torch.tensor([1]), torch.tensor([5]), 4, 6)
    ds = SimpleNamespace(train_pos=tiny, valid_pos=valid)
    sampler = instantiate(cfg, dataset=ds, scorer=line_scorer())
    out = sampler.sample(torch.tensor([1, 2]), torch.tensor([2, 0]))
    assert out.neg_items[1, 0] == 5
    assert 'false_negative_rate' in sampler.summary_stats()


# --------------------------------------------------------------- DNS(M, N)
def enumerate_dnsmn(free, N, M):
    """Exact distribution of DNS(M, N) over the free items (uniform
    candidates with replacement, top-M positions, one uniformly)."""
    prob = {j: 0.0 for j in free}
    for tup in itertools.product(free, repeat=N):
        order = sorted(range(N), key=lambda k: -ITEM_SCORES[tup[k]])
        for k in order[:M]:
            prob[tup[k]] += 1.0 / (len(free) ** N * M)
    return prob


@pytest.mark.parametrize('N,M', [(3, 1), (3, 2), (2, 2), (4, 3)])
def test_dnsmn_distribution_exact(tiny, N, M):
    torch.manual_seed(0)
    sampler = DNSMN(tiny, scorer=line_scorer(), num_candidates=N, top_m=M)
    draws = sampler.sample(torch.ones(20000, dtype=torch.long),
                           torch.full((20000, ), 2), 1).neg_items.view(-1)
    free = [0, 1, 3, 4, 5]  # user 1's negatives
    prob = enumerate_dnsmn(free, N, M)
    counts = [int((draws == j).sum()) for j in free]
    assert sum(counts) == 20000
    assert chi_square(counts, [prob[j] for j in free]) < 18.47  # p=.001, 4 dof


def test_dnsmn_selection_rule(tiny, monkeypatch):
    r"""Hand-drawn candidates: row 0 has items (1, 3, 0, 4), whose top-2 are
    3 (1.1) and 0 (0.3); row 1 has (5, 5, 1, 4): top-2 both item 5."""
    sampler = DNSMN(tiny, scorer=line_scorer(), num_candidates=4, top_m=2)
    cand = torch.tensor([[1, 3, 0, 4], [5, 5, 1, 4]])
    monkeypatch.setattr(sampler, 'uniform_negatives',
                        lambda u: cand.repeat(500, 1).view(u.shape))
    torch.manual_seed(0)
    out = sampler.sample(torch.tensor([1, 3]).repeat(500),
                         torch.tensor([2, 0]).repeat(500)).neg_items.view(-1)
    row0, row1 = out[0::2], out[1::2]
    assert set(row0.tolist()) == {3, 0}
    assert abs(float((row0 == 3).float().mean()) - 0.5) < 0.07
    assert (row1 == 5).all()


def test_dnsmn_m1_is_dns(tiny):
    from kgsampler.sampler.dns import DNS
    torch.manual_seed(3)
    a = DNSMN(tiny, scorer=line_scorer(), num_candidates=3,
              top_m=1).sample(torch.ones(50, dtype=torch.long),
                              torch.full((50, ), 2)).neg_items
    torch.manual_seed(3)
    b = DNS(tiny, scorer=line_scorer(), num_candidates=3).sample(
        torch.ones(50, dtype=torch.long), torch.full((50, ), 2)).neg_items
    assert torch.equal(a, b)


def test_dnsmn_errors(tiny):
    with pytest.raises(ValueError, match=r"DNSMN: 'top_m' must be at most "
                       r"'num_candidates'=4 \(got 5\)"):
        DNSMN(tiny, num_candidates=4, top_m=5)
    with pytest.raises(ValueError, match=r"DNSMN: 'top_m' must be a positive "
                       r"int \(got 0\)"):
        DNSMN(tiny, top_m=0)
    with pytest.raises(ValueError, match=r"DNSMN: 'num_candidates' must be a "
                       r"positive int \(got True\)"):
        DNSMN(tiny, num_candidates=True)
    with pytest.raises(TypeError, match="DNSMN: 'scorer' must implement"):
        DNSMN(tiny, scorer=object())


# ---------------------------------------------------------- Softmax(rho, N)
def softmax_reference(pos_score, scores, rho):
    loss = [math.log1p(math.exp(s - pos_score)) for s in scores]
    n = len(loss)
    mean = sum(loss) / n
    var = sum((x - mean) ** 2 for x in loss) / (n - 1)
    if var == 0:
        return [1.0 / n] * n
    tau = math.sqrt(var / (2 * rho))
    w = [math.exp((x - max(loss)) / tau) for x in loss]
    return [x / sum(w) for x in w]


@pytest.mark.parametrize('rho', [0.1, 1.0, 10.0])
@pytest.mark.parametrize('N', [2, 3])
def test_softmax_distribution_exact(tiny, rho, N):
    torch.manual_seed(0)
    sampler = SoftmaxNS(tiny, scorer=line_scorer(), num_candidates=N, rho=rho)
    draws = sampler.sample(torch.ones(20000, dtype=torch.long),
                           torch.full((20000, ), 2), 1).neg_items.view(-1)
    free = [0, 1, 3, 4, 5]
    prob = {j: 0.0 for j in free}
    for tup in itertools.product(free, repeat=N):
        p = softmax_reference(ITEM_SCORES[2], [ITEM_SCORES[j] for j in tup],
                              rho)
        for j, pj in zip(tup, p):
            prob[j] += pj / len(free) ** N
    counts = [int((draws == j).sum()) for j in free]
    assert chi_square(counts, [prob[j] for j in free]) < 18.47


def test_softmax_probabilities_dense(tiny):
    sampler = SoftmaxNS(tiny, num_candidates=4, rho=0.5)
    pos = torch.tensor([[0.2], [1.0], [0.0]], dtype=torch.double)
    cand = torch.tensor([[0.1, -0.3, 2.0, 0.5], [1.0, 1.0, 1.0, 1.0],
                         [3.0, -2.0, 0.0, 0.0]], dtype=torch.double)
    got = sampler.probabilities(pos, cand)
    for b in range(3):
        ref = softmax_reference(float(pos[b]), cand[b].tolist(), 0.5)
        assert torch.allclose(got[b], torch.tensor(ref, dtype=torch.double))
    # harder with a larger rho: more mass on the best-scored candidate
    hard = SoftmaxNS(tiny, num_candidates=4, rho=5.0).probabilities(pos, cand)
    assert hard[0, 2] > got[0, 2]


def test_softmax_errors(tiny):
    with pytest.raises(ValueError, match=r"SoftmaxNS: 'rho' must be positive "
                       r"\(got 0\)"):
        SoftmaxNS(tiny, rho=0)
    with pytest.raises(TypeError, match=r"SoftmaxNS: 'rho' must be a finite "
                       r"number \(got nan\)"):
        SoftmaxNS(tiny, rho=float('nan'))
    with pytest.raises(ValueError, match=r"SoftmaxNS: 'num_candidates' must "
                       r"be at least 2"):
        SoftmaxNS(tiny, num_candidates=1)


# -------------------------------------------------------------------- AHNS
@pytest.mark.parametrize('alpha,beta,p', [(1.0, 0.1, -2), (0.1, 0.4, -2),
                                          (0.5, 2.0, -3), (1.0, 0.5, 0)])
@pytest.mark.parametrize('user_scale', [0.5, 1.0, 2.0])
def test_ahns_target_rule(tiny, monkeypatch, alpha, beta, p, user_scale):
    r"""Hand-drawn candidates per row; the reference picks, row by row, the
    candidate nearest to :math:`\beta (\hat{y}_{ui} + \alpha)^{p+1}`."""
    scorer = line_scorer(user_scale=user_scale)
    sampler = AHNS(tiny, scorer=scorer, num_candidates=4, alpha=alpha,
                   beta=beta, p=p)
    cand = torch.tensor([[1, 3, 0, 4], [5, 0, 1, 4], [3, 5, 4, 1]])
    monkeypatch.setattr(sampler, 'uniform_negatives',
                        lambda u: cand.view(u.shape))
    users = torch.tensor([1, 3, 1])
    pos = torch.tensor([2, 3, 2])  # positive scores 2.0, 1.1, 2.0 (scaled)
    out = sampler.sample(users, pos).neg_items.view(-1)
    for b in range(3):
        s_pos = user_scale * ITEM_SCORES[int(pos[b])]
        target = beta * (s_pos + alpha) ** (p + 1)
        gaps = [abs(user_scale * ITEM_SCORES[j] - target)
                for j in cand[b].tolist()]
        assert int(out[b]) == int(cand[b, gaps.index(min(gaps))])
        assert math.isclose(float(sampler.target(torch.tensor(s_pos))),
                            target, rel_tol=1e-6)


def test_ahns_hardness_falls_with_the_positive_score(tiny):
    sampler = AHNS(tiny, alpha=1.0, beta=1.0, p=-2)
    t = sampler.target(torch.tensor([0.0, 1.0, 3.0, 9.0]))
    assert torch.allclose(t, torch.tensor([1.0, 0.5, 0.25, 0.1]))
    assert (t[1:] < t[:-1]).all()


def test_ahns_infinite_target(tiny, monkeypatch):
    # positive score -alpha: (0) ** (-1) = inf, the best-scored candidate
    sampler = AHNS(tiny, scorer=line_scorer(), num_candidates=4, alpha=-2.0,
                   beta=0.1, p=-2)
    cand = torch.tensor([[1, 3, 0, 4]])
    monkeypatch.setattr(sampler, 'uniform_negatives',
                        lambda u: cand.view(u.shape))
    out = sampler.sample(torch.tensor([1]), torch.tensor([2])).neg_items
    assert out.tolist() == [[3]]


def test_ahns_errors(tiny):
    with pytest.raises(ValueError, match=r"AHNS: 'beta' must be positive "
                       r"\(got -0.1\)"):
        AHNS(tiny, beta=-0.1)
    with pytest.raises(TypeError, match=r"AHNS: 'p' must be an int "
                       r"\(got -1.5\)"):
        AHNS(tiny, p=-1.5)
    with pytest.raises(TypeError, match=r"AHNS: 'alpha' must be a finite "
                       r"number \(got inf\)"):
        AHNS(tiny, alpha=float('inf'))


# -------------------------------------------------------------------- SRNS
class Snapshots:
    """An :class:`EmbeddingScorer` whose item embeddings change between
    epochs; :obj:`tables` keeps each epoch's copy."""
    def __init__(self, seed=0):
        self.g = torch.Generator().manual_seed(seed)
        self.user = torch.randn(4, 3, generator=self.g)
        self.item = torch.randn(6, 3, generator=self.g)
        self.scorer = EmbeddingScorer(self.user, self.item)
        self.tables = []

    def step(self):
        self.item += 0.7 * torch.randn(6, 3, generator=self.g)

    def score(self, table, u, j):
        return float(self.user[u] @ table[j])


def test_srns_history_and_selection(tiny):
    r"""Three epoch starts (the first pool, then two rotations), the scorer
    changing in between: the pool in use carries its items' scores at the two
    epoch ends, the positives theirs, and the negative is, row by row, the
    memory item with the largest :math:`\sigma(s_{uj} - s_{ui}) + \alpha_t
    \mathrm{std}_t[\sigma(s^t_{uj} - s^t_{ui})]` (dense reference)."""
    snap = Snapshots()
    torch.manual_seed(0)
    sampler = SRNS(tiny, scorer=snap.scorer, memory_size=3, num_refresh=4,
                   pool_size=5, history=5, alpha=4.0, warmup=4)
    sampler.on_epoch_start(0)  # draws and scores the first pool
    tables = []
    for epoch in (1, 2):
        snap.step()
        tables.append(snap.item.clone())  # the epoch end's embeddings
        sampler.on_epoch_start(epoch)
    snap.step()  # training moved on: current scores differ from history
    assert len(sampler.pool_hist) == len(sampler.pos_hist) == 2
    assert sampler.alpha_t == pytest.approx(4.0 * 2 / 4)
    pool, memory = sampler.pool.clone(), sampler.memory.clone()
    for t, table in enumerate(tables):  # the history holds those scores
        for u in range(4):
            for v in range(5):
                assert sampler.pool_hist[t][u, v] == pytest.approx(
                    snap.score(table, u, int(pool[u, v])), abs=1e-5)
    users = torch.tensor([0, 1, 1, 3])
    pos = torch.tensor([1, 2, 2, 4])  # (3, 4) is not a training positive
    got_score, got_std = sampler.hard_scores(
        users, pos, pool[users.view(-1, 1), memory[users]], memory[users])
    out = sampler.sample(users, pos).neg_items.view(-1)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    for b in range(4):
        u, i = int(users[b]), int(pos[b])
        best, best_j = -float('inf'), None
        for k, m in enumerate(memory[u].tolist()):
            j = int(pool[u, m])
            lik = sig(snap.score(snap.item, u, j) -
                      snap.score(snap.item, u, i))
            # no history for a pair that is not a training positive: the
            # positive counts with its current score
            hist_i = [snap.score(tb, u, i) if tiny.to_dense()[u, i] else
                      snap.score(snap.item, u, i) for tb in tables]
            liks = [sig(snap.score(tb, u, j) - hi)
                    for tb, hi in zip(tables, hist_i)]
            mean = sum(liks) / len(liks)
            std = math.sqrt(sum((x - mean) ** 2 for x in liks) / len(liks))
            val = lik + 2.0 * std
            assert float(got_std[b, k]) == pytest.approx(std, abs=1e-5)
            assert float(got_score[b, k]) == pytest.approx(val, abs=1e-5)
            if val > best:
                best, best_j = val, j
        assert int(out[b]) == best_j


def test_srns_rotation_keeps_history_epochs(tiny):
    sampler = SRNS(tiny, scorer=random_scorer(), memory_size=2,
                   pool_size=4, history=3)
    lengths = []
    for epoch in range(6):
        sampler.on_epoch_start(epoch)
        lengths.append((len(sampler.pool_hist), len(sampler.pos_hist)))
        assert len(sampler.next_pools) == 3
    assert lengths == [(1, 1), (1, 1), (2, 2), (3, 3), (3, 3), (3, 3)]
    assert sampler.pos_hist[0].shape == (tiny.nnz, )


@pytest.mark.parametrize('seed', range(3))
def test_srns_memory_refresh_keeps_the_best(tiny, seed):
    r"""With :math:`S_2 \gg V` every pool position is drawn, and with a tiny
    temperature the refresh keeps the :math:`S_1` best-scored distinct
    positions (dense reference: sort the pool's scores)."""
    torch.manual_seed(seed)
    scorer = random_scorer(seed=seed)
    sampler = SRNS(tiny, scorer=scorer, memory_size=2, num_refresh=200,
                   pool_size=4, temperature=1e-4)
    sampler.on_epoch_start(0)
    users = torch.tensor([0, 1, 3])
    sampler.refresh_memory(users)
    for u in users.tolist():
        mem = sampler.memory[u]
        assert mem.unique().numel() == 2  # distinct positions
        scores = scorer.score(torch.tensor([u]), sampler.pool[u:u + 1])[0]
        want = scores.sort(descending=True).values[:2]
        got = scores[mem].sort(descending=True).values
        assert torch.allclose(got, want)


def test_srns_memory_distinct_and_sampled_by_score(tiny):
    torch.manual_seed(0)
    sampler = SRNS(tiny, scorer=line_scorer(), memory_size=2, num_refresh=3,
                   pool_size=6, temperature=1.0)
    sampler.on_epoch_start(0)
    users = torch.tensor([1, 3])
    counts = torch.zeros(4, 6)
    for _ in range(300):
        sampler.refresh_memory(users)
        mem = sampler.memory
        assert (mem[:, 0] != mem[:, 1]).all()
        assert ((mem >= 0) & (mem < 6)).all()
        counts[3].index_add_(0, sampler.pool[3, mem[3]], torch.ones(2))
    # user 3 has no positives: its memory favours high-scored items
    assert counts[3, 2] > counts[3, 1]


def test_srns_sample_draws_lazily_and_alpha_schedule(tiny):
    sampler = SRNS(tiny, scorer=random_scorer(), memory_size=2, pool_size=4,
                   alpha=3.0, warmup=2)
    out = sampler.sample(torch.tensor([0]), torch.tensor([0]), 2)
    assert out.neg_items.shape == (1, 2)
    assert set(sampler.diagnostics()) == {'alpha_t', 'std_chosen'}
    assert set(sampler.diagnostics()) == {'alpha_t'}  # nothing sampled since
    alphas = [sampler.alpha_t]
    for epoch in (1, 2, 3):
        sampler.on_epoch_start(epoch)
        alphas.append(sampler.alpha_t)
    assert alphas == [0.0, 1.5, 3.0, 3.0]


def test_srns_errors(tiny):
    with pytest.raises(ValueError, match=r"SRNS: 'pool_size' must be at least "
                       r"'memory_size'=8 \(got 4\)"):
        SRNS(tiny, pool_size=4)
    with pytest.raises(ValueError, match=r"SRNS: 'warmup' must be a "
                       r"non-negative int \(got -1\)"):
        SRNS(tiny, warmup=-1)
    with pytest.raises(ValueError, match=r"SRNS: 'temperature' must be "
                       r"positive \(got 0\)"):
        SRNS(tiny, temperature=0)
    with pytest.raises(ValueError, match=r"SRNS: 'alpha' must be "
                       r"non-negative \(got -1\)"):
        SRNS(tiny, alpha=-1)
    sampler = SRNS(tiny, scorer=random_scorer(), memory_size=2, pool_size=4)
    with pytest.raises(ValueError, match=r"SRNS: 'num_neg' must be at most "
                       r"'memory_size'=2"):
        sampler.sample(torch.tensor([0]), torch.tensor([0]), 3)
    with pytest.raises(RuntimeError, match='SRNS: no scorer set'):
        SRNS(tiny).on_epoch_start(0)


class FullScorer(EmbeddingScorer):
    """An :class:`EmbeddingScorer` that also ranks every item at once, as a
    recommender's :obj:`full_scores`."""
    def __init__(self, *args):
        super().__init__(*args)
        self.full_calls = 0

    def full_scores(self, users):
        self.full_calls += 1
        return self.user_emb[users] @ self.item_emb.t()


def test_srns_pool_scores_through_full_scores(tiny):
    g = torch.Generator().manual_seed(0)
    scorer = FullScorer(torch.randn(4, 3, generator=g),
                        torch.randn(6, 3, generator=g))
    sampler = SRNS(tiny, scorer=scorer, memory_size=2, pool_size=5,
                   history=3, score_batch_size=3)
    sampler.on_epoch_start(0)
    sampler.on_epoch_start(1)
    # 2 user batches at the start, 2 for all three pools ahead at the end
    assert scorer.full_calls == 4
    for pool, hist in [(sampler.pool, sampler.pool_hist[-1])] + [
            (p, h[-1]) for p, h in zip(sampler.next_pools, sampler.next_hist)
            if h]:
        ref = scorer.score(torch.arange(4), pool)
        assert torch.allclose(hist, ref, atol=1e-6)
