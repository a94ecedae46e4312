r"""KGPolicy, part 1: the graph and its learning module (private).

* :func:`collaborative_graph`: the user-item-entity graph in one homogeneous
  node space (users :obj:`0..U-1`, entity :obj:`e` -> :obj:`U + e`; items are
  the entities :obj:`0..I-1`), relations merged, both directions.
* :func:`neighbour_table`: a fixed-width random neighbour table built with
  one sort over all edges (no Python loop over nodes): the sampled
  neighbourhoods :math:`\mathcal{N}_e` the walk and the pruning start from.
* :class:`GraphEncoder`: eq. 9-10 of the paper, ID embeddings + :obj:`L`
  bias-free PyG :class:`~torch_geometric.nn.conv.SAGEConv` layers with a
  symmetric-normalised neighbour sum and LeakyReLU.
"""
from __future__ import annotations

import warnings
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import SAGEConv
from torch_geometric.utils import scatter

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


def require_kg(who: str, dataset) -> None:
    r"""Raises a :class:`ValueError` naming :obj:`who` when :obj:`dataset`
    has no KG triples (e.g. interactions read from RecBole files without a
    :obj:`.kg` file): a KG walk has nothing to walk on."""
    kg = getattr(dataset, 'kg', None)
    if kg is not None and kg.numel() == 0:
        raise ValueError(
            f"{who}: the dataset {getattr(dataset, 'name', '')!r} has no KG "
            f"triples, and this sampler walks item -> KG entity -> item "
            f"paths; use a KG-free sampler (RNS, PNS, DNS, DNSMN, SoftmaxNS, "
            f"AHNS, SRNS, Adversarial) or a dataset with a KG")


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


class _SpMM(torch.autograd.Function):
    r""":math:`Y = \hat{A} X` for a normalised CSR :math:`\hat{A}`, with the
    backward :math:`\hat{A}^{\top} G` done by a second, precomputed CSR (far
    faster on CPU than differentiating through :func:`torch.sparse.mm`)."""
    @staticmethod
    def forward(ctx, adj: Tensor, adj_transposed: Tensor, x: Tensor):
        ctx.adj_transposed = adj_transposed
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.adj_transposed @ grad


def sym_norm_weights(edge_index: Tensor, num_nodes: int,
                     dtype: torch.dtype = torch.float) -> Tensor:
    r"""The weights :math:`1 / \sqrt{|\mathcal{N}_v| |\mathcal{N}_w|}` of
    eq. 10 of the paper, one per edge :math:`w \to v` (degrees counted on
    the targets; the graph holds both directions).

    Shapes: **edge_index** :math:`(2, E)`, output :math:`(E)`."""
    src, dst = edge_index
    deg = torch.bincount(dst, minlength=num_nodes).clamp_(min=1).to(dtype)
    return deg[src].rsqrt() * deg[dst].rsqrt()


class _Aggregation:
    r""":math:`\mathbf{h}_{\mathcal{N}_v} = \sum_{w \in \mathcal{N}_v}
    \frac{1}{\sqrt{|\mathcal{N}_v||\mathcal{N}_w|}} \mathbf{h}_w` (eq. 10)
    for every node at once, through one of three back ends: :obj:`"csr"`
    (a :obj:`torch.sparse_csr` SpMM with a precomputed transpose for the
    backward), :obj:`"torch_sparse"` (:class:`torch_sparse.SparseTensor`) or
    :obj:`"scatter"` (gather the sources, :func:`torch_geometric.utils.
    scatter` onto the targets). All give the same result up to rounding."""
    def __init__(self, edge_index: Tensor, num_nodes: int, backend: str,
                 dtype: torch.dtype = torch.float):
        self.backend = backend
        src, dst = edge_index
        val = sym_norm_weights(edge_index, num_nodes, dtype)
        size = (num_nodes, num_nodes)
        if backend == 'csr':
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter('ignore', UserWarning)
                self.adj = torch.sparse_coo_tensor(
                    torch.stack([dst, src]), val,
                    size).coalesce().to_sparse_csr()
                self.adj_transposed = torch.sparse_coo_tensor(
                    torch.stack([src, dst]), val,
                    size).coalesce().to_sparse_csr()
        elif backend == 'torch_sparse':
            self.adj = _SparseTensor(row=dst, col=src, value=val,
                                     sparse_sizes=size)
        else:
            self.src, self.dst = src, dst
            self.val = val.view(-1, 1)
            self.num_nodes = num_nodes

    def __call__(self, x: Tensor) -> Tensor:
        if self.backend == 'csr':
            return _SpMM.apply(self.adj, self.adj_transposed, x)
        if self.backend == 'torch_sparse':
            return self.adj @ x
        return scatter(x.index_select(0, self.src) * self.val, self.dst,
                       dim=0, dim_size=self.num_nodes, reduce='sum')


