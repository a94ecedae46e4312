"""Per-epoch loggers the :class:`~kgsampler.train.Trainer` calls.

A logger is a small object with :meth:`EpochLogger.log_epoch` (one call per
epoch with that epoch's history row: losses, gradient magnitude,
false-negative rate, the sampler's diagnostics prefixed ``sampler_`` and the
validation metrics prefixed ``valid_``), :meth:`EpochLogger.log_summary`
(once, with the selected epoch and the test metrics) and
:meth:`EpochLogger.close`. Pass them to the Trainer:
``Trainer(..., loggers=[CSVLogger('history.csv'), TensorBoardLogger('tb')])``.
"""
from __future__ import annotations

import csv
import io
import math
import numbers
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

from kgsampler.utils._io import atomic_write_text


def _scalar(v: Any) -> Optional[float]:
    """:obj:`v` as a float if it is a real number (not a bool)."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    return None


class EpochLogger:
    """Base class of the per-epoch loggers; every method is a no-op."""
    def start(self, config: Optional[Mapping[str, Any]] = None) -> None:
        """Called once before the first epoch with the run's configuration
        (a plain nested dict, or :obj:`None`)."""

    def restore(self, history: Sequence[Mapping[str, Any]]) -> None:
        """Called instead of :meth:`start` when a run resumes, with the
        history rows of the epochs already done."""

    def log_epoch(self, row: Mapping[str, Any]) -> None:
        """Called after every epoch with its history row (:obj:`"epoch"`
        and numbers)."""

    def log_summary(self, summary: Mapping[str, Any]) -> None:
        """Called once after training with :obj:`"best_epoch"` and the
        test metrics prefixed :obj:`test_`."""

    def close(self) -> None:
        """Called once at the end of :meth:`Trainer.fit`, also when
        training stops with an error."""

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


class CSVLogger(EpochLogger):
    r"""Writes one row per epoch into a CSV file, rewritten atomically after
    every epoch (a crash never leaves a half-written file); a column per
    key that any epoch had (validation metrics appear on evaluation epochs
    only, their cells empty elsewhere; non-finite values as :obj:`nan`).

    Args:
        path (str or os.PathLike): The CSV file; its folder is created.
    """
    def __init__(self, path):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"CSVLogger: 'path' must be a path "
                            f"(got {path!r})")
        self.path = os.fspath(path)
        self.rows: List[Dict[str, Any]] = []

    def start(self, config=None) -> None:
        self.rows = []

    def restore(self, history) -> None:
        self.rows = [dict(r) for r in history]
        self._write()

    def log_epoch(self, row) -> None:
        self.rows.append(dict(row))
        self._write()

    def _write(self) -> None:
        columns: List[str] = []
        for r in self.rows:
            columns += [k for k in r if k not in columns]
        buf = io.StringIO(newline='')
        w = csv.DictWriter(buf, columns, restval='')
        w.writeheader()
        w.writerows(self.rows)
        folder = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(folder, exist_ok=True)
        atomic_write_text(self.path, buf.getvalue())

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.path!r})'


def _tag(key: str) -> str:
    for prefix in ('valid', 'test', 'sampler'):
        if key.startswith(prefix + '_'):
            return f'{prefix}/{key[len(prefix) + 1:]}'
    return f'train/{key}'


class TensorBoardLogger(EpochLogger):
    r"""Writes every number of an epoch's row as a TensorBoard scalar
    (step: the epoch; tags :obj:`train/loss`, :obj:`valid/ndcg@20`,
    :obj:`sampler/num_updates`, ...), the configuration as text and the
    test metrics of the selected epoch, through
    :class:`torch.utils.tensorboard.SummaryWriter`.

    Args:
        log_dir (str or os.PathLike): The event folder.

    Raises:
        ImportError: If :mod:`tensorboard` is not installed.
    """
    def __init__(self, log_dir):
        if not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(f"TensorBoardLogger: 'log_dir' must be a path "
                            f"(got {log_dir!r})")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("TensorBoardLogger needs the tensorboard "
                              "package, which is not installed: pip install "
                              "tensorboard (or switch the logger off: "
                              "logger.tensorboard=false)") from e
        self.log_dir = os.fspath(log_dir)
        self._writer_cls = SummaryWriter
        self.writer = None
        self._step = 0

    def _open(self, purge_step: Optional[int] = None):
        if self.writer is None:
            self.writer = self._writer_cls(self.log_dir,
                                           purge_step=purge_step)
        return self.writer

    def start(self, config=None) -> None:
        w = self._open()
        if config is not None:
            import json
            w.add_text('config', '```\n' + json.dumps(
                config, indent=2, default=str) + '\n```', 0)

    def restore(self, history) -> None:
        # events of epochs after the saved state (from the killed run) are
        # dropped by purge_step
        done = max((int(r.get('epoch', 0)) for r in history), default=0)
        self._open(purge_step=done + 1)

    def log_epoch(self, row) -> None:
        w = self._open()
        step = int(row.get('epoch', self._step + 1))
        self._step = step
        for k, v in row.items():
            x = _scalar(v)
            if k != 'epoch' and x is not None:
                w.add_scalar(_tag(k), x, step)
        w.flush()

    def log_summary(self, summary) -> None:
        w = self._open()
        for k, v in summary.items():
            x = _scalar(v)
            if x is not None:
                w.add_scalar(f'summary/{k}', x, 0)
        w.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.log_dir!r})'


class WandbLogger(EpochLogger):
    r"""Logs every epoch's row to Weights & Biases (:func:`wandb.log`, step
    the epoch) and the test metrics into the run summary; the run is
    started by :meth:`start` with the configuration.

    Args:
        project (str, optional): The W&B project. (default:
            :obj:`"kgsampler"`)
        **init_kwargs: Passed on to :func:`wandb.init` (e.g. :obj:`mode`,
            :obj:`name`, :obj:`dir`).

    Raises:
        ImportError: If :mod:`wandb` is not installed.
    """
    def __init__(self, project: str = 'kgsampler', **init_kwargs):
        if not isinstance(project, str) or not project:
            raise TypeError(f"WandbLogger: 'project' must be a non-empty "
                            f"str (got {project!r})")
        try:
            import wandb
        except ImportError as e:
            raise ImportError("WandbLogger needs the wandb package, which "
                              "is not installed: pip install wandb (or "
                              "switch the logger off: logger.wandb=false)"
                              ) from e
        self._wandb = wandb
        self.project, self.init_kwargs = project, dict(init_kwargs)
        self.run = None

    def start(self, config=None) -> None:
        if self.run is None:
            self.run = self._wandb.init(project=self.project,
                                        config=dict(config or {}),
                                        **self.init_kwargs)

    def restore(self, history) -> None:
        self.start()

    def log_epoch(self, row) -> None:
        self.start()
        data = {k: x for k, x in ((k, _scalar(v)) for k, v in row.items())
                if k != 'epoch' and x is not None and math.isfinite(x)}
        self.run.log(data, step=int(row.get('epoch', 0)))

    def log_summary(self, summary) -> None:
        self.start()
        for k, v in summary.items():
            self.run.summary[k] = v

    def close(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None

    def __repr__(self) -> str:
        return f'{type(self).__name__}(project={self.project!r})'
