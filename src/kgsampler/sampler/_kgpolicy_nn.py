"""Neural pieces of :class:`~kgsampler.sampler.KGPolicy` (private).

* :func:`collaborative_graph`: the user-item-entity graph in one homogeneous
  node space (users :obj:`0..U-1`, entity :obj:`e` -> :obj:`U + e`; items are
  the entities :obj:`0..I-1`), relations merged, both directions.
* :class:`GraphEncoder`: ID embeddings + :obj:`L` PyG
  :class:`~torch_geometric.nn.conv.SAGEConv` layers with LeakyReLU.
* :func:`neighbour_table`: a fixed-width random neighbour table built with
  one sort over all edges (no Python loop over nodes).
* :func:`prune`, :func:`attention_logits`, :func:`masked_scatter_softmax`:
  the pruned two-stage neighbour attention.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import scatter

from kgsampler.utils._softmax import scatter_softmax

try:  # optional fast path for the aggregation
    from torch_sparse import SparseTensor as _SparseTensor
except (ImportError, OSError):  # pragma: no cover - depends on the install
    _SparseTensor = None

#: Whether :mod:`torch_sparse` could be imported.
HAS_TORCH_SPARSE: bool = _SparseTensor is not None

#: Aggregation back ends of :class:`GraphEncoder`.
AGGR_BACKENDS = ('auto', 'csr', 'torch_sparse', 'scatter')

#: Relation id given to user-item interaction edges in the graph.
INTERACT = -1


# ----------------------------------------------------------------- the graph
def collaborative_graph(dataset) -> Tuple[Tensor, Tensor, int]:
    r"""The collaborative knowledge graph of a dataset, homogeneous, with
    relations merged into plain edges (as in the paper) but kept on the side
    for explanations.

    Read from :obj:`dataset.data` (a :class:`~torch_geometric.data.HeteroData`
    with node types :obj:`user`, :obj:`item`, :obj:`entity`) when the dataset
    has it, else from :obj:`dataset.train_pos` and :obj:`dataset.kg`; both
    give the same graph. Only training interactions enter it.

    Returns:
        :obj:`(edge_index, edge_rel, num_nodes)`: directed edges in both
        directions, deduplicated and sorted by (source, target); the relation
        id of each edge (:obj:`INTERACT = -1` for user-item edges); the
        number of nodes :math:`|\mathcal{U}| + |\mathcal{E}|`.
    """
    U, I = int(dataset.num_users), int(dataset.num_items)
    num_nodes = U + int(dataset.num_entities)
    src, dst, rel = [], [], []
    data = getattr(dataset, 'data', None)
    if data is not None and hasattr(data, 'edge_types'):
        offset = {'user': 0, 'item': U, 'entity': U + I}
        for et in data.edge_types:
            h_type, name, t_type = et
            if name.startswith('rev_'):
                continue  # reverses are added below
            store = data[et]
            ei = store.edge_index
            src.append(ei[0] + offset[h_type])
            dst.append(ei[1] + offset[t_type])
            if name == 'kg':
                rel.append(store.relation.long().view(-1))
            else:
                rel.append(torch.full((ei.size(1), ), INTERACT,
                                      dtype=torch.long))
    else:
        pos = dataset.train_pos
        src.append(pos.row_ids())
        dst.append(pos.indices + U)
        rel.append(torch.full((pos.nnz, ), INTERACT, dtype=torch.long))
        kg = dataset.kg.long()
        if kg.numel() > 0:
            src.append(kg[:, 0] + U)
            dst.append(kg[:, 2] + U)
            rel.append(kg[:, 1])
    src = torch.cat(src).long()
    dst = torch.cat(dst).long()
    rel = torch.cat(rel).long()
    # both directions; drop self loops and duplicate (src, dst) pairs
    s, d = torch.cat([src, dst]), torch.cat([dst, src])
    r = torch.cat([rel, rel])
    keep = s != d
    s, d, r = s[keep], d[keep], r[keep]
    key = s * num_nodes + d
    key, perm = torch.sort(key, stable=True)
    first = torch.ones_like(key, dtype=torch.bool)
    first[1:] = key[1:] != key[:-1]
    perm = perm[first]
    return torch.stack([s[perm], d[perm]]), r[perm], num_nodes


def neighbour_table(edge_index: Tensor, num_rows: int, width: int,
                    row_offset: int = 0, generator=None) -> Tensor:
    r"""A :obj:`[num_rows, width]` table of neighbours: row :obj:`v` holds
    :obj:`min(deg(v), width)` distinct neighbours of node
    :obj:`v + row_offset`, drawn at random without replacement, padded with
    :obj:`-1` (sub-sampling; short rows are padded rather than over-sampled so
    that no candidate is duplicated). Built with one random permutation and
    one stable sort over all edges.

    Args:
        edge_index (torch.Tensor): :obj:`(source, target)` pairs; sources
            outside :obj:`[row_offset, row_offset + num_rows)` are ignored.
        num_rows (int): Number of rows.
        width (int): Columns (:math:`n_1`).
        row_offset (int, optional): Node id of row 0. (default: :obj:`0`)
        generator (torch.Generator, optional): Random source.
    """
    device = edge_index.device
    src = edge_index[0] - row_offset
    dst = edge_index[1]
    keep = (src >= 0) & (src < num_rows)
    src, dst = src[keep], dst[keep]
    table = torch.full((num_rows, width), -1, dtype=torch.long,
                       device=device)
    if src.numel() == 0:
        return table
    shuffle = torch.randperm(src.numel(), generator=generator,
                             device='cpu').to(device)
    src, dst = src[shuffle], dst[shuffle]
    order = torch.argsort(src, stable=True)
    src, dst = src[order], dst[order]
    deg = torch.bincount(src, minlength=num_rows)
    start = torch.cumsum(deg, 0) - deg
    rank = torch.arange(src.numel(), device=device) - start[src]
    keep = rank < width
    table[src[keep], rank[keep]] = dst[keep]
    return table


# ------------------------------------------------------------- aggregation
class _MeanSpMM(torch.autograd.Function):
    r""":math:`Y = \hat{A} X` for a row-normalised CSR :math:`\hat{A}`, with the
    backward :math:`\hat{A}^{\top} G` done by a second, precomputed CSR (far
    faster on CPU than differentiating through :func:`torch.sparse.mm`)."""
    @staticmethod
    def forward(ctx, adj: Tensor, adj_transposed: Tensor, x: Tensor):
        ctx.adj_transposed = adj_transposed
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.adj_transposed @ grad


class _MeanCSR:
    """A row-normalised adjacency (targets x sources) and its transpose."""
    def __init__(self, edge_index: Tensor, num_nodes: int,
                 dtype: torch.dtype = torch.float):
        src, dst = edge_index
        deg = torch.bincount(dst, minlength=num_nodes).clamp_(min=1)
        val = 1.0 / deg[dst].to(dtype)
        size = (num_nodes, num_nodes)
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter('ignore', UserWarning)
            self.adj = torch.sparse_coo_tensor(
                torch.stack([dst, src]), val, size).coalesce().to_sparse_csr()
            self.adj_transposed = torch.sparse_coo_tensor(
                torch.stack([src, dst]), val, size).coalesce().to_sparse_csr()

    def __call__(self, x: Tensor) -> Tensor:
        return _MeanSpMM.apply(self.adj, self.adj_transposed, x)


class _SAGEConv(SAGEConv):
    r"""PyG :class:`~torch_geometric.nn.conv.SAGEConv` (mean aggregation)
    whose sparse aggregation goes through :class:`_MeanCSR` when the encoder
    hands it one; everything else is the parent's."""
    def forward(self, x, edge_index, size=None):
        if isinstance(edge_index, _MeanCSR):
            agg = self.lin_l(edge_index(x))
            if self.root_weight:
                agg = agg + self.lin_r(x)
            if self.normalize:
                agg = F.normalize(agg, p=2., dim=-1)
            return agg
        return super().forward(x, edge_index, size)


