"""The warm-start cache under concurrent writers: runs that share
``pretrain.cache_dir`` and start at once pretrain a warm start once (one
holds ``pretrain-<key>.pt.lock``, the others wait and load its file), a
reader never sees a half-written file, and a lock holder that is killed
does not block anyone.

The runs are ``python -m kgsampler.cli`` processes on the checkout's
``src/`` and ``conf/`` (the code under test, not an installed copy)."""
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from kgsampler import cli
from kgsampler.cli import _CacheLock, _cache_file, _pretrain_key

fcntl = pytest.importorskip('fcntl', reason='the cache lock needs fcntl '
                            '(POSIX); elsewhere the cache is used unlocked')

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / 'conf'
SRC = ROOT / 'src'
ENV = {**os.environ, 'PYTHONPATH': str(SRC), 'OMP_NUM_THREADS': '1'}
PRETRAINING = 'pretraining the recommender with RNS'
LOADED = 'loaded cached pretrained recommender'
WAITING = 'waiting for the warm start that process'
_STARTED = []


def popen(cmd, **kwargs) -> subprocess.Popen:
    """Starts :obj:`cmd` in a session of its own, killed with its children
    (e.g. torchrun's ranks) when the test ends."""
    proc = subprocess.Popen(cmd, start_new_session=True, **kwargs)
    _STARTED.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _reap():
    """Kills what a test started and left running (a failed test)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()


@pytest.fixture
def warm_start(tmp_path):
    r"""The overrides of a tiny warm-started run and its cache file.

    The built-in synthetic data cut to 100 users x 80 items (about 7
    training positives a user), MF warm-started for 2 epochs with uniform
    negatives into ``tmp_path/cache``, then 1 epoch of RNS::

        users 0..99 --(train / valid / test)--> items 0..79
                     cache/pretrain-<key>.pt (+ .lock)

    Returns the overrides, their cache key and the cache file (computed
    here as the runs compute them)."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from kgsampler.cli import recommender_args
    overrides = ['dataset.num_users=100', 'dataset.num_items=80',
                 'num_threads=1', 'trainer.progress=false', 'sampler=rns',
                 'pretrain=rns', 'pretrain.epochs=2', 'trainer.max_epochs=1',
                 f'pretrain.cache_dir={tmp_path / "cache"}']
    with initialize_config_dir(config_dir=str(CONF), version_base='1.3'):
        cfg = compose(config_name='train', overrides=overrides)
    ds = instantiate(cfg.dataset)
    model = instantiate(cfg.recommender, _partial_=True)(
        **recommender_args(cfg.recommender._target_, ds))
    key = _pretrain_key(cfg, ds, model)
    return overrides, key, _cache_file(cfg, key)


def start_run(overrides, run_dir: Path) -> subprocess.Popen:
    """Starts ``python -m kgsampler.cli`` with its output in
    ``<run_dir>.log``."""
    log = open(f'{run_dir}.log', 'w')
    proc = popen(
        [sys.executable, '-m', 'kgsampler.cli', '--config-path', str(CONF),
         *overrides, f'hydra.run.dir={run_dir}'], stdout=log,
        stderr=subprocess.STDOUT, env=ENV, cwd=run_dir.parent)
    log.close()
    return proc


def wait_for(predicate, what: str, timeout: float = 120.0,
             procs=()) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs:
            assert p.poll() is None, f'a run ended before {what}'
        assert time.monotonic() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


def log_of(run_dir: Path) -> str:
    return Path(f'{run_dir}.log').read_text()


def check_cache_file(cache: Path, key: str) -> dict:
    blob = torch.load(cache, map_location='cpu', weights_only=True)
    assert blob['format'] == cli._CACHE_FORMAT and blob['key'] == key
    assert not list(cache.parent.glob('*.tmp'))  # no temporary file left
    return blob['state_dict']


def holder_process(lock_of: Path) -> subprocess.Popen:
    """A process that takes the warm start's lock as a run does (flock on
    ``<cache>.lock``, its pid written into it) and sleeps: a run killed
    while pretraining, once it is sent SIGKILL."""
    code = ('import fcntl, os, sys, time\n'
            'fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)\n'
            'fcntl.flock(fd, fcntl.LOCK_EX)\n'
            'os.write(fd, f"{os.getpid()}\\n".encode())\n'
            'print("held", flush=True)\ntime.sleep(600)\n')
    os.makedirs(lock_of.parent, exist_ok=True)
    proc = popen([sys.executable, '-c', code, f'{lock_of}.lock'],
                            stdout=subprocess.PIPE, text=True, env=ENV)
    assert proc.stdout.readline().strip() == 'held'
    return proc


