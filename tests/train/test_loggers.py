import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender.mf import MF
from kgsampler.sampler import DNS, RNS
from kgsampler.train._loggers import CSVLogger, EpochLogger, \
    TensorBoardLogger, WandbLogger
from kgsampler.train.trainer import Trainer


@pytest.fixture
def tiny():
    r"""Eight users, six items, two blocks; per user three training, one
    validation and one test positive inside its block::

        users 0-3  --  items 0-2        users 4-7  --  items 3-5
        (user u: train {u, u+1, u+2} mod 3, valid/test the same three
        shifted, so every item is seen in training)
    """
    rows, cols = [], []
    for u in range(8):
        base = 0 if u < 4 else 3
        items = [base + (u + k) % 3 for k in range(3)]
        rows.append([u] * 5)
        cols.append(items + [items[0], items[1]])
    rows, cols = torch.tensor(rows), torch.tensor(cols)

    def split(a, b):
        return UserItemCSR.from_pairs(rows[:, a:b].reshape(-1),
                                      cols[:, a:b].reshape(-1), 8, 6)
    return SimpleNamespace(num_users=8, num_items=6, train_pos=split(0, 3),
                           valid_pos=split(3, 4), test_pos=split(4, 5))


class Recorder(EpochLogger):
    """Records every call."""
    def __init__(self, fail_at=None):
        self.calls, self.fail_at = [], fail_at

    def start(self, config=None):
        self.calls.append(('start', config))

    def restore(self, history):
        self.calls.append(('restore', len(history)))

    def log_epoch(self, row):
        if row['epoch'] == self.fail_at:
            raise RuntimeError('logger failed')
        self.calls.append(('epoch', dict(row)))

    def log_summary(self, summary):
        self.calls.append(('summary', dict(summary)))

    def close(self):
        self.calls.append(('close', None))


def trainer(ds, loggers=(), sampler='rns', **kw):
    torch.manual_seed(0)
    model = MF(ds.num_users, ds.num_items, embedding_dim=4)
    s = RNS(ds.train_pos) if sampler == 'rns' else DNS(ds.train_pos)
    return Trainer(model, s, ds, lr=0.05, batch_size=8, progress=False,
                   ks=[2], monitor='ndcg@2', loggers=list(loggers), **kw)


@pytest.mark.parametrize('eval_every', [1, 2])
@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_csv_holds_the_history(tiny, tmp_path, eval_every, sampler):
    path = tmp_path / 'sub' / 'history.csv'
    res = trainer(tiny, [CSVLogger(path)], sampler, max_epochs=3,
                  eval_every=eval_every).fit()
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(res.history) == 3
    for row, ref in zip(rows, res.history):  # the history, value for value
        assert set(k for k, v in row.items() if v != '') == set(ref)
        for k, v in ref.items():
            assert float(row[k]) == pytest.approx(float(v), rel=1e-12)
    header = list(rows[0])
    for col in ('epoch', 'seconds', 'loss', 'grad_magnitude',
                'valid_ndcg@2', 'valid_recall@2'):
        assert col in header
    if eval_every == 2:  # validation on epochs 2 (and the last, 3) only
        assert rows[0]['valid_ndcg@2'] == '' and rows[1]['valid_ndcg@2']
    assert not [p for p in path.parent.iterdir() if p.name != path.name]


def test_loggers_are_called_in_order(tiny):
    rec = Recorder()
    res = trainer(tiny, [rec], max_epochs=2).fit(config={'seed': 1})
    kinds = [c[0] for c in rec.calls]
    assert kinds == ['start', 'epoch', 'epoch', 'summary', 'close']
    assert rec.calls[0][1] == {'seed': 1}
    assert [c[1] for c in rec.calls[1:3]] == res.history
    summary = rec.calls[3][1]
    assert summary['best_epoch'] == res.best_epoch
    assert summary['test_ndcg@2'] == res.test['ndcg@2']


def test_loggers_closed_after_an_error(tiny):
    rec = Recorder(fail_at=2)
    with pytest.raises(RuntimeError, match='logger failed'):
        trainer(tiny, [rec], max_epochs=3).fit()
    assert [c[0] for c in rec.calls] == ['start', 'epoch', 'close']


def test_resume_restores_the_csv(tiny, tmp_path):
    state = tmp_path / 'last.pt'
    path = tmp_path / 'history.csv'
    full = trainer(tiny, [CSVLogger(path)], max_epochs=2,
                   state_path=str(state)).fit()
    os.remove(path)
    rec = Recorder()
    again = trainer(tiny, [CSVLogger(path), rec], max_epochs=3,
                    state_path=str(state), resume=True).fit()
    assert [c[0] for c in rec.calls] == ['restore', 'epoch', 'summary',
                                         'close']
    assert rec.calls[0][1] == 2
    with open(path, newline='') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['epoch']) for r in rows] == [1, 2, 3]
    assert float(rows[0]['loss']) == full.history[0]['loss']
    assert len(again.history) == 3