class GraphEncoder(torch.nn.Module):
    r"""ID embeddings followed by :obj:`num_layers` GraphSAGE layers with
    LeakyReLU over the homogeneous collaborative KG:

    .. math::
        \mathbf{h}^{(l)}_v = \mathrm{LeakyReLU}\big(\mathbf{W}_1^{(l)}
        \mathbf{h}^{(l-1)}_v + \mathbf{W}_2^{(l)} \,\mathrm{mean}_{w \in
        \mathcal{N}(v)} \mathbf{h}^{(l-1)}_w\big)

    Args:
        num_nodes (int): Users plus entities.
        edge_index (torch.Tensor): The graph, :math:`(2, E)`.
        embedding_dim (int, optional): ID embedding size.
        hidden_dims (tuple of int, optional): Output size of each layer.
        negative_slope (float, optional): LeakyReLU slope.
        aggr_backend (str, optional): :obj:`"csr"` (row-normalised
            :obj:`torch.sparse_csr` SpMM with a precomputed transpose for the
            backward), :obj:`"torch_sparse"` (:class:`torch_sparse.SparseTensor`,
            needs :mod:`torch_sparse`), :obj:`"scatter"` (PyG message passing
            over :obj:`edge_index`), or :obj:`"auto"` (:obj:`"csr"`, measured
            fastest on CPU). All give the same result up to float rounding.
    """
    def __init__(self, num_nodes: int, edge_index: Tensor,
                 embedding_dim: int = 64, hidden_dims=(64, 64),
                 negative_slope: float = 0.2, aggr_backend: str = 'auto'):
        super().__init__()
        if aggr_backend not in AGGR_BACKENDS:
            raise ValueError(f"KGPolicy: 'aggr_backend' must be one of "
                             f"{AGGR_BACKENDS} (got {aggr_backend!r})")
        if aggr_backend == 'torch_sparse' and not HAS_TORCH_SPARSE:
            raise ImportError("KGPolicy: aggr_backend='torch_sparse' needs "
                              "the 'torch-sparse' package; use 'auto'")
        self.aggr_backend = 'csr' if aggr_backend == 'auto' else aggr_backend
        self.num_nodes = num_nodes
        self.negative_slope = negative_slope
        self.embedding = torch.nn.Embedding(num_nodes, embedding_dim)
        dims = [embedding_dim] + list(hidden_dims)
        self.convs = torch.nn.ModuleList(
            [_SAGEConv(a, b, aggr='mean') for a, b in zip(dims[:-1], dims[1:])])
        self.set_graph(edge_index)
        self.reset_parameters()

    def set_graph(self, edge_index: Tensor) -> None:
        """(Re)builds the aggregation structure on :obj:`edge_index`'s
        device."""
        self.edge_index = edge_index
        if self.aggr_backend == 'csr':
            self._adj = _MeanCSR(edge_index, self.num_nodes,
                                 self.embedding.weight.dtype)
        elif self.aggr_backend == 'torch_sparse':
            self._adj = _SparseTensor(row=edge_index[1], col=edge_index[0],
                                      sparse_sizes=(self.num_nodes,
                                                    self.num_nodes))
        else:
            self._adj = edge_index

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.embedding.weight)
        for conv in self.convs:
            conv.reset_parameters()

    def __repr__(self) -> str:
        dims = [self.embedding.embedding_dim] + [c.out_channels
                                                 for c in self.convs]
        return (f'{self.__class__.__name__}({self.num_nodes}, dims={dims}, '
                f'aggr_backend={self.aggr_backend!r})')

    @property
    def out_channels(self) -> int:
        return self.convs[-1].out_channels if len(self.convs) else \
            self.embedding.embedding_dim

    def forward(self) -> Tensor:
        r"""Representations of all nodes, :math:`(|\mathcal{U}| +
        |\mathcal{E}|, d)`."""
        h = self.embedding.weight
        for conv in self.convs:
            h = F.leaky_relu(conv(h, self._adj), self.negative_slope)
        return h