# -------------------------------------------- two runs started together
def test_runs_started_together_pretrain_once(tmp_path, warm_start):
    """Two runs with the same warm start start while the lock is held
    (both wait); once it is free, one pretrains and writes, the other waits
    for it and loads the file: both end with the same weights."""
    overrides, key, cache = warm_start
    a, b = tmp_path / 'a', tmp_path / 'b'
    with _CacheLock(cache):  # both runs reach the lock while it is held
        procs = [start_run(overrides, a), start_run(overrides, b)]
        wait_for(lambda: WAITING in log_of(a) and WAITING in log_of(b),
                 'both runs to wait for the lock', procs=procs)
    for p in procs:
        assert p.wait(timeout=300) == 0, log_of(a) + log_of(b)
    logs = log_of(a) + log_of(b)
    assert logs.count(PRETRAINING) == 1, logs
    assert logs.count(LOADED) == 1, logs
    ma, mb = (json.loads((d / 'metrics.json').read_text()) for d in (a, b))
    assert ma['status'] == mb['status'] == 'completed'
    assert ma['test'] == mb['test'] and ma['valid'] == mb['valid']
    assert [{k: v for k, v in h.items() if k != 'seconds'}
            for h in ma['history']] == \
        [{k: v for k, v in h.items() if k != 'seconds'} for h in mb['history']]
    check_cache_file(cache, key)
    assert [f.name for f in sorted(cache.parent.iterdir())] == \
        [cache.name, cache.name + '.lock']


def test_killed_lock_holder_does_not_block_a_run(tmp_path, warm_start):
    """A process holding the lock is killed (SIGKILL): the kernel releases
    its lock, and the run waiting on it goes on, pretrains and writes a
    valid cache file; the lock file left behind blocks nobody."""
    overrides, key, cache = warm_start
    holder = holder_process(cache)
    try:
        run = start_run(overrides, tmp_path / 'a')
        wait_for(lambda: f'{WAITING} {holder.pid}' in log_of(tmp_path / 'a'),
                 'the run to wait for the holder', procs=[run])
        assert run.poll() is None
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run.wait(timeout=300) == 0, log_of(tmp_path / 'a')
    text = log_of(tmp_path / 'a')
    assert 'took the warm-start lock after' in text and PRETRAINING in text
    check_cache_file(cache, key)
    assert Path(f'{cache}.lock').is_file()  # left in place, unlocked
    with _CacheLock(cache) as lock:  # free at once
        assert lock.fd is not None