class _SAGEConv(SAGEConv):
    r"""PyG :class:`~torch_geometric.nn.conv.SAGEConv` without bias (eq. 9:
    :math:`\mathbf{W}[\mathbf{h}_v \Vert \mathbf{h}_{\mathcal{N}_v}] =
    \mathbf{W}_1 \mathbf{h}_{\mathcal{N}_v} + \mathbf{W}_2 \mathbf{h}_v`,
    the parent's :obj:`lin_l` and :obj:`lin_r`) whose neighbour aggregation
    is the symmetric-normalised sum of eq. 10 (:class:`_Aggregation`)
    instead of the parent's mean; everything else is the parent's."""
    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, aggr='sum', bias=False)

    def forward(self, x, edge_index, size=None):
        if isinstance(edge_index, _Aggregation):
            out = self.lin_l(edge_index(x))
            if self.root_weight:
                out = out + self.lin_r(x)
            return out
        return super().forward(x, edge_index, size)


class GraphEncoder(torch.nn.Module):
    r"""The graph learning module of KGPolicy (eq. 9-10 of the paper): ID
    embeddings followed by :obj:`num_layers` bias-free GraphSAGE layers
    (PyG :class:`~torch_geometric.nn.conv.SAGEConv`) with a
    symmetric-normalised neighbour sum and LeakyReLU, over the homogeneous
    collaborative KG:

    .. math::
        \mathbf{h}^{(l)}_v = \mathrm{LeakyReLU}\Big(\mathbf{W}^{(l)}
        \big[\mathbf{h}^{(l-1)}_v \,\Vert\, \textstyle\sum_{w \in
        \mathcal{N}_v} \frac{1}{\sqrt{|\mathcal{N}_v||\mathcal{N}_w|}}
        \mathbf{h}^{(l-1)}_w\big]\Big)

    No bias: a bias adds one vector to every node's representation, which
    then dominates them all (its norm was 18-21x each node's own part with
    PyG's default bias), so that the attention could not tell users apart.

    Args:
        num_nodes (int): Users plus entities.
        edge_index (torch.Tensor): The graph, both directions, :math:`(2, E)`.
        embedding_dim (int, optional): ID embedding size. (default: 64)
        hidden_dims (tuple of int, optional): Output size of each layer.
            (default: :obj:`(64, 64)`)
        negative_slope (float, optional): LeakyReLU slope. (default: 0.2)
        aggr_backend (str, optional): :obj:`"csr"` (:obj:`torch.sparse_csr`
            SpMM with a precomputed transpose for the backward),
            :obj:`"torch_sparse"` (:class:`torch_sparse.SparseTensor`, needs
            :mod:`torch_sparse`), :obj:`"scatter"` (gather and
            :func:`~torch_geometric.utils.scatter`), or :obj:`"auto"`
            (:obj:`"csr"`, measured fastest on CPU). All give the same result
            up to float rounding. (default: :obj:`"auto"`)
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
            [_SAGEConv(a, b) for a, b in zip(dims[:-1], dims[1:])])
        self.set_graph(edge_index)
        self.reset_parameters()

    def set_graph(self, edge_index: Tensor) -> None:
        """(Re)builds the aggregation structure on :obj:`edge_index`'s
        device, in the embeddings' dtype."""
        self.edge_index = edge_index
        self._adj = _Aggregation(edge_index, self.num_nodes,
                                 self.aggr_backend,
                                 self.embedding.weight.dtype)

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
