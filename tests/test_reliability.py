"""Nothing lost: atomic outputs, non-finite training stopped, a warm-start
cache that heals, safe loading.

The CLI is run in-process (:func:`kgsampler.cli.run` on a config composed
from the checkout's ``conf/``) or as ``python -m kgsampler.cli`` from the
checkout's ``src/``, so these tests check the code under test, not an
installed copy."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from kgsampler.recommender.mf import MF
from kgsampler.sampler import DNS, RNS
from kgsampler.train.trainer import Trainer, TrainingDiverged
from kgsampler.utils import _io
from kgsampler.utils._io import (AtomicWriteError, atomic_json_dump,
                                 atomic_torch_save, atomic_write_text,
                                 json_safe)
from test_cli import compose

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / 'conf'
SRC = ROOT / 'src'
TINY = ['dataset.num_users=100', 'dataset.num_items=80', 'num_threads=1',
        'trainer.max_epochs=2', 'trainer.progress=false', 'sampler=rns']


# ----------------------------------------------------------------- fixtures
@pytest.fixture
def blocks():
    r"""Two communities of 10 users x 10 items each::

        users 0-9   --- items 0-9      (5 train, 1 valid, 2 test each)
        users 10-19 --- items 10-19

    Positives drawn once from a fixed generator."""
    from types import SimpleNamespace

    from kgsampler.data.csr import UserItemCSR
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


def run_cli(overrides, out_dir):
    from kgsampler.cli import run
    os.makedirs(out_dir, exist_ok=True)
    return run(compose(overrides), str(out_dir))


# ------------------------------------------------------------ atomic writes
def fail_on(monkeypatch, call='fsync'):
    """Makes the named step of every atomic write fail like a full disk."""
    def boom(*args, **kwargs):
        raise OSError(errno.ENOSPC, 'No space left on device')
    if call == 'fsync':
        monkeypatch.setattr(_io.os, 'fsync', boom)
    elif call == 'replace':
        monkeypatch.setattr(_io.os, 'replace', boom)
    else:  # the write itself
        real = _io.os.fdopen

        class Full:
            def __init__(self, f):
                self.f = f

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.f.close()

            def write(self, data):
                self.f.write(data[:len(data) // 2])
                boom()

            def __getattr__(self, name):
                return getattr(self.f, name)
        monkeypatch.setattr(_io.os, 'fdopen',
                            lambda fd, mode: Full(real(fd, mode)))


@pytest.mark.parametrize('call', ['write', 'fsync', 'replace'])
@pytest.mark.parametrize('kind', ['text', 'json', 'torch'])
def test_failed_write_keeps_the_previous_file(tmp_path, monkeypatch, call,
                                              kind):
    path = tmp_path / f'out.{kind}'
    writers = {'text': lambda v: atomic_write_text(path, v),
               'json': lambda v: atomic_json_dump({'v': v}, path),
               'torch': lambda v: atomic_torch_save({'v': v}, path)}
    writers[kind]('old')
    before = path.read_bytes()
    fail_on(monkeypatch, call)
    with pytest.raises(AtomicWriteError,
                       match=rf"could not write '{path}': No space left on "
                             rf"device \(the previous file"):
        writers[kind]('new' * 1000)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temp
    assert isinstance(AtomicWriteError(1, 'x'), OSError)


def test_atomic_write_missing_folder_and_mode(tmp_path):
    with pytest.raises(AtomicWriteError, match=r"could not write .*no/x"):
        atomic_write_text(tmp_path / 'no' / 'x', 'a')
    path = tmp_path / 'x.txt'
    atomic_write_text(path, 'a')
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # as open() makes
    path.chmod(0o640)
    atomic_write_text(path, 'b')  # keeps the existing file's mode
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == 'b'


def test_json_never_holds_nan(tmp_path):
    obj = {'a': float('nan'), 'b': [1.0, float('inf')], 'c': {'d': -1e999},
           'e': np.float64('nan'), 'ok': 0.5, 's': 'NaN'}
    clean, bad = json_safe(obj)
    assert bad == ['a', 'b[1]', 'c.d', 'e']
    assert clean == {'a': None, 'b': [1.0, None], 'c': {'d': None},
                     'e': None, 'ok': 0.5, 's': 'NaN'}
    assert atomic_json_dump(obj, tmp_path / 'm.json') == bad
    text = (tmp_path / 'm.json').read_text()
    assert 'NaN' not in text.replace('"NaN"', '') and 'Infinity' not in text
    json.loads(text, parse_constant=lambda c: pytest.fail(c))  # strict


def test_best_checkpoint_write_failure_names_the_path(blocks, tmp_path,
                                                      monkeypatch):
    torch.manual_seed(0)
    best = tmp_path / 'best.pt'
    model = MF(20, 20, embedding_dim=4)
    trainer = Trainer(model, RNS(blocks.train_pos), blocks, lr=0.05,
                      batch_size=32, max_epochs=1, progress=False,
                      checkpoint_path=str(best))
    trainer.fit()
    good = best.read_bytes()
    fail_on(monkeypatch, 'write')
    trainer = Trainer(model, RNS(blocks.train_pos), blocks, lr=0.05,
                      batch_size=32, max_epochs=1, progress=False,
                      checkpoint_path=str(best))
    with pytest.raises(AtomicWriteError, match=rf"'{best}': No space left"):
        trainer.fit()
    monkeypatch.undo()
    assert best.read_bytes() == good
    torch.load(best, weights_only=True)  # still a complete checkpoint


# ------------------------------------------------------- non-finite training
@pytest.mark.parametrize('sampler_cls', [RNS, DNS])
def test_non_finite_loss_stops_with_epoch_batch_component(blocks, tmp_path,
                                                          sampler_cls):
    torch.manual_seed(0)
    model = MF(20, 20, embedding_dim=4)
    best = tmp_path / 'best.pt'
    trainer = Trainer(model, sampler_cls(blocks.train_pos), blocks, lr=0.05,
                      batch_size=32, max_epochs=5, progress=False,
                      checkpoint_path=str(best))
    real = model.loss
    calls = []

    def loss(*args):  # batch 2 of epoch 3 (4 batches of 32 per epoch)
        calls.append(1)
        out = real(*args)
        return out * float('nan') if len(calls) == 10 else out
    model.loss = loss
    with pytest.raises(TrainingDiverged,
                       match=r"the recommender loss is not finite \(NaN or "
                             r"infinite\) at epoch 3, batch 2 of 4") as e:
        trainer.fit()
    assert (e.value.epoch, e.value.batch, e.value.component) == (
        3, 2, 'recommender loss')
    assert [h['epoch'] for h in e.value.history] == [1, 2]
    state = torch.load(best, weights_only=True)  # the last good state
    assert all(torch.isfinite(v).all() for v in state.values())


def test_huge_lr_diverges_in_the_first_epoch(blocks):
    torch.manual_seed(0)
    model = MF(20, 20, embedding_dim=4)
    trainer = Trainer(model, DNS(blocks.train_pos), blocks, lr=1e30,
                      batch_size=32, max_epochs=3, progress=False)
    with pytest.raises(TrainingDiverged, match=r"at epoch 1, batch \d of 4"):
        trainer.fit()


def test_non_finite_sampler_values_are_named(blocks):
    from kgsampler.sampler.base import Sampler, SamplerOutput

    class Learnable(RNS):
        learnable = True

        def update(self, users, pos_items, output):
            self.n = getattr(self, 'n', 0) + 1
            return {'sampler_reward': torch.tensor(
                float('inf') if self.n == 3 else 1.0),
                'sampler_loss': torch.tensor(0.0)}
    assert issubclass(Learnable, Sampler) and SamplerOutput
    trainer = Trainer(MF(20, 20, embedding_dim=4), Learnable(blocks.train_pos),
                      blocks, batch_size=32, max_epochs=2, progress=False)
    with pytest.raises(TrainingDiverged,
                       match=r"the reward is not finite .* at epoch 1, "
                             r"batch 3 of 4"):
        trainer.fit()


def test_non_finite_parameters_after_the_auxiliary_phase(blocks):
    model = MF(20, 20, embedding_dim=4)

    def aux(batch_size):
        with torch.no_grad():
            model.item_emb.weight[3, 0] = float('inf')
        yield model.item_emb.weight[:2].sum() * 0
    model.auxiliary_losses = aux
    trainer = Trainer(model, RNS(blocks.train_pos), blocks, batch_size=32,
                      max_epochs=2, progress=False)
    with pytest.raises(TrainingDiverged,
                       match=r"recommender parameters is not finite .* at "
                             r"epoch 1, the end of the epoch"):
        trainer.fit()


def test_a_crash_caused_by_nan_reports_the_nan(blocks):
    """A NaN that later breaks sampling (multinomial of NaN weights) is
    reported as the divergence, with the crash attached."""
    class Fragile(RNS):
        def _sample(self, users, pos_items, num_neg):
            self.calls = getattr(self, 'calls', 0) + 1
            if self.calls > 2:
                raise RuntimeError('probability tensor contains nan')
            return super()._sample(users, pos_items, num_neg)
    model = MF(20, 20, embedding_dim=4)
    real = model.loss
    model.loss = lambda *a: real(*a) * float('nan')
    trainer = Trainer(model, Fragile(blocks.train_pos), blocks,
                      batch_size=32, max_epochs=2, progress=False)
    with pytest.raises(TrainingDiverged,
                       match=r"recommender loss is not finite .* epoch 1, "
                             r"batch 1 of 4.*RuntimeError: probability"):
        trainer.fit()


def test_numpy_integers_are_accepted(blocks):
    t = Trainer(MF(20, 20, embedding_dim=4), RNS(blocks.train_pos), blocks,
                batch_size=np.int64(32), max_epochs=np.int32(1),
                ks=[np.int64(20)], lr=np.float32(0.01), progress=False)
    assert t.batch_size == 32 and type(t.batch_size) is int
    assert t.ks == (20, )
    assert t.fit().epochs_run == 1


@pytest.mark.parametrize('kwargs,match', [
    (dict(num_neg=2**22, batch_size=1024), r"'batch_size' x 'num_neg' = "
     r"1024 x 4194304 .* \(got num_neg=4194304\)"),
    (dict(checkpoint_every=0), r"'checkpoint_every' must be a positive int"),
    (dict(resume=True), r"'resume' needs a 'state_path'"),
    (dict(batch_size=np.float64(3.0)), r"'batch_size' must be a positive "
     r"int"),
])
def test_trainer_argument_errors(blocks, kwargs, match):
    with pytest.raises(ValueError, match=match):
        Trainer(MF(20, 20), RNS(blocks.train_pos), blocks, progress=False,
                **kwargs)


# --------------------------------------------------------------- the CLI
def test_cli_metrics_status_completed_and_running(tmp_path, monkeypatch):
    seen = []
    real = _io.atomic_json_dump

    def spy(obj, path, indent=2):
        if str(path).endswith('metrics.json'):
            seen.append((obj['status'], obj.get('epochs_run')))
        return real(obj, path, indent)
    monkeypatch.setattr('kgsampler.cli.atomic_json_dump', spy)
    monkeypatch.setenv('KGSAMPLER_CACHE', str(tmp_path / 'cache'))
    run_cli(TINY, tmp_path / 'run')
    assert seen == [('running', 0), ('running', 1), ('running', 2),
                    ('completed', 2)]
    m = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert m['status'] == 'completed' and m['stopped_by'] == 'max_epochs'
    assert (tmp_path / 'run' / 'last.pt').is_file()
    assert 'non_finite' not in m


def test_cli_divergence_exits_non_zero_and_marks_the_run(tmp_path):
    env = {**os.environ, 'PYTHONPATH': str(SRC), 'OMP_NUM_THREADS': '1',
           'KGSAMPLER_CACHE': str(tmp_path / 'cache')}
    proc = subprocess.run(
        [sys.executable, '-m', 'kgsampler.cli', '--config-path', str(CONF),
         *TINY, 'sampler=dns', 'trainer.lr=1e30',
         f'hydra.run.dir={tmp_path}/run'], capture_output=True, text=True,
        timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode != 0
    assert 'training diverged: the recommender loss is not finite' in \
        proc.stderr
    text = (tmp_path / 'run' / 'metrics.json').read_text()
    m = json.loads(text, parse_constant=lambda c: pytest.fail(c))
    assert m['status'] == 'diverged'
    # one batch an epoch: the first step is finite, the next loss is not
    assert m['diverged'] == {'epoch': 2, 'batch': 1,
                             'component': 'recommender loss'}
    assert 'test' not in m and [h['epoch'] for h in m['history']] == [1]
    assert m['epochs_run'] == 1


def test_report_leaves_out_runs_that_did_not_complete(tmp_path, capsys):
    from kgsampler.report import load_runs, report
    base = {'dataset': 'toy', 'sampler': 'rns', 'recommender': 'mf',
            'seed': 1, 'valid': {'ndcg@20': 0.1},
            'test': {'ndcg@20': 0.2}}
    for name, extra in (('ok', {'status': 'completed'}), ('old', {}),
                        ('nan', {'status': 'diverged',
                                 'error': 'the loss is not finite'}),
                        ('live', {'status': 'running'}),
                        ('flag', {'status': 'completed',
                                  'non_finite': ['test.recall@20'],
                                  'seed': 2})):
        (tmp_path / name).mkdir()
        atomic_json_dump({**base, **extra}, tmp_path / name / 'metrics.json')
    (tmp_path / 'empty').mkdir()
    (tmp_path / 'empty' / 'metrics.json').write_text('')  # a 0-byte file
    skipped = []
    runs = load_runs([tmp_path], skipped)
    assert sorted(r.path.parent.name for r in runs) == ['flag', 'ok', 'old']
    assert sorted(p.parent.name for p, _ in skipped) == ['empty', 'live',
                                                         'nan']
    with pytest.raises(ValueError, match='empty/metrics.json is not valid '
                                         'JSON'):
        load_runs([tmp_path])  # without a list to collect them in
    with pytest.warns(UserWarning, match=r"not a completed run \(status "
                                         r"'diverged': the loss is not "
                                         r"finite\); left out"):
        assert len(load_runs([tmp_path / 'nan', tmp_path / 'ok'])) == 1
    report([str(tmp_path), '--out', str(tmp_path / 'rep')])
    md = (tmp_path / 'rep.md').read_text()
    assert 'Left out: 3 metrics.json files' in md
    assert "status 'running'" in md and 'is not valid JSON' in md
    assert f"Flagged: 1 runs hold non-finite values (written as null):\n- " \
        f"{tmp_path / 'flag' / 'metrics.json'}: test.recall@20" in md
    assert '| toy | rns | mf | - | - | 3 |' in md


# ------------------------------------------------------- the warm-start cache
def test_cache_key_ignores_cosmetic_keys(tmp_path):
    from kgsampler.cli import _pretrain_key
    from hydra.utils import instantiate
    base = ['dataset.num_users=100', 'dataset.num_items=80', 'pretrain=rns']
    cfg = compose(base)
    ds = instantiate(cfg.dataset)
    model = MF(ds.num_users, ds.num_items)
    key = _pretrain_key(cfg, ds, model)
    for cosmetic in ('trainer.progress=false', 'trainer.eval_batch_size=7',
                     'trainer.track_dynamics=false', 'trainer.track_test=true',
                     'trainer.sparsity_groups=2', 'trainer.time_budget=5',
                     'trainer.checkpoint_every=3', 'trainer.resume=true',
                     'trainer.sampler_warmup=4', 'show_paths=2',
                     'sampler=dns', f'pretrain.cache_dir={tmp_path}'):
        assert _pretrain_key(compose([*base, cosmetic]), ds, model) == key, \
            cosmetic
    for real in ('trainer.lr=0.01', 'trainer.weight_decay=0.1',
                 'trainer.batch_size=512', 'trainer.patience=3',
                 'pretrain.epochs=3', 'seed=3', 'recommender.embedding_dim=8',
                 'pretrain.lr=0.05', 'trainer.num_neg=2'):
        assert _pretrain_key(compose([*base, real]), ds, model) != key, real
    # the dataset's content, not its config, counts
    ds2 = instantiate(compose([*base, 'dataset.seed=5']).dataset)
    assert _pretrain_key(cfg, ds2, model) != key
    import kgsampler
    real_version = kgsampler.__version__
    try:
        kgsampler.__version__ = '0.0.0-other'
        assert _pretrain_key(cfg, ds, model) != key
    finally:
        kgsampler.__version__ = real_version


def test_corrupt_cache_is_reported_deleted_and_recomputed(tmp_path, caplog):
    cache = tmp_path / 'cache'
    args = [*TINY, 'pretrain=rns', 'pretrain.epochs=1', 'trainer.max_epochs=1',
            f'pretrain.cache_dir={cache}']
    first = run_cli(args, tmp_path / 'a')
    (path, ) = cache.glob('pretrain-*.pt')
    good = path.read_bytes()
    path.write_bytes(good[:len(good) // 3])  # cut short (full disk)
    with caplog.at_level('WARNING', logger='kgsampler.cli'):
        again = run_cli(args, tmp_path / 'b')
    assert f"the cached warm start '{path}' is unusable" in caplog.text
    assert "deleting it and pretraining again" in caplog.text
    assert path.read_bytes() == good  # recomputed, identically
    assert again['test'] == first['test']
    caplog.clear()
    with caplog.at_level('INFO', logger='kgsampler.cli'):
        run_cli(args, tmp_path / 'c')
    assert 'loaded cached pretrained recommender' in caplog.text


def test_unwritable_cache_dir_is_a_warning(tmp_path, caplog, monkeypatch):
    blocker = tmp_path / 'file'
    blocker.write_text('not a folder')
    args = [*TINY, 'pretrain=rns', 'pretrain.epochs=1', 'trainer.max_epochs=1',
            f'pretrain.cache_dir={blocker}/cache']
    with caplog.at_level('WARNING', logger='kgsampler.cli'):
        m = run_cli(args, tmp_path / 'a')
    assert m['status'] == 'completed'
    assert f"could not write the warm-start cache '{blocker}/cache/" in \
        caplog.text
    assert 'the run goes on without caching' in caplog.text


def test_cache_dir_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('KGSAMPLER_CACHE', str(tmp_path / 'env-cache'))
    cfg = compose(['pretrain=rns'])
    assert cfg.pretrain.cache_dir == str(tmp_path / 'env-cache')


# --------------------------------------------------------------- safe loading
def test_every_torch_load_passes_weights_only():
    import re
    for path in (SRC / 'kgsampler').rglob('*.py'):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r'torch\.load\(', line) and 'weights_only=True' \
                    not in line:
                pytest.fail(f'{path}:{n}: torch.load without '
                            f'weights_only=True: {line.strip()}')


def test_pretrain_checkpoint_refuses_pickled_objects(tmp_path):
    evil = tmp_path / 'evil.pt'

    class Boom:
        def __reduce__(self):
            return (os.system, ('echo pwned',))
    torch.save({'x': Boom()}, evil)
    with pytest.raises(Exception, match=r"pretrain.checkpoint: cannot read "
                                        rf"'{evil}' \(UnpicklingError"):
        run_cli([*TINY, f'pretrain.checkpoint={evil}'], tmp_path / 'run')


def test_a_loss_that_explodes_is_warned_about(blocks, caplog):
    torch.manual_seed(0)
    model = MF(20, 20, embedding_dim=4, reg=0.0)
    trainer = Trainer(model, RNS(blocks.train_pos), blocks, lr=1e6,
                      batch_size=32, max_epochs=2, progress=False)
    with caplog.at_level('WARNING', logger='kgsampler.train.trainer'):
        try:
            trainer.fit()
        except TrainingDiverged:
            pass
    assert 'the recommender loss grew from 0.70' in caplog.text
    assert 'lr=1e+06) is probably far too large' in caplog.text
    caplog.clear()
    with caplog.at_level('WARNING', logger='kgsampler.train.trainer'):
        Trainer(MF(20, 20, embedding_dim=4), RNS(blocks.train_pos), blocks,
                lr=0.01, batch_size=32, max_epochs=2, progress=False).fit()
    assert 'grew from' not in caplog.text