# --------------------------------------------------------------- attention
def dedupe(cand: Tensor) -> Tensor:
    r"""Sets repeated entries of each row to :obj:`-1` (keeps the first).

    Shapes: **cand** :math:`(R, C)`, output :math:`(R, C)`."""
    if cand.size(1) < 2:
        return cand
    val, idx = torch.sort(cand, dim=1, stable=True)
    dup = torch.zeros_like(cand, dtype=torch.bool)
    dup[:, 1:] = (val[:, 1:] == val[:, :-1]) & (val[:, 1:] >= 0)
    mask = torch.zeros_like(dup).scatter_(1, idx, dup)
    return cand.masked_fill(mask, -1)


def rows(h: Tensor, index: Tensor) -> Tensor:
    r""":obj:`h[index]` through :func:`torch.index_select`, whose backward
    (an :obj:`index_add_`) is much faster on CPU than that of advanced
    indexing. Shapes: **index** :math:`(*)`, output :math:`(*, d)`."""
    return h.index_select(0, index.reshape(-1)).view(*index.shape, -1)


def prune(h: Tensor, src: Tensor, cand: Tensor, k: int) -> Tensor:
    r"""Keeps, per row, the :obj:`k` valid candidates (:obj:`>= 0`) with the
    largest :math:`\mathbf{h}_{src}^{\top}\mathbf{h}_{cand}`; :obj:`-1` pads
    rows with fewer. Scores are computed only for the valid entries of rows
    that hold more than :obj:`k` of them. Not differentiable (a selection).

    Shapes: **src** :math:`(R)`, **cand** :math:`(R, C)`, output
    :math:`(R, \min(k, C))`."""
    if cand.size(1) <= k:
        return cand
    with torch.no_grad():
        valid = cand >= 0
        score = torch.zeros(cand.shape, device=cand.device)
        score = score.masked_fill(~valid, -float('inf'))
        count = valid.sum(1)
        full = count > k
        mask = valid & full.unsqueeze(1)
        if bool(full.any()):
            # one SDDMM over the (row, candidate) pattern: far cheaper than
            # gathering both sides of every pair
            crow = torch.zeros(int(full.sum()) + 1, dtype=torch.long,
                               device=cand.device)
            crow[1:] = torch.cumsum(count[full], 0)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)
                pattern = torch.sparse_csr_tensor(
                    crow, cand.masked_select(mask),
                    torch.zeros(int(crow[-1]), dtype=h.dtype,
                                device=cand.device),
                    (int(full.sum()), h.size(0)))
                val = torch.sparse.sampled_addmm(pattern, h[src[full]], h.t(),
                                                 beta=0.0).values()
            score = score.masked_scatter(mask, val.to(score.dtype))
        top, idx = score.topk(k, dim=1)
        return cand.gather(1, idx).masked_fill(top == -float('inf'), -1)


