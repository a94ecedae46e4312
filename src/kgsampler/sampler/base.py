"""The sampler interface: :class:`Sampler`, :class:`SamplerOutput` and the
:class:`Scorer` protocol through which adaptive samplers query a recommender.
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields, replace
from typing import (Callable, Dict, Optional, Protocol, Union,
                    runtime_checkable)

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.utils._device import resolve_device, resolve_module_to_args
from kgsampler.utils._membership import Membership


@dataclass
class SamplerOutput:
    r"""The negatives drawn for a batch of (user, positive item) pairs.

    Args:
        neg_items (torch.Tensor): Negative item ids, :obj:`torch.long`, never
            a training positive of the row's user.
        log_prob (torch.Tensor, optional): Log-probability of each negative
            under a learnable sampler's policy (differentiable).
        paths (torch.Tensor, optional): The node path that produced each
            negative, for explainable samplers (:obj:`-1` pads).
        fallback (torch.Tensor, optional): :obj:`True` where the sampler's own
            proposal was a training positive and was replaced by a uniform
            negative.
        neg_embeddings (torch.Tensor, optional): Synthetic negatives, for
            samplers that synthesise a negative embedding rather than pick
            an item (:class:`~kgsampler.sampler.MixGCF`): per-layer
            embeddings in the layout of the recommender's
            :meth:`layer_embeddings` (layer 0 is the ego embedding), with
            gradients; a recommender whose :meth:`loss` takes
            :obj:`neg_embeddings=` scores these in place of
            :obj:`neg_items`' embeddings. :obj:`neg_items` still holds a real
            item per negative (see the sampler) for id-only code.
            (default: :obj:`None`)

    Shapes:
        - **neg_items:** :math:`(B, N)`
        - **log_prob:** :math:`(B, N)`
        - **paths:** :math:`(B, N, L)`
        - **fallback:** :math:`(B, N)`
        - **neg_embeddings:** :math:`(B, N, L + 1, D)`, :math:`L + 1` layers
          of dimension :math:`D`
    """
    neg_items: Tensor
    log_prob: Optional[Tensor] = None
    paths: Optional[Tensor] = None
    fallback: Optional[Tensor] = None
    neg_embeddings: Optional[Tensor] = None

    @property
    def batch_size(self) -> int:
        return self.neg_items.size(0)

    @property
    def num_neg(self) -> int:
        return self.neg_items.size(1)

    def narrow(self, start: int, length: int) -> 'SamplerOutput':
        r"""The rows :obj:`start .. start + length - 1` (views, no copy):
        how a training loop splits the output of one :meth:`Sampler.sample`
        call over several batches (see :attr:`Sampler.lookahead`).

        Args:
            start (int): First row.
            length (int): Number of rows.

        Shapes:
            - **output:** every tensor field with :math:`B` rows keeps its
              other dimensions: **neg_items** :math:`(length, N)`,
              **paths** :math:`(length, N, L)`, **neg_embeddings**
              :math:`(length, N, L + 1, D)`, ...
        """
        B = self.batch_size
        if not (isinstance(start, int) and isinstance(length, int)
                and 0 <= start and 0 <= length and start + length <= B):
            raise ValueError(f"{self.__class__.__name__}.narrow: rows "
                             f"[{start}, {start}+{length}) must lie in "
                             f"[0, {B}) (got start={start!r}, "
                             f"length={length!r})")
        return replace(self, **{
            f.name: getattr(self, f.name).narrow(0, start, length)
            for f in fields(self) if isinstance(getattr(self, f.name), Tensor)
            and getattr(self, f.name).dim() > 0
            and getattr(self, f.name).size(0) == B})


@runtime_checkable
class Scorer(Protocol):
    r"""Anything that scores user-item pairs; higher means more relevant.

    Any recommender (MF, LightGCN, KGAT, your own) works with the adaptive
    samplers once it has this method.
    """
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Scores of user-item pairs; higher means more relevant.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        ...


class EmbeddingScorer:
    r"""A :class:`Scorer` over plain user/item embedding tables: the score of
    :math:`(u, i)` is :math:`\mathbf{e}_u^{\top} \mathbf{e}_i`, and item
    similarity is :math:`\mathbf{e}_i^{\top} \mathbf{e}_j`.

    Args:
        user_emb (torch.Tensor or torch.nn.Embedding): User embeddings
            :math:`(|\mathcal{U}|, d)`.
        item_emb (torch.Tensor or torch.nn.Embedding): Item embeddings
            :math:`(|\mathcal{I}|, d)`.
    """
    def __init__(self, user_emb: Union[Tensor, torch.nn.Embedding],
                 item_emb: Union[Tensor, torch.nn.Embedding]):
        self.user_emb = user_emb
        self.item_emb = item_emb

    @staticmethod
    def _table(t: Union[Tensor, torch.nn.Embedding]) -> Tensor:
        return t.weight if isinstance(t, torch.nn.Embedding) else t

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Scores :math:`\mathbf{e}_u^{\top} \mathbf{e}_i` of each user
        with its candidate items.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        u = self._table(self.user_emb)[users]
        i = self._table(self.item_emb)[items]
        return (i @ u.unsqueeze(-1)).squeeze(-1)

    def similarity(self, items_a: Tensor, items_b: Tensor) -> Tensor:
        r"""Item-item similarity :math:`\mathbf{e}_i^{\top} \mathbf{e}_j`
        of each row's :obj:`items_a` with its :obj:`items_b`.

        Args:
            items_a (torch.Tensor): Reference item ids, :obj:`torch.long`.
            items_b (torch.Tensor): Item ids compared with the row's
                :obj:`items_a`, :obj:`torch.long`.

        Shapes:
            - **items_a:** :math:`(B)`
            - **items_b:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        table = self._table(self.item_emb)
        return (table[items_b] @ table[items_a].unsqueeze(-1)).squeeze(-1)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


