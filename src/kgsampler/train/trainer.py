"""Training loop: batches -> sampler -> recommender step -> sampler step."""
from __future__ import annotations

import copy
import logging
import math
import numbers
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender.base import Recommender
from kgsampler.sampler.base import Sampler
from kgsampler.train.evaluate import evaluate
from kgsampler.train import _distributed as _dist
from kgsampler.train.evaluate import summarize
from kgsampler.train._optim import build_optimizer
from kgsampler.utils._device import resolve_device
from kgsampler.utils._io import atomic_torch_save

log = logging.getLogger(__name__)


#: What :class:`Trainer` watches for non-finite values, in this order.
_COMPONENTS = ('recommender loss', 'sampler log-probability', 'sampler loss',
               'reward', 'auxiliary loss', 'recommender parameters')
_NEVER = 2**62
#: Negatives of one batch above which a Trainer refuses to start.
_MAX_BATCH_NEGATIVES = 2**31
_STATE_FORMAT = 'kgsampler-train-state-1'
#: An epoch mean loss this many times the first batch's is warned about.
_LOSS_GROWTH = 1000.0


class TrainingDiverged(RuntimeError):
    r"""Training stopped on a non-finite value.

    Attributes:
        epoch (int): The epoch (1-based).
        batch (int): The first batch (1-based) with a non-finite value
            (the number of batches plus one: after the last batch).
        component (str): :obj:`"recommender loss"`, :obj:`"sampler loss"`,
            :obj:`"reward"`, :obj:`"sampler log-probability"`,
            :obj:`"auxiliary loss"` or :obj:`"recommender parameters"`.
        history (list of dict): The logs of the epochs completed before.
    """
    def __init__(self, message: str, epoch: int, batch: int,
                 component: str):
        super().__init__(message)
        self.epoch, self.batch, self.component = epoch, batch, component
        self.history: List[Dict[str, float]] = []
        self.epoch_seconds: List[float] = []
        self.best_epoch = 0
        self.valid: Dict[str, float] = {}


def _is_int(v) -> bool:
    """Python and numpy integers (not bools)."""
    return isinstance(v, numbers.Integral) and not isinstance(
        v, (bool, np.bool_))


