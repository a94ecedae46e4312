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
from kgsampler.sampler import _kgpolicy_graph as kg_graph
from kgsampler.sampler import _kgpolicy_attention as kg_attention
from kgsampler.sampler import _kgpolicy_gradient as kg_gradient
from kgsampler.sampler import _kgpolicy_compile as kg_compile
from kgsampler.sampler.base import (ModuleSamplerMixin, Sampler,
                                    SamplerOutput, Scorer,
                                    check_update_batch, optimizer_follow)
from kgsampler.utils._softmax import BACKENDS, resolve_backend

#: The second hop's selection rules (see :class:`KGPolicy`).
SELECTIONS = ('sample', 'recommender_max')


class _EagerOps:
    r"""The eager versions of the kernels of
    :class:`~kgsampler.sampler._kgpolicy_compile.Kernels` (the default)."""
    attention_query = staticmethod(kg_attention.attention_query)
    logit_grad = staticmethod(kg_gradient.logit_grad)
    attention_query_backward = staticmethod(
        kg_gradient.attention_query_backward)
    attention_keys_backward = staticmethod(
        kg_gradient.attention_keys_backward)


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
                xs = [kg_attention.pad_columns(x, C, value) for x in xs]
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


class KGPolicy(ModuleSamplerMixin, Sampler, torch.nn.Module):
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
    bias-free GraphSAGE layers with a symmetric-normalised neighbour sum
    (eq. 9-10; :class:`~torch_geometric.nn.conv.SAGEConv`,
    :mod:`~kgsampler.sampler._kgpolicy_graph`), centred and L2-normalised,
    with the logits divided by :obj:`temperature` (:meth:`forward`). The
    candidate sets are pruned: :obj:`n1` random neighbours per node (tables
    redrawn every :obj:`table_refresh_epochs`), the :obj:`n2` with the largest
    :math:`\mathbf{h}_{e}^{\top}\mathbf{h}_{e'}` kept, plus
    :obj:`num_random` uniform items; nodes already on the path, the user
    itself and the user's training positives are removed, so with
    :obj:`selection="sample"` the walk never proposes a training positive. The softmax is a scatter softmax over the
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

    With :obj:`selection="recommender_max"` the second hop follows the
    authors' released code instead of the text: the recommender's best among
    the :obj:`pool_size` most attended candidates.

    **Is it learning?** :meth:`diagnostics` (logged every epoch by the
    trainer) reports the policy updates taken, the attention entropy of each
    hop against its maximum and how much the logits depend on the user
    (:meth:`personalisation`); :meth:`policy_warnings` says plainly when the
    policy at the selected epoch is untrained, uniform or user-blind.

    The method's parts, in the order of the paper: the graph and eq. 9-10
    in :mod:`~kgsampler.sampler._kgpolicy_graph`; pruning and the two-stage
    attention in :mod:`~kgsampler.sampler.
    _kgpolicy_attention`; the walk (:meth:`_walk_step`), the reward
    (:meth:`reward`) and REINFORCE (:meth:`update`) here,
    with the policy gradient's pieces in :mod:`~kgsampler.sampler.
    _kgpolicy_gradient`; the explanations in :func:`format_paths`.

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
        user_hops (bool, optional): Let the first hop go to users (the
            collaborative KG: item -> user -> item, as the paper);
            :obj:`False` walks item -> KG entity -> item only, which did
            better on validation on ml-1m and lastfm (see the docs).
            (default: :obj:`False`)
        normalize (bool, optional): Centre the representations (subtract
            their mean over all nodes) and L2-normalise them before the
            attention and the pruning (the released code L2-normalises its
            representations): the pruning then ranks neighbours by cosine
            similarity rather than by one score shared by every node, and
            the attention's scale no longer depends on the embeddings'.
            (default: :obj:`True`)
        temperature (float, optional): With :obj:`normalize`, the attention
            logits are divided by it (applied as a factor
            :math:`\tau^{-1/3}` on the representations: the logit is cubic
            in them; the pruning's ranking is unchanged). Unit-norm
            representations give logits of size :math:`\sim 1/d`; a
            temperature near :math:`1/d` gives them a usable spread.
            (default: :obj:`0.02`)
        selection (str, optional): How the second hop picks an item:
            :obj:`"sample"` draws it from the attention (the paper's text,
            the two-stage attention); :obj:`"recommender_max"` is the rule of the authors'
            released code: the first hop takes the attention's argmax, the
            second keeps the :obj:`pool_size` candidates with the highest
            attention and takes the one the recommender scores highest
            (training positives may enter that pool; one that wins the last
            step is replaced by a uniform negative, a fallback, but is still
            the proposal that is rewarded, and a walk may go on from one, as
            in the released code). The policy gradient is that of the chosen
            entries' log-probabilities in both modes; in this mode hop 1 is a
            greedy choice, so :obj:`entropy_hop1` describes the attention,
            not the choice. (default: :obj:`"sample"`)
        pool_size (int, optional): The pool of :obj:`"recommender_max"`
            (32 in the released code). (default: :obj:`32`)
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
            representation refreshes: policy steps per epoch are the
            epoch's batches over it. 8 was chosen on validation among the
            schedules that train the policy before model selection (64 took
            1-4 steps before it; see docs/kgpolicy.md). (default: 8)
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
        compile (bool or str, optional): Run the attention query and the
            element-wise pieces of the closed-form policy gradient as
            kernels compiled by :func:`torch.compile` (inductor; a C++
            compiler on the CPU), and each hop's softmax, draw,
            log-probability and entropy as one fused function
            (:mod:`~kgsampler.sampler._kgpolicy_compile`); the sparse
            products stay as they are. The same distribution (a
            seed gives the same walks up to float rounding); compilation
            takes tens of seconds in the first epoch. Where
            :func:`torch.compile` or a C++ compiler is missing, or compiling
            fails, the sampler warns and runs eagerly; :obj:`"auto"`
            compiles where possible without the warning. See "Speed" in
            docs/kgpolicy.md. (default: :obj:`False`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    learnable = True
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR, edge_index: Tensor,
                 num_entities: int, scorer: Optional[Scorer] = None,
                 steps: int = 2, n1: int = 64, n2: int = 16,
                 num_random: int = 8, user_hops: bool = False,
                 normalize: bool = True, temperature: float = 0.02,
                 selection: str = 'sample', pool_size: int = 32,
                 w_p: float = 1.0,
                 w_s: float = 1.0, gamma: float = 0.99,
                 baseline_decay: float = 0.9, lr: float = 1e-3,
                 weight_decay: float = 0.0, embedding_dim: int = 64,
                 hidden_dims: Sequence[int] = (64, 64),
                 negative_slope: float = 0.2, refresh_interval: int = 8,
                 walk_ahead: int = 16, pg_fraction: float = 0.25,
                 table_refresh_epochs: int = 1,
                 softmax_backend: str = 'auto', aggr_backend: str = 'auto',
                 edge_rel: Optional[Tensor] = None,
                 compile: Union[bool, str] = False, **kwargs):
        torch.nn.Module.__init__(self)
        Sampler.__init__(self, train_pos, **kwargs)
        for name, v, lo in (('steps', steps, 1), ('n1', n1, 1), ('n2', n2, 1),
                            ('num_random', num_random, 0),
                            ('embedding_dim', embedding_dim, 1),
                            ('refresh_interval', refresh_interval, 1),
                            ('walk_ahead', walk_ahead, 1),
                            ('pool_size', pool_size, 1),
                            ('table_refresh_epochs', table_refresh_epochs,
                             0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"KGPolicy: '{name}' must be an int >= {lo} "
                                 f"(got {v!r})")
        for name, v in (('user_hops', user_hops), ('normalize', normalize)):
            if not isinstance(v, bool):
                raise TypeError(f"KGPolicy: '{name}' must be a bool "
                                f"(got {v!r})")
        self.user_hops, self.normalize = user_hops, normalize
        if selection not in SELECTIONS:
            raise ValueError(f"KGPolicy: 'selection' must be one of "
                             f"{SELECTIONS} (got {selection!r})")
        self.selection, self.pool_size = selection, pool_size
        if not (isinstance(compile, bool) or compile == 'auto'):
            raise ValueError(f"KGPolicy: 'compile' must be True, False or "
                             f"'auto' (got {compile!r})")
        self.compile_mode = compile
        kernels = kg_compile.build_kernels(compile)
        # None: the eager operators (the unfused code path)
        self._kernels = kernels if kernels.compiled else None
        for name, v in (('w_p', w_p), ('w_s', w_s), ('gamma', gamma),
                        ('baseline_decay', baseline_decay), ('lr', lr),
                        ('weight_decay', weight_decay),
                        ('negative_slope', negative_slope),
                        ('temperature', temperature)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    not math.isfinite(v):
                raise TypeError(f"KGPolicy: '{name}' must be a finite "
                                f"number (got {v!r})")
        if weight_decay < 0:
            raise ValueError(f"KGPolicy: 'weight_decay' must be a "
                             f"non-negative number (got {weight_decay!r})")
        if not temperature > 0:
            raise ValueError(f"KGPolicy: 'temperature' must be positive "
                             f"(got {temperature!r})")
        self.temperature = float(temperature)
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
        self.num_random = num_random
        self.w_p, self.w_s, self.gamma = float(w_p), float(w_s), float(gamma)
        self.baseline_decay = float(baseline_decay)
        self.lr, self.weight_decay = float(lr), float(weight_decay)
        self.refresh_interval, self.walk_ahead = refresh_interval, walk_ahead
        self.pg_fraction = float(pg_fraction)
        self.table_refresh_epochs = table_refresh_epochs
        self.negative_slope = float(negative_slope)
        self.num_entities, self.num_nodes = int(num_entities), num_nodes
        self.edge_index = edge_index
        self.edge_rel = edge_rel
        self.encoder = kg_graph.GraphEncoder(num_nodes, edge_index, embedding_dim,
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
        kg_graph.require_kg(f'{cls.__name__}.from_dataset', dataset)
        edge_index, edge_rel, _ = kg_graph.collaborative_graph(dataset)
        cls._monitor_kwargs(dataset, track_false_negatives, kwargs)
        return cls(dataset.train_pos, edge_index, int(dataset.num_entities),
                   scorer=scorer, edge_rel=edge_rel, **kwargs)

    #: The Trainer's generic resume state (parameters, optimiser, small
    #: counters) would miss the pending policy gradient and the redrawn
    #: neighbour tables: KGPolicy saves its own (:meth:`resume_state`).
    resume_needs_custom_state = True

    #: The attributes that change while training (besides the parameters,
    #: the baseline buffers and the optimiser).
    _RESUME_ATTRS = ('stats', '_mark', '_num_fallback', '_num_false_negative',
                     '_counts', '_entropy', '_reward_sum',
                     '_calls_without_update', '_warned_no_update', '_buffer',
                     '_num_pending', '_pending_loss', '_last_loss', '_h',
                     '_pruned', '_keys', '_keys_leaf', '_grad_h',
                     '_grad_keys', '_deferred', '_version', '_nbr1', '_nbr2')

    def resume_state(self) -> Dict:
        r"""Everything a training run needs to continue exactly: the
        parameters and baseline (:meth:`state_dict`), the policy's optimiser,
        the neighbour tables, the counters and the pending policy gradient
        (buffered and deferred rollouts, accumulated gradients of the cached
        representations). Tensors and plain containers only, so that
        :func:`torch.load` reads it with :obj:`weights_only=True`; see
        :meth:`load_resume_state`."""
        return {
            'module': self.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'attrs': {k: _pack(getattr(self, k, None))
                      for k in self._RESUME_ATTRS},
            # the encoder's autograd graph is rebuilt (the parameters have
            # not changed since it was computed)
            'h_grad': self._h_grad is not None,
        }

    def load_resume_state(self, state: Dict) -> None:
        r"""Restores what :meth:`resume_state` saved (onto the sampler's
        device)."""
        torch.nn.Module.load_state_dict(self, state['module'])
        self.optimizer.load_state_dict(state['optimizer'])
        dev = self.device
        for k, v in state['attrs'].items():
            object.__setattr__(self, k, _unpack(v, dev))
        self._h_grad = None
        if state['h_grad']:
            with torch.enable_grad():
                self._h_grad = self.forward()


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

    def _built(self) -> bool:
        return getattr(self, '_nbr1', None) is not None

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
        never on the recommender); 1 with :obj:`selection=
        "recommender_max"`, whose walks ask the recommender."""
        if self.selection == 'recommender_max':
            return 1
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
        self._nbr1 = kg_graph.neighbour_table(first, I, self.n1, row_offset=U)
        to_item = (self.edge_index[1] >= U) & (self.edge_index[1] < U + I)
        self._nbr2 = kg_graph.neighbour_table(self.edge_index[:, to_item],
                                        self.num_nodes, self.n1)
        self._pruned = None

    # --------------------------------------------------- representations
    def forward(self) -> Tensor:
        r"""Representations of all nodes: the encoder's (eq. 9-10), centred,
        L2-normalised and scaled by :math:`\tau^{-1/3}` when
        :obj:`normalize`.

        Shapes:
            - **output:** :math:`(|\mathcal{U}| + |\mathcal{E}|, d)`
        """
        h = self.encoder()
        if self.normalize:
            h = torch.nn.functional.normalize(h - h.mean(0, keepdim=True),
                                              dim=-1)
            h = h * self.temperature ** (-1.0 / 3.0)
        return h

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
        (:func:`~kgsampler.sampler._kgpolicy_attention.attention_keys`) are
        refreshed with them."""
        if self._h is None:
            if torch.is_grad_enabled():
                self._h_grad = self.forward()
                self._h = self._h_grad.detach().requires_grad_()
            else:
                self._h = self.forward()
        if self._pruned is None:
            U, I = self.num_users, self.num_items
            with torch.no_grad():
                h = self._h.detach()
                nodes = torch.arange(self.num_nodes, device=h.device)
                self._pruned = (
                    kg_attention.prune(h, nodes[U:U + I], self._nbr1, self.n2),
                    kg_attention.prune(h, nodes, self._nbr2, self.n2))
                self._keys = kg_attention.attention_keys(h)
        return self._h

    # ------------------------------------------------------------ sampling
    def _walk_step(self, h: Tensor, keys: Tensor, h_user: Tensor,
                   users: Tensor, cur: Tensor, history: Tensor):
        r"""One exploration step (two hops) of every walk, without gradients:
        the logits come from the exact key/query rewrite of the attention
        (one SDDMM a hop, :func:`~kgsampler.sampler._kgpolicy_attention.attention_logits_keys`)."""
        U, I = self.num_users, self.num_items
        R = cur.numel()
        pruned1, pruned2 = self._pruned
        a = self.negative_slope
        # hop 1: item e_t -> neighbour e' (entity, item or another user)
        c1 = pruned1[cur - U]
        bad = (c1 == users.unsqueeze(1)) | kg_attention.in_history(c1, history)
        c1 = c1.masked_fill(bad, -1)
        ops = self._kernels or _EagerOps
        q1 = ops.attention_query(h_user, h.index_select(0, cur), a)
        released = self.selection == 'recommender_max'
        p1, i1, lp1, ent1 = self._hop(
            kg_attention.attention_logits_keys(keys, q1, c1), c1 >= 0,
            greedy=released)
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
            rand = kg_attention.dedupe(torch.randint(I, (R, self.num_random),
                                           device=cur.device) + U)
            c2 = torch.cat([c2, rand.masked_fill(kg_attention.in_history(rand, c2),
                                                 -1)], 1)
        valid = c2 >= 0
        pos = self.is_pos(users.view(-1, 1).expand_as(c2),
                          (c2 - U).clamp(0, I - 1)) & valid
        drop = kg_attention.in_history(c2, hist2)
        if not released:  # the released rule lets positives into its pool
            drop = drop | pos
        c2 = c2.masked_fill(drop, -1)
        q2 = ops.attention_query(h_user, h.index_select(0, src2), a)
        logits2 = kg_attention.attention_logits_keys(keys, q2, c2)
        if released:
            p2, _, _, ent2 = self._hop(logits2, c2 >= 0, greedy=True)
            i2 = self._recommender_max(users, c2, p2)
            lp2 = kg_attention.gather_log_prob(p2, i2)
        else:
            p2, i2, lp2, ent2 = self._hop(logits2, c2 >= 0, greedy=False)
        ent = torch.cat([ent1, ent2])
        logp = lp1 + lp2
        nxt = c2.gather(1, i2.clamp(min=0).view(-1, 1)).view(-1)
        dead = i2 < 0
        if bool(dead.any()):
            nxt = nxt.clone()
            nxt[dead] = self.uniform_negatives(users[dead]) + U
        from_random = ~((nxt.view(-1, 1) == base2).any(1) | dead)
        counts = torch.stack([(~has1).sum(), dead.sum(),
                              (has1 & (mid < U)).sum(), pos.sum()])
        return (c1, i1, mid, src2, c2, i2, nxt, dead, from_random, logp,
                counts, p1, p2, ent)

    def _hop(self, logits: Tensor, valid: Tensor, greedy: bool):
        r"""The softmax over each row's valid candidates, the chosen column
        (drawn, or the argmax when :obj:`greedy`), its log-probability and
        the entropy sums of a hop: fused (:obj:`compile`) or operator by
        operator; the same uniform numbers in both.

        Shapes: **logits, valid** :math:`(R, C)`; outputs :math:`(R, C)`,
        :math:`(R)`, :math:`(R)`, :math:`(2)`."""
        if self._kernels is None or logits.size(1) == 0:
            p = kg_attention.masked_softmax(logits, valid,
                                            self.softmax_backend)
            i = kg_attention.choose(p, greedy=greedy)
            return (p, i, kg_attention.gather_log_prob(p, i),
                    kg_attention.entropy_ratio(p, valid))
        u = None if greedy else torch.rand((logits.size(0), 1),
                                           device=logits.device)
        return self._kernels.hop_sample(logits, valid, u)

    def _recommender_max(self, users: Tensor, cand: Tensor,
                         prob: Tensor) -> Tensor:
        r"""The released code's second hop: among the :obj:`pool_size`
        candidates of highest attention (valid ones only), the column the
        recommender scores highest; :obj:`-1` for rows without a valid
        candidate.

        Shapes: **users** :math:`(R)`, **cand, prob** :math:`(R, C)`,
        output :math:`(R)`."""
        U, I = self.num_users, self.num_items
        k = min(self.pool_size, cand.size(1))
        if k == 0:
            return torch.full_like(users, -1)
        top, col = prob.topk(k, dim=1)
        ok = top > 0
        items = (cand.gather(1, col) - U).clamp(0, I - 1)
        score = self.scorer.score(users, items).float()
        best = score.masked_fill(~ok, -float('inf')).argmax(1, keepdim=True)
        return torch.where(ok.any(1), col.gather(1, best).view(-1),
                           torch.full_like(users, -1))

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
        items, logps, counts, ents = [], [], [], []
        for _ in range(T):
            (c1, i1, mid, src2, c2, i2, nxt, dead, from_random, logp,
             cnt, p1, p2, ent) = self._walk_step(h, self._keys, h_user, u,
                                                 cur, history)
            logps.append(logp)
            counts.append(cnt)
            ents.append(ent)
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
        self._entropy += torch.stack(ents).sum(0).to(self._entropy.dtype)
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
            h = self.forward()
        lp = self._rollout_log_prob(r, h)  # [T, R]
        B, N = output.neg_items.shape
        return lp.t().reshape(B, N, lp.size(0))

    def _rollout_log_prob(self, r: KGPolicyRollout, h: Tensor,
                          rows: Optional[Tensor] = None,
                          keys: Optional[Tensor] = None) -> Tensor:
        r"""Differentiable log-probabilities :math:`(T, R')` of the walks
        :obj:`rows` (all if :obj:`None`) of a rollout: the exact key/query
        form of the attention (:obj:`keys` defaults to
        :obj:`attention_keys(h)`), logits only for the flat valid (row,
        candidate) pairs of both hops of all steps, one scatter softmax."""
        r = r.select(rows)
        users, src1, cand1, choice1 = r.users, r.src1, r.cand1, r.choice1
        src2, cand2, choice2 = r.src2, r.cand2, r.choice2
        T, m = src1.shape
        if keys is None:
            keys = kg_attention.attention_keys(h)
        C = max(cand1.size(-1), cand2.size(-1))
        cand = torch.cat([kg_attention.pad_columns(cand1, C, -1),
                          kg_attention.pad_columns(cand2, C, -1)]).view(2 * T * m, C)
        choice = torch.cat([choice1, choice2]).view(-1)
        g = h.index_select(0, torch.cat([users, src1.reshape(-1),
                                         src2.reshape(-1)]))
        g_u, g_s = g.split([m, 2 * T * m])
        q = kg_attention.attention_query(g_u.repeat(2 * T, 1), g_s,
                               self.negative_slope)
        out = kg_gradient.pair_log_prob(keys, q, cand, choice, self.softmax_backend)
        return out.view(2, T, m).sum(0)

    def _pg_loss(self, r: KGPolicyRollout, h: Tensor, rows: Optional[Tensor],
                 adv: Tensor, keys: Optional[Tensor] = None) -> Tensor:
        r"""REINFORCE loss of a rollout's walks :obj:`rows` with advantages
        :obj:`adv` :math:`(R', T)`."""
        lp = self._rollout_log_prob(r, h, rows, keys)
        return -(adv.t() * lp).sum(0).mean()

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
        recommender (no gradient).

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
            r = r + self.w_p * self.scorer.score(users, flat).float()
        if self.w_s != 0:
            r = r + self.w_s * self.scorer.similarity(pos_items, flat).float()
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
        self._updated()
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
        if r.prob1 is not None and \
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
        representations (:func:`~kgsampler.sampler._kgpolicy_gradient.attention_query_backward`). Exactly the gradient of
        :meth:`_pg_loss` (tested). Returns the loss value (0-dim)."""
        h, a = self._h.detach(), self.negative_slope
        users, src1, cand1, choice1, prob1 = (r.users, r.src1, r.cand1,
                                              r.choice1, r.prob1)
        src2, cand2, choice2, prob2 = r.src2, r.cand2, r.choice2, r.prob2
        T, m = src1.shape
        coef = coef.reshape(-1)  # t * m + r
        C = max(cand1.size(-1), cand2.size(-1))
        pad = kg_attention.pad_columns
        cand = torch.cat([pad(cand1, C, -1),
                          pad(cand2, C, -1)]).view(2 * T * m, C)
        ops = self._kernels or _EagerOps
        g = torch.cat([
            ops.logit_grad(pad(prob1, C, 0.).view(T * m, C),
                           choice1.reshape(-1), coef),
            ops.logit_grad(pad(prob2, C, 0.).view(T * m, C),
                           choice2.reshape(-1), coef)])
        loss = -(coef * (kg_attention.gather_log_prob(prob1.reshape(T * m, -1),
                                            choice1.reshape(-1)) +
                         kg_attention.gather_log_prob(prob2.reshape(T * m, -1),
                                            choice2.reshape(-1)))).sum()
        src = torch.cat([src1.reshape(-1), src2.reshape(-1)])
        h_user = h.index_select(0, users).repeat(2 * T, 1)
        h_src = h.index_select(0, src)
        q = ops.attention_query(h_user, h_src, a)
        d_user, d_src = ops.attention_query_backward(
            h_user, h_src, kg_gradient.pair_matmul(cand, g, self._keys), a)
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
            cand = torch.cat([kg_attention.pad_columns(c, C, -1)
                              for c, _, _ in self._grad_keys])
            g = torch.cat([kg_attention.pad_columns(g, C, 0.)
                           for _, g, _ in self._grad_keys])
            q = torch.cat([q for _, _, q in self._grad_keys])
            ops = self._kernels or _EagerOps
            total = self._grad_h + ops.attention_keys_backward(
                h, kg_gradient.pair_matmul_t(cand, g, q, h.size(0)))
        grad = self._h.grad if self._h.requires_grad else None
        if grad is not None:
            total = grad if total is None else total + grad
        kgrad = self._keys_leaf.grad if self._keys_leaf is not None else None
        if kgrad is not None:
            kg = kg_gradient.attention_keys_backward(h, kgrad)
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
                    self.forward()
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
    #: Attention-entropy accumulators: per hop, the sum of the rows' entropy
    #: relative to its maximum and the number of rows.
    _ENTROPY = ('entropy1_sum', 'entropy1_rows', 'entropy2_sum',
                'entropy2_rows')

    def reset_stats(self) -> None:
        super().reset_stats()
        self.stats.update({k: 0 for k in ('num_steps', 'num_updates',
                                          'num_rewarded')
                           + self._COUNTERS})
        self.stats.update({k: 0.0 for k in self._ENTROPY + ('reward_sum', )})
        dev = self._deg.device if hasattr(self, '_deg') else None
        self._counts = torch.zeros(len(self._COUNTERS), dtype=torch.long,
                                   device=dev)
        self._entropy = torch.zeros(len(self._ENTROPY), dtype=torch.float64,
                                    device=dev)
        self._reward_sum = torch.zeros((), dtype=torch.float64, device=dev)
        self._mark: Dict[str, float] = {}  # stats at the last diagnostics()

    def _sync_stats(self) -> None:
        r"""Moves the tensor counters into :obj:`stats` (one host sync)."""
        for k, v in zip(self._COUNTERS, self._counts.tolist()):
            self.stats[k] += int(v)
        self._counts.zero_()
        for k, v in zip(self._ENTROPY, self._entropy.tolist()):
            self.stats[k] += v
        self._entropy.zero_()
        self.stats['reward_sum'] += float(self._reward_sum)
        self._reward_sum.zero_()

    def summary_stats(self) -> Dict[str, float]:
        r"""Counters and rates: :obj:`fallback_rate` (negatives replaced by a
        uniform item), :obj:`dead_end_rate` and :obj:`no_neighbour_rate` (per
        step), :obj:`user_hop_rate` (first hops through another user),
        :obj:`masked_positive_per_step` (training positives among the second
        hop's candidates: removed from them, or let into the pool of
        :obj:`selection="recommender_max"`), :obj:`random_pick_rate`
        (negatives from the random items rather than the KG),
        :obj:`false_negative_rate` (negatives that are held-out positives,
        when monitored), :obj:`mean_reward`, :obj:`num_updates` (policy
        steps) and :obj:`entropy_hop1` / :obj:`entropy_hop2` (mean attention
        entropy relative to its maximum, over every walk so far)."""
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
        out.update(_entropy_ratios(st))
        return out

    def diagnostics(self) -> Dict[str, float]:
        r"""What the policy did since the last call (the trainer calls it
        once an epoch and logs it in the run's history): :obj:`policy_updates`
        (policy steps taken), :obj:`num_updates` (all so far),
        :obj:`entropy_hop1` / :obj:`entropy_hop2` (mean attention entropy of
        each hop relative to its maximum :math:`\log n_{\text{valid}}`: 1 is
        a uniform policy), :obj:`personalisation_hop1` /
        :obj:`personalisation_hop2` (:meth:`personalisation`: 1 is a policy
        that ignores the user), :obj:`mean_reward` (last step) and
        :obj:`random_pick_rate` (negatives from the random items rather than
        the KG). Draws no random numbers, so training does not depend on
        whether it is called."""
        self._sync_stats()
        st = dict(self.stats)
        d = {k: v - self._mark.get(k, 0) for k, v in st.items()}
        self._mark = st
        out = {'policy_updates': d['num_updates'],
               'num_updates': st['num_updates']}
        out.update(_entropy_ratios(d))
        if d['num_rewarded'] > 0:
            out['mean_reward'] = d['reward_sum'] / d['num_rewarded']
        if d['num_sampled'] > 0:
            out['random_pick_rate'] = d['num_random_pick'] / d['num_sampled']
        out.update({f'personalisation_{k}': v for k, v in
                    self.personalisation().items()})
        return out

    @torch.no_grad()
    def personalisation(self, users: Optional[Tensor] = None,
                        pos_items: Optional[Tensor] = None,
                        num_rows: int = 1024) -> Dict[str, float]:
        r"""How much the attention depends on the user: per row, the Pearson
        correlation of the hop's logits computed for the row's user and for
        another user (the users rolled by one place; rows paired with their
        own user are skipped) on the same candidates (the pruned KG
        neighbours; not the random items),
        averaged over the rows with at least 3 valid candidates. Hop 1 starts
        from the positive item; hop 2 from the neighbour hop 1 ranks first.
        About 1 for a policy that ignores the user; lower the more it
        personalises.

        Args:
            users (torch.Tensor, optional): User ids, :obj:`torch.long`;
                :obj:`None`: :obj:`num_rows` training pairs drawn with a
                fixed private seed (the same every call, and no draw from
                the global random stream).
            pos_items (torch.Tensor, optional): Their positive items.
            num_rows (int, optional): Rows of the default probe.
                (default: :obj:`1024`)

        Shapes:
            - **users, pos_items:** :math:`(R)`
            - **return:** :obj:`{"hop1": float, "hop2": float}` (a hop
              without a row of 3 valid candidates is left out)
        """
        dev = self.device
        if users is None:
            g = torch.Generator().manual_seed(0)
            idx = torch.randint(self.train_pos.nnz, (num_rows, ),
                                generator=g).to(dev)
            users = self.train_pos.row_ids()[idx]
            pos_items = self.train_pos.indices[idx]
        elif pos_items is None or pos_items.shape != users.shape:
            raise ValueError("KGPolicy.personalisation: 'pos_items' must "
                             "have the shape of 'users'")
        if users.numel() < 2:
            return {}
        h = self.representations().detach()
        pruned1, pruned2 = self._pruned
        U, a = self.num_users, self.negative_slope
        other = users.roll(1)
        differ = other != users  # a row paired with its own user says nothing
        users, other = users[differ], other[differ]
        pos_items = pos_items[differ]
        src = pos_items + U
        out = {}
        for hop in (1, 2):
            cand = pruned1[pos_items] if hop == 1 else pruned2[src]
            valid = cand >= 0
            own = kg_attention.attention_logits(h, users, src, cand, a)
            corr = kg_attention.row_correlation(
                own, kg_attention.attention_logits(h, other, src, cand, a), valid)
            if corr is not None:
                out[f'hop{hop}'] = corr
            if hop == 1:  # hop 2 starts from the top-ranked neighbour
                best = own.masked_fill(~valid, -float('inf')).argmax(1)
                has = valid.any(1)
                src = cand.gather(1, best.view(-1, 1)).view(-1)
                users, other, src = users[has], other[has], src[has]
        return out

    def policy_warnings(self, diagnostics: Dict[str, float]) -> List[str]:
        r"""Plain statements of what :meth:`diagnostics` (e.g. at the
        selected epoch) shows against a trained policy: no update, an
        attention entropy at its maximum, logits that ignore the user.

        Args:
            diagnostics (dict): An output of :meth:`diagnostics`.
        """
        out = []
        if diagnostics.get('num_updates', 0) == 0:
            out.append('KGPolicy took no policy update: the negatives came '
                       'from its untrained initial policy')
        for hop in (1, 2):
            e = diagnostics.get(f'entropy_hop{hop}')
            if e is not None and e > 0.99:
                out.append(f'KGPolicy hop-{hop} attention entropy is '
                           f'{e:.1%} of its maximum: a (nearly) uniform '
                           f'policy, not a trained one')
            c = diagnostics.get(f'personalisation_hop{hop}')
            if c is not None and c > 0.99:
                out.append(f'KGPolicy hop-{hop} logits for the true and for '
                           f'another user correlate at {c:.3f}: the policy '
                           f'ignores the user')
        return out

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_nodes={self.num_nodes}, '
                f'steps={self.steps}, n1={self.n1}, n2={self.n2}, '
                f'num_random={self.num_random}, w_p={self.w_p}, '
                f'w_s={self.w_s}, refresh_interval={self.refresh_interval})')


