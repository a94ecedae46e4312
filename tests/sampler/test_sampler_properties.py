"""Properties every sampler must have, parametrised over the registry of
``tests/conftest.py`` (``SAMPLERS``): a sampler added there gets them all.

* never a training positive, also for users with one or two possible
  negatives (and whatever membership back end);
* the "no possible negative" error for a user who has every item;
* same seed, same draws (also after ``update`` for learnable samplers);
  another seed, other draws.

The contract checks of :meth:`Sampler.sample` itself (what it enforces for
every subclass) are tested with deliberately broken subclasses at the end.
"""
import importlib
import inspect

import pytest
import torch

import kgsampler.sampler as sampler_pkg
from kgsampler.data import KGRecDataset
from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import Sampler, SamplerOutput
from kgsampler.sampler.kgpolicy import SELECTIONS, KGPolicy
from kgsampler.sampler.uniform import RNS

KG = [[i, 0, 8 + i % 3] for i in range(8)] + \
    [[0, 1, 7], [7, 1, 3], [3, 1, 6], [6, 1, 0]]


def _dataset(train, test, valid_ratio=0.0, num_users=5):
    return KGRecDataset(torch.tensor(train), torch.tensor(test),
                        torch.tensor(KG), num_users=num_users, num_items=8,
                        num_entities=11, valid_ratio=valid_ratio)


@pytest.fixture
def nearly_full() -> KGRecDataset:
    r"""Five users, eight items (entities 0-7), three genre entities 8-10;
    ``x`` marks a training positive::

                 item 0 1 2 3 4 5 6 7
        user 0        x x x x x x x .    (one possible negative: 7)
        user 1        . x x x x x x x    (one possible negative: 0)
        user 2        x x x . x x . x    (two: 3 and 6)
        user 3        x . . . . . . .
        user 4        . . . . . x . .

        KG: item i --genre--> e(8 + i % 3)   (e8: 0 3 6, e9: 1 4 7, e10: 2 5)
            0 --similar--> 7 --similar--> 3 --similar--> 6 --similar--> 0

    Test: (0, 7), (1, 0), (2, 3), (3, 1), (4, 2); no validation split, so
    the training positives are exactly the ones drawn.
    """
    train = [[0, i] for i in range(7)] + [[1, i] for i in range(1, 8)] + \
        [[2, i] for i in (0, 1, 2, 4, 5, 7)] + [[3, 0], [4, 5]]
    return _dataset(train, [[0, 7], [1, 0], [2, 3], [3, 1], [4, 2]])


@pytest.fixture
def with_full_user() -> KGRecDataset:
    r"""The graph of :func:`nearly_full`, but user 0 has all eight items as
    training positives (no possible negative) and no test item::

                 item 0 1 2 3 4 5 6 7
        user 0        x x x x x x x x    (no possible negative)
        user 1        . x x x x x x x
        user 2        x x x . x x . x
        user 3        x . . . . . . .
        user 4        . . . . . x . .
    """
    train = [[0, i] for i in range(8)] + [[1, i] for i in range(1, 8)] + \
        [[2, i] for i in (0, 1, 2, 4, 5, 7)] + [[3, 0], [4, 5]]
    return _dataset(train, [[1, 0], [2, 3], [3, 1], [4, 2]])


def random_nearly_full(seed: int) -> KGRecDataset:
    """Twelve users over the eight items of :data:`KG`, each with one to
    three possible negatives (random positions)."""
    g = torch.Generator().manual_seed(seed)
    U = 12
    dense = torch.ones(U, 8, dtype=torch.bool)
    for u in range(U):
        free = torch.randperm(8, generator=g)[:1 + u % 3]
        dense[u, free] = False
    train = dense.nonzero().tolist()
    test = [[u, int((~dense[u]).nonzero()[0])] for u in range(U)]
    return _dataset(train, test, num_users=U)


def random_sparse(seed: int = 0, U: int = 12) -> KGRecDataset:
    """Twelve users, density about 0.3, a validation split."""
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(U, 8, generator=g) < 0.3
    dense[torch.arange(U), torch.randint(8, (U, ), generator=g)] = True
    dense[:, 7] = False
    train = dense.nonzero().tolist()
    return _dataset(train, [[u, 7] for u in range(U)], num_users=U)


def draw(sampler, users, pos, num_neg, rounds=3):
    """Samples :obj:`rounds` times, training learnable samplers in between;
    returns the negatives of every round, :math:`(rounds, B, N)`."""
    outs = []
    for _ in range(rounds):
        out = sampler.sample(users, pos, num_neg)
        outs.append(out.neg_items)
        if sampler.learnable:
            sampler.update(users, pos, out)
    return torch.stack(outs)


def training_rows(ds, repeat):
    """Every training (user, positive) pair, :obj:`repeat` times."""
    users = ds.train_pos.row_ids().repeat(repeat)
    pos = ds.train_pos.indices.repeat(repeat)
    return users, pos


# -------------------------------------------------------------- registry
def _concrete_samplers():
    out = set()
    todo = [Sampler]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith('kgsampler.') and \
                    not inspect.isabstract(sub):
                out.add(sub)
    return out


def test_registry_holds_every_sampler_and_selection(sampler_registry):
    # import every public sampler, so that each subclass is defined
    for name in sampler_pkg.__all__:
        getattr(sampler_pkg, name)
    built = {}
    ds = random_sparse()
    for name, build in sampler_registry.items():
        torch.manual_seed(0)
        s = build(ds)
        built.setdefault(type(s), []).append(s)
    missing = _concrete_samplers() - set(built)
    assert not missing, (f"add {sorted(c.__name__ for c in missing)} to "
                         f"SAMPLERS in tests/conftest.py")
    assert {s.selection for s in built[KGPolicy]} == set(SELECTIONS)