def attention_logits(h: Tensor, users: Tensor, src: Tensor, cand: Tensor,
                     negative_slope: float = 0.2) -> Tensor:
    r"""The neighbour attention score
    :math:`\mathbf{h}_u^{\top}\,\mathrm{LeakyReLU}(\mathbf{h}_{src} \odot
    \mathbf{h}_{cand})` (padding :obj:`-1` reads node 0; mask it after).

    Shapes: **users, src** :math:`(R)`, **cand** :math:`(R, C)`, output
    :math:`(R, C)`."""
    z = F.leaky_relu(rows(h, src).unsqueeze(1) * rows(h, cand.clamp(min=0)),
                     negative_slope)
    # multiply-and-sum: ~3x faster than a batched mat-vec (bmm) on CPU
    return (z * rows(h, users).unsqueeze(1)).sum(-1)


def attention_keys(h: Tensor) -> Tensor:
    r"""Keys :math:`\mathbf{k}_c = [\mathrm{ReLU}(\mathbf{h}_c),
    \mathrm{ReLU}(-\mathbf{h}_c)]` of every node for
    :func:`attention_query` (computed once per refresh).

    Shapes: **h** :math:`(N, d)`, output :math:`(N, 2d)`."""
    return torch.cat([F.relu(h), F.relu(-h)], 1)


