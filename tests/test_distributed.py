"""Data-parallel training on torch.distributed (gloo, CPU processes).

Each multi-process check spawns its ranks with :func:`torch.multiprocessing.
spawn` (a ``file://`` rendezvous in the test's folder); every rank writes
what it saw and ended with into ``rank<r>.pt``, which the test compares."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

dist = pytest.importorskip('torch.distributed')
pytestmark = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()),
    reason='torch.distributed with the gloo backend is not available')

from kgsampler.data import make_synthetic  # noqa: E402
from kgsampler.recommender import MF  # noqa: E402
from kgsampler.sampler import Adversarial, KGPolicy, RNS  # noqa: E402
from kgsampler.sampler.base import Sampler, SamplerOutput  # noqa: E402
from kgsampler.train import Trainer  # noqa: E402
from kgsampler.train._distributed import (  # noqa: E402
    epoch_permutation, shard_batches)
from kgsampler.train._loggers import CSVLogger  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEED = 7
#: Per-rank batch; the one-process reference uses WORLD * BATCH.
BATCH, WORLD = 32, 2
#: Largest parameter difference allowed between the 2-rank run and the
#: 1-process run with the same global batch (float summation order only).
TOL = 1e-6


def tiny():
    """60 users, 50 items (the synthetic generator, seed 0)."""
    return make_synthetic(num_users=60, num_items=50, num_creators=12,
                          num_genres=5, num_eras=3, min_combo_items=2,
                          seed=0)


def dense_train(ds):
    mask = torch.zeros(ds.num_users, ds.num_items, dtype=torch.bool)
    mask[ds.train_pos.row_ids(), ds.train_pos.indices] = True
    return mask


class FixedNegative(Sampler):
    r"""A deterministic sampler: for the pair (u, i), the
    :math:`(i \bmod n_u)`-th non-positive item of u (:math:`n_u` its
    number of non-positives), so that runs differ only by their batches.
    Records every (user, positive) it is asked about."""
    def __init__(self, train_pos):
        super().__init__(train_pos)
        mask = torch.zeros(self.num_users, self.num_items, dtype=torch.bool)
        mask[train_pos.row_ids(), train_pos.indices] = True
        self._order = torch.argsort(mask.to(torch.int8), dim=1, stable=True)
        self._num_free = (~mask).sum(1)
        self.seen = []

    def _sample(self, users, pos_items, num_neg):
        self.seen.append(torch.stack([users, pos_items]))
        col = pos_items % self._num_free[users]
        neg = self._order[users, col].view(-1, 1).expand(-1, num_neg)
        return SamplerOutput(neg.contiguous())


def _build(kind, ds, model):
    if kind == 'fixed':
        return FixedNegative(ds.train_pos)
    if kind == 'rns':
        return RNS(ds.train_pos)
    if kind == 'adversarial':
        return Adversarial(ds.train_pos, scorer=model, embedding_dim=8,
                           lr=1e-2)
    return KGPolicy.from_dataset(ds, model, embedding_dim=8, hidden_dims=[8])


def _worker(rank, world, folder, kind, batch_size, epochs):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'file://{folder}/rdzv',
                            rank=rank, world_size=world)
    try:
        ds = tiny()
        torch.manual_seed(SEED)
        model = MF(ds.num_users, ds.num_items, embedding_dim=8)
        sampler = _build(kind, ds, model)
        torch.manual_seed(SEED + rank)  # per-rank streams
        negs = []
        sample = sampler.sample

        def recording(users, pos, num_neg=1):
            out = sample(users, pos, num_neg)
            negs.append(torch.stack([users, out.neg_items[:, 0]]))
            return out
        sampler.sample = recording
        out = Path(folder) / str(rank)
        out.mkdir()
        trainer = Trainer(model, sampler, ds, lr=1e-2,
                          batch_size=batch_size, max_epochs=epochs,
                          progress=False, eval_batch_size=16,
                          checkpoint_path=str(out / 'best.pt'),
                          state_path=str(out / 'last.pt'),
                          loggers=[CSVLogger(str(out / 'history.csv'))])
        result = trainer.fit()
        seen = getattr(sampler, 'seen', [])
        torch.save({
            'model': model.state_dict(),
            'sampler': (sampler.state_dict() if isinstance(
                sampler, torch.nn.Module) else {}),
            'seen': torch.cat(seen, 1) if seen else None,
            'negs': torch.cat(negs, 1),
            'valid': result.valid, 'test': result.test,
            'history': result.history,
        }, Path(folder) / f'rank{rank}.pt')
    finally:
        dist.destroy_process_group()


def spawn(folder, world, kind, batch_size, epochs=1):
    torch.multiprocessing.spawn(_worker, args=(world, str(folder), kind,
                                               batch_size, epochs),
                                nprocs=world, join=True)
    return [torch.load(folder / f'rank{r}.pt', weights_only=False)
            for r in range(world)]


@pytest.fixture(scope='module')
def fixed_runs(tmp_path_factory):
    """The deterministic sampler: 2 ranks x BATCH against 1 rank x
    2 * BATCH (a process group of size 1, so the same data order)."""
    two = tmp_path_factory.mktemp('two')
    one = tmp_path_factory.mktemp('one')
    return two, spawn(two, WORLD, 'fixed', BATCH), \
        spawn(one, 1, 'fixed', WORLD * BATCH)


@pytest.fixture(scope='module', params=['adversarial', 'kgpolicy'])
def learnable_runs(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param)
    return request.param, spawn(folder, WORLD, request.param, BATCH,
                                epochs=2)


# ------------------------------------------------------------ sharding
@pytest.mark.parametrize('num,batch_size,world', [
    (10, 2, 2), (11, 2, 2), (9, 2, 2), (13, 4, 3), (5, 8, 2), (3, 1, 3)])
def test_shard_batches_disjoint_and_covering(num, batch_size, world):
    perm = torch.randperm(num)
    shards = [shard_batches(perm, batch_size, r, world)
              for r in range(world)]
    # every pair exactly once, over all ranks
    got = torch.cat([s.perm for s in shards]).sort().values
    assert torch.equal(got, torch.arange(num))
    # the same number of batches everywhere, none empty
    assert len({len(s.sizes) for s in shards}) == 1
    assert all(min(s.sizes) >= 1 for s in shards)
    assert sum(shards[0].global_sizes) == num
    # the ranks' pieces of a global batch are its consecutive pairs
    start = 0
    for b, g in enumerate(shards[0].global_sizes):
        pieces = [s.perm[sum(s.sizes[:b]):sum(s.sizes[:b + 1])]
                  for s in shards]
        assert torch.equal(torch.cat(pieces), perm[start:start + g])
        start += g


def test_shard_batches_merges_a_tiny_last_batch():
    # 9 pairs, global batches of 4: the last (1 pair) joins the one before
    s = shard_batches(torch.arange(9), 2, 0, 2)
    assert s.global_sizes == [4, 5] and s.sizes == [2, 3]


def test_shard_batches_rejects_too_few_pairs():
    with pytest.raises(ValueError, match=r'3 training pairs cannot be '
                                         r'shared by world_size=4'):
        shard_batches(torch.arange(3), 2, 0, 4)


def test_epoch_permutation_is_seeded_by_seed_and_epoch():
    a = epoch_permutation(20, 3, 1, torch.device('cpu'))
    assert torch.equal(a, epoch_permutation(20, 3, 1, torch.device('cpu')))
    assert not torch.equal(a, epoch_permutation(20, 3, 2,
                                                torch.device('cpu')))
    assert not torch.equal(a, epoch_permutation(20, 4, 1,
                                                torch.device('cpu')))
    assert torch.equal(a.sort().values, torch.arange(20))


# ------------------------------------------------------ multi-process runs
def test_ranks_see_disjoint_pairs_covering_the_epoch(fixed_runs):
    _, two, _ = fixed_runs
    ds = tiny()
    num_items = ds.num_items
    keys = [r['seen'][0] * num_items + r['seen'][1] for r in two]
    assert keys[0].numel() + keys[1].numel() == ds.train_pos.nnz
    assert not set(keys[0].tolist()) & set(keys[1].tolist())
    every = ds.train_pos.row_ids() * num_items + ds.train_pos.indices
    assert torch.equal(torch.cat(keys).sort().values, every.sort().values)


def test_two_ranks_equal_one_process_with_the_global_batch(fixed_runs):
    _, two, (one, ) = fixed_runs
    for r in two:
        for k, v in one['model'].items():
            assert (r['model'][k] - v).abs().max() <= TOL, k
    # validation and test metrics: gathered over the ranks' users
    for split in ('valid', 'test'):
        for k, v in one[split].items():
            assert two[0][split][k] == pytest.approx(v, abs=1e-6), k
            assert two[1][split][k] == two[0][split][k], k
    # the epoch's logs average every rank's pairs
    assert two[0]['history'][0]['loss'] == pytest.approx(
        one['history'][0]['loss'], rel=1e-5)


def test_only_rank_0_writes(fixed_runs):
    folder, _, _ = fixed_runs
    assert {p.name for p in (folder / '0').iterdir()} == {
        'best.pt', 'last.pt', 'history.csv'}
    assert list((folder / '1').iterdir()) == []


def test_learnable_sampler_identical_on_every_rank(learnable_runs):
    kind, (a, b) = learnable_runs
    assert a['sampler'] and a['sampler'].keys() == b['sampler'].keys()
    for k, v in a['model'].items():
        assert torch.equal(v, b['model'][k]), k
    params = [k for k, v in a['sampler'].items() if v.is_floating_point()
              and 'baseline' not in k]
    assert params
    for k in params:
        assert torch.equal(a['sampler'][k], b['sampler'][k]), k
    # and the policy did learn: different from its initial parameters
    ds = tiny()
    torch.manual_seed(SEED)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    init = _build(kind, ds, model)
    moved = [k for k in params if k in init.state_dict() and not torch.equal(
        init.state_dict()[k], a['sampler'][k])]
    assert moved


@pytest.mark.parametrize('which', ['fixed', 'learnable'])
def test_no_rank_returns_a_training_positive(which, fixed_runs,
                                             learnable_runs):
    runs = fixed_runs[1] if which == 'fixed' else learnable_runs[1]
    mask = dense_train(tiny())
    for r in runs:
        users, neg = r['negs']
        assert neg.numel() > 0
        assert not mask[users, neg].any()


# ---------------------------------------------------------- end to end
def test_torchrun_cli_two_ranks(tmp_path):
    """``torchrun --nproc_per_node 2 -m kgsampler.cli`` on the synthetic
    data: one run folder written by rank 0, ``world_size`` 2."""
    run_dir = tmp_path / 'run'
    env = {**os.environ, 'PYTHONPATH': str(ROOT / 'src'),
           'OMP_NUM_THREADS': '1', 'KGSAMPLER_CACHE': str(tmp_path / 'c')}
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node', '2', '-m', 'kgsampler.cli',
           '--config-path', str(ROOT / 'conf'), 'sampler=rns',
           'dataset.num_users=120', 'dataset.num_items=100',
           'trainer.max_epochs=2', 'trainer.progress=false',
           'trainer.batch_size=64', f'hydra.run.dir={run_dir}']
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((run_dir / 'metrics.json').read_text())
    assert metrics['status'] == 'completed'
    assert metrics['world_size'] == 2 and metrics['epochs_run'] == 2
    names = {p.name for p in run_dir.iterdir()}
    assert {'metrics.json', 'best.pt', 'last.pt', 'history.csv',
            '.hydra'} <= names
    # rank 1 wrote no log file of its own next to rank 0's
    assert len(list(run_dir.glob('*.log'))) == 1
    assert len(list((run_dir / '.hydra').iterdir())) == 3


def test_resume_is_refused_under_distributed(tmp_path):
    dist.init_process_group('gloo', init_method=f'file://{tmp_path}/rdzv',
                            rank=0, world_size=1)
    try:
        ds = tiny()
        model = MF(ds.num_users, ds.num_items, embedding_dim=8)
        with pytest.raises(ValueError, match=r'resume=True is not supported '
                                             r'under torch.distributed'):
            Trainer(model, RNS(ds.train_pos), ds, progress=False,
                    state_path=str(tmp_path / 'last.pt'), resume=True)
    finally:
        dist.destroy_process_group()


# ------------------------------------------------- evaluation of a slice
def test_evaluate_a_slice_of_users_equals_that_slice_of_all():
    from kgsampler.train.evaluate import evaluate
    ds = tiny()
    torch.manual_seed(SEED)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    full = evaluate(model.full_scores, ds.valid_pos, [ds.train_pos],
                    per_user=True)
    users = full['users']
    parts = users.tensor_split(3)
    got = [evaluate(model.full_scores, ds.valid_pos, [ds.train_pos],
                    per_user=True, users=p)['per_user'] for p in parts]
    for k, v in full['per_user'].items():
        assert torch.allclose(torch.cat([g[k] for g in got]), v, atol=1e-6)


@pytest.mark.parametrize('users,error,match', [
    (torch.tensor([0.0]), TypeError, r"'users' must be None or a 1-dim "
                                     r"torch.long tensor \(got torch.float"),
    (torch.tensor([[0]]), TypeError, r"'users' must be None or a 1-dim"),
    (torch.tensor([10**6]), ValueError, r"'users' must hold ids of users "
                                        r"with at least one ground-truth"),
])
def test_evaluate_rejects_bad_users(users, error, match):
    from kgsampler.train.evaluate import evaluate
    ds = tiny()
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    with pytest.raises(error, match=match):
        evaluate(model.full_scores, ds.valid_pos, [ds.train_pos],
                 users=users)


def test_evaluate_rejects_a_user_without_ground_truth():
    from kgsampler.train.evaluate import evaluate
    ds = tiny()
    empty = (ds.valid_pos.degree() == 0).nonzero().view(-1)
    if empty.numel() == 0:
        pytest.skip('every user of the tiny dataset has a validation item')
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    with pytest.raises(ValueError, match=r'with at least one ground-truth'):
        evaluate(model.full_scores, ds.valid_pos, [ds.train_pos],
                 users=empty[:1])