def _is_real(v) -> bool:
    """Python and numpy real numbers (not bools)."""
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _get_rng() -> Dict[str, Any]:
    """Every random-number stream, in forms :func:`torch.load` reads with
    :obj:`weights_only=True` (tensors and plain containers)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {
        'torch': torch.random.get_rng_state(),
        'cuda': (torch.cuda.get_rng_state_all()
                 if torch.cuda.is_available() else None),
        'numpy': [kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                  int(has_gauss), float(cached)],
        'python': [version, list(state), gauss],
    }


def _set_rng(rng: Dict[str, Any]) -> None:
    torch.random.set_rng_state(rng['torch'])
    if rng['cuda'] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng['cuda'])
    kind, keys, pos, has_gauss, cached = rng['numpy']
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos,
                         has_gauss, cached))
    version, state, gauss = rng['python']
    random.setstate((version, tuple(state), gauss))


def _pack(v):
    """Tensors (any size) and lists, tuples and str-keyed dicts of them and
    of scalars, as themselves; :obj:`_SKIP` for anything else."""
    if isinstance(v, Tensor):
        return v.detach().cpu().clone()
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, (list, tuple)):
        items = [_pack(x) for x in v]
        if any(x is _SKIP for x in items):
            return _SKIP
        return items if isinstance(v, list) else tuple(items)
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        items = {k: _pack(x) for k, x in v.items()}
        return _SKIP if any(x is _SKIP for x in items.values()) else items
    return _SKIP


_SKIP = object()


def _unpack(v, device):
    if isinstance(v, Tensor):
        return v.to(device)
    if isinstance(v, list):
        return [_unpack(x, device) for x in v]
    if isinstance(v, tuple):
        return tuple(_unpack(x, device) for x in v)
    if isinstance(v, dict):
        return {k: _unpack(x, device) for k, x in v.items()}
    return v


def _sampler_state(sampler: Sampler) -> Dict[str, Any]:
    r"""What a sampler needs to continue exactly: its own
    :meth:`resume_state` when it has one; otherwise its module state
    (parameters, buffers), its :obj:`optimizer`, and every attribute that is
    a tensor, a scalar or a list, tuple or dict of those (counters, memories,
    pools). Other objects (the training matrix, membership filters, the
    scorer) are taken to be fixed."""
    custom = getattr(sampler, 'resume_state', None)
    if callable(custom):
        return {'custom': custom()}
    module = isinstance(sampler, torch.nn.Module)
    skip = set()
    if module:
        skip = {'_parameters', '_buffers', '_modules',
                '_non_persistent_buffers_set'} | {k for k in vars(sampler)
                                   if k.endswith('_hooks')
                                   or k.endswith('_hooks_with_kwargs')}
    attrs = {}
    for k, v in vars(sampler).items():
        if k in skip or isinstance(v, torch.nn.Parameter):
            continue
        packed = _pack(v)
        if packed is not _SKIP:
            attrs[k] = packed
    opt = getattr(sampler, 'optimizer', None)
    return {
        'attrs': attrs,
        'module': sampler.state_dict() if module else None,
        'optimizer': (opt.state_dict() if isinstance(
            opt, torch.optim.Optimizer) else None),
    }


def _load_sampler_state(sampler: Sampler, state: Dict[str, Any],
                        device: torch.device) -> None:
    if 'custom' in state:
        sampler.load_resume_state(state['custom'])
        return
    if state['module'] is not None:
        sampler.load_state_dict(state['module'])
    if state['optimizer'] is not None:
        sampler.optimizer.load_state_dict(state['optimizer'])
    for k, v in state['attrs'].items():
        here = getattr(getattr(sampler, k, None), 'device', device)
        object.__setattr__(sampler, k, _unpack(v, here))


def _resumable(sampler: Sampler) -> bool:
    """Whether :func:`_sampler_state` captures all of the sampler's state
    (a sampler that says it needs its own :meth:`resume_state` and has none
    is not)."""
    return not getattr(sampler, 'resume_needs_custom_state', False) or \
        callable(getattr(sampler, 'resume_state', None))


def _check_resumable(sampler: Sampler) -> None:
    if not _resumable(sampler):
        raise ValueError(f"Trainer: resume=True is not supported with "
                         f"{type(sampler).__name__} (its state cannot be "
                         f"saved completely yet); run without resume")


@dataclass
class TrainResult:
    r"""What :meth:`Trainer.fit` returns.

    Args:
        best_epoch (int): Epoch (1-based) with the best validation
            :obj:`ndcg@20` (the last epoch when there is no validation set).
        epochs_run (int): Epochs trained before stopping.
        epoch_seconds (list of float): Training wall time of each epoch
            (sampling and optimisation, evaluation excluded).
        valid (dict): Validation metrics at :obj:`best_epoch`.
        test (dict): Test metrics of the best checkpoint.
        history (list of dict): Per-epoch logs.
        sampler_stats (dict): The sampler's counters (fallback rates...).
        test_by_sparsity (list of dict): Test metrics of the best checkpoint
            per user group: users sorted by their number of training
            interactions and cut into equal-size groups (quartiles by
            default), each with its interaction range.
        stopped_by (str): Why training ended: :obj:`"max_epochs"`,
            :obj:`"patience"` or :obj:`"time_budget"`.
    """
    best_epoch: int
    epochs_run: int
    epoch_seconds: List[float]
    valid: Dict[str, float]
    test: Dict[str, float]
    history: List[Dict[str, float]] = field(default_factory=list)
    sampler_stats: Dict[str, float] = field(default_factory=dict)
    test_by_sparsity: List[Dict[str, float]] = field(default_factory=list)
    stopped_by: str = 'max_epochs'



def _user_subset(gt: UserItemCSR, size: Optional[int]) -> Optional[Tensor]:
    """Ascending ids of :obj:`size` users drawn without replacement (a
    generator seeded with 0) among those with a ground-truth item in
    :obj:`gt`; :obj:`None` (every user) when :obj:`size` is :obj:`None` or
    not below their number."""
    users = (gt.degree() > 0).nonzero().view(-1)
    if size is None or size >= users.numel():
        return None
    gen = torch.Generator().manual_seed(0)
    pick = torch.randperm(users.numel(), generator=gen)[:size]
    return users[pick.to(users.device)].sort().values

class Trainer:
    r"""Trains a :class:`~kgsampler.recommender.Recommender` with negatives
    from any :class:`~kgsampler.sampler.Sampler`.

    Each epoch visits every training interaction once in a random order. For
    every batch: the sampler draws negatives, the recommender takes an Adam
    step on :meth:`~Recommender.loss`, and a learnable sampler then takes its
    own step (:meth:`~Sampler.update`) with the recommender frozen. The
    recommender's :meth:`~Recommender.auxiliary_losses` (e.g. KGAT's TransR
    phase), if any, then take one Adam step each. After
    each :obj:`eval_every` epochs the model is ranked on the validation split;
    the best state (by :obj:`monitor`) is kept, training stops after
    :obj:`patience` evaluations without improvement, and the test split is
    evaluated once, on the best state.

    Args:
        model (Recommender): The recommender.
        sampler (Sampler): The negative sampler (its scorer is set to
            :obj:`model` if it needs one).
        dataset (KGRecDataset): Provides :obj:`train_pos`, :obj:`valid_pos`,
            :obj:`test_pos`.
        lr (float, optional): Adam learning rate. (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam's L2 weight decay on all the
            recommender's parameters (every step, also rows not in the
            batch). (default: :obj:`0.0`)
        batch_size (int, optional): Interactions per batch.
            (default: :obj:`1024`)
        max_epochs (int, optional): Epoch cap. (default: :obj:`200`)
        patience (int, optional): Stop after this many evaluations in a row
            without improvement. (default: :obj:`20`)
        eval_every (int, optional): Epochs between evaluations.
            (default: :obj:`1`)
        num_neg (int, optional): Negatives per interaction.
            (default: :obj:`1`)
        ks (sequence of int, optional): Metric cut-offs.
            (default: :obj:`(20,)`)
        monitor (str, optional): Validation metric for model selection.
            (default: :obj:`"ndcg@20"`)
        eval_batch_size (int, optional): Users per evaluation batch.
            (default: :obj:`4096`)
        valid_users (int, optional): Validate (model selection, early
            stopping) on a fixed random subset of this many of the users
            that have a validation positive, drawn once from a generator
            seeded with 0 (independent of the training seed, so every run on
            the same dataset validates on the same users); the test split
            is always ranked for every user. For recommenders whose full
            ranking costs far more than an epoch on a large dataset (NFM and
            RippleNet on amazon-book: 11-15 and ~15 ms a user). :obj:`None`:
            every user. (default: :obj:`None`)
        kgat_ndcg (bool, optional): Also report KGAT's NDCG variant.
            (default: :obj:`True`)
        device (str, optional): :obj:`"cpu"`, :obj:`"cuda"`, or
            :obj:`"auto"`. (default: :obj:`"cpu"`)
        progress (bool, optional): Show tqdm bars. (default: :obj:`True`)
        checkpoint_path (str, optional): Where to save the best state.
        sparsity_groups (int, optional): Number of user groups (by training
            interactions) in :obj:`TrainResult.test_by_sparsity`.
            (default: :obj:`4`)
        track_dynamics (bool, optional): Record per epoch the mean gradient
            magnitude of the BPR pairs, :math:`1 - \sigma(f(u,i) - f(u,j))`
            (how informative the negatives are), and the sampler's
            false-negative rate (when it monitors held-out positives) in
            :obj:`TrainResult.history`. (default: :obj:`True`)
        sampler_warmup (int, optional): Batches on which a learnable sampler
            is trained alone (:meth:`~Sampler.sample` then
            :meth:`~Sampler.update`, the recommender frozen) before the first
            epoch, so that model selection never sees an untrained sampler
            (e.g. KGPolicy against a warm-started recommender). 0: none.
            (default: :obj:`0`)
        track_test (bool, optional): Also evaluate the test split after every
            evaluation and log it in the history (:obj:`test_*`), to show how
            much choosing the epoch on the test split (the protocol of some
            released code) would inflate a result. Never used for any
            choice. (default: :obj:`False`)
        time_budget (float, optional): Wall-clock seconds (training and
            validation, from the start of :meth:`fit`) after which no new
            epoch starts; the epoch under way finishes and is evaluated, and
            :obj:`TrainResult.stopped_by` says :obj:`"time_budget"`.
            :obj:`None`: no limit. (default: :obj:`None`)
        state_path (str, optional): Where to save, every
            :obj:`checkpoint_every` epochs, everything the run needs to
            continue (see :meth:`fit`): the recommender, its optimiser, the
            sampler's state, the early-stopping state, the history and every
            random-number stream. :obj:`None`: nothing saved.
            (default: :obj:`None`)
        checkpoint_every (int, optional): Epochs between two saves of
            :obj:`state_path`. (default: :obj:`1`)
        resume (bool, optional): If :obj:`state_path` exists, continue the
            run saved there instead of starting afresh; the run then ends
            with exactly the metrics of an uninterrupted run (same seed,
            CPU). (default: :obj:`False`)
        loggers (sequence of EpochLogger, optional): Per-epoch loggers
            (:class:`~kgsampler.train._loggers.CSVLogger`,
            :class:`~kgsampler.train._loggers.TensorBoardLogger`,
            :class:`~kgsampler.train._loggers.WandbLogger`, or any object
            with their methods): :meth:`fit` calls :obj:`start(config)`
            (:obj:`restore(history)` when resuming), :obj:`log_epoch(row)`
            after every epoch with its history row, :obj:`log_summary`
            once with the selected epoch and the test metrics, and
            :obj:`close()` at the end, also after an error.
            (default: :obj:`()`)
        optimizer (str, optional): The recommender's optimiser:
            :obj:`"adam"` (:class:`torch.optim.Adam` on every parameter),
            :obj:`"sparse_adam"` (:class:`torch.optim.SparseAdam`, a lazy
            Adam that updates only the batch's rows, on the embeddings built
            with :obj:`sparse=True`, e.g. :obj:`MF(..., sparse=True)`, and
            Adam on the rest; needs :obj:`weight_decay=0`) or :obj:`"auto"`
            (:obj:`"sparse_adam"` when the model has sparse embeddings,
            :obj:`"adam"` otherwise). (default: :obj:`"auto"`)

    A non-finite recommender loss, sampler loss, reward, log-probability,
    auxiliary loss or recommender parameter stops training with
    :class:`TrainingDiverged` naming the epoch, the batch and the
    component; the files written so far (:obj:`checkpoint_path`,
    :obj:`state_path`) keep the last good state.

    Every epoch's history row holds the sampler's
    :meth:`~Sampler.diagnostics` (prefixed :obj:`sampler_`); with a sampler
    that counts policy updates (:obj:`num_updates`),
    :obj:`TrainResult.sampler_stats` holds
    :obj:`updates_before_best_epoch`, and the diagnostics of the selected
    epoch are checked by the sampler's :meth:`policy_warnings` (when it has
    one), whose findings are logged as warnings.
    """
    def __init__(self, model: Recommender, sampler: Sampler, dataset,
                 lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 1024,
                 max_epochs: int = 200, patience: int = 20,
                 eval_every: int = 1, num_neg: int = 1,
                 ks: Sequence[int] = (20, ), monitor: str = 'ndcg@20',
                 eval_batch_size: int = 4096, kgat_ndcg: bool = True,
                 device: str = 'cpu', progress: bool = True,
                 checkpoint_path: Optional[str] = None,
                 sparsity_groups: int = 4, track_dynamics: bool = True,
                 sampler_warmup: int = 0, track_test: bool = False,
                 time_budget: Optional[float] = None,
                 state_path: Optional[str] = None, checkpoint_every: int = 1,
                 resume: bool = False, loggers: Sequence[Any] = (),
                 optimizer: str = 'auto',
                 valid_users: Optional[int] = None):
        if isinstance(loggers, (str, bytes)) or not isinstance(
                loggers, Sequence):
            raise TypeError(f"Trainer: 'loggers' must be a list of loggers "
                            f"(got {loggers!r})")
        for lg in loggers:
            missing = [m for m in ('start', 'restore', 'log_epoch',
                                   'log_summary', 'close')
                       if not callable(getattr(lg, m, None))]
            if missing:
                raise TypeError(f"Trainer: every entry of 'loggers' needs "
                                f"the methods {missing} (see "
                                f"kgsampler.train._loggers.EpochLogger) "
                                f"(got {lg!r})")
        for name, v in (('batch_size', batch_size), ('max_epochs', max_epochs),
                        ('eval_every', eval_every), ('num_neg', num_neg),
                        ('eval_batch_size', eval_batch_size),
                        ('sparsity_groups', sparsity_groups),
                        ('patience', patience),
                        ('checkpoint_every', checkpoint_every)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"Trainer: '{name}' must be a positive int "
                                 f"(got {v!r})")
        batch_size, max_epochs, eval_every = (int(batch_size),
                                              int(max_epochs), int(eval_every))
        num_neg, eval_batch_size = int(num_neg), int(eval_batch_size)
        sparsity_groups, patience = int(sparsity_groups), int(patience)
        if not _is_int(sampler_warmup) or sampler_warmup < 0:
            raise ValueError(f"Trainer: 'sampler_warmup' must be a "
                             f"non-negative int (got {sampler_warmup!r})")
        sampler_warmup = int(sampler_warmup)
        if valid_users is not None and (not _is_int(valid_users)
                                        or valid_users < 1):
            raise ValueError(f"Trainer: 'valid_users' must be None or a "
                             f"positive int (got {valid_users!r})")
        if batch_size * num_neg > _MAX_BATCH_NEGATIVES:
            raise ValueError(f"Trainer: 'batch_size' x 'num_neg' = "
                             f"{batch_size} x {num_neg} negatives per batch "
                             f"is above {_MAX_BATCH_NEGATIVES:,} (their ids "
                             f"and scores would not fit into memory; lower "
                             f"num_neg or batch_size) (got num_neg="
                             f"{num_neg})")
        if time_budget is not None and (
                not _is_real(time_budget)
                or not time_budget > 0 or not math.isfinite(time_budget)):
            raise ValueError(f"Trainer: 'time_budget' must be None or a "
                             f"positive number of seconds (got "
                             f"{time_budget!r})")
        for name, v in (('lr', lr), ('weight_decay', weight_decay)):
            if not _is_real(v) or not math.isfinite(v):
                raise TypeError(f"Trainer: '{name}' must be a finite number "
                                f"(got {v!r})")
        lr, weight_decay = float(lr), float(weight_decay)
        if state_path is not None and not isinstance(state_path,
                                                     (str, os.PathLike)):
            raise TypeError(f"Trainer: 'state_path' must be None or a path "
                            f"(got {state_path!r})")
        if resume and state_path is None:
            raise ValueError("Trainer: 'resume' needs a 'state_path' to "
                             "resume from (got state_path=None)")
        if not lr > 0:
            raise ValueError(f"Trainer: 'lr' must be positive (got {lr!r})")
        if not weight_decay >= 0:
            raise ValueError(f"Trainer: 'weight_decay' must be non-negative "
                             f"(got {weight_decay!r})")
        if isinstance(ks, (str, bytes)) or not isinstance(
                ks, Sequence) or not ks or any(
                not _is_int(k) or k < 1 for k in ks):
            raise ValueError(f"Trainer: 'ks' must be a non-empty sequence of "
                             f"positive ints (got {ks!r})")
        ks = tuple(int(k) for k in ks)
        metrics = ('recall', 'ndcg', 'precision', 'hit') + (
            ('ndcg_kgat', ) if kgat_ndcg else ())
        name, _, k = monitor.partition('@') if isinstance(monitor, str) \
            else ('', '', '')
        if name not in metrics or not k.isdigit() or int(k) not in ks:
            raise ValueError(f"Trainer: 'monitor' must be one of {metrics} at "
                             f"one of ks={tuple(ks)}, e.g. 'ndcg@{ks[0]}' "
                             f"(got {monitor!r})")
        if not isinstance(model, Recommender):
            raise TypeError(f"Trainer: 'model' must be a Recommender "
                            f"(got {type(model).__name__})")
        if not isinstance(sampler, Sampler):
            raise TypeError(f"Trainer: 'sampler' must be a Sampler "
                            f"(got {type(sampler).__name__})")
        for split in ('train_pos', 'valid_pos', 'test_pos'):
            if not isinstance(getattr(dataset, split, None), UserItemCSR):
                raise TypeError(f"Trainer: 'dataset' must provide '{split}' "
                                f"as a UserItemCSR, as KGRecDataset does "
                                f"(got {type(dataset).__name__})")
        U, I = dataset.train_pos.num_rows, dataset.train_pos.num_cols
        for who, obj in (('model', model), ('sampler', sampler)):
            size = (getattr(obj, 'num_users', U), getattr(obj, 'num_items', I))
            if size != (U, I):
                raise ValueError(f"Trainer: the {who} was built for "
                                 f"{size[0]} users and {size[1]} items, the "
                                 f"dataset has {U} and {I}")
        device = resolve_device('Trainer', device)
        self.device = device
        self.model = model.to(self.device)
        self.sampler = sampler.to(self.device)
        if sampler.requires_scorer:
            sampler.set_scorer(self.model)
        self.train_pos = dataset.train_pos.to(self.device)
        self._train_users = self.train_pos.row_ids()  # one entry a pair
        self.valid_pos = dataset.valid_pos.to(self.device)
        self.test_pos = dataset.test_pos.to(self.device)
        self.valid_users = None if valid_users is None else int(valid_users)
        self._valid_subset = _user_subset(self.valid_pos, self.valid_users)
        self.lr, self.batch_size, self.max_epochs = lr, batch_size, max_epochs
        self.patience, self.eval_every, self.num_neg = (patience, eval_every,
                                                        num_neg)
        self.ks, self.eval_batch_size = tuple(ks), eval_batch_size
        self.monitor, self.kgat_ndcg = monitor, kgat_ndcg
        self.progress, self.checkpoint_path = progress, checkpoint_path
        self.track_dynamics = track_dynamics
        self.sparsity_groups = sparsity_groups
        self.sampler_warmup = sampler_warmup
        self.track_test = bool(track_test)
        self.time_budget = (None if time_budget is None
                            else float(time_budget))
        self.state_path = (None if state_path is None
                           else os.fspath(state_path))
        self.checkpoint_every, self.resume = int(checkpoint_every), \
            bool(resume)
        if self.resume:
            _check_resumable(sampler)
        self.loggers = list(loggers)
        self.optimizer = build_optimizer(self.model, optimizer, lr=lr,
                                         weight_decay=weight_decay)
        self._first_loss: Optional[Tensor] = None
        self._warned_growth = False
        self._setup_distributed()

    def _setup_distributed(self) -> None:
        r"""Under an initialised :mod:`torch.distributed` process group
        (``docs/distributed.md``): every rank starts from rank 0's parameters
        and data order, every optimiser step (the recommender's and a
        learnable sampler's) averages the gradients over the ranks first,
        and only rank 0 writes checkpoints and logs."""
        ctx = _dist.get_context()
        self._ctx, self._grad_sync, self._shard_seed = ctx, None, 0
        if not ctx.enabled:
            return
        if self.resume:
            raise ValueError(f"Trainer: resume=True is not supported under "
                             f"torch.distributed (got world_size="
                             f"{ctx.world_size}); run without resume")
        _dist.broadcast_state(self.model)
        if isinstance(self.sampler, torch.nn.Module):
            _dist.broadcast_state(self.sampler)
        self._shard_seed = _dist.broadcast_int(
            torch.initial_seed() % 2**62, self.device)
        self._grad_sync = _dist.GradientAverager.install(self.optimizer)
        if self.sampler.learnable:
            opt = getattr(self.sampler, 'optimizer', None)
            if opt is None or not hasattr(opt, 'param_groups'):
                raise ValueError(f"Trainer: under torch.distributed a "
                                 f"learnable sampler must keep its optimiser "
                                 f"in 'optimizer' (its gradients are "
                                 f"averaged over the ranks before each step)"
                                 f" (got {type(opt).__name__} on "
                                 f"{type(self.sampler).__name__})")
            _dist.GradientAverager.install(opt)
        if not ctx.is_main:
            self.checkpoint_path = self.state_path = None
            self.loggers = []

    # ----------------------------------------------------------- evaluation
    def evaluate(self, split: str = 'valid', per_user: bool = False) -> Dict:
        """Full-ranking metrics on :obj:`"valid"` (train masked) or
        :obj:`"test"` (train and valid masked)."""
        if split not in ('valid', 'test'):
            raise ValueError(f"Trainer.evaluate: 'split' must be 'valid' or "
                             f"'test' (got {split!r})")
        self.model.eval()
        users = None
        if split == 'valid':
            gt, exclude = self.valid_pos, [self.train_pos]
            users = self._valid_subset
        else:
            gt, exclude = self.test_pos, [self.train_pos, self.valid_pos]
        if self._ctx.enabled:
            return self._evaluate_sharded(gt, exclude, per_user, users)
        return evaluate(self.model.full_scores, gt, exclude, ks=self.ks,
                        batch_size=self.eval_batch_size,
                        kgat_ndcg=self.kgat_ndcg, per_user=per_user,
                        users=users)

    def _evaluate_sharded(self, gt: UserItemCSR, exclude, per_user: bool,
                          users: Optional[Tensor] = None) -> Dict:
        """Each rank ranks one contiguous slice of the users; the per-user
        metrics are gathered in user order, so every rank returns what one
        process would (up to the order of float operations)."""
        ctx = self._ctx
        if users is None:
            users = (gt.degree() > 0).nonzero().view(-1)
        parts = users.tensor_split(ctx.world_size)
        res = evaluate(self.model.full_scores, gt, exclude, ks=self.ks,
                       batch_size=self.eval_batch_size,
                       kgat_ndcg=self.kgat_ndcg, per_user=True,
                       users=parts[ctx.rank])
        names = list(res['per_user'])
        local = torch.stack([res['per_user'][k] for k in names])
        full = _dist.gather_rows(local, [p.numel() for p in parts])
        return summarize({k: full[i] for i, k in enumerate(names)}, users,
                         per_user)

    # ------------------------------------------------------------- training
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the training interactions; returns mean logs.

        Raises:
            TrainingDiverged: If a loss, reward, log-probability or (at the
                end) a recommender parameter is not finite, naming the epoch,
                the first such batch (1-based) and the component.
        """
        self.model.train()
        self.sampler.on_epoch_start(epoch)
        users_all, items_all = self._train_users, self.train_pos.indices
        if self._ctx.enabled:  # this rank's part of a shared order
            shard = _dist.shard_batches(
                _dist.epoch_permutation(users_all.numel(), self._shard_seed,
                                        epoch, self.device),
                self.batch_size, self._ctx.rank, self._ctx.world_size)
            perm, sizes = shard.perm, shard.sizes
            global_sizes = shard.global_sizes
        else:
            perm = torch.randperm(users_all.numel(), device=self.device)
            num, bs = perm.numel(), self.batch_size
            sizes = [min(bs, num - i) for i in range(0, num, bs)]
        total, sums = 0, {}
        # first batch (1-based) where each watched component was not finite;
        # kept on the device (no per-batch sync), read once per epoch
        self._first_bad = torch.full((len(_COMPONENTS), ), _NEVER,
                                     dtype=torch.long, device=self.device)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(sizes), desc=f'epoch {epoch}', leave=False)
        b, start = 0, 0
        try:
            while b < len(sizes):
                # negatives for up to `lookahead` batches in one call
                # (samplers whose draws do not change in between, e.g.
                # KGPolicy between two policy updates); then a step per
                # batch as usual
                k = max(1, min(int(self.sampler.lookahead), len(sizes) - b))
                chunk = perm[start:start + sum(sizes[b:b + k])]
                users, pos = users_all[chunk], items_all[chunk]
                out_all = self.sampler.sample(users, pos, self.num_neg)
                offset = 0
                for j, n in enumerate(sizes[b:b + k]):
                    out = out_all if k == 1 else out_all.narrow(offset, n)
                    if self._grad_sync is not None:  # share of the batch
                        self._grad_sync.weight = n / global_sizes[b + j]
                    self._train_batch(users.narrow(0, offset, n),
                                      pos.narrow(0, offset, n), out, sums,
                                      b + j + 1)
                    offset += n
                    total += n
                b, start = b + k, start + offset
                if bar is not None:
                    bar.update(k)
            if self._ctx.enabled:  # over every rank's pairs
                self._grad_sync.weight = None
                logs = _dist.average_logs(sums, total)
            else:
                logs = {k: float(v) / max(total, 1) for k, v in sums.items()}
            logs.update(self._auxiliary_phase(len(sizes) + 1))
        except TrainingDiverged:
            raise
        except Exception as e:
            # a non-finite value usually breaks something later in the epoch
            # (e.g. sampling from NaN probabilities): report its origin
            self._raise_if_diverged(epoch, len(sizes), cause=e)
            raise
        finally:
            if bar is not None:
                bar.close()
        self._watch('recommender parameters', self._parameters_finite(),
                    len(sizes) + 1)
        if self._ctx.enabled:  # every rank stops together
            _dist.all_reduce_min_(self._first_bad)
        self._raise_if_diverged(epoch, len(sizes))
        self._check_loss_growth(epoch, logs.get('loss'))
        return logs

    def _check_loss_growth(self, epoch: int, loss: Optional[float]) -> None:
        """Warns (once) when an epoch's mean loss is over
        :obj:`_LOSS_GROWTH` times the run's first batch loss: a learning
        rate far too large diverges slowly before it turns non-finite."""
        if loss is None or self._first_loss is None or self._warned_growth:
            return
        first = abs(float(self._first_loss))
        if abs(loss) > _LOSS_GROWTH * max(first, 1e-6):
            self._warned_growth = True
            log.warning('the recommender loss grew from %.4g (first batch) '
                        'to %.4g (mean of epoch %d): the learning rate '
                        '(lr=%g) is probably far too large', first, loss,
                        epoch, self.lr)

    def _watch(self, component: str, finite: Tensor, batch: int) -> None:
        """Records :obj:`batch` as the first non-finite one of
        :obj:`component` unless :obj:`finite` (a bool tensor) holds."""
        c = _COMPONENTS.index(component)
        bad = ~finite.to(self.device)
        self._first_bad[c] = torch.where(
            bad & (self._first_bad[c] == _NEVER),
            torch.as_tensor(batch, device=self.device), self._first_bad[c])

    def _parameters_finite(self) -> Tensor:
        ok = torch.ones((), dtype=torch.bool, device=self.device)
        for p in self.model.parameters():
            ok = ok & torch.isfinite(p.detach()).all().to(self.device)
        return ok

    def _raise_if_diverged(self, epoch: int, num_batches: int,
                           cause: Optional[BaseException] = None) -> None:
        first = self._first_bad.tolist()
        hits = [(bt, c) for c, bt in enumerate(first) if bt != _NEVER]
        if not hits:
            return
        bt, c = min(hits)
        where = (f'batch {bt} of {num_batches}' if bt <= num_batches else
                 'the end of the epoch (after its last batch)')
        msg = (f"Trainer: training diverged: the {_COMPONENTS[c]} is not "
               f"finite (NaN or infinite) at epoch {epoch}, {where}; the "
               f"last good state is kept (lower the learning rate, e.g. "
               f"trainer.lr, or check the data and the model)")
        if cause is not None:
            msg += f" (it then broke the epoch: {type(cause).__name__}: " \
                   f"{' '.join(str(cause).split())[:300]})"
        raise TrainingDiverged(msg, epoch=epoch, batch=bt,
                               component=_COMPONENTS[c]) from cause

    def _auxiliary_phase(self, batch: int = 0) -> Dict[str, float]:
        """One optimiser step on each loss of the recommender's
        :meth:`~Recommender.auxiliary_losses`; their mean as
        :obj:`auxiliary_loss` (nothing when there are none)."""
        total, steps = None, 0
        for loss in self.model.auxiliary_losses(self.batch_size):
            self._watch('auxiliary loss', torch.isfinite(loss.detach()),
                        batch)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            total = loss.detach() if total is None else total + loss.detach()
            steps += 1
        if steps == 0:
            return {}
        return {'auxiliary_loss': float(total) / steps,
                'auxiliary_steps': float(steps)}

    def warmup_sampler(self) -> Dict[str, float]:
        r"""Trains a learnable sampler alone for :obj:`sampler_warmup`
        batches of training pairs drawn in a random order (the recommender
        frozen); returns the sampler's :meth:`~Sampler.diagnostics` over
        them (:obj:`{}` when there is nothing to do)."""
        if not self.sampler.learnable or self.sampler_warmup == 0:
            return {}
        self.model.eval()
        users_all, items_all = self._train_users, self.train_pos.indices
        n = self.sampler_warmup * self.batch_size
        reps = -(-n // users_all.numel())
        perm = torch.cat([torch.randperm(users_all.numel(),
                                         device=self.device)
                          for _ in range(reps)])[:n]
        for chunk in perm.split(self.batch_size):
            users, pos = users_all[chunk], items_all[chunk]
            out = self.sampler.sample(users, pos, self.num_neg)
            self.sampler.update(users, pos, out)
        return self.sampler.diagnostics()

    def _train_batch(self, users: Tensor, pos: Tensor, out,
                     sums: Dict, batch: int = 0) -> None:
        """The recommender's step on one batch, then the sampler's."""
        # synthetic negatives (MixGCF), only when the output carries them
        syn = getattr(out, 'neg_embeddings', None)
        syn = {} if syn is None else {'neg_embeddings': syn}
        loss = self.model.loss(users, pos, out.neg_items, **syn)
        self._watch('recommender loss', torch.isfinite(loss.detach()), batch)
        if out.log_prob is not None:
            self._watch('sampler log-probability',
                        torch.isfinite(out.log_prob.detach()).all(), batch)
        logs = {'loss': loss.detach()}  # no per-batch device sync
        if self._first_loss is None:
            self._first_loss = loss.detach()
        if self.track_dynamics:  # on the parameters the step uses
            logs['grad_magnitude'] = self._grad_magnitude(
                users, pos, out.neg_items, **syn)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.sampler.learnable:
            upd = self.sampler.update(users, pos, out)
            for k, v in upd.items():
                v = torch.as_tensor(v).detach()
                if v.is_floating_point():
                    self._watch('reward' if 'reward' in k else
                                'sampler loss', torch.isfinite(v).all(),
                                batch)
            logs.update(upd)
        n = users.numel()
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v * n

    @torch.no_grad()
    def _grad_magnitude(self, users: Tensor, pos: Tensor, neg: Tensor,
                        neg_embeddings: Optional[Tensor] = None) -> Tensor:
        r"""Mean of :math:`1 - \sigma(f(u,i) - f(u,j))` over the batch's
        pairs, as a 0-dim tensor; :math:`f(u, j)` of a synthetic negative
        (:obj:`neg_embeddings`, pooled by the model's
        :obj:`layer_embeddings()`) where given."""
        if neg_embeddings is not None:
            neg_score = self.model.layer_embeddings().score(
                users, neg_embeddings)
        else:
            neg_score = self.model.score(users, neg)
        diff = self.model.score(users, pos.view(-1, 1)) - neg_score
        return (1 - torch.sigmoid(diff)).mean()

    def _false_negative_delta(self, before: Dict[str, float]
                              ) -> Dict[str, float]:
        after = self.sampler.summary_stats()
        if 'num_false_negative' not in after:
            return {}
        n = after['num_sampled'] - before.get('num_sampled', 0)
        fn = after['num_false_negative'] - before.get('num_false_negative', 0)
        return {'false_negative_rate': fn / max(n, 1)}

    def fit(self, on_epoch_end: Optional[Callable[[Dict[str, Any]], None]]
            = None, config: Optional[Dict[str, Any]] = None) -> TrainResult:
        """Trains with early stopping and returns a :class:`TrainResult`.

        With :obj:`state_path`, the whole training state is saved there
        every :obj:`checkpoint_every` epochs (and after the last); with
        :obj:`resume` and an existing :obj:`state_path`, training continues
        from the saved epoch (the recommender, its optimiser, the sampler,
        the early-stopping state, the history and the random-number streams
        of :mod:`torch`, :mod:`numpy` and :mod:`random` are restored).

        Args:
            on_epoch_end (callable, optional): Called after every epoch with
                :obj:`{"epoch", "history", "epoch_seconds", "best_epoch",
                "valid"}` (e.g. to rewrite :obj:`metrics.json`).
                (default: :obj:`None`)
            config (dict, optional): The run's configuration, handed to
                every logger's :obj:`start`. (default: :obj:`None`)

        Raises:
            TrainingDiverged: See :meth:`train_epoch`; :obj:`history` of the
                exception holds the epochs completed before.
        """
        try:
            return self._fit(on_epoch_end, config)
        finally:
            for lg in self.loggers:
                lg.close()

    def _fit(self, on_epoch_end, config) -> TrainResult:
        has_valid = self.valid_pos.nnz > 0
        st = dict(epoch=0, best_score=-float('inf'), best_epoch=0,
                  best_state=None, best_valid={}, best_diag={},
                  epoch_seconds=[], history=[], bad_evals=0,
                  stopped_by=None, elapsed=0.0, diag={})
        resumed = False
        if self.resume and os.path.isfile(self.state_path):
            st = self._load_state()
            resumed = True
            log.info('resumed from %s after epoch %d', self.state_path,
                     st['epoch'])
            for lg in self.loggers:
                lg.restore(st['history'])
        else:
            for lg in self.loggers:
                lg.start(config)
        start = time.perf_counter() - st['elapsed']
        if not resumed:
            warm = self.warmup_sampler()
            if warm:
                st['history'].append({'epoch': 0, **{
                    f'sampler_{k}': v for k, v in warm.items()}})
                for lg in self.loggers:
                    lg.log_epoch(st['history'][-1])
                log.info('sampler warm-up: ' + _fmt(warm))
        epoch = st['epoch']
        while st['stopped_by'] is None and epoch < self.max_epochs:
            epoch += 1
            before = (self.sampler.summary_stats()
                      if self.track_dynamics else {})
            t0 = time.perf_counter()
            try:
                logs = self.train_epoch(epoch)
            except TrainingDiverged as e:
                e.history = st['history']
                e.epoch_seconds = st['epoch_seconds']
                e.best_epoch = st['best_epoch']
                e.valid = st['best_valid']
                raise
            if self.device.type == 'cuda':
                torch.cuda.synchronize(self.device)
            st['epoch_seconds'].append(time.perf_counter() - t0)
            logs = {'epoch': epoch, 'seconds': st['epoch_seconds'][-1],
                    **logs}
            if self.track_dynamics:
                logs.update(self._false_negative_delta(before))
            diag = self.sampler.diagnostics()
            st['diag'] = diag
            logs.update({f'sampler_{k}': v for k, v in diag.items()})
            if has_valid and (epoch % self.eval_every == 0
                              or epoch == self.max_epochs):
                valid = _scalars(self.evaluate('valid'))
                logs.update({f'valid_{k}': v for k, v in valid.items()})
                if self.track_test:  # reported apart, never chosen on
                    logs.update({f'test_{k}': v for k, v in
                                 _scalars(self.evaluate('test')).items()})
                if valid[self.monitor] > st['best_score']:
                    st.update(best_score=valid[self.monitor],
                              best_epoch=epoch, best_valid=valid,
                              best_diag=diag, bad_evals=0,
                              best_state=copy.deepcopy(
                                  self.model.state_dict()))
                    if self.checkpoint_path:
                        atomic_torch_save(st['best_state'],
                                          self.checkpoint_path)
                else:
                    st['bad_evals'] += 1
            st['history'].append(logs)
            st['epoch'] = epoch
            for lg in self.loggers:
                lg.log_epoch(logs)
            log.info(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else
                              f'{k}={v}' for k, v in logs.items()))
            if has_valid and st['bad_evals'] >= self.patience:
                log.info('early stopping at epoch %d (best %d)', epoch,
                         st['best_epoch'])
                st['stopped_by'] = 'patience'
            elif self.time_budget is not None and \
                    epoch < self.max_epochs and self._rank0_decides(
                        time.perf_counter() - start >= self.time_budget):
                log.info('time budget of %.0f s spent after epoch %d (best '
                         '%d)', self.time_budget, epoch, st['best_epoch'])
                st['stopped_by'] = 'time_budget'
            st['elapsed'] = time.perf_counter() - start
            if self.state_path is not None and _resumable(self.sampler) and (
                    epoch % self.checkpoint_every == 0
                    or st['stopped_by'] is not None
                    or epoch == self.max_epochs):
                self._save_state(st)
            if on_epoch_end is not None:
                on_epoch_end({'epoch': epoch, 'history': st['history'],
                              'epoch_seconds': st['epoch_seconds'],
                              'best_epoch': st['best_epoch'],
                              'valid': st['best_valid']})
        stopped_by = st['stopped_by'] or 'max_epochs'
        best_epoch, best_diag = st['best_epoch'], st['best_diag']
        if st['best_state'] is None:  # no validation split: the last state
            best_epoch = epoch
            best_diag = st['diag']
            if self.checkpoint_path:
                atomic_torch_save(self.model.state_dict(),
                                  self.checkpoint_path)
        else:
            self.model.load_state_dict(st['best_state'])
        full = self.evaluate('test', per_user=True)
        test = _scalars(full)
        by_group = self._by_sparsity(full)
        log.info('best epoch %d: valid %s test %s', best_epoch,
                 _fmt(st['best_valid']), _fmt(test))
        stats = self.sampler.summary_stats()
        if 'num_updates' in best_diag:
            stats['updates_before_best_epoch'] = best_diag['num_updates']
            stats.update({f'best_epoch_{k}': v for k, v in best_diag.items()
                          if k != 'num_updates'})
        for lg in self.loggers:
            lg.log_summary({'best_epoch': best_epoch, 'epochs_run': epoch,
                            **{f'test_{k}': v for k, v in test.items()}})
        check = getattr(self.sampler, 'policy_warnings', None)
        if callable(check):
            for msg in check(best_diag):
                log.warning('at the selected epoch %d: %s', best_epoch, msg)
        return TrainResult(best_epoch=best_epoch, epochs_run=epoch,
                           epoch_seconds=st['epoch_seconds'],
                           valid=st['best_valid'], test=test,
                           history=st['history'], sampler_stats=stats,
                           test_by_sparsity=by_group, stopped_by=stopped_by)

    def _rank0_decides(self, flag: bool) -> bool:
        """Rank 0's :obj:`flag` on every rank (:obj:`flag` itself outside
        :mod:`torch.distributed`)."""
        if not self._ctx.enabled:
            return flag
        return bool(_dist.broadcast_int(int(flag), self.device))

    # ---------------------------------------------------------------- resume
    def _save_state(self, st: Dict[str, Any]) -> None:
        """Writes the full training state to :obj:`state_path`
        (atomically; loadable with :obj:`weights_only=True`)."""
        blob = {
            'format': _STATE_FORMAT,
            'loop': {k: v for k, v in st.items()},
            'model': self.model.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'sampler': _sampler_state(self.sampler),
            'rng': _get_rng(),
        }
        atomic_torch_save(blob, self.state_path)

    def _load_state(self) -> Dict[str, Any]:
        path = self.state_path
        try:
            blob = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:
            raise ValueError(f"Trainer: cannot resume from '{path}': the "
                             f"file is not a readable training state "
                             f"({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:300]})") from e
        if not isinstance(blob, dict) or blob.get('format') != _STATE_FORMAT:
            got = blob.get('format') if isinstance(blob, dict) else \
                type(blob).__name__
            raise ValueError(f"Trainer: cannot resume from '{path}': not a "
                             f"training state written by this version "
                             f"(got format {got!r})")
        try:
            self.model.load_state_dict(blob['model'])
            self.optimizer.load_state_dict(blob['optimizer'])
            _load_sampler_state(self.sampler, blob['sampler'], self.device)
        except (RuntimeError, KeyError, ValueError) as e:
            raise ValueError(f"Trainer: cannot resume from '{path}': it was "
                             f"saved by a different model, optimiser or "
                             f"sampler ({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:300]})") from e
        _set_rng(blob['rng'])
        st = blob['loop']
        if st['best_state'] is not None:
            st['best_state'] = {k: v.to(self.device) if isinstance(
                v, Tensor) else v for k, v in st['best_state'].items()}
        return st

    def _by_sparsity(self, full: Dict) -> List[Dict[str, float]]:
        """Per-user test metrics averaged over equal-size user groups sorted
        by their number of training interactions."""
        users = full['users']
        if users.numel() == 0:
            return []
        deg = self.train_pos.degree()[users]
        order = torch.argsort(deg, stable=True)
        out = []
        for g, idx in enumerate(order.tensor_split(self.sparsity_groups)):
            if idx.numel() == 0:
                continue
            row = {'group': g + 1, 'num_users': int(idx.numel()),
                   'min_interactions': int(deg[idx].min()),
                   'max_interactions': int(deg[idx].max())}
            row.update({k: float(v[idx].mean())
                        for k, v in full['per_user'].items()})
            out.append(row)
        return out


def _scalars(d: Dict) -> Dict[str, float]:
    return {k: v for k, v in d.items() if isinstance(v, float)}


def _fmt(d: Dict[str, float]) -> str:
    return ' '.join(f'{k}={v:.4f}' for k, v in d.items())