@pytest.mark.parametrize('bad, match', [
    ('history.csv', r"'loggers' must be a list of loggers \(got "
                    r"'history.csv'\)"),
    ([object()], r"needs the methods \['start', 'restore', 'log_epoch', "
                 r"'log_summary', 'close'\]"),
])
def test_trainer_checks_loggers(tiny, bad, match):
    with pytest.raises(TypeError, match=match):
        Trainer(MF(8, 6), RNS(tiny.train_pos), tiny, loggers=bad)


def test_logger_arguments():
    with pytest.raises(TypeError, match=r"CSVLogger: 'path' must be a path "
                                        r"\(got 3\)"):
        CSVLogger(3)
    assert repr(CSVLogger('h.csv')) == "CSVLogger('h.csv')"


@pytest.mark.parametrize('cls, module, match', [
    (TensorBoardLogger, 'torch.utils.tensorboard',
     'needs the tensorboard package.*pip install tensorboard'),
    (WandbLogger, 'wandb', 'needs the wandb package.*pip install wandb'),
])
def test_missing_packages_say_so(tmp_path, monkeypatch, cls, module, match):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(ImportError, match=match):
        cls(str(tmp_path)) if cls is TensorBoardLogger else cls()


def test_tensorboard_scalars(tiny, tmp_path):
    pytest.importorskip('tensorboard', reason='tensorboard is not installed')
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    res = trainer(tiny, [TensorBoardLogger(tmp_path / 'tb')],
                  max_epochs=3).fit(config={'seed': 1})
    acc = EventAccumulator(str(tmp_path / 'tb'))
    acc.Reload()
    loss = [e.value for e in acc.Scalars('train/loss')]
    assert loss == pytest.approx([h['loss'] for h in res.history], rel=1e-6)
    assert [e.step for e in acc.Scalars('valid/ndcg@2')] == [1, 2, 3]
    assert acc.Scalars('summary/test_ndcg@2')[0].value == pytest.approx(
        res.test['ndcg@2'], rel=1e-6)


def test_wandb_offline(tiny, tmp_path, monkeypatch):
    pytest.importorskip('wandb', reason='wandb is not installed')
    monkeypatch.setenv('WANDB_MODE', 'offline')
    monkeypatch.setenv('WANDB_SILENT', 'true')
    lg = WandbLogger('kgsampler-test', dir=str(tmp_path))
    trainer(tiny, [lg], max_epochs=2).fit(config={'seed': 1})
    assert lg.run is None  # finished
    assert list(tmp_path.rglob('*.wandb'))


# ------------------------------------------------------------------- CLI
EXE = shutil.which('kgsampler-train') or str(
    Path(sys.executable).parent / 'kgsampler-train')
TINY = ['dataset.num_users=200', 'dataset.num_items=150', 'num_threads=1',
        'trainer.max_epochs=2', 'trainer.progress=false', 'sampler=rns']


def cli(args, cwd):
    if not os.path.exists(EXE):
        pytest.skip('kgsampler-train is not installed')
    return subprocess.run([EXE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, 'KGSAMPLER_CACHE':
                               str(Path(cwd) / 'cache')})


def test_cli_writes_history_csv_and_prints_the_config(tmp_path):
    proc = cli([*TINY, 'seed=4', f'hydra.run.dir={tmp_path}/run'], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert 'composed config:' in out and 'seed: 4' in out
    metrics = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    with open(tmp_path / 'run' / 'history.csv', newline='') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(metrics['history']) == 2
    assert float(rows[1]['loss']) == pytest.approx(
        metrics['history'][1]['loss'], rel=1e-9)
    assert not math.isnan(float(rows[1]['valid_ndcg@20']))


def test_cli_logger_switches(tmp_path):
    proc = cli([*TINY, 'logger.csv=false', 'logger.print_config=false',
                f'hydra.run.dir={tmp_path}/run'], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (tmp_path / 'run' / 'history.csv').exists()
    assert 'composed config:' not in proc.stdout + proc.stderr
    proc = cli([*TINY, 'logger.csv=maybe', f'hydra.run.dir={tmp_path}/r2'],
               tmp_path)
    assert proc.returncode != 0
    assert "'logger.csv' must be true or false (got 'maybe')" in proc.stderr


def test_cli_tensorboard_missing_is_a_clear_error(tmp_path):
    try:
        import tensorboard  # noqa: F401
        pytest.skip('tensorboard is installed')
    except ImportError:
        pass
    proc = cli([*TINY, 'logger.tensorboard=true',
                f'hydra.run.dir={tmp_path}/run'], tmp_path)
    assert proc.returncode != 0
    assert 'needs the tensorboard package' in proc.stderr
    assert not (tmp_path / 'run' / 'metrics.json').exists()  # nothing ran
