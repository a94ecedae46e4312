r"""Simplify and robustify negative sampling (SRNS)."""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import Sampler, SamplerOutput, Scorer
from kgsampler.sampler.hard_negative import check_finite, check_positive_int


class SRNS(Sampler):
    r"""Simplify and robustify negative sampling (Ding et al., NeurIPS 2020):
    each user keeps a small memory of hard negative candidates, and the
    negative is the memory item with the largest

    .. math::
        P_{\mathrm{pos}}(j \mid u, i) + \alpha_t \cdot
        \mathrm{std}\big[P_{\mathrm{pos}}(j \mid u, i)\big], \quad
        P_{\mathrm{pos}}(j \mid u, i) = \sigma(\hat{y}_{uj} - \hat{y}_{ui}),

    the current score plus its standard deviation over the last
    :obj:`history` epochs: false negatives score high *and stably*, true hard
    negatives fluctuate, so the variance term steers away from the former.
    :math:`\alpha_t = \alpha \min(1, t / \text{warmup})` in epoch
    :math:`t = 0, 1, \ldots`.

    As in the released code, the memory holds :obj:`memory_size`
    (:math:`S_1`) positions in a per-user pool of :obj:`pool_size` uniform
    non-positive items. Pools are drawn :obj:`history` epochs ahead and
    scored at the end of every epoch, so that the pool in use has its items'
    scores at the last :obj:`history` epoch ends (and so have the training
    positives; with a recommender's :obj:`full_scores`, when it has one);
    each epoch the next pool takes over (the memory positions
    carry over, now naming the new pool's items). After each batch's
    negatives are chosen, the memory of each of the batch's users is
    refreshed: :math:`S_2` = :obj:`num_refresh` uniform pool positions join
    its :math:`S_1`, and :math:`S_1` of them are kept, drawn without
    replacement with probability :math:`\propto \exp(\hat{y}_{uj}/T)`
    (:obj:`temperature` :math:`T`; duplicates merged), which keeps the
    memory hard.

    Everything lives in tensors (pools :math:`(H, |\mathcal{U}|, V)`, the
    memory :math:`(|\mathcal{U}|, S_1)`, score histories); the epoch-end
    scoring runs over users in batches of :obj:`score_batch_size`. The
    Trainer calls :meth:`on_epoch_start` before every epoch; a training loop
    of your own must do the same (without it, the pool and its history are
    never renewed).

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender to query; can also be set
            later with :meth:`set_scorer`.
        memory_size (int, optional): Memory items per user :math:`S_1`.
            (default: :obj:`8`)
        num_refresh (int, optional): New pool positions scored per memory
            refresh :math:`S_2`. (default: :obj:`64`, :math:`8 S_1` as the
            released script)
        pool_size (int, optional): Pool items per user :math:`V \ge S_1`.
            (default: :obj:`1000`; the released code used 3000 on ml-1m)
        history (int, optional): Epochs :math:`H` of the standard deviation.
            (default: :obj:`5`)
        alpha (float, optional): Weight :math:`\alpha \ge 0` of the standard
            deviation. (default: :obj:`5.0`)
        warmup (int, optional): Epochs over which :math:`\alpha_t` rises
            linearly to :math:`\alpha`; 0: at once. (default: :obj:`50`)
        temperature (float, optional): Temperature :math:`T > 0` of the
            memory refresh. (default: :obj:`10.0`)
        score_batch_size (int, optional): Users scored at once at the end of
            an epoch. (default: :obj:`1024`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 memory_size: int = 8, num_refresh: int = 64,
                 pool_size: int = 1000, history: int = 5, alpha: float = 5.0,
                 warmup: int = 50, temperature: float = 10.0,
                 score_batch_size: int = 1024, **kwargs):
        super().__init__(train_pos, **kwargs)
        for name, v in (('memory_size', memory_size),
                        ('num_refresh', num_refresh),
                        ('pool_size', pool_size), ('history', history),
                        ('score_batch_size', score_batch_size)):
            check_positive_int('SRNS', name, v)
        if pool_size < memory_size:
            raise ValueError(f"SRNS: 'pool_size' must be at least "
                             f"'memory_size'={memory_size} (got {pool_size})")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or \
                warmup < 0:
            raise ValueError(f"SRNS: 'warmup' must be a non-negative int "
                             f"(got {warmup!r})")
        self.memory_size, self.num_refresh = memory_size, num_refresh
        self.pool_size, self.history = pool_size, history
        self.alpha = check_finite('SRNS', 'alpha', alpha, non_negative=True)
        self.temperature = check_finite('SRNS', 'temperature', temperature,
                                        positive=True)
        self.warmup, self.score_batch_size = warmup, score_batch_size
        self.epoch = -1  # no epoch started
        self.pool: Optional[Tensor] = None  # [U, V] the pool in use
        self.pool_hist: List[Tensor] = []  # its scores [U, V] per epoch end
        self.next_pools: List[Tensor] = []  # H pools [U, V], next first
        self.next_hist: List[List[Tensor]] = []
        self.pos_hist: List[Tensor] = []  # [nnz] per epoch end
        self.memory: Optional[Tensor] = None  # [U, S1] positions in pool
        self._keys = train_pos.keys()
        self._std_sum = torch.zeros(())
        self._std_num = 0
        if scorer is not None:
            self.set_scorer(scorer)

    # ------------------------------------------------------------- state
    @property
    def alpha_t(self) -> float:
        """:math:`\\alpha_t` of the current epoch."""
        t = max(self.epoch, 0)
        return self.alpha * (1.0 if self.warmup == 0 else
                             min(1.0, t / self.warmup))

    def _draw_pool(self) -> Tensor:
        U, V = self.num_users, self.pool_size
        dev = self._keys.device
        pool = torch.zeros(U, V, dtype=torch.long, device=dev)
        ok = self._deg.to(dev) < self.num_items  # users with a negative
        users = torch.arange(U, device=dev)[ok]
        pool[ok] = self.uniform_negatives(users.view(-1, 1).expand(-1, V))
        return pool

    @torch.no_grad()
    def _score_pools(self, pools: List[Tensor]) -> List[Tensor]:
        """The scores of every pool's items, in batches of users; with a
        recommender's :obj:`full_scores` one matrix product per batch serves
        every pool (a gather each)."""
        full = getattr(self.scorer, 'full_scores', None)
        outs = [torch.empty(p.shape, device=p.device) for p in pools]
        for s in range(0, self.num_users, self.score_batch_size):
            users = torch.arange(s, min(s + self.score_batch_size,
                                        self.num_users),
                                 device=self._keys.device)
            all_items = full(users) if callable(full) else None
            for pool, out in zip(pools, outs):
                out[users] = (all_items.gather(1, pool[users])
                              if all_items is not None else
                              self.scorer.score(users, pool[users])).float()
        return outs

    @torch.no_grad()
    def _score_positives(self) -> Tensor:
        users, items = self.train_pos.row_ids(), self.train_pos.indices
        out = torch.empty(users.numel(), device=users.device)
        step = self.score_batch_size * 64
        for s in range(0, users.numel(), step):
            sl = slice(s, s + step)
            out[sl] = self.scorer.score(users[sl],
                                        items[sl].view(-1, 1)).view(-1).float()
        return out

    def _start(self) -> None:
        """The first pool (scored now, as the positives), H pools ahead and
        a uniform memory."""
        self.pool = self._draw_pool()
        self.pool_hist = self._score_pools([self.pool])
        self.pos_hist = [self._score_positives()]
        self.next_pools = [self._draw_pool() for _ in range(self.history)]
        self.next_hist = [[] for _ in range(self.history)]
        self.memory = torch.rand(self.num_users, self.pool_size,
                                 device=self.pool.device).topk(
            self.memory_size, dim=-1).indices
        self._rotated = False

    def _rotate(self) -> None:
        """End of an epoch: scores the pools ahead and the positives, then
        the next pool (with its last H epoch-end scores) takes over."""
        H = self.history
        for hist, scores in zip(self.next_hist,
                                self._score_pools(self.next_pools)):
            hist.append(scores)
            del hist[:-H]
        # the positives' scores before training are dropped at the first
        # epoch end: from then on they are scored at the same epoch ends as
        # the pool in use
        self.pos_hist = (self.pos_hist if self._rotated else []) + \
            [self._score_positives()]
        del self.pos_hist[:-H]
        self._rotated = True
        self.pool, self.pool_hist = self.next_pools[0], self.next_hist[0]
        self.next_pools = self.next_pools[1:] + [self._draw_pool()]
        self.next_hist = self.next_hist[1:] + [[]]

    def on_epoch_start(self, epoch: int) -> None:
        """Renews the pool in use (the first call draws everything)."""
        if self.scorer is None:
            raise RuntimeError("SRNS: no scorer set; pass 'scorer=' or call "
                               "set_scorer(model) before training")
        if self.pool is None:
            self._start()
        else:
            self._rotate()
        self.epoch += 1

    # ------------------------------------------------------------ sampling
    def hard_scores(self, users: Tensor, pos_items: Tensor,
                    items: Tensor, positions: Tensor) -> Tensor:
        r"""The selection score :math:`P_{\mathrm{pos}} + \alpha_t \cdot
        \mathrm{std}[P_{\mathrm{pos}}]` of pool items for each row (the
        standard deviation over the recorded epoch ends, population form as
        the released code; a positive that is not a training positive has no
        history and counts with its current score).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            items (torch.Tensor): The pool items to score,
                :obj:`torch.long`.
            positions (torch.Tensor): Their positions in the user's pool,
                :obj:`torch.long`.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **items, positions:** :math:`(B, K)`
            - **output:** two tensors :math:`(B, K)`: the selection score
              and the standard deviation
        """
        pos = self.scorer.score(users, pos_items.view(-1, 1))  # [B, 1]
        lik = torch.sigmoid(self.scorer.score(users, items) - pos)
        hist_c = torch.stack(self.pool_hist)[:, users.view(-1, 1),
                                             positions]  # [H', B, K]
        key = users * self.num_items + pos_items
        k = torch.searchsorted(self._keys, key).clamp_max(
            max(self._keys.numel() - 1, 0))
        found = self._keys[k] == key if self._keys.numel() else \
            torch.zeros_like(key, dtype=torch.bool)
        hist_p = torch.stack(self.pos_hist)[:, k] if self._keys.numel() \
            else pos.view(1, -1).expand(len(self.pos_hist), -1)
        hist_p = torch.where(found, hist_p, pos.view(1, -1).to(hist_p.dtype))
        std = torch.sigmoid(hist_c - hist_p.unsqueeze(-1)).std(
            dim=0, unbiased=False)
        return lik + self.alpha_t * std.to(lik.dtype), std

    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        if num_neg > self.memory_size:
            raise ValueError(f"SRNS: 'num_neg' must be at most "
                             f"'memory_size'={self.memory_size} (the "
                             f"negatives are distinct memory items) (got "
                             f"{num_neg})")
        if self.pool is None:  # sampling before the first epoch start
            self.on_epoch_start(0)
        mem = self.memory[users]  # [B, S1]
        items = self.pool[users.view(-1, 1), mem]
        score, std = self.hard_scores(users, pos_items, items, mem)
        best = score.topk(num_neg, dim=-1).indices  # [B, n]
        self._std_sum = self._std_sum.to(std.device) + \
            std.gather(-1, best).sum()
        self._std_num += best.numel()
        neg = items.gather(-1, best)
        self.refresh_memory(torch.unique(users))
        return SamplerOutput(neg)

    @torch.no_grad()
    def refresh_memory(self, users: Tensor) -> None:
        r"""The memory refresh of each of :obj:`users` (distinct): its
        :math:`S_1` positions and :math:`S_2` uniform ones, of which
        :math:`S_1` distinct ones are kept, drawn without replacement with
        probability :math:`\propto \exp(\hat{y}_{uj} / T)` (Gumbel top-k).

        Args:
            users (torch.Tensor): Distinct user ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
        """
        n = users.numel()
        new = torch.randint(self.pool_size, (n, self.num_refresh),
                            device=users.device)
        pos = torch.cat([self.memory[users], new], dim=1)  # [n, S1 + S2]
        pos, _ = pos.sort(dim=1)
        dup = torch.zeros_like(pos, dtype=torch.bool)
        dup[:, 1:] = pos[:, 1:] == pos[:, :-1]
        logits = self.scorer.score(
            users, self.pool[users.view(-1, 1), pos]) / self.temperature
        u = torch.rand(logits.shape, device=logits.device).clamp_min(1e-20)
        keys = logits - torch.log(-torch.log(u))  # + Gumbel noise
        keys = keys.masked_fill(dup, -float('inf'))
        keep = keys.topk(self.memory_size, dim=1).indices
        self.memory[users] = pos.gather(1, keep)

    def diagnostics(self) -> Dict[str, float]:
        """:obj:`alpha_t` and the mean standard deviation of the chosen
        negatives (:obj:`std_chosen`) since the last call."""
        out = {'alpha_t': self.alpha_t}
        if self._std_num:
            out['std_chosen'] = float(self._std_sum) / self._std_num
        self._std_sum, self._std_num = torch.zeros(()), 0
        return out

    def to(self, device) -> 'SRNS':
        super().to(device)
        device = self.train_pos.device  # resolved ("auto")
        self._keys = self._keys.to(device)
        for name in ('pool', 'memory'):
            t = getattr(self, name)
            if t is not None:
                setattr(self, name, t.to(device))
        self.pool_hist = [t.to(device) for t in self.pool_hist]
        self.pos_hist = [t.to(device) for t in self.pos_hist]
        self.next_pools = [t.to(device) for t in self.next_pools]
        self.next_hist = [[t.to(device) for t in h] for h in self.next_hist]
        return self

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(memory_size={self.memory_size}, '
                f'num_refresh={self.num_refresh}, '
                f'pool_size={self.pool_size}, alpha={self.alpha})')