# ------------------------------------------------------------ properties
@pytest.mark.parametrize('membership', ['dense', 'bitmap', 'search'])
@pytest.mark.parametrize('num_neg', [1, 3])
def test_never_a_training_positive_with_nearly_full_users(
        nearly_full, make_sampler, membership, num_neg):
    torch.manual_seed(0)
    s = make_sampler(nearly_full, membership=membership)
    users, pos = training_rows(nearly_full, 6)
    neg = draw(s, users, pos, num_neg)
    assert neg.shape == (3, users.numel(), num_neg)
    assert neg.dtype == torch.long
    dense = nearly_full.train_pos.to_dense()
    assert not dense[users.view(1, -1, 1), neg].any()
    # users 0 and 1 have exactly one possible negative, user 2 two
    assert (neg[:, users == 0] == 7).all()
    assert (neg[:, users == 1] == 0).all()
    two = neg[:, users == 2]
    assert ((two == 3) | (two == 6)).all()


@pytest.mark.parametrize('seed', range(3))
def test_never_a_training_positive_random_nearly_full(make_sampler, seed):
    ds = random_nearly_full(seed)
    torch.manual_seed(seed)
    s = make_sampler(ds, max_rounds=1)
    users, pos = training_rows(ds, 2)
    neg = draw(s, users, pos, 2)
    dense = ds.train_pos.to_dense()
    assert not dense[users.view(1, -1, 1), neg].any()


def test_no_possible_negative_is_an_error(with_full_user, make_sampler):
    torch.manual_seed(0)
    s = make_sampler(with_full_user)
    name = type(s).__name__
    with pytest.raises(ValueError, match=rf"^{name}: user 0 has every one of "
                                         rf"the 8 items as a training "
                                         rf"positive, so it has no possible "
                                         rf"negative$"):
        s.sample(torch.tensor([3, 0, 1]), torch.tensor([0, 1, 1]))
    # the other users still sample, never a positive
    users = torch.tensor([1, 2, 3, 4]).repeat(10)
    pos = torch.tensor([1, 0, 0, 5]).repeat(10)
    neg = draw(s, users, pos, 2, rounds=2)
    dense = with_full_user.train_pos.to_dense()
    assert not dense[users.view(1, -1, 1), neg].any()


def _seeded_draws(make_sampler, ds, seed):
    torch.manual_seed(seed)
    s = make_sampler(ds)
    users, pos = training_rows(ds, 4)
    return draw(s, users, pos, 2)


def test_same_seed_same_draws(make_sampler):
    ds = random_sparse()
    a = _seeded_draws(make_sampler, ds, 3)
    b = _seeded_draws(make_sampler, ds, 3)
    assert torch.equal(a, b)
    c = _seeded_draws(make_sampler, ds, 4)
    assert not torch.equal(a, c)


# ------------------------------------------ what Sampler.sample enforces
class Broken(Sampler):
    """Returns :obj:`self.answer` (a function of the batch) as it is."""
    answer = None

    def _sample(self, users, pos_items, num_neg):
        return SamplerOutput(self.answer(users, num_neg))


@pytest.fixture
def tiny_pos() -> UserItemCSR:
    r"""Two users, four items (``x``: training positive)::

              item 0 1 2 3
        user 0      x . . .
        user 1      . . x x
    """
    return UserItemCSR.from_pairs(torch.tensor([0, 1, 1]),
                                  torch.tensor([0, 2, 3]), 2, 4)


@pytest.mark.parametrize('membership', ['dense', 'bitmap', 'search'])
@pytest.mark.parametrize('answer,match', [
    (lambda u, n: torch.ones(u.numel(), n, dtype=torch.long).index_fill_(
        0, torch.tensor([1]), 3),
     r"^Broken._sample returned item 3 at row 1, column 0, which is a "
     r"training positive of user 1"),
    (lambda u, n: torch.zeros(u.numel(), n, dtype=torch.long),
     r"item 0 at row 0, column 0, which is a training positive of user 0"),
    (lambda u, n: torch.full((u.numel(), n), 4),
     r"item 4 at row 0, column 0, which is outside \[0, 4\)"),
    (lambda u, n: torch.full((u.numel(), n), -1),
     r"item -1 at row 0, column 0, which is outside \[0, 4\)"),
    (lambda u, n: torch.ones(u.numel(), n, dtype=torch.int32),
     r"'neg_items' that are not a torch.long tensor \(got torch.int32\)"),
    (lambda u, n: torch.ones(u.numel(), n + 1, dtype=torch.long),
     r"'neg_items' of shape \(2, 3\), expected \(2, 2\)"),
])
def test_sample_enforces_the_contract(tiny_pos, membership, answer, match):
    s = Broken(tiny_pos, membership=membership)
    s.answer = staticmethod(answer)
    with pytest.raises(RuntimeError, match=match):
        s.sample(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)
    s.answer = staticmethod(lambda u, n: torch.ones(u.numel(), n,
                                                    dtype=torch.long))
    out = s.sample(torch.tensor([0, 1]), torch.tensor([0, 2]), 2)
    assert torch.equal(out.neg_items, torch.ones(2, 2, dtype=torch.long))
    assert s.summary_stats()['num_sampled'] == 4


def test_every_sampler_module_uses_the_checked_entry_point():
    """No registered sampler overrides :meth:`Sampler.sample` (where the
    contract is enforced)."""
    for name in sampler_pkg.__all__:
        obj = getattr(sampler_pkg, name)
        if inspect.isclass(obj) and issubclass(obj, Sampler):
            assert obj.sample is Sampler.sample, name
            assert obj.__call__ is Sampler.sample, name
    assert importlib.import_module('kgsampler.sampler.uniform').RNS is RNS
