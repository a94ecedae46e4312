r"""KGAT (Wang et al., KDD 2019): attentive embedding propagation over the
collaborative knowledge graph, trained alternately with BPR and TransR."""
from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.utils import softmax

from kgsampler.recommender._kgat_conv import AGGREGATORS, KGATConv
from kgsampler.recommender.base import Recommender, bpr_l2
from kgsampler.utils._checks import positive_int as _positive_int

__all__ = ['KGAT']




def _non_negative(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or \
            not 0 <= v < math.inf:
        raise ValueError(f"KGAT: '{name}' must be a finite non-negative "
                         f"number (got {v!r})")
    return float(v)


def _csr(crow: Tensor, col: Tensor, value: Tensor, n: int) -> Tensor:
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        return torch.sparse_csr_tensor(crow, col, value, (n, n),
                                       check_invariants=False)


def _ptr(index: Tensor, n: int) -> Tensor:
    """CSR row pointer of a sorted index."""
    return torch.cat([index.new_zeros(1),
                      torch.bincount(index, minlength=n).cumsum(0)])


class KGAT(Recommender):
    r"""KGAT from the `"KGAT: Knowledge Graph Attention Network for
    Recommendation" <https://arxiv.org/abs/1905.07854>`_ paper, following
    the authors' released implementation.

    **Collaborative knowledge graph.** Nodes are the :math:`U` users
    (ids :math:`0..U-1`) then the :math:`E` entities (ids :math:`U..U+E-1`;
    item :math:`i` is entity :math:`i`, node :math:`U + i`). Edges
    :math:`(h, r, t)`: every *training* interaction :math:`(u, i)` as
    :math:`(u, \textit{interact}, i)` (relation :math:`0`), every KG triple
    :math:`(h, r, t)` as relation :math:`r + 1`, and the reverse of each
    (relations :math:`R + 1` and :math:`r + R + 2`), :math:`2(R + 1)`
    relations in all (:math:`R` = :obj:`dataset.num_relations`); duplicates
    are merged.

    **Attention** (eq. 4-5), in the TransR space of each relation, with
    :obj:`torch_geometric.utils.softmax` over the edges of each head:

    .. math::
        \pi(h, r, t) = (\mathbf{W}_r \mathbf{e}_t)^{\top}
        \tanh(\mathbf{W}_r \mathbf{e}_h + \mathbf{e}_r), \qquad
        \tilde{\pi}(h, r, t) = \frac{\exp \pi(h, r, t)}
        {\sum_{(h, r', t') \in \mathcal{N}_h} \exp \pi(h, r', t')}

    As in the released code, :math:`\tilde{\pi}` is a constant of the
    recommendation phase (the buffer :attr:`attention`, part of the state
    dict), recomputed by :meth:`update_attention` after each TransR phase.

    **Propagation** (eq. 3-8): :math:`L` :class:`KGATConv` layers
    (:obj:`layer_sizes`), each aggregating
    :math:`\mathbf{e}_{\mathcal{N}_h} = \sum \tilde{\pi}(h,r,t)
    \mathbf{e}_t` with the bi-interaction aggregator (or :obj:`"gcn"`,
    :obj:`"graphsage"`), then message dropout (in training); the
    representation concatenates layer 0 with the L2-normalised output of
    every layer, :math:`\mathbf{e}^* = \mathbf{e}^{(0)} \| \bar{\mathbf{e}}
    ^{(1)} \| \dots \| \bar{\mathbf{e}}^{(L)}`, and
    :math:`\hat{y}(u, i) = {\mathbf{e}^*_u}^{\top} \mathbf{e}^*_i`. The
    neighbour sums run as one SpMM per layer with the attention-weighted
    adjacency as a :obj:`torch.sparse_csr` tensor, differentiated by one
    more SpMM with its transpose (both built once per attention update).

    **Training** (eq. 1-2, 9-10). :meth:`loss` is BPR on
    :math:`\hat{y}` plus :obj:`reg` times the batch's L2 penalty on the
    scored representations :math:`\mathbf{e}^*` (as the released code);
    :meth:`auxiliary_losses` is the TransR phase run after each epoch's
    recommendation batches: batches of :obj:`kg_batch_size` heads drawn
    uniformly among nodes with an edge, each with one of its edges
    :math:`(h, r, t)` drawn uniformly and a corrupted tail :math:`t'`
    drawn uniformly among all nodes with :math:`(h, r, t')` not an edge,

    .. math::
        g(h, r, t) = \|\mathbf{W}_r \mathbf{e}_h + \mathbf{e}_r -
        \mathbf{W}_r \mathbf{e}_t\|_2^2, \qquad
        \mathcal{L}_{KG} = -\frac{1}{B} \sum \ln \sigma(g(h, r, t') -
        g(h, r, t)) + \lambda_{KG} \frac{1}{B} \sum
        \tfrac{1}{2}(\|\mathbf{W}_r\mathbf{e}_h\|^2 + \|\mathbf{e}_r\|^2 +
        \|\mathbf{W}_r\mathbf{e}_t\|^2 + \|\mathbf{W}_r\mathbf{e}_{t'}\|^2),

    :math:`\lfloor |\mathcal{E}| / B \rfloor + 1` batches by default (the
    released schedule), then :meth:`update_attention`.

    **Caching.** :meth:`score`, :meth:`full_scores`,
    :meth:`item_representations` and :meth:`similarity` use the
    representations without message dropout. Called without gradients
    (samplers, evaluation) they reuse one propagation until a parameter or
    the attention changes (keyed on their version counters and storage, so
    an optimiser step, :meth:`load_state_dict`, :meth:`reset_parameters` or
    :meth:`update_attention` invalidate it; :meth:`to` clears it); with
    gradients they propagate with autograd and leave the detached result in
    the cache. :meth:`loss` propagates with autograd, with dropout in
    training mode (its result is cached only when no dropout applied).

    Args:
        dataset (KGRecDataset): Provides :obj:`num_users`,
            :obj:`num_items`, :obj:`num_entities`, :obj:`num_relations`,
            :obj:`train_pos` (the only interactions in the graph) and
            :obj:`kg`.
        embedding_dim (int, optional): Size :math:`d` of the layer-0 user
            and entity embeddings. (default: :obj:`64`)
        kge_dim (int, optional): Size :math:`k` of the TransR relation space
            (:math:`\mathbf{W}_r` is :math:`k \times d`). (default:
            :obj:`64`)
        layer_sizes (sequence of int, optional): Output size of each
            propagation layer. (default: :obj:`(64, 32, 16)`)
        aggregator (str, optional): :obj:`"bi"` (bi-interaction),
            :obj:`"gcn"` or :obj:`"graphsage"`. (default: :obj:`"bi"`)
        mess_dropout (float or sequence of float, optional): Message dropout
            after each layer (one value for all, or one per layer), in
            :math:`[0, 1)`. (default: :obj:`0.1`)
        reg (float, optional): L2 weight :math:`\lambda` of :meth:`loss`.
            (default: :obj:`1e-5`, the released code's)
        kg_reg (float, optional): L2 weight :math:`\lambda_{KG}` of the
            TransR loss. (default: :obj:`1e-5`)
        kg_batch_size (int, optional): Triples per TransR batch.
            (default: :obj:`2048`)
        kg_steps (int, optional): TransR batches per epoch; :obj:`None`:
            :math:`\lfloor |\mathcal{E}| / B_{KG} \rfloor + 1`, :obj:`0`: no
            TransR phase (the attention is then still refreshed after each
            epoch). (default: :obj:`None`)
    """
    def __init__(self, dataset, embedding_dim: int = 64, kge_dim: int = 64,
                 layer_sizes: Sequence[int] = (64, 32, 16),
                 aggregator: str = 'bi',
                 mess_dropout: Union[float, Sequence[float]] = 0.1,
                 reg: float = 1e-5, kg_reg: float = 1e-5,
                 kg_batch_size: int = 2048, kg_steps: Optional[int] = None):
        super().__init__()
        from kgsampler.data.dataset import KGRecDataset
        if not isinstance(dataset, KGRecDataset):
            raise TypeError(f"KGAT: 'dataset' must be a KGRecDataset "
                            f"(got {type(dataset).__name__})")
        self.embedding_dim = _positive_int('KGAT', 'embedding_dim', embedding_dim)
        self.kge_dim = _positive_int('KGAT', 'kge_dim', kge_dim)
        if isinstance(layer_sizes, (str, bytes)) or not isinstance(
                layer_sizes, Sequence) or len(layer_sizes) == 0 or any(
                isinstance(s, bool) or not isinstance(s, numbers.Integral)
                or s < 1 for s in layer_sizes):
            raise ValueError(f"KGAT: 'layer_sizes' must be a non-empty "
                             f"sequence of positive ints (got "
                             f"{layer_sizes!r})")
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        if aggregator not in AGGREGATORS:
            raise ValueError(f"KGAT: 'aggregator' must be one of "
                             f"{AGGREGATORS} (got {aggregator!r})")
        self.aggregator = aggregator
        self.mess_dropout = self._check_dropout(mess_dropout,
                                                len(self.layer_sizes))
        self.reg = _non_negative('reg', reg)
        self.kg_reg = _non_negative('kg_reg', kg_reg)
        self.kg_batch_size = _positive_int('KGAT', 'kg_batch_size', kg_batch_size)
        if kg_steps is not None and (
                isinstance(kg_steps, bool)
                or not isinstance(kg_steps, numbers.Integral) or kg_steps < 0):
            raise ValueError(f"KGAT: 'kg_steps' must be None or a "
                             f"non-negative int (got {kg_steps!r})")
        self.kg_steps = None if kg_steps is None else int(kg_steps)

        self.num_users, self.num_items = dataset.num_users, dataset.num_items
        self.num_entities = dataset.num_entities
        self.num_kg_relations = dataset.num_relations
        self.num_relations = 2 * (dataset.num_relations + 1)
        self.num_nodes = self.num_users + self.num_entities
        self._build_graph(dataset)

        d, k = self.embedding_dim, self.kge_dim
        self.embedding = torch.nn.Embedding(self.num_nodes, d)
        self.relation_embedding = torch.nn.Embedding(self.num_relations, k)
        self.transfer = torch.nn.Parameter(torch.empty(self.num_relations,
                                                       d, k))
        sizes = (d, ) + self.layer_sizes
        self.convs = torch.nn.ModuleList([
            KGATConv(sizes[i], sizes[i + 1], aggregator)
            for i in range(len(self.layer_sizes))])
        self.register_buffer('attention',
                             torch.empty(self.edge_head.numel()))
        self._cache: Optional[Tuple[tuple, Tensor]] = None
        self._adj_cache: Optional[Tuple[tuple, Tensor, Tensor]] = None
        self.reset_parameters()

    # ------------------------------------------------------------ building
    @staticmethod
    def _check_dropout(p, num_layers: int) -> Tuple[float, ...]:
        vals = [p] if isinstance(p, numbers.Real) else p
        ok = isinstance(vals, Sequence) and not isinstance(vals, (str, bytes))
        if ok:
            ok = len(vals) in (1, num_layers) and all(
                isinstance(v, numbers.Real) and not isinstance(v, bool)
                and 0 <= v < 1 for v in vals)
        if not ok:
            raise ValueError(f"KGAT: 'mess_dropout' must be a number in "
                             f"[0, 1) or {num_layers} of them, one per layer "
                             f"(got {p!r})")
        vals = [float(v) for v in vals]
        return tuple(vals * num_layers if len(vals) == 1 else vals)

    def _build_graph(self, dataset) -> None:
        U, N, R = self.num_users, self.num_nodes, self.num_kg_relations
        users = dataset.train_pos.row_ids().cpu()
        items = dataset.train_pos.indices.cpu() + U
        h, r, t = dataset.kg.cpu().unbind(dim=1)
        h, t = h + U, t + U
        heads = torch.cat([users, items, h, t])
        rels = torch.cat([torch.zeros_like(users),
                          torch.full_like(items, R + 1), r + 1, r + R + 2])
        tails = torch.cat([items, users, t, h])
        # one edge per distinct (h, r, t), sorted by head, relation, tail
        keys = torch.unique((heads * self.num_relations + rels) * N + tails)
        self.register_buffer('edge_keys', keys, persistent=False)
        self.register_buffer('edge_head', keys // (self.num_relations * N),
                             persistent=False)
        self.register_buffer('edge_rel', keys // N % self.num_relations,
                             persistent=False)
        self.register_buffer('edge_tail', keys % N, persistent=False)
        self.register_buffer('edge_ptr', _ptr(self.edge_head, N),
                             persistent=False)
        self.register_buffer('kg_heads', torch.unique(self.edge_head),
                             persistent=False)
        rel_order = torch.argsort(self.edge_rel, stable=True)
        self.register_buffer('rel_order', rel_order, persistent=False)
        self.register_buffer('rel_ptr', _ptr(self.edge_rel[rel_order],
                                             self.num_relations),
                             persistent=False)
        # the adjacency merges parallel edges (same head and tail)
        pair, pair_index = torch.unique(self.edge_head * N + self.edge_tail,
                                        return_inverse=True)
        ph, pt = pair // N, pair % N
        order_t = torch.argsort(pt * N + ph)
        self.register_buffer('pair_index', pair_index, persistent=False)
        self.register_buffer('adj_crow', _ptr(ph, N), persistent=False)
        self.register_buffer('adj_col', pt, persistent=False)
        self.register_buffer('adjt_order', order_t, persistent=False)
        self.register_buffer('adjt_crow', _ptr(pt[order_t], N),
                             persistent=False)
        self.register_buffer('adjt_col', ph[order_t], persistent=False)

    @property
    def edge_index(self) -> Tensor:
        r"""The collaborative KG's edges as (tail, head) pairs, the
        direction messages flow (sorted by head, relation, tail; one per
        entry of :attr:`attention`).

        Shapes:
            - **output:** :math:`(2, |\mathcal{E}|)`
        """
        return torch.stack([self.edge_tail, self.edge_head])

    def reset_parameters(self) -> None:
        r"""Resets the embeddings, TransR matrices and layers (Xavier, as
        the released code) and recomputes the attention."""
        torch.nn.init.xavier_uniform_(self.embedding.weight)
        torch.nn.init.xavier_uniform_(self.relation_embedding.weight)
        bound = math.sqrt(6.0 / (self.embedding_dim + self.kge_dim))
        torch.nn.init.uniform_(self.transfer, -bound, bound)
        for conv in self.convs:
            conv.reset_parameters()
        self.update_attention()

    def _apply(self, fn, *args, **kwargs):
        self._cache = self._adj_cache = None  # .to(), .double(): new storage
        return super()._apply(fn, *args, **kwargs)

    # ------------------------------------------------------------ attention
    def attention_logits(self) -> Tensor:
        r"""The unnormalised attention :math:`\pi(h, r, t) =
        (\mathbf{W}_r \mathbf{e}_t)^{\top} \tanh(\mathbf{W}_r \mathbf{e}_h +
        \mathbf{e}_r)` of every edge (order of :attr:`edge_index`),
        differentiable; one projection per relation of the nodes it
        touches.

        Shapes:
            - **output:** :math:`(|\mathcal{E}|)`
        """
        emb, rel = self.embedding.weight, self.relation_embedding.weight
        out = emb.new_empty(self.edge_head.numel())
        ptr = self.rel_ptr.tolist()
        for r in range(self.num_relations):  # a loop over relation types
            idx = self.rel_order[ptr[r]:ptr[r + 1]]
            if idx.numel() == 0:
                continue
            nodes, inv = torch.unique(
                torch.cat([self.edge_head[idx], self.edge_tail[idx]]),
                return_inverse=True)
            proj = emb[nodes] @ self.transfer[r]  # [n_r, k]
            ph, pt = proj[inv[:idx.numel()]], proj[inv[idx.numel():]]
            out[idx] = (pt * torch.tanh(ph + rel[r])).sum(-1)
        return out

    @torch.no_grad()
    def update_attention(self) -> None:
        r"""Recomputes :attr:`attention`: :meth:`attention_logits`
        normalised by :func:`torch_geometric.utils.softmax` over the edges
        of each head node."""
        att = softmax(self.attention_logits(), self.edge_head,
                      num_nodes=self.num_nodes)
        self.attention.copy_(att)

    def adjacency(self) -> Tuple[Tensor, Tensor]:
        r"""The attention-weighted adjacency :math:`A_{ht} = \sum_r
        \tilde{\pi}(h, r, t)` and its transpose, as :obj:`torch.sparse_csr`
        tensors (rebuilt when :attr:`attention` changes).

        Shapes:
            - **output:** :math:`(N, N)`, :math:`(N, N)`,
              :math:`N = U + E`
        """
        a = self.attention
        key = (a._version, a.data_ptr())
        if self._adj_cache is None or self._adj_cache[0] != key:
            n = int(self.adj_col.numel())
            value = a.new_zeros(n).index_add_(0, self.pair_index, a)
            self._adj_cache = (
                key, _csr(self.adj_crow, self.adj_col, value, self.num_nodes),
                _csr(self.adjt_crow, self.adjt_col, value[self.adjt_order],
                     self.num_nodes))
        return self._adj_cache[1], self._adj_cache[2]

    # --------------------------------------------------------- propagation
    def propagate(self, dropout: bool = False) -> Tensor:
        r"""The representations :math:`\mathbf{e}^*` of all nodes (users,
        then entities) by a fresh propagation with autograd.

        Args:
            dropout (bool, optional): Apply message dropout.
                (default: :obj:`False`)

        Shapes:
            - **output:** :math:`(U + E, d + \sum_l d_l)`
        """
        adj, adj_t = self.adjacency()
        x = self.embedding.weight
        outs = [x]
        for conv, p in zip(self.convs, self.mess_dropout):
            x = conv(x, adj, adj_transposed=adj_t)
            if dropout and p > 0:
                x = F.dropout(x, p, training=True)
            outs.append(F.normalize(x, dim=-1))
        return torch.cat(outs, dim=-1)

    def _cache_key(self) -> tuple:
        return tuple((t._version, t.data_ptr())
                     for t in (*self.parameters(), self.attention))

    def get_embedding(self) -> Tensor:
        r"""The representations :math:`\mathbf{e}^*` (no dropout) of all
        users (rows :math:`0..U-1`) then all entities; cached without
        gradients (see the class docstring).

        Shapes:
            - **output:** :math:`(U + E, d + \sum_l d_l)`
        """
        key = self._cache_key()
        if torch.is_grad_enabled():
            out = self.propagate()
            self._cache = (key, out.detach())
            return out
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.propagate())
        return self._cache[1]

    # ---------------------------------------------------------------- API
    def _check_users_items(self, who: str, users: Tensor, items: Tensor,
                           name: str) -> None:
        if users.dim() != 1 or items.dim() != 2 or \
                items.size(0) != users.size(0):
            raise ValueError(f"KGAT.{who}: 'users' must be (B) and '{name}' "
                             f"(B, K) (got shapes {tuple(users.shape)} and "
                             f"{tuple(items.shape)})")
        for arg, t in (('users', users), (name, items)):
            if t.dtype != torch.long:
                raise TypeError(f"KGAT.{who}: '{arg}' must be torch.long "
                                f"(got {t.dtype})")

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Inner products :math:`{\mathbf{e}^*_u}^{\top} \mathbf{e}^*_i`.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        self._check_users_items('score', users, items, 'items')
        emb = self.get_embedding()
        u = emb[users]
        return (emb[items + self.num_users] @ u.unsqueeze(-1)).squeeze(-1)

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item for each user, one matrix product with the
        cached representations.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, I)`
        """
        if users.dim() != 1 or users.dtype != torch.long:
            raise ValueError(f"KGAT.full_scores: 'users' must be a (B) "
                             f"torch.long tensor (got {users.dtype} of shape "
                             f"{tuple(users.shape)})")
        emb = self.get_embedding()
        U = self.num_users
        return emb[users] @ emb[U:U + self.num_items].t()

    def item_representations(self, items: Tensor) -> Tensor:
        r"""The item representations :math:`\mathbf{e}^*_i` (so
        :meth:`similarity` is :math:`{\mathbf{e}^*_i}^{\top}
        \mathbf{e}^*_j`).

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d + \sum_l d_l)`
        """
        return self.get_embedding()[items + self.num_users]

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""BPR on :math:`\hat{y}` plus :obj:`reg` times the batch's L2
        penalty on the scored representations (see the class docstring);
        propagates with autograd, with message dropout in training mode.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            neg_items (torch.Tensor): :math:`N` negative item ids per row,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **neg_items:** :math:`(B, N)`
            - **output:** :math:`()`
        """
        self._check_users_items('loss', users, neg_items, 'neg_items')
        if pos_items.shape != users.shape:
            raise ValueError(f"KGAT.loss: 'pos_items' must have the shape of "
                             f"'users' (got {tuple(pos_items.shape)} and "
                             f"{tuple(users.shape)})")
        dropout = self.training and any(p > 0 for p in self.mess_dropout)
        key = self._cache_key()
        emb = self.propagate(dropout=dropout)
        if not dropout:
            self._cache = (key, emb.detach())
        U = self.num_users
        u, p, n = emb[users], emb[pos_items + U], emb[neg_items + U]
        return bpr_l2(u, p, n, u, p, n, self.reg)

    # --------------------------------------------------------------- TransR
    def _project(self, relations: Tensor, *nodes: Tensor) -> Tensor:
        r""":math:`\mathbf{W}_r \mathbf{e}` of each row's nodes, one
        matrix product per relation type (gathering a :math:`d \times k`
        matrix per row is much slower, forward and backward)."""
        x = self.embedding(torch.stack(nodes, dim=1))  # one lookup
        order = torch.argsort(relations)
        counts = torch.bincount(relations, minlength=self.num_relations)
        parts = [chunk @ self.transfer[r] for r, chunk in enumerate(
            x[order].split(counts.tolist())) if chunk.size(0) > 0]
        out = torch.cat(parts, dim=0) if parts else x.new_zeros(
            0, len(nodes), self.kge_dim)
        return out[torch.argsort(order)]  # [B, len(nodes), k]

    def transr_score(self, heads: Tensor, relations: Tensor,
                     tails: Tensor) -> Tensor:
        r"""TransR distances :math:`g(h, r, t) = \|\mathbf{W}_r
        \mathbf{e}_h + \mathbf{e}_r - \mathbf{W}_r \mathbf{e}_t\|_2^2`
        (lower is more plausible), node ids as in :attr:`edge_index`.

        Args:
            heads (torch.Tensor): Head node ids, :obj:`torch.long`.
            relations (torch.Tensor): Relation ids in
                :math:`[0, 2(R + 1))`, :obj:`torch.long`.
            tails (torch.Tensor): Tail node ids, :obj:`torch.long`.

        Shapes:
            - **heads, relations, tails:** :math:`(B)`
            - **output:** :math:`(B)`
        """
        self._check_triples('transr_score', heads, relations, tails)
        p = self._project(relations, heads, tails)
        r = self.relation_embedding(relations)
        return (p[:, 0] + r - p[:, 1]).pow(2).sum(-1)

    def _check_triples(self, who: str, *ts: Tensor) -> None:
        if any(t.dim() != 1 or t.shape != ts[0].shape for t in ts):
            raise ValueError(f"KGAT.{who}: the id tensors must be (B) of one "
                             f"shape (got {[tuple(t.shape) for t in ts]})")

    def kg_loss(self, heads: Tensor, relations: Tensor, pos_tails: Tensor,
                neg_tails: Tensor) -> Tensor:
        r"""The TransR loss :math:`\mathcal{L}_{KG}` of a batch (class
        docstring): BPR on :math:`g(h, r, t') - g(h, r, t)` plus
        :obj:`kg_reg` times the L2 penalty of the projected embeddings.

        Args:
            heads (torch.Tensor): Head node ids, :obj:`torch.long`.
            relations (torch.Tensor): Relation ids, :obj:`torch.long`.
            pos_tails (torch.Tensor): Tails of true edges, :obj:`torch.long`.
            neg_tails (torch.Tensor): Corrupted tails, :obj:`torch.long`.

        Shapes:
            - **heads, relations, pos_tails, neg_tails:** :math:`(B)`
            - **output:** :math:`()`
        """
        self._check_triples('kg_loss', heads, relations, pos_tails, neg_tails)
        p = self._project(relations, heads, pos_tails, neg_tails)
        r = self.relation_embedding(relations)
        h, t, t_neg = p.unbind(dim=1)
        pos = (h + r - t).pow(2).sum(-1)
        neg = (h + r - t_neg).pow(2).sum(-1)
        loss = F.softplus(pos - neg).mean()
        if self.kg_reg == 0:
            return loss
        l2 = (p.pow(2).sum((1, 2)) + r.pow(2).sum(-1)).mean() / 2
        return loss + self.kg_reg * l2

    def sample_kg_batch(self, batch_size: int, num_tries: int = 16
                        ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        r"""A TransR batch: heads uniform among nodes with an edge, one edge
        of each uniformly, a corrupted tail uniform among all nodes,
        redrawn (at most :obj:`num_tries` times) while :math:`(h, r, t')`
        is an edge.

        Args:
            batch_size (int): Number of triples :math:`B`.
            num_tries (int, optional): Redraws of corrupted tails that hit
                an edge. (default: :obj:`16`)

        Shapes:
            - **output:** heads, relations, tails, corrupted tails, each
              :math:`(B)`
        """
        dev, N = self.edge_head.device, self.num_nodes
        h = self.kg_heads[torch.randint(self.kg_heads.numel(), (batch_size, ),
                                        device=dev)]
        start = self.edge_ptr[h]
        deg = self.edge_ptr[h + 1] - start
        e = start + (torch.rand(batch_size, device=dev) * deg).long().clamp_(
            max=deg - 1)
        r, t = self.edge_rel[e], self.edge_tail[e]
        neg = torch.randint(N, (batch_size, ), device=dev)
        base = (h * self.num_relations + r) * N
        for _ in range(num_tries):
            key = base + neg
            pos = torch.searchsorted(self.edge_keys, key).clamp_(
                max=self.edge_keys.numel() - 1)
            bad = self.edge_keys[pos] == key
            if not bool(bad.any()):
                break
            neg = torch.where(bad, torch.randint_like(neg, N), neg)
        return h, r, t, neg

    def auxiliary_losses(self, batch_size: int) -> Iterator[Tensor]:
        r"""The TransR phase: :obj:`kg_steps` losses :meth:`kg_loss` on
        batches of :obj:`kg_batch_size` triples from
        :meth:`sample_kg_batch`, then :meth:`update_attention` once the
        last step is taken.

        Args:
            batch_size (int): The trainer's batch size (unused: the TransR
                batches have :obj:`kg_batch_size` triples).

        Shapes:
            - **output:** an iterator of :math:`()` tensors
        """
        steps = (self.edge_head.numel() // self.kg_batch_size + 1
                 if self.kg_steps is None else self.kg_steps)
        for _ in range(steps):
            yield self.kg_loss(*self.sample_kg_batch(self.kg_batch_size))
        self.update_attention()

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, num_entities={self.num_entities}, '
                f'layer_sizes={list(self.layer_sizes)}, '
                f'aggregator={self.aggregator})')
