r"""KGPolicy: reinforced negative sampling over a knowledge graph (Wang et
al., "Reinforced Negative Sampling over Knowledge Graph for Recommendation",
WWW 2020), on PyTorch Geometric."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler import _kgpolicy_nn as nn
from kgsampler.sampler.base import (Sampler, SamplerOutput, Scorer,
                                    check_update_batch, optimizer_follow)
from kgsampler.utils._softmax import BACKENDS, resolve_backend


@dataclass
class KGPolicyRollout:
    r"""What :meth:`KGPolicy.loss` needs to recompute the policy's
    log-probabilities differentiably (indices only, no autograd graph).
    :math:`R = B N` walks of :math:`T` steps; :obj:`-1` marks invalid
    candidates and missing choices.

    Shapes:
        - **users:** :math:`(R)`
        - **src1, src2, choice1, choice2:** :math:`(T, R)` (node ids of the
          two hops' sources; chosen columns)
        - **cand1:** :math:`(T, R, C_1)`, **cand2:** :math:`(T, R, C_2)`
        - **prob1:** :math:`(T, R, C_1)`, **prob2:** :math:`(T, R, C_2)`
          (the attention the walk sampled from, policy :obj:`version`; 0 on
          invalid candidates)
    """
    users: Tensor
    src1: Tensor
    cand1: Tensor
    choice1: Tensor
    src2: Tensor
    cand2: Tensor
    choice2: Tensor
    version: int = 0
    prob1: Optional[Tensor] = None
    prob2: Optional[Tensor] = None

    def select(self, rows: Optional[Tensor]) -> 'KGPolicyRollout':
        r"""The walks :obj:`rows` only (all if :obj:`None`).

        Args:
            rows (torch.Tensor, optional): Indices of the walks to keep,
                :obj:`torch.long`; :obj:`None` keeps all (returns
                :obj:`self`).

        Shapes:
            - **rows:** :math:`(R')`
            - **output:** a :class:`KGPolicyRollout` of the :math:`R'` walks:
              **users** :math:`(R')`, **src1, src2, choice1, choice2**
              :math:`(T, R')`, **cand1, prob1** :math:`(T, R', C_1)`,
              **cand2, prob2** :math:`(T, R', C_2)`
        """
        if rows is None:
            return self
        col = lambda x: None if x is None else x.index_select(1, rows)
        return KGPolicyRollout(
            self.users[rows], col(self.src1), col(self.cand1),
            col(self.choice1), col(self.src2), col(self.cand2),
            col(self.choice2), self.version, col(self.prob1),
            col(self.prob2))

    def narrow(self, start: int, length: int) -> 'KGPolicyRollout':
        r"""The walks :obj:`start .. start + length - 1` (views)."""
        col = lambda x: None if x is None else x.narrow(1, start, length)
        return KGPolicyRollout(
            self.users.narrow(0, start, length), col(self.src1),
            col(self.cand1), col(self.choice1), col(self.src2),
            col(self.cand2), col(self.choice2), self.version,
            col(self.prob1), col(self.prob2))

    @staticmethod
    def cat(rollouts: List['KGPolicyRollout']) -> 'KGPolicyRollout':
        r"""The walks of several rollouts of one policy version, in order
        (candidate columns padded with :obj:`-1`, probabilities with 0)."""
        if len(rollouts) == 0:
            raise ValueError("KGPolicyRollout.cat: 'rollouts' must not be "
                             "empty (got [])")
        versions = sorted({r.version for r in rollouts})
        if len(versions) > 1:
            raise ValueError(f"KGPolicyRollout.cat: the rollouts must come "
                             f"from one policy version (got versions "
                             f"{versions})")
        if len(rollouts) == 1:
            return rollouts[0]

        def col(name, value=None):
            xs = [getattr(r, name) for r in rollouts]
            if xs[0] is None:
                return None
            if value is not None:
                C = max(x.size(-1) for x in xs)
                xs = [nn.pad_columns(x, C, value) for x in xs]
            return torch.cat(xs, 1)
        return KGPolicyRollout(
            torch.cat([r.users for r in rollouts]), col('src1'),
            col('cand1', -1), col('choice1'), col('src2'), col('cand2', -1),
            col('choice2'), rollouts[0].version, col('prob1', 0.),
            col('prob2', 0.))


@dataclass
class KGPolicyOutput(SamplerOutput):
    r""":class:`~kgsampler.sampler.SamplerOutput` of :class:`KGPolicy`.

    :obj:`log_prob` is the log-probability of the whole walk under the
    policy (a value: walks are sampled without gradients, and
    :meth:`KGPolicy.update` recomputes it differentiably from
    :obj:`rollout`); :obj:`paths` holds the walk as node ids of
    the homogeneous graph (users :obj:`0..U-1`, entity :obj:`e` ->
    :obj:`U + e`), :obj:`[pos, e'_1, e_1, ..., e'_T, e_T]`, :obj:`-1` where a
    hop had no candidate.

    Args:
        proposals (torch.Tensor): Item proposed at each step (the last one is
            the negative before any fallback), :math:`(B, N, T)`.
        step_log_prob (torch.Tensor): Log-probability of each step (both
            hops), :math:`(B, N, T)`.
        rollout (KGPolicyRollout): Indices for :meth:`KGPolicy.loss`.
    """
    proposals: Optional[Tensor] = None
    step_log_prob: Optional[Tensor] = None
    rollout: Optional[KGPolicyRollout] = None

    def narrow(self, start: int, length: int) -> 'KGPolicyOutput':
        out = super().narrow(start, length)
        if self.rollout is not None:
            N = self.num_neg
            out.rollout = self.rollout.narrow(start * N, length * N)
        return out

    narrow.__doc__ = SamplerOutput.narrow.__doc__


class KGPolicy(Sampler, torch.nn.Module):
    r"""The knowledge-graph policy network of `"Reinforced Negative Sampling
    over Knowledge Graph for Recommendation"
    <https://arxiv.org/abs/2003.05753>`_ (Wang et al., WWW 2020).

    A negative for :math:`(u, i)` is found by :math:`T` exploration steps on
    the collaborative knowledge graph (training interactions plus the item KG,
    relations merged): from the current item :math:`e_t` (:math:`e_0 = i`)
    pick a neighbour :math:`e'` (a KG entity or another user), then an item
    :math:`e_{t+1}` among :math:`e'`'s item neighbours, with the two-stage
    attention

    .. math::
        p(e' \mid e_t) &= \mathrm{softmax}_{e' \in \mathcal{C}_1(e_t)}
        \big(\mathbf{h}_u^{\top}\,\mathrm{LeakyReLU}(\mathbf{h}_{e_t} \odot
        \mathbf{h}_{e'})\big) \\
        p(e_{t+1} \mid e') &= \mathrm{softmax}_{e_{t+1} \in \mathcal{C}_2(e')}
        \big(\mathbf{h}_u^{\top}\,\mathrm{LeakyReLU}(\mathbf{h}_{e'} \odot
        \mathbf{h}_{e_{t+1}})\big)

    over representations :math:`\mathbf{h}` from ID embeddings and
    GraphSAGE layers (:class:`~torch_geometric.nn.conv.SAGEConv`). The
    candidate sets are pruned: :obj:`n1` random neighbours per node (tables
    redrawn every :obj:`table_refresh_epochs`), the :obj:`n2` with the largest
    :math:`\mathbf{h}_{e}^{\top}\mathbf{h}_{e'}` kept, plus
    :obj:`num_random` uniform items; nodes already on the path, the user
    itself and the user's training positives are removed, so the walk never
    proposes a training positive. The softmax is a scatter softmax over the
    flat valid (row, candidate) pairs. The last item is the negative; every
    step's item is a proposal rewarded by the recommender,

    .. math::
        R(e_t) = w_p\, f(u, e_t) + w_s\, g(i, e_t),

    (:meth:`Scorer.score` and the recommender's :obj:`similarity(items_a,
    items_b)` hook), turned into discounted returns with :obj:`gamma`, minus
    a running-average baseline, and optimised with REINFORCE on both hops'
    log-probabilities (:meth:`update`, the recommender frozen).

    Graph learning is amortised: representations (and the pruned neighbour
    tables) are computed once per policy update and reused by every
    :meth:`sample` until the next one. Each :meth:`update` back-propagates its
    batch's REINFORCE loss into those cached representations only (cheap);
    every :obj:`refresh_interval` batches the accumulated gradient goes
    through the encoder once and Adam takes one step (exactly on-policy: the
    policy does not change in between).

    **Fallbacks** (counted in :meth:`summary_stats`): an item whose sampled
    neighbourhood is empty stays in place and picks among the random items;
    a hop with no valid candidate ends on a uniform non-positive item
    (:obj:`output.fallback`). Training positives are never returned.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        edge_index (torch.Tensor): The collaborative KG in the homogeneous
            layout (see :func:`~kgsampler.data.to_homogeneous_kg`), both
            directions, :math:`(2, E)`.
        num_entities (int): Entities, items included (nodes are
            :math:`|\mathcal{U}| + |\mathcal{E}|`).
        scorer (Scorer, optional): The recommender (needs :obj:`score`, and
            :obj:`similarity` when :obj:`w_s != 0`).
        steps (int, optional): Exploration steps :math:`T`. (default: 2)
        n1 (int, optional): Sampled neighbours per node. (default: 64)
        n2 (int, optional): Neighbours kept after pruning. (default: 16)
        num_random (int, optional): Uniform items added to each second-hop
            candidate set. (default: 8)
        prune_random (bool, optional): Let the random items compete in the
            pruning (else they bypass it). (default: :obj:`False`)
        user_hops (bool, optional): Let the first hop go to users (the
            collaborative KG: item -> user -> item, as the paper);
            :obj:`False` walks item -> KG entity -> item only, which did
            better on validation on ml-1m and lastfm (see the README).
            (default: :obj:`False`)
        center_reward (bool, optional): Subtract from the prediction reward
            :math:`f(u, e_t)` its mean over 8 random users, :math:`f(u, e_t)
            - \overline{f}(\cdot, e_t)`, so that an item is not rewarded for
            being popular (scored high by everyone). Not in the paper; see
            the README for why. (default: :obj:`False`)
        user_baseline (bool, optional): Subtract from the prediction reward
            the user's mean score over 8 uniform items, :math:`f(u, e_t) -
            \overline{f}(u, \cdot)`: a per-user baseline (it does not depend
            on the walk, so the policy gradient stays unbiased) that removes
            the between-user spread of the scores from the advantages. Not
            in the paper; the logged rewards are the centred ones.
            (default: :obj:`False`)
        cap_reward (bool, optional): Replace the prediction reward by
            :math:`f(u, i) - |f(u, i) - f(u, e_t)|`: highest for proposals
            scored like the positive :math:`i`, lower for those scored above
            it (likely items the user would like: false negatives). Not in
            the paper; see the README. (default: :obj:`False`)
        positive_penalty (float, optional): With a value :math:`c > 0`, the
            user's training positives stay among the second hop's
            candidates, and a proposal that is one gets the reward
            :math:`-c` instead of the recommender's: the policy is taught to
            steer away from what the user liked (the items most like the
            user's held-out positives), the "factual" half of the paper's
            aim, learned instead of only masked. A walk that still ends on a
            training positive returns a uniform negative instead, counted in
            :obj:`fallback_rate`. 0: positives are masked out of the
            candidates. Not in the paper. (default: :obj:`0.0`)
        entropy_weight (float, optional): Weight of an entropy bonus on both
            hops' attention in the policy loss, against the policy's collapse
            onto a few items. Not in the paper. (default: :obj:`0.0`)
        w_p (float, optional): Prediction-reward weight. (default: 1.0)
        w_s (float, optional): Similarity-reward weight (negative: hard but
            dissimilar negatives). (default: 1.0)
        gamma (float, optional): Discount of the returns. (default: 0.99)
        baseline_decay (float, optional): Decay of the running-average
            reward baseline. (default: 0.9)
        lr (float, optional): Adam learning rate of the policy. (default:
            1e-3)
        weight_decay (float, optional): Adam weight decay. (default: 0)
        embedding_dim (int, optional): ID embedding size. (default: 64)
        hidden_dims (sequence of int, optional): SAGEConv output sizes, one a
            layer. (default: :obj:`(64, 64)`)
        negative_slope (float, optional): LeakyReLU slope. (default: 0.2)
        refresh_interval (int, optional): Batches between policy updates and
            representation refreshes (64 and 16 were equal on ml-1m
            validation; 64 is faster). (default: 64)
        walk_ahead (int, optional): Batches whose walks are drawn in one
            call and whose closed-form policy gradients are accumulated in
            one pass: the :attr:`lookahead` offered to a training loop
            (capped by the batches left before the next policy update, so
            every walk still comes from the current policy: the same
            distribution as one batch at a time), and the number of
            :meth:`update` calls whose gradients are gathered before they
            are computed together. Fewer, larger operations: on a GPU, where
            the per-batch walk is bound by kernel launches, this is what
            makes it fast. 1: batch by batch. (default: 16)
        pg_fraction (float, optional): Fraction of each batch's walks, drawn
            at random, that enter the policy gradient (REINFORCE stays
            unbiased; 1: all walks). Walks are always sampled without
            gradients; the gradient comes in closed form from the
            probabilities they were sampled from. (default: 0.25)
        table_refresh_epochs (int, optional): Epochs between redraws of the
            neighbour tables (0: never). (default: 1)
        greedy (bool, optional): Take the argmax instead of sampling.
            (default: :obj:`False`)
        softmax_backend (str, optional): :obj:`"auto"`,
            :obj:`"torch_scatter"` or :obj:`"pyg"` (scatter softmax over the
            flat valid pairs), or :obj:`"dense"` (masked softmax over the
            padded candidate rows when sampling, same result; the policy
            gradient then uses the default scatter back end).
            (default: :obj:`"auto"`)
        aggr_backend (str, optional): :obj:`"auto"`, :obj:`"csr"`,
            :obj:`"torch_sparse"` or :obj:`"scatter"`. (default:
            :obj:`"auto"`)
        edge_rel (torch.Tensor, optional): Relation id per edge, for
            explanations. (default: :obj:`None`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    learnable = True
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR, edge_index: Tensor,
                 num_entities: int, scorer: Optional[Scorer] = None,
                 steps: int = 2, n1: int = 64, n2: int = 16,
                 num_random: int = 8, prune_random: bool = False,
                 user_hops: bool = False, center_reward: bool = False,
                 user_baseline: bool = False, cap_reward: bool = False,
                 positive_penalty: float = 0.0,
                 entropy_weight: float = 0.0, w_p: float = 1.0,
                 w_s: float = 1.0, gamma: float = 0.99,
                 baseline_decay: float = 0.9, lr: float = 1e-3,
                 weight_decay: float = 0.0, embedding_dim: int = 64,
                 hidden_dims: Sequence[int] = (64, 64),
                 negative_slope: float = 0.2, refresh_interval: int = 64,
                 walk_ahead: int = 16, pg_fraction: float = 0.25,
                 table_refresh_epochs: int = 1, greedy: bool = False,
                 softmax_backend: str = 'auto', aggr_backend: str = 'auto',
                 edge_rel: Optional[Tensor] = None, **kwargs):
        torch.nn.Module.__init__(self)
        Sampler.__init__(self, train_pos, **kwargs)
        for name, v, lo in (('steps', steps, 1), ('n1', n1, 1), ('n2', n2, 1),
                            ('num_random', num_random, 0),
                            ('embedding_dim', embedding_dim, 1),
                            ('refresh_interval', refresh_interval, 1),
                            ('walk_ahead', walk_ahead, 1),
                            ('table_refresh_epochs', table_refresh_epochs,
                             0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"KGPolicy: '{name}' must be an int >= {lo} "
                                 f"(got {v!r})")
        for name, v in (('user_hops', user_hops),
                        ('center_reward', center_reward),
                        ('user_baseline', user_baseline),
                        ('cap_reward', cap_reward),
                        ('prune_random', prune_random), ('greedy', greedy)):
            if not isinstance(v, bool):
                raise TypeError(f"KGPolicy: '{name}' must be a bool "
                                f"(got {v!r})")
        self.user_hops, self.center_reward = user_hops, center_reward
        self.user_baseline, self.cap_reward = user_baseline, cap_reward
        for name, v in (('w_p', w_p), ('w_s', w_s), ('gamma', gamma),
                        ('baseline_decay', baseline_decay), ('lr', lr),
                        ('weight_decay', weight_decay),
                        ('negative_slope', negative_slope),
                        ('entropy_weight', entropy_weight),
                        ('positive_penalty', positive_penalty)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    not math.isfinite(v):
                raise TypeError(f"KGPolicy: '{name}' must be a finite "
                                f"number (got {v!r})")
        for name, v in (('weight_decay', weight_decay),
                        ('entropy_weight', entropy_weight),
                        ('positive_penalty', positive_penalty)):
            if v < 0:
                raise ValueError(f"KGPolicy: '{name}' must be a non-negative "
                                 f"number (got {v!r})")
        if not 0.0 <= negative_slope < 1.0:
            raise ValueError(f"KGPolicy: 'negative_slope' must lie in [0, 1) "
                             f"(got {negative_slope!r})")
        if isinstance(num_entities, bool) or not isinstance(
                num_entities, numbers.Integral):
            raise TypeError(f"KGPolicy: 'num_entities' must be an int (got "
                            f"{num_entities!r})")
        if softmax_backend not in ('dense', ) + BACKENDS:
            raise ValueError(f"KGPolicy: 'softmax_backend' must be one of "
                             f"{('dense', ) + BACKENDS} (got "
                             f"{softmax_backend!r})")
        self.entropy_weight = float(entropy_weight)
        self.positive_penalty = float(positive_penalty)
        if n2 > n1:
            raise ValueError(f"KGPolicy: 'n2' must not exceed 'n1' (got "
                             f"n2={n2}, n1={n1})")
        hidden_dims = list(hidden_dims)
        if any(isinstance(d, bool) or not isinstance(d, int) or d < 1
               for d in hidden_dims):
            raise ValueError(f"KGPolicy: 'hidden_dims' must be positive ints "
                             f"(got {hidden_dims!r})")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"KGPolicy: 'gamma' must lie in [0, 1] "
                             f"(got {gamma!r})")
        if not 0.0 <= baseline_decay < 1.0:
            raise ValueError(f"KGPolicy: 'baseline_decay' must lie in [0, 1) "
                             f"(got {baseline_decay!r})")
        if isinstance(pg_fraction, bool) or not isinstance(
                pg_fraction, (int, float)) or not 0.0 < pg_fraction <= 1.0:
            raise ValueError(f"KGPolicy: 'pg_fraction' must lie in (0, 1] "
                             f"(got {pg_fraction!r})")
        if not lr > 0:
            raise ValueError(f"KGPolicy: 'lr' must be positive (got {lr!r})")
        if w_p == 0 and w_s == 0:
            raise ValueError("KGPolicy: at least one of 'w_p' and 'w_s' must "
                             "be non-zero")
        num_nodes = self.num_users + int(num_entities)
        if int(num_entities) < self.num_items:
            raise ValueError(f"KGPolicy: 'num_entities' must count the items "
                             f"too (got {num_entities} < {self.num_items} "
                             f"items)")
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or \
                edge_index.size(0) != 2:
            raise ValueError(f"KGPolicy: 'edge_index' must be a [2, E] "
                             f"tensor (got {getattr(edge_index, 'shape', None)})")
        if edge_index.is_floating_point() or edge_index.is_complex() or \
                edge_index.dtype == torch.bool:
            raise TypeError(f"KGPolicy: 'edge_index' must hold integer node "
                            f"ids (got {edge_index.dtype})")
        if edge_rel is not None and (not isinstance(edge_rel, Tensor) or
                                     edge_rel.dim() != 1 or edge_rel.numel()
                                     != edge_index.size(1)):
            raise ValueError(f"KGPolicy: 'edge_rel' must hold one relation "
                             f"id per edge, shape [{edge_index.size(1)}] "
                             f"(got {tuple(getattr(edge_rel, 'shape', ()))})")
        edge_index = edge_index.long()
        if edge_index.numel() > 0 and (int(edge_index.min()) < 0 or int(
                edge_index.max()) >= num_nodes):
            raise ValueError(f"KGPolicy: 'edge_index' must hold node ids in "
                             f"[0, {num_nodes}) (users first, then entities)")
        self.softmax_backend = ('dense' if softmax_backend == 'dense' else
                                resolve_backend(softmax_backend))
        self.steps, self.n1, self.n2 = steps, n1, n2
        self.num_random, self.prune_random = num_random, bool(prune_random)
        self.w_p, self.w_s, self.gamma = float(w_p), float(w_s), float(gamma)
        self.baseline_decay = float(baseline_decay)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.refresh_interval, self.walk_ahead = refresh_interval, walk_ahead
        self.pg_fraction = float(pg_fraction)
        self.table_refresh_epochs = table_refresh_epochs
        self.greedy = bool(greedy)
        self.negative_slope = float(negative_slope)
        self.num_entities, self.num_nodes = int(num_entities), num_nodes
        self.edge_index = edge_index
        self.edge_rel = edge_rel
        self.encoder = nn.GraphEncoder(num_nodes, edge_index, embedding_dim,
                                       hidden_dims, negative_slope,
                                       aggr_backend)
        self.register_buffer('baseline', torch.zeros(steps))
        self.register_buffer('baseline_ready', torch.zeros((), dtype=torch.bool))
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr,
                                          weight_decay=self.weight_decay)
        self._buffer: List = []
        self._num_pending, self._pending_loss, self._last_loss = 0, 0.0, 0.0
        self._invalidate()
        self.refresh_tables()
        if scorer is not None:
            self.set_scorer(scorer)

    # ------------------------------------------------------------ building
    @classmethod
    def from_dataset(cls, dataset, scorer: Optional[Scorer] = None,
                     track_false_negatives: bool = True,
                     **kwargs) -> 'KGPolicy':
        r"""Builds KGPolicy on a :class:`~kgsampler.data.KGRecDataset`'s
        collaborative KG (read from :obj:`dataset.data`).

        Args:
            dataset (KGRecDataset): The dataset.
            scorer (Scorer, optional): The recommender.
            track_false_negatives (bool, optional): Count negatives that are
                validation positives (a diagnostic in
                :meth:`summary_stats`). (default: :obj:`True`)
            **kwargs (optional): Arguments of :class:`KGPolicy`.
        """
        edge_index, edge_rel, _ = nn.collaborative_graph(dataset)
        cls._monitor_kwargs(dataset, track_false_negatives, kwargs)
        return cls(dataset.train_pos, edge_index, int(dataset.num_entities),
                   scorer=scorer, edge_rel=edge_rel, **kwargs)

    def __setattr__(self, name, value):
        if name == 'scorer':  # never register the recommender as a submodule
            object.__setattr__(self, name, value)
        else:
            torch.nn.Module.__setattr__(self, name, value)

    def set_scorer(self, scorer: Scorer) -> None:
        Sampler.set_scorer(self, scorer)
        if self.w_s != 0 and not callable(getattr(scorer, 'similarity',
                                                  None)):
            raise TypeError(f"KGPolicy: the similarity reward (w_s="
                            f"{self.w_s}) needs 'scorer.similarity(items_a, "
                            f"items_b)'; {type(scorer).__name__} has none "
                            f"(implement it, or set w_s=0)")

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()
        self.baseline.zero_()
        self.baseline_ready.fill_(False)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr,
                                          weight_decay=self.weight_decay)
        self._buffer = []
        self._num_pending, self._pending_loss = 0, 0.0
        self._invalidate()

    def load_state_dict(self, *args, **kwargs):
        out = torch.nn.Module.load_state_dict(self, *args, **kwargs)
        # gradients accumulated under the old parameters are dropped with
        # them: the next update starts a fresh refresh interval
        self.optimizer.zero_grad(set_to_none=True)
        self._buffer = []
        self._num_pending, self._pending_loss = 0, 0.0
        self._invalidate()
        return out

    def to(self, *args, **kwargs) -> 'KGPolicy':
        r"""Moves the parameters (as :meth:`torch.nn.Module.to`) and the
        sampler's tables (as :meth:`Sampler.to`); so do :meth:`cuda`,
        :meth:`cpu`, :meth:`double` and every other
        :meth:`torch.nn.Module._apply`."""
        torch.nn.Module.to(self, *args, **kwargs)
        return self

    def _apply(self, fn, *args, **kwargs):
        torch.nn.Module._apply(self, fn, *args, **kwargs)
        if getattr(self, '_nbr1', None) is not None:  # built
            self._follow_parameters()
        return self

    def _follow_parameters(self) -> None:
        r"""Puts the non-parameter tables on the parameters' device and
        rebuilds the aggregation structure in their dtype."""
        device = self.encoder.embedding.weight.device
        Sampler.to(self, device)
        optimizer_follow(self.optimizer)  # Adam's moments follow
        self.edge_index = self.edge_index.to(device)
        if self.edge_rel is not None:
            self.edge_rel = self.edge_rel.to(device)
        self.encoder.set_graph(self.edge_index)
        self._nbr1 = self._nbr1.to(device)
        self._nbr2 = self._nbr2.to(device)
        self._counts = self._counts.to(device)
        self._reward_sum = self._reward_sum.to(device)
        self._buffer = []
        self._num_pending, self._pending_loss = 0, 0.0
        self._invalidate()

    @property
    def device(self) -> torch.device:
        return self.encoder.embedding.weight.device

    @property
    def lookahead(self) -> int:
        r"""Batches a training loop may draw negatives for in one
        :meth:`sample` call: :obj:`walk_ahead`, capped by the batches left
        before the next policy update (walks depend only on the policy,
        never on the recommender)."""
        return max(1, min(self.walk_ahead,
                          self.refresh_interval - self._num_pending))

    def refresh_tables(self) -> None:
        r"""Redraws the sampled neighbour tables: :obj:`n1` neighbours of
        every item (first hop) and :obj:`n1` item neighbours of every node
        (second hop); the pruned tables follow on the next :meth:`sample`."""
        U, I = self.num_users, self.num_items
        first = self.edge_index
        if not self.user_hops:  # item -> KG entity/item only
            first = first[:, first[1] >= U]
        self._nbr1 = nn.neighbour_table(first, I, self.n1, row_offset=U)
        to_item = (self.edge_index[1] >= U) & (self.edge_index[1] < U + I)
        self._nbr2 = nn.neighbour_table(self.edge_index[:, to_item],
                                        self.num_nodes, self.n1)
        self._pruned = None

    # --------------------------------------------------- representations
    def forward(self) -> Tensor:
        r"""Representations of all nodes, :math:`(|\mathcal{U}| +
        |\mathcal{E}|, d)`."""
        return self.encoder()

    def _invalidate(self) -> None:
        self._h = None  # representations used for sampling (a leaf)
        self._h_grad = None  # the same with the encoder's autograd graph
        self._pruned = None  # pruned neighbour tables for self._h
        self._keys = None  # attention keys of self._h (no autograd graph)
        self._keys_leaf = None  # the same as a leaf collecting gradients
        self._grad_h = None  # closed-form policy gradient w.r.t. self._h
        self._grad_keys = None  # ... and w.r.t. self._keys, as (pairs, q)
        self._deferred = []  # (rollout, coef) of updates awaiting _drain()
        self._version = getattr(self, '_version', 0) + 1

    def representations(self) -> Tensor:
        r"""The node representations used for sampling, computed at most
        once per policy update (every :obj:`refresh_interval` batches). With
        gradients enabled they are a leaf tensor that collects the policy
        gradient of every batch; the encoder is back-propagated once, at the
        update. The pruned neighbour tables and the attention keys
        (:func:`~kgsampler.sampler._kgpolicy_nn.attention_keys`) are
        refreshed with them."""
        if self._h is None:
            if torch.is_grad_enabled():
                self._h_grad = self.encoder()
                self._h = self._h_grad.detach().requires_grad_()
            else:
                self._h = self.encoder()
        if self._pruned is None:
            U, I = self.num_users, self.num_items
            with torch.no_grad():
                h = self._h.detach()
                nodes = torch.arange(self.num_nodes, device=h.device)
                self._pruned = (
                    nn.prune(h, nodes[U:U + I], self._nbr1, self.n2),
                    nn.prune(h, nodes, self._nbr2, self.n2))
                self._keys = nn.attention_keys(h)
        return self._h

    # ------------------------------------------------------------ sampling
    def _walk_step(self, h: Tensor, keys: Tensor, h_user: Tensor,
                   users: Tensor, cur: Tensor, history: Tensor):
        r"""One exploration step (two hops) of every walk, without gradients:
        the logits come from the exact key/query rewrite of the attention
        (one SDDMM a hop, :func:`~kgsampler.sampler._kgpolicy_nn.
        attention_logits_keys`)."""
        U, I = self.num_users, self.num_items
        R = cur.numel()
        pruned1, pruned2 = self._pruned
        a = self.negative_slope
        # hop 1: item e_t -> neighbour e' (entity, item or another user)
        c1 = pruned1[cur - U]
        bad = (c1 == users.unsqueeze(1)) | nn.in_history(c1, history)
        c1 = c1.masked_fill(bad, -1)
        q1 = nn.attention_query(h_user, h.index_select(0, cur), a)
        p1 = nn.masked_softmax(nn.attention_logits_keys(keys, q1, c1),
                               c1 >= 0, self.softmax_backend)
        i1 = nn.choose(p1, self.greedy)
        has1 = i1 >= 0
        mid = torch.where(has1, c1.gather(1, i1.clamp(min=0).view(-1, 1))
                          .view(-1), torch.full_like(i1, -1))
        src2 = torch.where(has1, mid, cur)
        # hop 2: e' -> item e_{t+1}
        c2 = pruned2[mid.clamp(min=0)].masked_fill(~has1.unsqueeze(1), -1)
        base2 = c2
        hist2 = torch.cat([history, mid.view(-1, 1)], 1)
        if self.num_random > 0:
            # random items, minus repeats of the row's pruned neighbours and
            # of earlier random items (the pruned rows are distinct)
            rand = nn.dedupe(torch.randint(I, (R, self.num_random),
                                           device=cur.device) + U)
            c2 = torch.cat([c2, rand.masked_fill(nn.in_history(rand, c2),
                                                 -1)], 1)
        valid = c2 >= 0
        pos = self.is_pos(users.view(-1, 1).expand_as(c2),
                          (c2 - U).clamp(0, I - 1)) & valid
        drop = nn.in_history(c2, hist2)
        if self.positive_penalty == 0:  # else positives are penalised
            drop = drop | pos
        c2 = c2.masked_fill(drop, -1)
        if self.prune_random and self.num_random > 0:
            c2 = nn.prune(h, src2, c2, self.n2)
        q2 = nn.attention_query(h_user, h.index_select(0, src2), a)
        p2 = nn.masked_softmax(nn.attention_logits_keys(keys, q2, c2),
                               c2 >= 0, self.softmax_backend)
        i2 = nn.choose(p2, self.greedy)
        logp = nn.gather_log_prob(p1, i1) + nn.gather_log_prob(p2, i2)
        nxt = c2.gather(1, i2.clamp(min=0).view(-1, 1)).view(-1)
        dead = i2 < 0
        if bool(dead.any()):
            nxt = nxt.clone()
            nxt[dead] = self.uniform_negatives(users[dead]) + U
        from_random = ~((nxt.view(-1, 1) == base2).any(1) | dead)
        counts = torch.stack([(~has1).sum(), dead.sum(),
                              (has1 & (mid < U)).sum(), pos.sum()])
        return (c1, i1, mid, src2, c2, i2, nxt, dead, from_random, logp,
                counts, p1, p2)

    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> KGPolicyOutput:
        U = self.num_users
        B, N, T = users.numel(), num_neg, self.steps
        h = self.representations()
        with torch.no_grad():
            return self._walk(users, pos_items, h.detach(), B, N, T, U)

    def _walk(self, users, pos_items, h, B, N, T, U) -> KGPolicyOutput:
        u = users.repeat_interleave(N)
        cur = pos_items.repeat_interleave(N) + U
        h_user = h.index_select(0, u)
        history = cur.view(-1, 1)
        rec = {k: [] for k in ('c1', 'i1', 'src2', 'c2', 'i2', 'cur', 'p1',
                               'p2')}
        items, logps, counts = [], [], []
        for _ in range(T):
            (c1, i1, mid, src2, c2, i2, nxt, dead, from_random, logp,
             cnt, p1, p2) = self._walk_step(h, self._keys, h_user, u, cur,
                                            history)
            logps.append(logp)
            counts.append(cnt)
            for k, v in (('c1', c1), ('i1', i1), ('src2', src2),
                         ('c2', c2), ('i2', i2), ('cur', cur), ('p1', p1),
                         ('p2', p2)):
                rec[k].append(v)
            history = torch.cat([history, mid.view(-1, 1),
                                 nxt.view(-1, 1)], 1)
            items.append(nxt - U)
            cur = nxt
        neg = items[-1].clone().view(B, N)
        fallback = dead.view(B, N).clone()
        replaced = self.replace_positives(users, neg)  # safety net
        fallback |= replaced
        if bool(replaced.any()):
            history[:, -1] = neg.view(-1) + U
        # counters stay tensors (no per-step host sync); summary_stats reads
        # them
        cnt = torch.stack(counts).sum(0)
        self._counts += torch.cat([cnt, from_random.sum().view(1)])
        self.stats['num_steps'] += u.numel() * T
        rollout = KGPolicyRollout(
            users=u, src1=torch.stack(rec['cur']),
            cand1=torch.stack(rec['c1']), choice1=torch.stack(rec['i1']),
            src2=torch.stack(rec['src2']), cand2=torch.stack(rec['c2']),
            choice2=torch.stack(rec['i2']), version=self._version,
            prob1=torch.stack(rec['p1']), prob2=torch.stack(rec['p2']))
        out = KGPolicyOutput(
            neg_items=neg, paths=history.view(B, N, 2 * T + 1),
            fallback=fallback,
            proposals=torch.stack(items, -1).view(B, N, T), rollout=rollout)
        out.step_log_prob = torch.stack(logps, -1).view(B, N, T)
        out.log_prob = out.step_log_prob.sum(-1)
        return out

    # ------------------------------------------------------------ learning
    def step_log_prob(self, output: KGPolicyOutput,
                      h: Optional[Tensor] = None) -> Tensor:
        r"""Log-probability of each step of the walks in :obj:`output` (both
        hops) under the current policy, differentiable (the exact key/query
        form of the attention over the flat valid pairs, scatter softmax).

        Args:
            output (KGPolicyOutput): A :meth:`sample` output.
            h (torch.Tensor, optional): Node representations (with their
                autograd graph); computed by the encoder if omitted.

        Shapes:
            - **output:** :math:`(B, N, T)`
        """
        r = output.rollout
        if r is None:
            raise ValueError("KGPolicy: 'output' has no rollout; pass the "
                             "output of KGPolicy.sample")
        if h is None:
            h = self.encoder()
        lp = self._rollout_log_prob(r, h)  # [T, R]
        B, N = output.neg_items.shape
        return lp.t().reshape(B, N, lp.size(0))

    def _rollout_log_prob(self, r: KGPolicyRollout, h: Tensor,
                          rows: Optional[Tensor] = None,
                          keys: Optional[Tensor] = None,
                          with_entropy: bool = False):
        r"""Differentiable log-probabilities :math:`(T, R')` of the walks
        :obj:`rows` (all if :obj:`None`) of a rollout: the exact key/query
        form of the attention (:obj:`keys` defaults to
        :obj:`attention_keys(h)`), logits only for the flat valid (row,
        candidate) pairs of both hops of all steps, one scatter softmax.
        With :obj:`with_entropy`, also the policy's entropy :math:`(T, R')`
        (both hops)."""
        r = r.select(rows)
        users, src1, cand1, choice1 = r.users, r.src1, r.cand1, r.choice1
        src2, cand2, choice2 = r.src2, r.cand2, r.choice2
        T, m = src1.shape
        if keys is None:
            keys = nn.attention_keys(h)
        C = max(cand1.size(-1), cand2.size(-1))
        cand = torch.cat([nn.pad_columns(cand1, C, -1),
                          nn.pad_columns(cand2, C, -1)]).view(2 * T * m, C)
        choice = torch.cat([choice1, choice2]).view(-1)
        g = h.index_select(0, torch.cat([users, src1.reshape(-1),
                                         src2.reshape(-1)]))
        g_u, g_s = g.split([m, 2 * T * m])
        q = nn.attention_query(g_u.repeat(2 * T, 1), g_s,
                               self.negative_slope)
        out = nn.pair_log_prob(keys, q, cand, choice, self.softmax_backend,
                               with_entropy)
        if with_entropy:
            return tuple(x.view(2, T, m).sum(0) for x in out)
        return out.view(2, T, m).sum(0)

    def _pg_loss(self, r: KGPolicyRollout, h: Tensor, rows: Optional[Tensor],
                 adv: Tensor, keys: Optional[Tensor] = None) -> Tensor:
        r"""REINFORCE loss of a rollout's walks :obj:`rows` with advantages
        :obj:`adv` :math:`(R', T)`, minus the entropy bonus."""
        if self.entropy_weight > 0:
            lp, ent = self._rollout_log_prob(r, h, rows, keys, True)
            bonus = self.entropy_weight * ent.sum(0).mean()
        else:
            lp, bonus = self._rollout_log_prob(r, h, rows, keys), 0.0
        return -(adv.t() * lp).sum(0).mean() - bonus

    def _pg_rows(self, num_rows: int, device) -> Optional[Tensor]:
        r"""The random rows whose policy gradient :meth:`update` computes
        (:obj:`None`: all)."""
        m = max(1, int(math.ceil(self.pg_fraction * num_rows)))
        if m >= num_rows:
            return None
        return torch.randperm(num_rows, device=device)[:m]

    def returns(self, reward: Tensor) -> Tensor:
        r"""Discounted returns :math:`G_t = \sum_{k \geq t} \gamma^{k-t}
        R_k` over the :math:`T` steps of each walk.

        Args:
            reward (torch.Tensor): Per-step rewards :math:`R_t` (e.g. from
                :meth:`reward`), steps in the last dimension.

        Shapes:
            - **reward:** :math:`(B, N, T)`
            - **output:** :math:`(B, N, T)`
        """
        out = torch.empty_like(reward)
        acc = torch.zeros_like(reward[..., 0])
        for t in range(reward.size(-1) - 1, -1, -1):
            acc = reward[..., t] + self.gamma * acc
            out[..., t] = acc
        return out

    def loss(self, output: KGPolicyOutput, reward: Tensor,
             h: Optional[Tensor] = None) -> Tensor:
        r"""The REINFORCE loss :math:`-\frac{1}{BN}\sum \sum_t (G_t - b_t)
        \log \pi(\text{step } t)` with discounted returns :math:`G` and the
        running baseline :math:`b`; the log-probabilities are recomputed
        (through the encoder unless :obj:`h` is given), so gradients reach
        the policy's parameters only.

        Args:
            output (KGPolicyOutput): A :meth:`sample` output.
            reward (torch.Tensor): Per-step rewards, e.g. from
                :meth:`reward`; the shape of :obj:`output.proposals`.
            h (torch.Tensor, optional): Representations with their graph
                (as :meth:`forward`). (default: :obj:`None`)

        Shapes:
            - **output.neg_items:** :math:`(B, N)`
            - **output.proposals:** :math:`(B, N, T)`
            - **reward:** :math:`(B, N, T)`
            - **h:** :math:`(|\mathcal{U}| + |\mathcal{E}|, d)`
            - **return:** :math:`()`
        """
        T = output.proposals.size(-1)
        if reward.shape != output.proposals.shape:
            raise ValueError(f"KGPolicy.loss: 'reward' must have shape "
                             f"{tuple(output.proposals.shape)} [B, N, T] "
                             f"(got {tuple(reward.shape)})")
        adv = (self.returns(reward.detach()) -
               self.baseline[:T].to(reward.dtype)).detach()
        return -(adv * self.step_log_prob(output, h)).sum(-1).mean()

    @torch.no_grad()
    def reward(self, users: Tensor, pos_items: Tensor,
               proposals: Tensor) -> Tensor:
        r"""Per-step rewards :math:`w_p f(u, e_t) + w_s g(i, e_t)` from the
        recommender (no gradient; :math:`f` centred over random users when
        :obj:`center_reward`, minus the user's mean score over uniform items
        when :obj:`user_baseline`, then capped at the positive's score when
        :obj:`cap_reward`); :math:`-c` for proposals that are training
        positives when :obj:`positive_penalty` :math:`= c > 0`.

        Args:
            users (torch.Tensor): The user of each row, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item :math:`i` of each
                row, :obj:`torch.long`.
            proposals (torch.Tensor): Item ids :math:`e_t` proposed at each
                of the :math:`T` = :obj:`steps` steps of the row's :math:`N`
                walks (:obj:`output.proposals` of :meth:`sample`),
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **proposals:** :math:`(B, N, T)`
            - **output:** :math:`(B, N, T)`
        """
        B = users.numel()
        flat = proposals.reshape(B, -1)
        r = torch.zeros(flat.shape, device=flat.device)
        if self.w_p != 0:
            f = self.scorer.score(users, flat).float()
            if self.center_reward:
                ref = torch.randint(self.num_users, (B * 8, ),
                                    device=flat.device)
                f = f - self.scorer.score(ref, flat.repeat_interleave(
                    8, 0)).float().view(B, 8, -1).mean(1)
            if self.user_baseline:
                ref = torch.randint(self.num_items, (B, 8),
                                    device=flat.device)
                f = f - self.scorer.score(users, ref).float().mean(
                    1, keepdim=True)
            if self.cap_reward:
                f_pos = self.scorer.score(users, pos_items.view(-1, 1))
                f_pos = f_pos.float()
                f = f_pos - (f_pos - f).abs()
            r = r + self.w_p * f
        if self.w_s != 0:
            r = r + self.w_s * self.scorer.similarity(pos_items, flat).float()
        if self.positive_penalty > 0:
            liked = self.is_pos(users.view(-1, 1).expand_as(flat), flat)
            r = r.masked_fill(liked, -self.positive_penalty)
        return r.view(proposals.shape)

    def update(self, users: Tensor, pos_items: Tensor,
               output: SamplerOutput) -> Dict[str, Union[float, Tensor]]:
        r"""Rewards the batch's walks (one per negative: :math:`N` a row,
        each of :math:`T` = :obj:`steps` steps) with the (frozen) recommender
        and accumulates their policy gradient; every :obj:`refresh_interval`
        batches takes one Adam step (one backward pass through the encoder),
        after which the representations are recomputed on the next
        :meth:`sample`.

        The walks were sampled without gradients; the log-probabilities of
        the chosen actions are recomputed differentiably for a random
        :obj:`pg_fraction` of the walks (all when 1), which keeps REINFORCE
        unbiased: the loss is the mean over those walks.

        Returns :obj:`sampler_reward` (the batch's mean last-step reward) and
        :obj:`sampler_loss` (the policy loss of the last update) as 0-dim
        tensors on the sampler's device: no host sync per batch.

        Args:
            users (torch.Tensor): The users of the rows :obj:`output` was
                sampled for (the :obj:`users` passed to :meth:`sample`, or
                this batch's rows of them when :obj:`output` was narrowed),
                :obj:`torch.long`. Only dtype and shape are checked, not the
                values.
            pos_items (torch.Tensor): The positive items of those same rows,
                :obj:`torch.long`. Only dtype and shape are checked.
            output (KGPolicyOutput): The :meth:`sample` output for those
                rows (or its :meth:`KGPolicyOutput.narrow` rows), with its
                :obj:`rollout`.

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **output.neg_items:** :math:`(B, N)`
            - **output.proposals:** :math:`(B, N, T)`, rewarded by
              :meth:`reward` into per-step rewards :math:`(B, N, T)`
        """
        if not isinstance(output, KGPolicyOutput) or output.rollout is None:
            raise TypeError("KGPolicy.update: 'output' must come from "
                            "KGPolicy.sample")
        check_update_batch('KGPolicy', users, pos_items,
                           output.neg_items.size(0))
        reward = self.reward(users, pos_items, output.proposals)
        with torch.no_grad():
            G = self.returns(reward)
            mean_G = G.mean(dim=(0, 1))
            # first batch: the baseline starts at its mean return (a select,
            # not a branch: no host sync)
            self.baseline.copy_(torch.where(self.baseline_ready,
                                            self.baseline, mean_G))
            self.baseline_ready.fill_(True)
            adv = G - self.baseline
            self.baseline.mul_(self.baseline_decay).add_(
                (1 - self.baseline_decay) * mean_G)
        r = output.rollout
        T = adv.size(-1)
        adv = adv.reshape(-1, T)  # rows b * N + j, as the rollout
        rows = self._pg_rows(adv.size(0), adv.device)
        if rows is not None:
            adv = adv[rows]
        scale = 1.0 / self.refresh_interval
        if self.entropy_weight == 0 and r.prob1 is not None and \
                self._h is not None and r.version == self._version:
            # closed form from the probabilities the walk sampled from,
            # computed for walk_ahead batches at once (_drain)
            self._deferred.append((r.select(rows), adv.t().to(
                self._h.dtype) * (scale / adv.size(0))))
            if len(self._deferred) >= self.walk_ahead:
                self._drain()
        elif self._h_grad is not None and self._h is not None and \
                self._h.requires_grad and r.version == self._version:
            # gradient w.r.t. the leaf representations, accumulated
            if self._keys_leaf is None:  # keys' gradient, once per refresh
                self._keys_leaf = self._keys.detach().requires_grad_()
            with torch.enable_grad():
                loss = self._pg_loss(r, self._h, rows, adv,
                                     self._keys_leaf) * scale
                loss.backward()
            self._pending_loss += loss.detach()
        else:  # sampled without gradients or before the last update
            self._buffer.append((r, adv, rows))
        self._num_pending += 1
        last = reward[..., -1]
        self._reward_sum += last.sum().to(self._reward_sum.dtype)
        self.stats['num_rewarded'] += last.numel()
        if self._num_pending >= self.refresh_interval:
            self.flush()
        # 0-dim tensors: the caller decides when to sync with the device
        return {'sampler_reward': last.mean(),
                'sampler_loss': torch.as_tensor(self._last_loss,
                                                device=last.device)}

    def _drain(self) -> None:
        r"""Accumulates the deferred closed-form policy gradients (all the
        :meth:`update` calls since the last drain) in one pass."""
        if not self._deferred:
            return
        r = KGPolicyRollout.cat([d[0] for d in self._deferred])
        coef = torch.cat([d[1] for d in self._deferred], 1)
        self._deferred = []
        self._pending_loss += self._accumulate_pg(r, coef)

    def _accumulate_pg(self, r: KGPolicyRollout, coef: Tensor) -> Tensor:
        r"""Accumulates the REINFORCE gradient of a rollout's walks with
        coefficients :obj:`coef` :math:`(T, R)` (advantage over the number of
        walks of the walk's batch, times the update's scale) with respect to
        the cached representations, in closed form: the walk sampled from the
        current policy, so :math:`\partial(-\log p_c)/\partial
        \mathrm{logit} = p - \mathrm{onehot}` needs no second forward pass;
        the logits' gradient goes to the queries (one sparse-dense product
        with the keys) and to the keys (its transpose), then to the
        representations (:func:`~kgsampler.sampler._kgpolicy_nn.
        attention_query_backward`). Exactly the gradient of
        :meth:`_pg_loss` (tested). Returns the loss value (0-dim)."""
        h, a = self._h.detach(), self.negative_slope
        users, src1, cand1, choice1, prob1 = (r.users, r.src1, r.cand1,
                                              r.choice1, r.prob1)
        src2, cand2, choice2, prob2 = r.src2, r.cand2, r.choice2, r.prob2
        T, m = src1.shape
        coef = coef.reshape(-1)  # t * m + r
        C = max(cand1.size(-1), cand2.size(-1))
        pad = nn.pad_columns
        cand = torch.cat([pad(cand1, C, -1),
                          pad(cand2, C, -1)]).view(2 * T * m, C)
        g = torch.cat([
            nn.logit_grad(pad(prob1, C, 0.).view(T * m, C),
                          choice1.reshape(-1), coef),
            nn.logit_grad(pad(prob2, C, 0.).view(T * m, C),
                          choice2.reshape(-1), coef)])
        loss = -(coef * (nn.gather_log_prob(prob1.reshape(T * m, -1),
                                            choice1.reshape(-1)) +
                         nn.gather_log_prob(prob2.reshape(T * m, -1),
                                            choice2.reshape(-1)))).sum()
        src = torch.cat([src1.reshape(-1), src2.reshape(-1)])
        h_user = h.index_select(0, users).repeat(2 * T, 1)
        h_src = h.index_select(0, src)
        q = nn.attention_query(h_user, h_src, a)
        d_user, d_src = nn.attention_query_backward(
            h_user, h_src, nn.pair_matmul(cand, g, self._keys), a)
        if self._grad_h is None:
            self._grad_h = torch.zeros_like(h)
            self._grad_keys = []
        self._grad_h.index_add_(0, torch.cat([users.repeat(2 * T), src]),
                                torch.cat([d_user, d_src]))
        # the keys' gradient is a [N, 2d] product: kept as its pairs and
        # formed once per update (a dense [N, 2d] a batch costs more than
        # the rest of the update on large graphs)
        self._grad_keys.append((cand, g, q))
        return loss.detach()

    def _pending_h_grad(self) -> Optional[Tensor]:
        r"""The policy gradient accumulated since the last update with
        respect to the cached representations :math:`(N, d)` (closed-form
        accumulators plus the leaf tensors' gradients), :obj:`None` if
        none."""
        if self._h is None:
            return None
        self._drain()
        h = self._h.detach()
        total = None
        if self._grad_h is not None:
            C = max(c.size(1) for c, _, _ in self._grad_keys)
            cand = torch.cat([nn.pad_columns(c, C, -1)
                              for c, _, _ in self._grad_keys])
            g = torch.cat([nn.pad_columns(g, C, 0.)
                           for _, g, _ in self._grad_keys])
            q = torch.cat([q for _, _, q in self._grad_keys])
            total = self._grad_h + nn.attention_keys_backward(
                h, nn.pair_matmul_t(cand, g, q, h.size(0)))
        grad = self._h.grad if self._h.requires_grad else None
        if grad is not None:
            total = grad if total is None else total + grad
        kgrad = self._keys_leaf.grad if self._keys_leaf is not None else None
        if kgrad is not None:
            kg = nn.attention_keys_backward(h, kgrad)
            total = kg if total is None else total + kg
        return total

    def flush(self) -> None:
        """Takes the policy step on what :meth:`update` accumulated now."""
        if self._num_pending == 0:
            return
        scale = 1.0 / self.refresh_interval
        with torch.enable_grad():
            terms = []
            total = self._pending_h_grad()
            h = None
            if total is not None or self._buffer:  # with the encoder's graph
                h = self._h_grad if self._h_grad is not None else \
                    self.encoder()
            if total is not None:
                terms.append((h * total).sum())
            if self._buffer:
                for r, adv, rows in self._buffer:
                    loss = self._pg_loss(r, h, rows, adv)
                    self._pending_loss += loss.detach() * scale
                    terms.append(loss * scale)
            self.optimizer.zero_grad()
            if terms:
                sum(terms).backward()
                self.optimizer.step()
        self._last_loss = self._pending_loss
        self.stats['num_updates'] += 1
        self._buffer = []
        self._num_pending = 0
        self._pending_loss = 0.0
        self._invalidate()

    def on_epoch_start(self, epoch: int) -> None:
        r"""Redraws the neighbour tables every :obj:`table_refresh_epochs`
        epochs (from the second epoch on; the first uses the tables built at
        construction)."""
        if self.table_refresh_epochs > 0 and epoch > 1 and \
                (epoch - 1) % self.table_refresh_epochs == 0:
            self.refresh_tables()

    # --------------------------------------------------------------- stats
    #: Step counters kept as one tensor during sampling (no host sync).
    _COUNTERS = ('num_no_neighbour', 'num_dead_end', 'num_user_hop',
                 'num_masked_positive', 'num_random_pick')

    def reset_stats(self) -> None:
        super().reset_stats()
        self.stats.update({k: 0 for k in ('num_steps', 'num_updates',
                                          'num_rewarded')
                           + self._COUNTERS})
        self.stats['reward_sum'] = 0.0
        dev = self._deg.device if hasattr(self, '_deg') else None
        self._counts = torch.zeros(len(self._COUNTERS), dtype=torch.long,
                                   device=dev)
        self._reward_sum = torch.zeros((), dtype=torch.float64, device=dev)

    def _sync_stats(self) -> None:
        r"""Moves the tensor counters into :obj:`stats` (one host sync)."""
        for k, v in zip(self._COUNTERS, self._counts.tolist()):
            self.stats[k] += int(v)
        self._counts.zero_()
        self.stats['reward_sum'] += float(self._reward_sum)
        self._reward_sum.zero_()

    def summary_stats(self) -> Dict[str, float]:
        r"""Counters and rates: :obj:`fallback_rate` (negatives replaced by a
        uniform item), :obj:`dead_end_rate` and :obj:`no_neighbour_rate` (per
        step), :obj:`user_hop_rate` (first hops through another user),
        :obj:`masked_positive_per_step` (training positives among the second
        hop's candidates: removed from them, or penalised with
        :obj:`positive_penalty`), :obj:`random_pick_rate` (negatives from the random items),
        :obj:`false_negative_rate` (negatives that are held-out positives,
        when monitored) and :obj:`mean_reward`."""
        self._sync_stats()
        out = super().summary_stats()
        st = self.stats
        steps = max(st['num_steps'], 1)
        neg = max(st['num_sampled'], 1)
        out.update({
            'dead_end_rate': st['num_dead_end'] / steps,
            'no_neighbour_rate': st['num_no_neighbour'] / steps,
            'user_hop_rate': st['num_user_hop'] / steps,
            'masked_positive_per_step': st['num_masked_positive'] / steps,
            'random_pick_rate': st['num_random_pick'] / neg,
            'mean_reward': st['reward_sum'] / max(st['num_rewarded'], 1),
        })
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'steps={self.steps}, n1={self.n1}, n2={self.n2}, '
                f'num_random={self.num_random}, w_p={self.w_p}, '
                f'w_s={self.w_s}, refresh_interval={self.refresh_interval})')


# --------------------------------------------------------------- explaining
def _name(dataset, node: int) -> str:
    U, I = int(dataset.num_users), int(dataset.num_items)
    if node < U:
        return f'user {node}'
    e = node - U
    kind = 'item' if e < I else 'entity'
    fn = getattr(dataset, 'entity_name', None)
    name = fn(e) if callable(fn) else None
    if name and name != f'entity {e}':
        return f'{kind} {e} "{name}"'
    return f'{kind} {e}'


def _relation(dataset, a: int, b: int) -> Optional[str]:
    r"""Name of the graph edge :obj:`a -> b` (:obj:`None` if there is none:
    a jump to a random item or a fallback)."""
    U = int(dataset.num_users)
    if (a < U) != (b < U):
        u, node = (a, b) if a < U else (b, a)
        e = node - U
        if e < int(dataset.num_items) and bool(
                (dataset.train_pos.row(u) == e).any()):
            return 'interacts' if a < U else 'interacted_by'
        return None
    if a < U:
        return None
    kg = dataset.kg
    ea, eb = a - U, b - U
    hit = ((kg[:, 0] == ea) & (kg[:, 2] == eb)).nonzero()
    inverse = ''
    if hit.numel() == 0:
        hit = ((kg[:, 0] == eb) & (kg[:, 2] == ea)).nonzero()
        inverse = '^-1'
    if hit.numel() == 0:
        return None
    r = int(kg[hit[0, 0], 1])
    fn = getattr(dataset, 'relation_name', None)
    return (fn(r) if callable(fn) else f'relation {r}') + inverse


def format_paths(dataset, users: Tensor, output: SamplerOutput,
                 n: int = 5) -> List[str]:
    r"""Human-readable exploring paths of a :class:`KGPolicy` output (the
    paper's case study), with entity and relation names where the dataset
    has them, e.g. ``user 7: item 12 "Heat" -[film.film.genre]-> entity 2401
    "Crime Film" -[film.film.genre^-1]-> item 88 "Ronin" => negative 88``.
    ``~>`` marks a jump to one of the random items, ``(no neighbour)`` a hop
    without candidates and ``(uniform fallback)`` a negative replaced by a
    uniform one.

    Args:
        dataset (KGRecDataset): The dataset the sampler was built on.
        users (torch.Tensor): The users passed to :meth:`KGPolicy.sample`.
        output (SamplerOutput): Its output (needs :obj:`paths`).
        n (int, optional): Number of paths to format. (default: :obj:`5`)

    Shapes:
        - **users:** :math:`(B)`
        - **output.neg_items:** :math:`(B, N)`
        - **output.paths:** :math:`(B, N, L)`, :math:`L = 2T + 1` for
          :class:`KGPolicy` (:obj:`-1` pads)
        - **output.fallback:** :math:`(B, N)`, optional
        - **return:** a list of :math:`\min(n, B N)` strings, rows in
          order (row :math:`b`'s :math:`N` paths, then row :math:`b + 1`'s)
    """
    if output.paths is None:
        raise ValueError("format_paths: 'output' has no paths (not a "
                         "KGPolicy output)")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"format_paths: 'n' must be a non-negative int "
                         f"(got {n!r})")
    paths = output.paths.cpu()
    B, N, _ = paths.shape
    lines = []
    for row in range(min(n, B * N)):
        b, j = divmod(row, N)
        nodes = [int(x) for x in paths[b, j]]
        text, prev = _name(dataset, nodes[0]), nodes[0]
        for node in nodes[1:]:
            if node < 0:
                text += ' -> (no neighbour)'
                continue
            rel = _relation(dataset, prev, node)
            text += (f' ~> {_name(dataset, node)}' if rel is None else
                     f' -[{rel}]-> {_name(dataset, node)}')
            prev = node
        if output.fallback is not None and bool(output.fallback[b, j]):
            text += ' (uniform fallback)'
        lines.append(f'user {int(users[b])}: {text} => negative '
                     f'{int(output.neg_items[b, j])}')
    return lines