def attention_query(h_user: Tensor, h_src: Tensor,
                    negative_slope: float = 0.2) -> Tensor:
    r"""Queries :math:`\mathbf{q}` such that :math:`\mathbf{k}_c^{\top}
    \mathbf{q} = \mathbf{h}_u^{\top}\mathrm{LeakyReLU}(\mathbf{h}_{src}
    \odot \mathbf{h}_c)` exactly, with :math:`\mathbf{k}_c` from
    :func:`attention_keys`. With :math:`a` the slope,
    :math:`\mathrm{LeakyReLU}(x) = a x + (1 - a)\mathrm{ReLU}(x)`,
    :math:`x = x^+ - x^-` and :math:`\mathrm{ReLU}(s c) = s^+ c^+ + s^- c^-`
    give

    .. math::
        \mathbf{q} = [\mathbf{h}_u \odot (a\,\mathbf{h}_{src} + (1 - a)\,
        \mathbf{h}_{src}^+),\ \mathbf{h}_u \odot (-a\,\mathbf{h}_{src} +
        (1 - a)\,\mathbf{h}_{src}^-)].

    With :math:`\mathbf{t} = (1 - a)\,\mathbf{h}_{src}^+` and
    :math:`\mathbf{h}_{src}^- = \mathbf{h}_{src}^+ - \mathbf{h}_{src}`,
    this is :math:`[\mathbf{h}_u \odot (\mathbf{t} + a\,\mathbf{h}_{src}),\
    \mathbf{h}_u \odot (\mathbf{t} - \mathbf{h}_{src})]` (fewer operations).

    Shapes: **h_user, h_src** :math:`(R, d)`, output :math:`(R, 2d)`."""
    a = negative_slope
    t = F.relu(h_src) * (1 - a)
    if torch.is_grad_enabled() and (h_user.requires_grad or
                                    h_src.requires_grad):
        return torch.cat([h_user * (t + a * h_src), h_user * (t - h_src)], 1)
    d = h_src.size(1)  # no autograd: both halves written in place
    out = torch.empty(h_src.size(0), 2 * d, dtype=t.dtype, device=t.device)
    torch.add(t, h_src, alpha=a, out=out[:, :d]).mul_(h_user)
    torch.sub(t, h_src, out=out[:, d:]).mul_(h_user)
    return out


def attention_logits_keys(keys: Tensor, query: Tensor,
                          cand: Tensor) -> Tensor:
    r"""The attention logits :math:`\mathbf{k}_{c}^{\top}\mathbf{q}_r` of
    every (row, candidate) pair as one sampled dense-dense product (SDDMM,
    :func:`torch.sparse.sampled_addmm`) over the :obj:`(row, candidate)`
    pattern: no :obj:`[R, C, d]` tensor is built. Equals
    :func:`attention_logits` (up to float rounding) with :obj:`keys =
    attention_keys(h)` and :obj:`query = attention_query(h[users], h[src])`;
    padding :obj:`-1` reads node 0 (mask it after). Not differentiable (for
    sampling).

    Shapes: **keys** :math:`(N, 2d)`, **query** :math:`(R, 2d)`, **cand**
    :math:`(R, C)`, output :math:`(R, C)`."""
    R, C = cand.shape
    if R == 0 or C == 0:
        return query.new_zeros(cand.shape)
    if C >= keys.size(0):
        # tiny graphs: a pattern row longer than the matrix row (padding
        # repeats node 0) is rejected by sampled_addmm; gather instead
        return (keys[cand.clamp(min=0)] @ query.unsqueeze(-1)).squeeze(-1)
    crow = torch.arange(0, R * C + 1, C, device=cand.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow, cand.clamp(min=0).reshape(-1),
            query.new_zeros(R * C), (R, keys.size(0)))
        val = torch.sparse.sampled_addmm(pattern, query, keys.t(), beta=0.0)
    return val.values().view(R, C)


class _PairLogits(torch.autograd.Function):
    r""":math:`s_k = \mathbf{q}_{row_k}^{\top}\mathbf{K}_{col_k}` for flat
    (row, column) pairs: an SDDMM forward; the backward is two sparse-dense
    products, :math:`\partial\mathbf{q} = \mathbf{A}\mathbf{K}` and
    :math:`\partial\mathbf{K} = \mathbf{A}^{\top}\mathbf{q}` with
    :math:`\mathbf{A}` the pairs weighted by the incoming gradient. No
    per-pair feature tensor is built in either direction."""
    @staticmethod
    def forward(ctx, query: Tensor, keys: Tensor, crow: Tensor, col: Tensor,
                row: Tensor):
        ctx.save_for_backward(query, keys, crow, col, row)
        M, N = query.size(0), keys.size(0)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            pattern = torch.sparse_csr_tensor(
                crow, col, query.new_zeros(col.numel()), (M, N))
            return torch.sparse.sampled_addmm(pattern, query, keys.t(),
                                              beta=0.0).values().clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        query, keys, crow, col, row = ctx.saved_tensors
        grad = grad.contiguous()
        d_query = d_keys = None
        if ctx.needs_input_grad[0]:
            d_query = _csr_mm(crow, col, grad, keys)
        if ctx.needs_input_grad[1]:
            d_keys = _csr_t_mm(row, col, grad, query, keys.size(0))
        return d_query, d_keys, None, None, None


