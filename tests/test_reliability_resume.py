"""Resume: a run stopped at any point and continued with ``resume=True``
ends with exactly the metrics of an uninterrupted run (CPU, same seed)."""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender.mf import MF
from kgsampler.sampler import DNS, PNS, RNS, Adversarial
from kgsampler.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
CONF, SRC = ROOT / 'conf', ROOT / 'src'


@pytest.fixture
def blocks():
    r"""Two communities of 10 users x 10 items each::

        users 0-9   --- items 0-9      (5 train, 1 valid, 2 test each)
        users 10-19 --- items 10-19
    """
    g = torch.Generator().manual_seed(0)
    rows, cols = [], []
    for u in range(20):
        rows.append(torch.full((8, ), u))
        cols.append(torch.randperm(10, generator=g)[:8] + 10 * (u // 10))
    rows, cols = torch.stack(rows), torch.stack(cols)

    def split(a, b):
        return UserItemCSR.from_pairs(rows[:, a:b].reshape(-1),
                                      cols[:, a:b].reshape(-1), 20, 20)
    return SimpleNamespace(num_users=20, num_items=20, train_pos=split(0, 5),
                           valid_pos=split(5, 6), test_pos=split(6, 8))


SAMPLERS = {
    'rns': lambda ds, m: RNS(ds.train_pos, monitor_pos=ds.valid_pos),
    'dns': lambda ds, m: DNS(ds.train_pos, scorer=m, num_candidates=4),
    'pns': lambda ds, m: PNS(ds.train_pos),
    'adversarial': lambda ds, m: Adversarial(ds.train_pos, scorer=m,
                                             embedding_dim=4),
}


def build(ds, name, state_path, resume=False, **kw):
    torch.manual_seed(0)
    model = MF(20, 20, embedding_dim=4)
    sampler = SAMPLERS[name](ds, model)
    return Trainer(model, sampler, ds, lr=0.05, batch_size=16, max_epochs=6,
                   patience=10, progress=False, state_path=state_path,
                   resume=resume, **kw)


def comparable(res):
    """A TrainResult without wall times."""
    hist = [{k: v for k, v in h.items() if k != 'seconds'}
            for h in res.history]
    return (res.best_epoch, res.epochs_run, res.valid, res.test, hist,
            res.sampler_stats, res.test_by_sparsity, res.stopped_by)


@pytest.mark.parametrize('stop_at', [(1, 1), (3, 2), (5, 4)])
@pytest.mark.parametrize('name', list(SAMPLERS))
def test_resume_equals_an_uninterrupted_run(blocks, tmp_path, name, stop_at):
    ref = comparable(build(blocks, name, None).fit())
    state = tmp_path / 'last.pt'
    trainer = build(blocks, name, str(state))
    real = trainer._train_batch

    def stop(users, pos, out, sums, batch=0):  # killed at (epoch, batch)
        if (trainer._epoch_now, batch) == stop_at:
            raise KeyboardInterrupt('SIGKILL')
        return real(users, pos, out, sums, batch)
    real_epoch = trainer.train_epoch

    def epoch(e):
        trainer._epoch_now = e
        return real_epoch(e)
    trainer._train_batch, trainer.train_epoch = stop, epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert state.is_file() == (stop_at[0] > 1)
    # the RNG streams are restored too, whatever happened in between
    random.seed(123)
    np.random.seed(123)
    torch.manual_seed(123)
    resumed = build(blocks, name, str(state), resume=True).fit()
    assert comparable(resumed) == ref


def test_checkpoint_every_and_a_finished_run(blocks, tmp_path):
    state = tmp_path / 'last.pt'
    ref = comparable(build(blocks, 'dns', str(state),
                           checkpoint_every=4).fit())
    blob = torch.load(state, weights_only=True)  # the last epoch (6)
    assert blob['loop']['epoch'] == 6
    # resuming a finished run only re-evaluates the best state
    assert comparable(build(blocks, 'dns', str(state), resume=True).fit()) \
        == ref


def test_bad_resume_files(blocks, tmp_path):
    state = tmp_path / 'last.pt'
    state.write_bytes(b'PK\x03\x04 truncated')
    with pytest.raises(ValueError, match=rf"cannot resume from '{state}': "
                                         r"the file is not a readable "
                                         r"training state"):
        build(blocks, 'rns', str(state), resume=True).fit()
    torch.save({'format': 'something else'}, state)
    with pytest.raises(ValueError, match=r"not a training state written by "
                                         r"this version"):
        build(blocks, 'rns', str(state), resume=True).fit()
    build(blocks, 'rns', str(state)).fit()  # a good file, then another model
    torch.manual_seed(0)
    other = Trainer(MF(20, 20, embedding_dim=8), RNS(blocks.train_pos),
                    blocks, progress=False, state_path=str(state),
                    resume=True)
    with pytest.raises(ValueError, match=r"saved by a different model"):
        other.fit()


@pytest.fixture(scope='module')
def synthetic():
    """A small synthetic dataset with a KG (100 users, 80 items)."""
    from kgsampler.data import make_synthetic
    return make_synthetic(num_users=100, num_items=80, seed=0)


def build_kgpolicy(ds, state_path, resume=False, **kw):
    from kgsampler.sampler import KGPolicy
    torch.manual_seed(0)
    model = MF(ds.num_users, ds.num_items, embedding_dim=4)
    sampler = KGPolicy.from_dataset(ds, scorer=model, embedding_dim=4,
                                    hidden_dims=[4], **kw)
    return Trainer(model, sampler, ds, lr=0.01, batch_size=64, max_epochs=4,
                   patience=10, progress=False, state_path=state_path,
                   resume=resume, sampler_warmup=3)


@pytest.mark.parametrize('kw,stop_at', [
    # closed-form gradients deferred over walk_ahead batches
    ({}, (2, 1)), ({}, (3, 4)),
    # gradients of the cached representations pending across epoch ends
    ({'walk_ahead': 1, 'refresh_interval': 5}, (2, 1)),
    ({'walk_ahead': 1, 'refresh_interval': 5}, (3, 4)),
    ({'selection': 'recommender_max', 'pool_size': 4}, (3, 2)),
    # tables redrawn at the start of epoch 3, kept through epoch 4
    ({'table_refresh_epochs': 2, 'n1': 2, 'n2': 2, 'refresh_interval': 2},
     (4, 2)),
])
def test_kgpolicy_resume_equals_an_uninterrupted_run(synthetic, tmp_path,
                                                     kw, stop_at):
    """KGPolicy's pending policy gradient (an update every refresh_interval
    batches, across epoch ends), its tables, baseline, optimiser and
    counters are all restored."""
    ref = comparable(build_kgpolicy(synthetic, None, **kw).fit())
    state = tmp_path / 'last.pt'
    trainer = build_kgpolicy(synthetic, str(state), **kw)
    real_epoch = trainer.train_epoch

    def epoch(e):
        if e == stop_at[0]:
            real = trainer._train_batch

            def stop(users, pos, out, sums, batch=0):
                if batch == stop_at[1]:
                    raise KeyboardInterrupt('SIGKILL')
                return real(users, pos, out, sums, batch)
            trainer._train_batch = stop
        return real_epoch(e)
    trainer.train_epoch = epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    torch.manual_seed(123)
    resumed = build_kgpolicy(synthetic, str(state), resume=True, **kw).fit()
    assert comparable(resumed) == ref


def test_every_registered_sampler_resumes_exactly(synthetic, tmp_path,
                                                  sampler_name,
                                                  make_sampler):
    """Each sampler of the registry (tests/conftest.py), stopped in epoch 3:
    a sampler whose state the Trainer does not save completely fails
    here."""
    def build_any(state_path, resume=False):
        torch.manual_seed(0)
        model = MF(synthetic.num_users, synthetic.num_items, embedding_dim=4)
        sampler = make_sampler(synthetic, scorer=model)
        return Trainer(model, sampler, synthetic, lr=0.01, batch_size=64,
                       max_epochs=4, patience=10, progress=False,
                       state_path=state_path, resume=resume)
    ref = comparable(build_any(None).fit())
    state = tmp_path / 'last.pt'
    trainer = build_any(str(state))
    real_epoch = trainer.train_epoch

    def epoch(e):
        if e == 3:
            def stop(*args, **kwargs):
                raise KeyboardInterrupt('SIGKILL')
            trainer._train_batch = stop
        return real_epoch(e)
    trainer.train_epoch = epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    torch.manual_seed(123)
    assert comparable(build_any(str(state), resume=True).fit()) == ref


# ------------------------------------------- a real process, killed for real
SLOW_CLI = textwrap.dedent('''
    import sys, time
    from kgsampler.train import trainer as t
    real = t.Trainer._train_batch
    def slow(self, *args):
        time.sleep(0.01)  # so that a kill lands mid-epoch
        return real(self, *args)
    t.Trainer._train_batch = slow
    from kgsampler.cli import main
    sys.argv = ['kgsampler-train'] + sys.argv[1:]
    main()
''')
ARGS = ['dataset.num_users=100', 'dataset.num_items=80', 'num_threads=1',
        'trainer.max_epochs=5', 'trainer.progress=false', 'trainer.patience=9',
        'trainer.batch_size=64']


def cli(tmp_path, run_dir, *extra, wait=True, sampler='dns'):
    script = tmp_path / 'slow_cli.py'
    script.write_text(SLOW_CLI)
    env = {**os.environ, 'PYTHONPATH': str(SRC), 'OMP_NUM_THREADS': '1',
           'KGSAMPLER_CACHE': str(tmp_path / 'cache')}
    cmd = [sys.executable, str(script), '--config-path', str(CONF), *ARGS,
           f'sampler={sampler}', f'hydra.run.dir={run_dir}', *extra]
    if sampler == 'kgpolicy':  # a short warm start, then the policy
        cmd += ['pretrain.epochs=2', 'sampler.embedding_dim=8',
                'sampler.hidden_dims=[8]']
    if wait:
        return subprocess.run(cmd, capture_output=True, text=True,
                              timeout=300, env=env, cwd=tmp_path)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env,
                            cwd=tmp_path)


def metrics(run_dir):
    return json.loads((Path(run_dir) / 'metrics.json').read_text())


def wait_for_epoch(run_dir, epoch, proc, timeout=120):
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        try:
            if metrics(run_dir).get('epochs_run', 0) >= epoch:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass  # not written yet (never half-written: atomic)
        time.sleep(0.005)
    pytest.fail(f'epoch {epoch} not reached in {timeout} s')


def strip(m):
    m = dict(m)
    m.pop('epoch_seconds')
    m['history'] = [{k: v for k, v in h.items() if k != 'seconds'}
                    for h in m['history']]
    return m


@pytest.mark.parametrize('sig,sampler', [(signal.SIGKILL, 'dns'),
                                         (signal.SIGTERM, 'dns'),
                                         (signal.SIGKILL, 'kgpolicy')])
def test_killed_process_resumes_to_the_uninterrupted_metrics(tmp_path, sig,
                                                             sampler):
    done = cli(tmp_path, tmp_path / 'ref', sampler=sampler)
    assert done.returncode == 0, done.stderr[-3000:]
    ref = metrics(tmp_path / 'ref')
    assert ref['status'] == 'completed'

    proc = cli(tmp_path, tmp_path / 'run', wait=False, sampler=sampler)
    wait_for_epoch(tmp_path / 'run', 2, proc)
    time.sleep(0.03)  # into epoch 3
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    left = metrics(tmp_path / 'run')
    if sig == signal.SIGTERM:
        assert proc.returncode == 128 + signal.SIGTERM
        assert left['status'] == 'interrupted'
        assert 'continue with trainer.resume=true' in left['error']
    else:
        assert left['status'] == 'running'
    assert 2 <= left['epochs_run'] < 5
    done = cli(tmp_path, tmp_path / 'run', 'trainer.resume=true',
               sampler=sampler)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'resuming from' in done.stdout + done.stderr
    assert strip(metrics(tmp_path / 'run')) == strip(ref)