def _entropy_ratios(st: Dict[str, float]) -> Dict[str, float]:
    out = {}
    for hop in (1, 2):
        if st[f'entropy{hop}_rows'] > 0:
            out[f'entropy_hop{hop}'] = (st[f'entropy{hop}_sum'] /
                                        st[f'entropy{hop}_rows'])
    return out


def _pack(v):
    r"""A KGPolicy attribute as tensors and plain containers (tagged), for
    :meth:`KGPolicy.resume_state`."""
    if isinstance(v, Tensor):
        leaf = v.is_leaf and v.requires_grad
        return {'__kind__': 'tensor', 'data': v.detach().cpu().clone(),
                'leaf': leaf,
                'grad': (v.grad.detach().cpu().clone()
                         if leaf and v.grad is not None else None)}
    if isinstance(v, KGPolicyRollout):
        return {'__kind__': 'rollout', 'fields': {
            f: _pack(getattr(v, f)) for f in v.__dataclass_fields__}}
    if isinstance(v, (list, tuple)):
        return {'__kind__': type(v).__name__, 'items': [_pack(x) for x in v]}
    if isinstance(v, dict):
        return {'__kind__': 'dict', 'items': {k: _pack(x)
                                              for k, x in v.items()}}
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    raise TypeError(f"KGPolicy.resume_state: cannot save a "
                    f"{type(v).__name__}")


def _unpack(v, device):
    if not isinstance(v, dict) or '__kind__' not in v:
        return v
    kind = v['__kind__']
    if kind == 'tensor':
        t = v['data'].to(device)
        if v['leaf']:
            t.requires_grad_()
            if v['grad'] is not None:
                t.grad = v['grad'].to(device)
        return t
    if kind == 'rollout':
        return KGPolicyRollout(**{f: _unpack(x, device)
                                  for f, x in v['fields'].items()})
    if kind in ('list', 'tuple'):
        items = [_unpack(x, device) for x in v['items']]
        return items if kind == 'list' else tuple(items)
    return {k: _unpack(x, device) for k, x in v['items'].items()}