def optimizer_follow(optimizer: torch.optim.Optimizer) -> None:
    r"""Moves an optimizer's per-parameter state (e.g. Adam's moments) to
    the device and dtype of its parameter, after the parameters were moved
    by :meth:`torch.nn.Module.to` (the step counters stay where they
    are)."""
    for group in optimizer.param_groups:
        for p in group['params']:
            state = optimizer.state.get(p, {})
            for k, v in state.items():
                if k != 'step' and isinstance(v, Tensor):
                    state[k] = v.to(p.device, p.dtype)


def check_update_batch(who: str, users: Tensor, pos_items: Tensor,
                       num_rows: int) -> None:
    r"""Checks that :obj:`users` and :obj:`pos_items` can be the
    :obj:`num_rows` rows an output was sampled for: 1-D :obj:`torch.long` of
    that length (shapes only: no host sync on the update path)."""
    for name, t in (('users', users), ('pos_items', pos_items)):
        if not isinstance(t, Tensor) or t.dtype != torch.long or \
                t.dim() != 1 or t.numel() != num_rows:
            raise ValueError(
                f"{who}.update: '{name}' must be the 1-D torch.long tensor "
                f"of the {num_rows} rows 'output' was sampled for (got "
                f"{getattr(t, 'dtype', type(t).__name__)} of shape "
                f"{tuple(getattr(t, 'shape', ()))})")


def _check_index(name: str, cls: str, t: Tensor, upper: int) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{cls}: '{name}' must be a torch.Tensor "
                        f"(got {type(t).__name__})")
    if t.dtype != torch.long:
        raise TypeError(f"{cls}: '{name}' must be torch.long "
                        f"(got {t.dtype})")
    if t.dim() != 1:
        raise ValueError(f"{cls}: '{name}' must be 1-D of shape [B] "
                         f"(got shape {tuple(t.shape)})")
    if t.numel() > 0:
        lo, hi = torch.stack(torch.aminmax(t)).tolist()  # one host sync
        if lo < 0 or hi >= upper:
            raise ValueError(f"{cls}: '{name}' must lie in [0, {upper}) "
                             f"(got range [{lo}, {hi}])")