def _csr_mm(crow: Tensor, col: Tensor, values: Tensor,
            dense: Tensor) -> Tensor:
    r""":math:`\mathbf{A}\,\mathrm{dense}` for the CSR matrix
    :math:`\mathbf{A}` (:obj:`crow`, :obj:`col`, :obj:`values`) with
    :obj:`dense.size(0)` columns."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        A = torch.sparse_csr_tensor(crow, col, values.to(dense.dtype),
                                    (crow.numel() - 1, dense.size(0)))
        return A @ dense


def _csr_t_mm(row: Tensor, col: Tensor, values: Tensor, dense: Tensor,
              num_cols: int) -> Tensor:
    r""":math:`\mathbf{A}^{\top}\mathrm{dense}` for the pairs
    (:obj:`row`, :obj:`col`, :obj:`values`) of :math:`\mathbf{A}`, which has
    :obj:`num_cols` columns; output :math:`(\text{num\_cols}, D)`."""
    A = torch.sparse_coo_tensor(torch.stack([col, row]),
                                values.to(dense.dtype),
                                (num_cols, dense.size(0)))
    return torch.sparse.mm(A, dense)


def pair_log_prob(keys: Tensor, query: Tensor, cand: Tensor, choice: Tensor,
                  backend: str = 'auto', with_entropy: bool = False):
    r"""Differentiable :math:`\log p` of the chosen column of each row,
    with :math:`p` the scatter softmax over the row's valid candidates
    (:obj:`>= 0`) of the logits :math:`\mathbf{k}_c^{\top}\mathbf{q}_r`
    (:func:`attention_keys`, :func:`attention_query`). The logits are
    computed for the flat valid (row, candidate) pairs only (SDDMM forward,
    sparse-dense backward), and go to :func:`scatter_softmax` as they are.
    0 where :obj:`choice` is :obj:`-1`; :obj:`backend` :obj:`"dense"` means
    the default scatter back end here.

    With :obj:`with_entropy`, also returns each row's entropy
    :math:`-\sum_c p_c \log p_c` (differentiable), for an entropy bonus.

    Shapes: **keys** :math:`(N, 2d)`, **query** :math:`(R, 2d)`, **cand**
    :math:`(R, C)`, **choice** :math:`(R)`, output :math:`(R)` (and
    :math:`(R)`)."""
    R = cand.size(0)
    valid = cand >= 0
    count = valid.sum(1)
    crow = torch.zeros(R + 1, dtype=torch.long, device=cand.device)
    crow[1:] = torch.cumsum(count, 0)
    col = cand.masked_select(valid)
    if col.numel() == 0:
        zero = query.new_zeros(R) * query.sum(1)
        return (zero, zero) if with_entropy else zero
    row = torch.repeat_interleave(torch.arange(R, device=cand.device), count)
    logits = _PairLogits.apply(query, keys, crow, col, row)
    p = scatter_softmax(logits, row, R,
                        'auto' if backend == 'dense' else backend)
    has = choice >= 0
    rank = valid.cumsum(1).gather(1, choice.clamp(min=0).view(-1, 1))
    pos = (crow[:-1] + rank.view(-1) - 1).clamp(0, col.numel() - 1)
    logp = torch.log(p.clamp(min=1e-30))
    lp = logp[pos]
    lp = torch.where(has, lp, torch.zeros_like(lp))
    if not with_entropy:
        return lp
    ent = scatter(-(p * logp), row, dim=0, dim_size=R, reduce='sum')
    return lp, ent


def masked_softmax(logits: Tensor, valid: Tensor,
                   backend: str = 'auto') -> Tensor:
    r"""Softmax of each row over its valid entries: the scatter softmax of
    :func:`masked_scatter_softmax` for :obj:`backend` in
    :obj:`("auto", "torch_scatter", "pyg")`, or a dense masked softmax over
    the padded rows for :obj:`"dense"` (same result up to float rounding).
    Invalid entries and empty rows get probability 0.

    Shapes: **logits, valid** :math:`(R, C)`, output :math:`(R, C)`."""
    if backend == 'dense':
        p = torch.softmax(logits.masked_fill(~valid, -float('inf')), 1)
        return p.masked_fill(~valid, 0.0)  # empty rows: NaN -> 0
    return masked_scatter_softmax(logits, valid, backend)


def masked_scatter_softmax(logits: Tensor, valid: Tensor,
                           backend: str = 'auto') -> Tensor:
    r"""Softmax of each row over its valid entries only, computed as a scatter
    softmax over the flat (row, candidate) pairs of the padded rows, the
    invalid ones at the lowest finite score (their :math:`\exp` underflows
    to 0, so they take no mass from the valid ones); invalid entries and
    empty rows get probability 0. Flattening the padded rows rather than
    selecting the valid pairs needs no :func:`torch.nonzero` (no host sync
    on a GPU) and was faster on CPU too.

    Shapes: **logits, valid** :math:`(R, C)`, output :math:`(R, C)`."""
    R, C = logits.shape
    row = torch.arange(R, device=logits.device).view(-1, 1).expand(R, C)
    low = torch.finfo(logits.dtype).min
    p = scatter_softmax(logits.masked_fill(~valid, low).reshape(-1),
                        row.reshape(-1), R, backend)
    return p.view(R, C).masked_fill(~valid, 0.0)


def choose(prob: Tensor, greedy: bool, generator=None) -> Tensor:
    r"""One column per row drawn from :obj:`prob` (or its argmax); :obj:`-1`
    for rows with no mass. Drawn by inverting the row's cumulative
    distribution with one uniform number per row (cheaper than
    :func:`torch.multinomial`); columns of probability 0 are never drawn.

    Shapes: **prob** :math:`(R, C)`, output :math:`(R)`."""
    if prob.size(1) == 0:
        return torch.full((prob.size(0), ), -1, dtype=torch.long,
                          device=prob.device)
    if greedy:
        has = prob.sum(1) > 0
        idx = prob.argmax(1)
    else:
        cdf = prob.cumsum(1)
        total = cdf[:, -1:]
        has = total.squeeze(1) > 0
        # r in (0, total] (a product with a factor <= 1 never rounds above
        # total): the first column with cdf >= r exists and, as cdf rose
        # there, has mass
        r = (1.0 - torch.rand(total.shape, generator=generator,
                              device=prob.device)) * total
        idx = (cdf < r).sum(1)
    return torch.where(has, idx, torch.full_like(idx, -1))


def gather_log_prob(prob: Tensor, idx: Tensor) -> Tensor:
    r""":math:`\log p` of the chosen column; 0 where :obj:`idx` is :obj:`-1`.

    Shapes: **prob** :math:`(R, C)`, **idx** :math:`(R)`, output
    :math:`(R)`."""
    has = idx >= 0
    p = prob.gather(1, idx.clamp(min=0).unsqueeze(1)).squeeze(1)
    return torch.where(has, torch.log(p.clamp(min=1e-30)),
                       torch.zeros_like(p))


def in_history(cand: Tensor, history: Optional[Tensor]) -> Tensor:
    r"""Whether each candidate appears in its row's history.

    Shapes: **cand** :math:`(R, C)`, **history** :math:`(R, L)`, output
    :math:`(R, C)`."""
    if history is None or history.numel() == 0:
        return torch.zeros_like(cand, dtype=torch.bool)
    if history.size(1) <= 8:  # short histories: one [R, C] compare a column
        out = cand == history[:, :1]
        for k in range(1, history.size(1)):
            out |= cand == history[:, k:k + 1]
        return out
    return (cand.unsqueeze(-1) == history.unsqueeze(1)).any(-1)


def attention_query_backward(h_user: Tensor, h_src: Tensor, grad: Tensor,
                             negative_slope: float = 0.2
                             ) -> Tuple[Tensor, Tensor]:
    r"""Gradients of :func:`attention_query` with respect to
    :obj:`h_user` and :obj:`h_src` given the gradient :obj:`grad` of its
    output, in closed form (no autograd graph). With
    :math:`\mathbf{g} = [\mathbf{A}, \mathbf{B}]` and :math:`s = h_{src}`:
    :math:`\partial h_u = \mathbf{A} \odot (a s + (1 - a) s^+) +
    \mathbf{B} \odot ((1 - a) s^- - a s)` and :math:`\partial s = h_u \odot
    (\mathbf{A} \odot (a + (1 - a) [s > 0]) - \mathbf{B} \odot (a + (1 - a)
    [s < 0]))`.

    Shapes: **h_user, h_src** :math:`(R, d)`, **grad** :math:`(R, 2d)`,
    outputs :math:`(R, d)` each."""
    a = negative_slope
    A, B = grad.chunk(2, dim=1)
    t = F.relu(h_src) * (1 - a)  # as in attention_query
    d_user = A * (t + a * h_src) + B * (t - h_src)
    pos = (h_src > 0).to(A.dtype).mul_(1 - a).add_(a)
    neg = (h_src < 0).to(B.dtype).mul_(1 - a).add_(a)
    d_src = h_user * (A * pos - B * neg)
    return d_user, d_src


def attention_keys_backward(h: Tensor, grad: Tensor) -> Tensor:
    r"""Gradient of :func:`attention_keys` with respect to :obj:`h` given
    the gradient :obj:`grad` of the keys (closed form).

    Shapes: **h** :math:`(N, d)`, **grad** :math:`(N, 2d)`, output
    :math:`(N, d)`."""
    A, B = grad.chunk(2, dim=1)
    return A * (h > 0).to(A.dtype) - B * (h < 0).to(B.dtype)


def logit_grad(prob: Tensor, choice: Tensor, coef: Tensor) -> Tensor:
    r"""Gradient of :math:`-c_r \log p_r(\text{choice}_r)` with respect to
    the logits of a row-wise softmax, :math:`c_r (p - \mathrm{onehot})`
    (0 on rows without a choice, :obj:`-1`).

    Shapes: **prob** :math:`(R, C)`, **choice, coef** :math:`(R)`, output
    :math:`(R, C)`."""
    g = prob.clone()
    has = (choice >= 0).to(g.dtype)
    g.scatter_add_(1, choice.clamp(min=0).view(-1, 1), -has.view(-1, 1))
    return g * (coef * has).view(-1, 1)


def pair_matmul(cand: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    r""":math:`\mathbf{Y}_r = \sum_c \mathrm{values}_{rc}\,
    \mathrm{dense}_{\mathrm{cand}_{rc}}`: one sparse-dense product over the
    fixed :obj:`(R, C)` pattern (padding :obj:`-1` must carry value 0).

    Shapes: **cand, values** :math:`(R, C)`, **dense** :math:`(N, D)`,
    output :math:`(R, D)`."""
    R, C = cand.shape
    crow = torch.arange(R + 1, device=cand.device) * C
    return _csr_mm(crow, cand.clamp(min=0).reshape(-1), values.reshape(-1),
                   dense)


def pair_matmul_t(cand: Tensor, values: Tensor, dense: Tensor,
                  num_nodes: int) -> Tensor:
    r"""The transposed product, :math:`\mathbf{Z}_n = \sum_{(r, c):
    \mathrm{cand}_{rc} = n} \mathrm{values}_{rc}\,\mathrm{dense}_r` (padding
    :obj:`-1` must carry value 0).

    Shapes: **cand, values** :math:`(R, C)`, **dense** :math:`(R, D)`,
    output :math:`(N, D)`."""
    R, C = cand.shape
    keep = values.reshape(-1) != 0
    row = torch.arange(R, device=cand.device).repeat_interleave(C)[keep]
    return _csr_t_mm(row, cand.reshape(-1)[keep], values.reshape(-1)[keep],
                     dense, num_nodes)


def pad_columns(x: Tensor, width: int, value: float) -> Tensor:
    r"""Pads the last dimension of :obj:`x` to :obj:`width` with
    :obj:`value`."""
    return F.pad(x, (0, width - x.size(-1)), value=value)
