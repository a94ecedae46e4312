import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kgsampler.data import KGRecDataset, make_large_synthetic


@pytest.fixture(scope='module')
def small() -> KGRecDataset:
    r"""3,000 requested interactions: 100 users, 80 items, 10 creators,
    20 genres, 10 eras; entities laid out as

    ``items 0..79 | genres 80..99 | creators 100..109 | eras 110..119``
    """
    return make_large_synthetic(3000, seed=0)


SPLITS = ('train_pos', 'valid_pos', 'test_pos')


def pairs(ds: KGRecDataset, split: str) -> torch.Tensor:
    csr = getattr(ds, split)
    return csr.row_ids() * ds.num_items + csr.indices


def equal(a: KGRecDataset, b: KGRecDataset) -> bool:
    return all(
        torch.equal(getattr(a, s).indptr, getattr(b, s).indptr)
        and torch.equal(getattr(a, s).indices, getattr(b, s).indices)
        for s in SPLITS) and torch.equal(a.kg, b.kg)


@pytest.mark.parametrize('n', [30_000, 100_000])
def test_sizes_scale_with_the_request(n):
    ds = make_large_synthetic(n)
    U = n // 30
    I = int(0.8 * U)  # noqa: E741
    C, G = max(I // 10, 10), max(I // 100, 20)
    assert (ds.num_users, ds.num_items) == (U, I)
    assert ds.num_entities == I + G + C + 10
    assert ds.num_relations == 4 and ds.name == 'large_synthetic'
    assert 0.85 * n <= ds.train_pos.nnz <= 1.05 * n
    total = sum(getattr(ds, s).nnz for s in SPLITS)
    assert 0.17 <= ds.test_pos.nnz / total <= 0.23


def test_pinned_sizes_of_the_cost_curve_rows():
    # The rows of benchmarks/results/cost_curve.txt were made with these
    # datasets: a change of the random stream invalidates them.
    for n, want in [(100_000, (3333, 2666, 2968, 9234, 96072, 10723, 26703))]:
        ds = make_large_synthetic(n, seed=0)
        got = (ds.num_users, ds.num_items, ds.num_entities, ds.kg.size(0),
               ds.train_pos.nnz, ds.valid_pos.nnz, ds.test_pos.nnz)
        assert got == want


def test_no_duplicate_pairs_and_disjoint_splits(small):
    keys = torch.cat([pairs(small, s) for s in SPLITS])
    assert keys.numel() > 0
    assert torch.unique(keys).numel() == keys.numel()


def test_every_user_has_a_train_item(small):
    deg = small.train_pos.degree()
    assert deg.numel() == small.num_users
    assert bool((deg >= 1).all())


def test_kg_triples_are_valid(small):
    I, G, C = small.num_items, 20, 10  # noqa: E741
    off_g, off_c, off_r = I, I + G, I + G + C
    head, rel, tail = small.kg.unbind(1)
    assert small.kg.dtype == torch.long
    assert bool((head >= 0).all()) and bool((tail >= 0).all())
    assert bool((tail < small.num_entities).all())
    assert set(rel.tolist()) == {0, 1, 2, 3}
    assert small.relation_names == ['genre', 'creator', 'era', 'main_genre']
    ranges = {0: (off_g, off_c), 1: (off_c, off_r),
              2: (off_r, small.num_entities)}
    for r, (lo, hi) in ranges.items():  # item -> attribute
        m = rel == r
        assert bool((head[m] < I).all())
        assert bool(((tail[m] >= lo) & (tail[m] < hi)).all())
        assert torch.unique(head[m]).numel() == I  # every item has one
    assert int((rel == 2).sum()) == I  # exactly one era per item
    m = rel == 3  # creator -> genre, one per creator
    assert torch.equal(head[m], torch.arange(off_c, off_r))
    assert bool(((tail[m] >= off_g) & (tail[m] < off_c)).all())
    key = (head * 4 + rel) * small.num_entities + tail
    assert torch.unique(key).numel() == key.numel()
    assert small.data.validate()


def test_deterministic_for_a_seed_and_seeds_differ():
    a, b = make_large_synthetic(3000, seed=1), make_large_synthetic(3000,
                                                                    seed=1)
    assert equal(a, b)
    c = make_large_synthetic(3000, seed=2)
    assert not equal(a, c)
    # Not only the valid split (KGRecDataset's seed): the items, the KG and
    # the users' interactions differ too.
    assert not torch.equal(a.kg, c.kg)
    everything = [torch.cat([pairs(d, s) for s in SPLITS]).sort().values
                  for d in (a, c)]
    assert not torch.equal(*everything)


def test_draws_per_user_and_ratios():
    few = make_large_synthetic(3000, draws_per_user=5, test_ratio=0.0,
                               valid_ratio=0.0)
    assert few.num_users == 100
    assert few.test_pos.nnz == 0 and few.valid_pos.nnz == 0
    assert int(few.train_pos.degree().max()) <= 5


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_interactions=0), r"'num_interactions' must be an int >= 1 "
     r"\(got 0\)"),
    (dict(num_interactions=1e5), r"'num_interactions' must be an int >= 1 "
     r"\(got 100000.0\)"),
    (dict(draws_per_user=0), r"'draws_per_user' must be an int >= 1 "
     r"\(got 0\)"),
    (dict(test_ratio=1.0), r"'test_ratio' must be a float in \[0, 1\) "
     r"\(got 1.0\)"),
    (dict(valid_ratio=-0.1), r"'valid_ratio' must be a float in \[0, 1\) "
     r"\(got -0.1\)"),
])
def test_validation(kwargs, match):
    kwargs = {'num_interactions': 3000, **kwargs}
    with pytest.raises(ValueError, match='make_large_synthetic: ' + match):
        make_large_synthetic(**kwargs)


def test_seed_must_be_an_int():
    with pytest.raises(TypeError,
                       match=r"make_large_synthetic: 'seed' must be an int "
                       r"\(got 1.5\)"):
        make_large_synthetic(3000, seed=1.5)


def test_a_million_interactions_fit_in_little_memory():
    # In a fresh process, so that the peak RSS is this build's alone. The
    # dense make_synthetic would need about 12 GB at this shape.
    code = ('import torch; torch.set_num_threads(1)\n'
            'from kgsampler.data import make_large_synthetic\n'
            'ds = make_large_synthetic(10**6)\n'
            'hwm = [l for l in open("/proc/self/status") '
            'if l.startswith("VmHWM:")]\n'
            'print(ds.train_pos.nnz, ds.num_users, '
            'int(hwm[0].split()[1]) if hwm else -1)\n')
    import kgsampler
    src = str(Path(kgsampler.__file__).resolve().parent.parent)
    env = {**os.environ, 'OMP_NUM_THREADS': '1',
           'PYTHONPATH': os.pathsep.join(
               [src] + [p for p in [os.environ.get('PYTHONPATH')] if p])}
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    nnz, users, hwm_kb = map(int, out.stdout.split())
    assert users == 33_333
    assert 900_000 <= nnz <= 1_100_000
    if hwm_kb >= 0:  # Linux
        assert hwm_kb < 3 * 2**20  # 3 GB