class Sampler(ABC):
    r"""Base class of all negative samplers.

    A sampler is built once from the training positives and then called
    inside any training loop: :obj:`sampler.sample(users, pos_items, num_neg)`
    returns :obj:`num_neg` negatives per row, none of which is a training
    positive of that row's user: :meth:`sample` checks what every subclass's
    :meth:`_sample` returned (shape, :obj:`torch.long`, item range, no
    training positive) and raises :class:`RuntimeError` on a violation, so
    no positive ever reaches the training loop. Samplers that need the
    recommender (DNS, KGPolicy) ask it through a :class:`Scorer`.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        membership (str, optional): Positive-filter back end, :obj:`"auto"`,
            :obj:`"dense"`, :obj:`"bitmap"` or :obj:`"search"`.
            (default: :obj:`"auto"`)
        max_rounds (int, optional): Rejection rounds before the exact
            (rejection-free) uniform fallback. (default: :obj:`4`)
        monitor_pos (UserItemCSR, optional): Held-out positives (e.g. the
            validation split) used only to count *false negatives*: returned
            negatives that are in fact held-out positives
            (:obj:`false_negative_rate` in :meth:`summary_stats`). Never used
            for sampling. (default: :obj:`None`)
    """
    #: Whether the sampler has parameters trained by :meth:`update`.
    learnable: bool = False
    #: Whether :meth:`sample` needs a :class:`Scorer` (see :meth:`set_scorer`).
    requires_scorer: bool = False
    #: :meth:`sample` calls without an :meth:`update` after which a
    #: learnable sampler warns (once) that it is not being trained.
    UPDATE_WARNING_CALLS: int = 100

    @property
    def lookahead(self) -> int:
        r"""How many upcoming batches a training loop may draw negatives
        for in one :meth:`sample` call (then :meth:`SamplerOutput.narrow`
        per batch, and :meth:`update` once per batch as usual) without
        changing what the sampler draws: more than 1 only for samplers whose
        draws do not depend on anything that changes between those batches.
        1 here (DNS, for one, scores with the recommender of each batch)."""
        return 1

    def __init__(self, train_pos: UserItemCSR, membership: str = 'auto',
                 max_rounds: int = 4,
                 monitor_pos: Optional[UserItemCSR] = None):
        if not isinstance(train_pos, UserItemCSR):
            raise TypeError(f"{self.__class__.__name__}: 'train_pos' must be "
                            f"a UserItemCSR (got {type(train_pos).__name__})")
        if isinstance(max_rounds, bool) or not isinstance(
                max_rounds, int) or max_rounds < 0:
            raise ValueError(f"{self.__class__.__name__}: 'max_rounds' must "
                             f"be a non-negative int (got {max_rounds!r})")
        self.train_pos = train_pos
        self.num_users = train_pos.num_rows
        self.num_items = train_pos.num_cols
        self.max_rounds = max_rounds
        self.is_pos = Membership(train_pos, method=membership)
        self._deg = train_pos.degree()
        # only then can a batch hold a user without any possible negative
        self._has_full_user = bool((self._deg >= self.num_items).any())
        # Q[j] = row * num_items + (item_j - rank of item_j within its row):
        # globally sorted, lets us pick the r-th non-positive of a row exactly.
        rank = torch.arange(train_pos.nnz, device=train_pos.device) - \
            torch.repeat_interleave(train_pos.indptr[:-1], self._deg)
        self._gap_keys = (train_pos.row_ids() * self.num_items +
                          train_pos.indices - rank).contiguous()
        if monitor_pos is not None and not isinstance(monitor_pos,
                                                      UserItemCSR):
            raise TypeError(f"{self.__class__.__name__}: 'monitor_pos' must "
                            f"be a UserItemCSR (got "
                            f"{type(monitor_pos).__name__})")
        if monitor_pos is not None and (
                monitor_pos.num_rows, monitor_pos.num_cols) != (
                train_pos.num_rows, train_pos.num_cols):
            raise ValueError(f"{self.__class__.__name__}: 'monitor_pos' must "
                             f"have the shape of 'train_pos', "
                             f"{(train_pos.num_rows, train_pos.num_cols)} "
                             f"(got {(monitor_pos.num_rows, monitor_pos.num_cols)})")
        self.monitor = (Membership(monitor_pos) if monitor_pos is not None
                        and monitor_pos.nnz > 0 else None)
        self.scorer: Optional[Scorer] = None
        self._calls_without_update = 0
        self._warned_no_update = False
        self.reset_stats()

    @classmethod
    def from_dataset(cls, dataset, scorer: Optional[Scorer] = None,
                     track_false_negatives: bool = True,
                     **kwargs) -> 'Sampler':
        r"""Builds the sampler from a :class:`~kgsampler.data.KGRecDataset`
        (the CLI's entry point: :obj:`_target_: kgsampler.RNS.from_dataset`).

        Args:
            dataset (KGRecDataset): The dataset; its :obj:`train_pos` are the
                positives that are never returned.
            scorer (Scorer, optional): The recommender, for adaptive samplers.
            track_false_negatives (bool, optional): Count negatives that are
                validation positives (:obj:`monitor_pos=dataset.valid_pos`).
                (default: :obj:`True`)
            **kwargs (optional): Arguments of the sampler's constructor.
        """
        cls._monitor_kwargs(dataset, track_false_negatives, kwargs)
        sampler = cls(dataset.train_pos, **kwargs)
        if scorer is not None:
            sampler.set_scorer(scorer)
        return sampler

    @staticmethod
    def _monitor_kwargs(dataset, track: bool, kwargs: dict) -> None:
        valid = getattr(dataset, 'valid_pos', None)
        if track and valid is not None:
            kwargs.setdefault('monitor_pos', valid)

    def set_scorer(self, scorer: Scorer) -> None:
        """Sets the recommender that adaptive samplers query."""
        if not isinstance(scorer, Scorer):
            raise TypeError(f"{self.__class__.__name__}: 'scorer' must "
                            f"implement score(users, items) (got "
                            f"{type(scorer).__name__})")
        self.scorer = scorer

    # ------------------------------------------------------------------ API
    def sample(self, users: Tensor, pos_items: Tensor,
               num_neg: int = 1) -> SamplerOutput:
        r"""Draws :obj:`num_neg` negatives for every (user, positive) row.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            num_neg (int, optional): Negatives per row. (default: :obj:`1`)

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **output.neg_items:** :math:`(B, N)`, on the inputs' device
        """
        cls = self.__class__.__name__
        _check_index('users', cls, users, self.num_users)
        _check_index('pos_items', cls, pos_items, self.num_items)
        if users.numel() != pos_items.numel():
            raise ValueError(f"{cls}: 'users' and 'pos_items' must have the "
                             f"same length (got {users.numel()} and "
                             f"{pos_items.numel()})")
        if isinstance(num_neg, bool) or not isinstance(num_neg, int) or \
                num_neg < 1:
            raise ValueError(f"{cls}: 'num_neg' must be a positive int "
                             f"(got {num_neg!r})")
        if self.requires_scorer and self.scorer is None:
            raise RuntimeError(f"{cls}: no scorer set; pass 'scorer=' or "
                               f"call set_scorer(model) before sampling")
        self._check_has_negatives(users)
        if self.learnable:
            self._count_call_without_update()
        out = self._sample(users, pos_items, num_neg)
        self._check_output(users, out, num_neg)
        self.stats['num_sampled'] += out.neg_items.numel()
        if out.fallback is not None:
            self._num_fallback += out.fallback.sum()
        if self.monitor is not None:
            self._num_false_negative += self.monitor(
                users.view(-1, 1), out.neg_items).sum()
        return out

    __call__ = sample

    def _check_output(self, users: Tensor, out: SamplerOutput,
                      num_neg: int) -> None:
        r"""Enforces the contract of :meth:`sample` on what :meth:`_sample`
        returned: :obj:`neg_items` of shape :math:`(B, N)`,
        :obj:`torch.long`, item ids in range, none a training positive of
        its row's user. One membership query of the :math:`B \cdot N`
        negatives and one host sync; raises :class:`RuntimeError` naming the
        subclass and the first offending row (a bug in that subclass)."""
        cls = self.__class__.__name__
        neg = out.neg_items
        if not isinstance(neg, Tensor) or neg.dtype != torch.long:
            raise RuntimeError(f"{cls}._sample returned 'neg_items' that are "
                               f"not a torch.long tensor (got "
                               f"{getattr(neg, 'dtype', type(neg).__name__)})")
        if tuple(neg.shape) != (users.numel(), num_neg):
            raise RuntimeError(f"{cls}._sample returned 'neg_items' of shape "
                               f"{tuple(neg.shape)}, expected "
                               f"({users.numel()}, {num_neg})")
        if neg.numel() == 0:
            return
        outside = (neg < 0) | (neg >= self.num_items)
        bad = outside | self.is_pos(users.view(-1, 1),
                                    neg.clamp(0, self.num_items - 1))
        if bool(bad.any()):  # the one host sync
            r, j = (int(x) for x in bad.nonzero()[0])
            u, i = int(users[r]), int(neg[r, j])
            what = (f"outside [0, {self.num_items})" if bool(outside[r, j])
                    else f"a training positive of user {u}")
            raise RuntimeError(f"{cls}._sample returned item {i} at row {r}, "
                               f"column {j}, which is {what}; a sampler must "
                               f"draw through uniform_negatives() or "
                               f"replace_positives() so that no training "
                               f"positive is returned")

    @abstractmethod
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        """Subclasses draw here; inputs are validated. Use
        :meth:`uniform_negatives` or :meth:`replace_positives` so that no
        training positive is returned."""

    def _count_call_without_update(self) -> None:
        self._calls_without_update += 1
        if self._calls_without_update >= self.UPDATE_WARNING_CALLS and \
                not self._warned_no_update:
            self._warned_no_update = True
            warnings.warn(
                f"{self.__class__.__name__}: sample() was called "
                f"{self._calls_without_update} times without update(); a "
                f"learnable sampler learns only in update(users, pos_items, "
                f"output), to be called after each batch's recommender step "
                f"(the Trainer does; see docs/usage.md)", RuntimeWarning,
                stacklevel=3)

    def _updated(self) -> None:
        """Learnable subclasses call this in :meth:`update`."""
        self._calls_without_update = 0

    # -------------------------------------------------------- training hooks
    def on_epoch_start(self, epoch: int) -> None:
        """Called by the trainer before each epoch (e.g. to refresh
        neighbour tables)."""

    def update(self, users: Tensor, pos_items: Tensor,
               output: SamplerOutput) -> Dict[str, Union[float, Tensor]]:
        """One optimisation step of a learnable sampler, called by the
        trainer after the recommender step. Returns scalar logs: floats or
        0-dim tensors (left on the device, so that a training loop need not
        sync with it every batch). Does nothing here (returns :obj:`{}`).

        Args:
            users (torch.Tensor): The user ids :obj:`output` was sampled for,
                :obj:`torch.long`.
            pos_items (torch.Tensor): The positive items :obj:`output` was
                sampled for, :obj:`torch.long`.
            output (SamplerOutput): What :meth:`sample` returned for
                :obj:`(users, pos_items)` (or its
                :meth:`SamplerOutput.narrow` rows for this batch).

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **output.neg_items:** :math:`(B, N)`
        """
        return {}

    def diagnostics(self) -> Dict[str, float]:
        r"""Scalars describing what the sampler did since the last call;
        the trainer calls it after every epoch and logs it in the run's
        history (prefixed :obj:`sampler_`). Learnable samplers report here
        what shows that they learn (e.g. :class:`KGPolicy`: policy updates,
        attention entropy, personalisation). Must draw no random numbers.
        :obj:`{}` here."""
        return {}

    def reset_stats(self) -> None:
        """Zeroes the counters reported in :obj:`metrics.json`."""
        self.stats: Dict[str, float] = {'num_sampled': 0, 'num_fallback': 0}
        # tensor counters: no host sync per batch; read in summary_stats()
        self._num_fallback = torch.zeros((), dtype=torch.long)
        self._num_false_negative = torch.zeros((), dtype=torch.long)

    def summary_stats(self) -> Dict[str, float]:
        """Counters plus :obj:`fallback_rate` (negatives the sampler's own
        proposal could not provide, replaced by uniform ones) and, with
        :obj:`monitor_pos`, :obj:`false_negative_rate`."""
        out = dict(self.stats)
        n = max(out['num_sampled'], 1)
        out['num_fallback'] += int(self._num_fallback)
        out['fallback_rate'] = out['num_fallback'] / n
        if self.monitor is not None:
            out['num_false_negative'] = int(self._num_false_negative)
            out['false_negative_rate'] = out['num_false_negative'] / n
        return out

    def to(self, device) -> 'Sampler':
        """Moves the sampler's tables to :obj:`device` (a
        :class:`torch.device`, :obj:`"cpu"`, :obj:`"cuda[:N]"` or
        :obj:`"auto"`; a clear :class:`ValueError` otherwise, and for CUDA
        where there is none)."""
        device = resolve_device(f'{self.__class__.__name__}.to', device)
        self.train_pos = self.train_pos.to(device)
        self.is_pos.to(device)
        self._deg = self._deg.to(device)
        self._gap_keys = self._gap_keys.to(device)
        self._num_fallback = self._num_fallback.to(device)
        self._num_false_negative = self._num_false_negative.to(device)
        if self.monitor is not None:
            self.monitor.to(device)
        return self

    # -------------------------------------------------------------- helpers
    def _check_has_negatives(self, users: Tensor) -> None:
        if not self._has_full_user:
            return
        full = self._deg[users] >= self.num_items
        if bool(full.any()):
            u = int(users[full.nonzero()[0, 0]])
            raise ValueError(f"{self.__class__.__name__}: user {u} has every "
                             f"one of the {self.num_items} items as a "
                             f"training positive, so it has no possible "
                             f"negative")

    def exact_uniform_negatives(self, users: Tensor) -> Tensor:
        r"""Uniform draws among each user's non-positives, without rejection
        (one :func:`torch.searchsorted` a draw).

        Args:
            users (torch.Tensor): The user of each draw, :obj:`torch.long`;
                each must have at least one item that is not a training
                positive.

        Shapes:
            - **users:** :math:`(*)`
            - **output:** :math:`(*)`, item ids (:obj:`torch.long`)
        """
        free = (self.num_items - self._deg[users]).to(torch.float)
        r = (torch.rand(users.shape, device=users.device) * free).long()
        r = torch.minimum(r, (free - 1).long())
        q = users * self.num_items + r
        k = torch.searchsorted(self._gap_keys, q.reshape(-1), right=True)
        k = k.view(q.shape) - self.train_pos.indptr[users]
        return r + k

    def uniform_negatives(self, users: Tensor) -> Tensor:
        r"""Uniform draws among each user's non-positives: rejection for
        :obj:`max_rounds` rounds, then the exact draw for what is left.

        Args:
            users (torch.Tensor): The user of each draw, :obj:`torch.long`;
                each must have at least one item that is not a training
                positive.

        Shapes:
            - **users:** :math:`(*)`
            - **output:** :math:`(*)`, item ids (:obj:`torch.long`)
        """
        items = torch.randint(self.num_items, users.shape,
                              device=users.device)
        bad = self.redraw_positives(
            users, items, lambda n: torch.randint(
                self.num_items, (n, ), device=users.device))
        if bool(bad.any()):
            idx = bad.nonzero(as_tuple=True)
            items[idx] = self.exact_uniform_negatives(users[idx])
        return items

    def redraw_positives(self, users: Tensor, items: Tensor,
                         draw: Callable[[int], Tensor]) -> Tensor:
        r"""Rejection sampling in place: redraws with :obj:`draw(n)` (n new
        items) every entry of :obj:`items` that is a training positive of
        its user, for at most :obj:`max_rounds` rounds; returns the
        :obj:`torch.bool` mask of entries still positive.

        Args:
            users (torch.Tensor): The user of each entry, :obj:`torch.long`.
            items (torch.Tensor): Item ids, :obj:`torch.long`, modified in
                place.
            draw (callable): :obj:`draw(n)` returns :obj:`n` new item ids, a
                1-D :obj:`torch.long` tensor on :obj:`items`' device.

        Shapes:
            - **users:** :math:`(*)`
            - **items:** :math:`(*)`, the shape of **users**
            - **output:** :math:`(*)`
        """
        bad = self.is_pos(users, items)
        for _ in range(self.max_rounds):
            if not bool(bad.any()):
                break
            idx = bad.nonzero(as_tuple=True)
            items[idx] = draw(idx[0].numel())
            bad[idx] = self.is_pos(users[idx], items[idx])
        return bad

    def replace_positives(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Replaces every training positive in :obj:`items` (of the row's
        user) by a uniform negative, in place; returns the :obj:`torch.bool`
        mask of replaced entries.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Item ids of each user's row,
                :obj:`torch.long`, modified in place.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, N)`
            - **output:** :math:`(B, N)`
        """
        u = users.view(-1, 1).expand_as(items)
        bad = self.is_pos(u, items)
        self._fill_uniform(u, items, bad)
        return bad

    def _fill_uniform(self, users: Tensor, items: Tensor,
                      mask: Tensor) -> None:
        """Sets :obj:`items[mask]` to uniform negatives of their users."""
        if bool(mask.any()):
            idx = mask.nonzero(as_tuple=True)
            items[idx] = self.uniform_negatives(users[idx])

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(num_items={self.num_items})'


class ModuleSamplerMixin:
    r"""What a learnable sampler that is also a :class:`torch.nn.Module`
    shares (list it first: :obj:`class S(ModuleSamplerMixin, Sampler,
    torch.nn.Module)`): :meth:`to` takes :meth:`torch.nn.Module.to`'s
    arguments, checked by the package's device resolver, and every
    :meth:`torch.nn.Module._apply` (:meth:`cuda`, :meth:`cpu`,
    :meth:`double`, ...) moves the sampler's tables and its optimiser's
    state after the parameters, once the sampler is built. A subclass says
    when it is built (:meth:`_built`) and what else follows the parameters
    (:meth:`_follow_parameters`)."""

    def to(self, *args, **kwargs):
        r"""Moves the parameters (as :meth:`torch.nn.Module.to`) and the
        sampler's tables (as :meth:`Sampler.to`); so do :meth:`cuda`,
        :meth:`cpu`, :meth:`double` and every other
        :meth:`torch.nn.Module._apply`."""
        args, kwargs = resolve_module_to_args(
            f'{self.__class__.__name__}.to', args, kwargs)
        torch.nn.Module.to(self, *args, **kwargs)
        return self

    def _apply(self, fn, *args, **kwargs):
        torch.nn.Module._apply(self, fn, *args, **kwargs)
        if self._built():
            self._follow_parameters()
        return self

    def _built(self) -> bool:
        return hasattr(self, 'optimizer')

    def _follow_parameters(self) -> None:
        r"""Puts the sampler's tables on the parameters' device and lets its
        optimiser's state follow."""
        Sampler.to(self, next(self.parameters()).device)
        optimizer_follow(self.optimizer)
