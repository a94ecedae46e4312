"""Training loop: batches -> sampler -> recommender step -> sampler step."""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender.base import Recommender
from kgsampler.sampler.base import Sampler
from kgsampler.train.evaluate import evaluate

log = logging.getLogger(__name__)


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
                 time_budget: Optional[float] = None):
        for name, v in (('batch_size', batch_size), ('max_epochs', max_epochs),
                        ('eval_every', eval_every), ('num_neg', num_neg),
                        ('eval_batch_size', eval_batch_size),
                        ('sparsity_groups', sparsity_groups),
                        ('patience', patience)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"Trainer: '{name}' must be a positive int "
                                 f"(got {v!r})")
        if isinstance(sampler_warmup, bool) or not isinstance(
                sampler_warmup, int) or sampler_warmup < 0:
            raise ValueError(f"Trainer: 'sampler_warmup' must be a "
                             f"non-negative int (got {sampler_warmup!r})")
        if time_budget is not None and (
                isinstance(time_budget, bool)
                or not isinstance(time_budget, (int, float))
                or not time_budget > 0 or not math.isfinite(time_budget)):
            raise ValueError(f"Trainer: 'time_budget' must be None or a "
                             f"positive number of seconds (got "
                             f"{time_budget!r})")
        for name, v in (('lr', lr), ('weight_decay', weight_decay)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    not math.isfinite(v):
                raise TypeError(f"Trainer: '{name}' must be a finite number "
                                f"(got {v!r})")
        if not lr > 0:
            raise ValueError(f"Trainer: 'lr' must be positive (got {lr!r})")
        if not weight_decay >= 0:
            raise ValueError(f"Trainer: 'weight_decay' must be non-negative "
                             f"(got {weight_decay!r})")
        if isinstance(ks, (str, bytes)) or not isinstance(
                ks, Sequence) or not ks or any(
                isinstance(k, bool) or not isinstance(k, int) or k < 1
                for k in ks):
            raise ValueError(f"Trainer: 'ks' must be a non-empty sequence of "
                             f"positive ints (got {ks!r})")
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
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as e:
            raise ValueError(f"Trainer: 'device' must be 'cpu', 'cuda', "
                             f"'cuda:N' or 'auto' (got {device!r})") from e
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise ValueError(f"Trainer: device={str(device)!r} but CUDA is "
                             f"not available here; use 'cpu' or 'auto'")
        if device == 'auto':
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        self.device = device
        self.model = model.to(self.device)
        self.sampler = sampler.to(self.device)
        if sampler.requires_scorer:
            sampler.set_scorer(self.model)
        self.train_pos = dataset.train_pos.to(self.device)
        self._train_users = self.train_pos.row_ids()  # one entry a pair
        self.valid_pos = dataset.valid_pos.to(self.device)
        self.test_pos = dataset.test_pos.to(self.device)
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
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr,
                                          weight_decay=weight_decay)

    # ----------------------------------------------------------- evaluation
    def evaluate(self, split: str = 'valid', per_user: bool = False) -> Dict:
        """Full-ranking metrics on :obj:`"valid"` (train masked) or
        :obj:`"test"` (train and valid masked)."""
        if split not in ('valid', 'test'):
            raise ValueError(f"Trainer.evaluate: 'split' must be 'valid' or "
                             f"'test' (got {split!r})")
        self.model.eval()
        if split == 'valid':
            gt, exclude = self.valid_pos, [self.train_pos]
        else:
            gt, exclude = self.test_pos, [self.train_pos, self.valid_pos]
        return evaluate(self.model.full_scores, gt, exclude, ks=self.ks,
                        batch_size=self.eval_batch_size,
                        kgat_ndcg=self.kgat_ndcg, per_user=per_user)

    # ------------------------------------------------------------- training
    def train_epoch(self, epoch: int) -> Dict[str, float]:
        """One pass over the training interactions; returns mean logs."""
        self.model.train()
        self.sampler.on_epoch_start(epoch)
        users_all, items_all = self._train_users, self.train_pos.indices
        perm = torch.randperm(users_all.numel(), device=self.device)
        num, bs = perm.numel(), self.batch_size
        sizes = [min(bs, num - i) for i in range(0, num, bs)]
        total, sums = 0, {}
        bar = None
        if self.progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(sizes), desc=f'epoch {epoch}', leave=False)
        b, start = 0, 0
        while b < len(sizes):
            # negatives for up to `lookahead` batches in one call (samplers
            # whose draws do not change in between, e.g. KGPolicy between
            # two policy updates); then a step per batch as usual
            k = max(1, min(int(self.sampler.lookahead), len(sizes) - b))
            chunk = perm[start:start + sum(sizes[b:b + k])]
            users, pos = users_all[chunk], items_all[chunk]
            out_all = self.sampler.sample(users, pos, self.num_neg)
            offset = 0
            for n in sizes[b:b + k]:
                out = out_all if k == 1 else out_all.narrow(offset, n)
                self._train_batch(users.narrow(0, offset, n),
                                  pos.narrow(0, offset, n), out, sums)
                offset += n
                total += n
            b, start = b + k, start + offset
            if bar is not None:
                bar.update(k)
        if bar is not None:
            bar.close()
        logs = {k: float(v) / max(total, 1) for k, v in sums.items()}
        logs.update(self._auxiliary_phase())
        return logs

    def _auxiliary_phase(self) -> Dict[str, float]:
        """One optimiser step on each loss of the recommender's
        :meth:`~Recommender.auxiliary_losses`; their mean as
        :obj:`auxiliary_loss` (nothing when there are none)."""
        total, steps = None, 0
        for loss in self.model.auxiliary_losses(self.batch_size):
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
                     sums: Dict) -> None:
        """The recommender's step on one batch, then the sampler's."""
        loss = self.model.loss(users, pos, out.neg_items)
        logs = {'loss': loss.detach()}  # no per-batch device sync
        if self.track_dynamics:  # on the parameters the step uses
            logs['grad_magnitude'] = self._grad_magnitude(
                users, pos, out.neg_items)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        if self.sampler.learnable:
            logs.update(self.sampler.update(users, pos, out))
        n = users.numel()
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v * n

    @torch.no_grad()
    def _grad_magnitude(self, users: Tensor, pos: Tensor,
                        neg: Tensor) -> Tensor:
        r"""Mean of :math:`1 - \sigma(f(u,i) - f(u,j))` over the batch's
        pairs, as a 0-dim tensor."""
        diff = self.model.score(users, pos.view(-1, 1)) - \
            self.model.score(users, neg)
        return (1 - torch.sigmoid(diff)).mean()

    def _false_negative_delta(self, before: Dict[str, float]
                              ) -> Dict[str, float]:
        after = self.sampler.summary_stats()
        if 'num_false_negative' not in after:
            return {}
        n = after['num_sampled'] - before.get('num_sampled', 0)
        fn = after['num_false_negative'] - before.get('num_false_negative', 0)
        return {'false_negative_rate': fn / max(n, 1)}

    def fit(self) -> TrainResult:
        """Trains with early stopping and returns a :class:`TrainResult`."""
        has_valid = self.valid_pos.nnz > 0
        best_score, best_epoch, best_state = -float('inf'), 0, None
        best_valid: Dict[str, float] = {}
        epoch_seconds, history = [], []
        bad_evals, epoch, stopped_by = 0, 0, 'max_epochs'
        start = time.perf_counter()
        warm = self.warmup_sampler()
        if warm:
            history.append({'epoch': 0, **{f'sampler_{k}': v
                                           for k, v in warm.items()}})
            log.info('sampler warm-up: ' + _fmt(warm))
        best_diag: Dict[str, float] = {}
        for epoch in range(1, self.max_epochs + 1):
            before = (self.sampler.summary_stats()
                      if self.track_dynamics else {})
            t0 = time.perf_counter()
            logs = self.train_epoch(epoch)
            if self.device.type == 'cuda':
                torch.cuda.synchronize(self.device)
            epoch_seconds.append(time.perf_counter() - t0)
            logs = {'epoch': epoch, 'seconds': epoch_seconds[-1], **logs}
            if self.track_dynamics:
                logs.update(self._false_negative_delta(before))
            diag = self.sampler.diagnostics()
            logs.update({f'sampler_{k}': v for k, v in diag.items()})
            if has_valid and (epoch % self.eval_every == 0
                              or epoch == self.max_epochs):
                valid = _scalars(self.evaluate('valid'))
                logs.update({f'valid_{k}': v for k, v in valid.items()})
                if self.track_test:  # reported apart, never chosen on
                    logs.update({f'test_{k}': v for k, v in
                                 _scalars(self.evaluate('test')).items()})
                if valid[self.monitor] > best_score:
                    best_score, best_epoch, best_valid = (
                        valid[self.monitor], epoch, valid)
                    best_state = copy.deepcopy(self.model.state_dict())
                    best_diag = diag
                    bad_evals = 0
                    if self.checkpoint_path:
                        torch.save(best_state, self.checkpoint_path)
                else:
                    bad_evals += 1
            history.append(logs)
            log.info(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else
                              f'{k}={v}' for k, v in logs.items()))
            if has_valid and bad_evals >= self.patience:
                log.info('early stopping at epoch %d (best %d)', epoch,
                         best_epoch)
                stopped_by = 'patience'
                break
            if self.time_budget is not None and epoch < self.max_epochs and \
                    time.perf_counter() - start >= self.time_budget:
                log.info('time budget of %.0f s spent after epoch %d (best '
                         '%d)', self.time_budget, epoch, best_epoch)
                stopped_by = 'time_budget'
                break
        if best_state is None:  # no validation split: keep the last state
            best_epoch = epoch
            best_diag = diag
            if self.checkpoint_path:
                torch.save(self.model.state_dict(), self.checkpoint_path)
        else:
            self.model.load_state_dict(best_state)
        full = self.evaluate('test', per_user=True)
        test = _scalars(full)
        by_group = self._by_sparsity(full)
        log.info('best epoch %d: valid %s test %s', best_epoch,
                 _fmt(best_valid), _fmt(test))
        stats = self.sampler.summary_stats()
        if 'num_updates' in best_diag:
            stats['updates_before_best_epoch'] = best_diag['num_updates']
            stats.update({f'best_epoch_{k}': v for k, v in best_diag.items()
                          if k != 'num_updates'})
        check = getattr(self.sampler, 'policy_warnings', None)
        if callable(check):
            for msg in check(best_diag):
                log.warning('at the selected epoch %d: %s', best_epoch, msg)
        return TrainResult(best_epoch=best_epoch, epochs_run=epoch,
                           epoch_seconds=epoch_seconds, valid=best_valid,
                           test=test, history=history,
                           sampler_stats=stats,
                           test_by_sparsity=by_group, stopped_by=stopped_by)

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