# ------------------------------------------------------------ the lock
def is_locked(lock_file: Path) -> bool:
    fd = os.open(lock_file, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@pytest.mark.parametrize('fail', [False, True])
def test_lock_is_held_inside_and_released_after(tmp_path, fail):
    cache = tmp_path / 'cache' / 'pretrain-k.pt'
    lock_file = tmp_path / 'cache' / 'pretrain-k.pt.lock'
    with pytest.raises(RuntimeError, match='boom') if fail else \
            contextlib.nullcontext():
        with _CacheLock(cache) as lock:
            assert lock.fd is not None and is_locked(lock_file)
            assert lock_file.read_text() == f'{os.getpid()}\n'
            if fail:
                raise RuntimeError('boom')
    assert lock.fd is None and not is_locked(lock_file)
    assert lock_file.read_text() == ''


def test_waiter_reports_and_takes_the_lock_when_the_holder_dies(
        tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(cli, '_LOCK_REPORT_S', 0.3)
    cache = tmp_path / 'pretrain-k.pt'
    holder = holder_process(cache)
    got = []

    def waiter():
        with _CacheLock(cache) as lock:
            got.append(lock.fd is not None)
    try:
        with caplog.at_level('INFO', logger='kgsampler.cli'):
            t = threading.Thread(target=waiter, daemon=True)
            t.start()
            time.sleep(1.0)
            assert t.is_alive() and not got  # blocked by the holder
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            t.join(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert not t.is_alive() and got == [True]
    assert f"{WAITING} {holder.pid} is pretraining (lock '{cache}.lock')" in \
        caplog.text
    assert 'still waiting for the warm-start lock' in caplog.text
    assert 'took the warm-start lock after' in caplog.text


def _no_fcntl(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'fcntl', None)  # import fails
    return tmp_path / 'pretrain-k.pt'


def _no_locks(monkeypatch, tmp_path):
    import errno

    def refuse(fd, op):
        raise OSError(errno.ENOLCK, 'No locks available')
    monkeypatch.setattr(fcntl, 'flock', refuse)
    return tmp_path / 'pretrain-k.pt'


def _no_folder(monkeypatch, tmp_path):
    (tmp_path / 'file').write_text('not a folder')
    return tmp_path / 'file' / 'cache' / 'pretrain-k.pt'


@pytest.mark.parametrize('setup,match', [
    (_no_fcntl, 'no fcntl here: the warm-start cache is used unlocked'),
    (_no_locks, r"could not lock '.*pretrain-k.pt.lock' \(No locks "
                r"available\); going on unlocked"),
    (_no_folder, r"could not open the warm-start lock '.*file/cache/"
                 r"pretrain-k.pt.lock' \(.*\); going on unlocked"),
])
def test_lock_falls_back_to_unlocked(tmp_path, monkeypatch, caplog, setup,
                                     match):
    cache = setup(monkeypatch, tmp_path)
    with caplog.at_level('INFO', logger='kgsampler.cli'):
        with _CacheLock(cache) as lock:
            assert lock.fd is None
    assert re.search(match, caplog.text), caplog.text


def test_unlocked_runs_still_cache_the_warm_start(tmp_path, monkeypatch,
                                                  caplog, warm_start):
    """Without fcntl the warm start is written, then reused."""
    from hydra import compose, initialize_config_dir
    overrides, key, cache = warm_start
    monkeypatch.setitem(sys.modules, 'fcntl', None)
    with initialize_config_dir(config_dir=str(CONF), version_base='1.3'):
        cfg = compose(config_name='train', overrides=overrides)
    metrics = []
    with caplog.at_level('INFO', logger='kgsampler.cli'):
        for run_dir in (tmp_path / 'a', tmp_path / 'b'):
            run_dir.mkdir()
            metrics.append(cli.run(cfg, str(run_dir)))
    assert caplog.text.count(PRETRAINING) == 1
    assert caplog.text.count(LOADED) == 1
    assert metrics[0]['test'] == metrics[1]['test']
    check_cache_file(cache, key)
    assert not Path(f'{cache}.lock').exists()


# ------------------------------------------------ no half-written file
def test_reader_never_sees_a_half_written_cache_file(tmp_path):
    """A writer process rewrites the cache file over and over (two
    different valid states, 2 MB each) through the atomic write; every load
    in this process meanwhile is one of the two complete states."""
    from kgsampler.recommender.mf import MF
    cache = tmp_path / 'pretrain-k.pt'
    code = (
        'import sys, torch\n'
        'from kgsampler.cli import _save_cache\n'
        'from kgsampler.recommender.mf import MF\n'
        'models = []\n'
        'for s in (0, 1):\n'
        '    torch.manual_seed(s)\n'
        '    models.append(MF(4000, 4000, embedding_dim=64))\n'
        '_save_cache(__import__("pathlib").Path(sys.argv[1]), "k", '
        'models[0])\n'
        'print("first", flush=True)\n'
        'i = 0\n'
        'while True:\n'
        '    i += 1\n'
        '    _save_cache(__import__("pathlib").Path(sys.argv[1]), "k", '
        'models[i % 2])\n')
    writer = popen([sys.executable, '-c', code, str(cache)],
                              stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert writer.stdout.readline().strip() == 'first'
        states = []
        for s in (0, 1):
            torch.manual_seed(s)
            states.append(MF(4000, 4000, embedding_dim=64).state_dict())
        model = MF(4000, 4000, embedding_dim=64)
        seen = set()
        deadline = time.monotonic() + 3.0
        loads = 0
        while time.monotonic() < deadline:
            assert cli._load_cache(cache, 'k', model)  # never partial
            loads += 1
            got = model.state_dict()
            match = [i for i, st in enumerate(states)
                     if all(torch.equal(got[k], st[k]) for k in st)]
            assert len(match) == 1
            seen.add(match[0])
        assert writer.poll() is None  # it was writing all along
    finally:
        writer.kill()
        writer.wait()
    assert loads >= 5 and seen == {0, 1}


# ------------------------------------------------------------- torchrun
def test_torchrun_ranks_pretrain_together_and_reuse_the_cache(tmp_path,
                                                              warm_start):
    """Under ``torchrun`` the ranks pretrain together: rank 0 alone takes
    the lock (a lock on every rank would keep the ranks' collectives
    apart), writes the file, and a second run loads it on rank 0 and ends
    with the first run's numbers."""
    overrides, key, cache = warm_start
    runs = []
    for name in ('a', 'b'):
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
               '--nproc_per_node', '2', '-m', 'kgsampler.cli',
               '--config-path', str(CONF), *overrides,
               'trainer.batch_size=64', f'hydra.run.dir={tmp_path / name}']
        proc = popen(cmd, cwd=tmp_path, env=ENV, text=True,
                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        out, _ = proc.communicate(timeout=240)  # a deadlock: killed
        assert proc.returncode == 0, out[-3000:]
        runs.append((out,
                     json.loads((tmp_path / name / 'metrics.json')
                                .read_text())))
    (log_a, ma), (log_b, mb) = runs
    assert PRETRAINING in log_a and LOADED not in log_a
    assert LOADED in log_b and PRETRAINING not in log_b
    assert ma['world_size'] == mb['world_size'] == 2
    assert ma['test'] == mb['test'] and ma['valid'] == mb['valid']
    # the key of a 2-rank warm start is not the one-process key
    (written, ) = cache.parent.glob('pretrain-*.pt')
    assert written != cache
    check_cache_file(written, written.stem[len('pretrain-'):])
