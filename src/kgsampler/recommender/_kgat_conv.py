r"""The message-passing layer of :class:`~kgsampler.recommender.kgat.KGAT`:
attention-weighted neighbour sums followed by KGAT's aggregators."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MessagePassing
from torch_geometric.nn.dense.linear import Linear

AGGREGATORS = ('bi', 'gcn', 'graphsage')


class _SpMMWithTranspose(torch.autograd.Function):
    r""":math:`Y = A X` for a constant sparse CSR :math:`A` whose transpose
    :math:`A^{\top}` is given too (also as CSR), so that the backward
    :math:`A^{\top} G` is one more SpMM instead of the transpose that
    differentiating :func:`torch.sparse.mm` rebuilds on every call."""
    @staticmethod
    def forward(ctx, adj: Tensor, adj_transposed: Tensor, x: Tensor) -> Tensor:
        ctx.adj_transposed = adj_transposed
        return adj @ x

    @staticmethod
    def backward(ctx, grad: Tensor):
        return None, None, ctx.adj_transposed @ grad


class KGATConv(MessagePassing):
    r"""One attentive embedding propagation layer of KGAT (Wang et al.,
    KDD 2019, eq. 3-7): the attention-weighted sum of each head node's
    neighbours,

    .. math::
        \mathbf{e}_{\mathcal{N}_h} = \sum_{(h, r, t) \in \mathcal{N}_h}
        \pi(h, r, t)\, \mathbf{e}_t,

    then one of the aggregators (LeakyReLU slope :obj:`negative_slope`):

    * :obj:`"bi"` (bi-interaction, the paper's):
      :math:`\mathrm{LeakyReLU}(\mathbf{W}_1 (\mathbf{e}_h +
      \mathbf{e}_{\mathcal{N}_h})) + \mathrm{LeakyReLU}(\mathbf{W}_2
      (\mathbf{e}_h \odot \mathbf{e}_{\mathcal{N}_h}))`;
    * :obj:`"gcn"`: :math:`\mathrm{LeakyReLU}(\mathbf{W} (\mathbf{e}_h +
      \mathbf{e}_{\mathcal{N}_h}))`;
    * :obj:`"graphsage"`: :math:`\mathrm{ReLU}(\mathbf{W} (\mathbf{e}_h
      \,\|\, \mathbf{e}_{\mathcal{N}_h}))`.

    (each :math:`\mathbf{W}` with a bias). The weights :math:`\pi` are given
    per edge; they are not differentiated through (KGAT recomputes them
    between training phases).

    The neighbour sum runs either on an :obj:`edge_index` (row 0 the tail
    :math:`t`, the message's source; row 1 the head :math:`h`, its
    target) with :obj:`edge_weight`, by gather/scatter message passing, or,
    faster, on the weighted adjacency :math:`A_{ht} = \pi(h, r, t)` as a
    :obj:`torch.sparse_csr` tensor (rows: heads) together with
    :obj:`adj_transposed`, its transpose as CSR, which the backward pass
    multiplies with.

    Args:
        in_channels (int): Input size.
        out_channels (int): Output size.
        aggregator (str, optional): :obj:`"bi"`, :obj:`"gcn"` or
            :obj:`"graphsage"`. (default: :obj:`"bi"`)
        negative_slope (float, optional): LeakyReLU slope (the released
            code's TensorFlow default). (default: :obj:`0.2`)
    """
    def __init__(self, in_channels: int, out_channels: int,
                 aggregator: str = 'bi', negative_slope: float = 0.2):
        super().__init__(aggr='add')
        if aggregator not in AGGREGATORS:
            raise ValueError(f"KGATConv: 'aggregator' must be one of "
                             f"{AGGREGATORS} (got {aggregator!r})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.aggregator, self.negative_slope = aggregator, negative_slope
        lin_in = 2 * in_channels if aggregator == 'graphsage' else in_channels
        self.lin = Linear(lin_in, out_channels, weight_initializer='glorot')
        self.lin_bi = (Linear(in_channels, out_channels,
                              weight_initializer='glorot')
                       if aggregator == 'bi' else None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets the weights (Glorot) and biases (zeros)."""
        super().reset_parameters()
        self.lin.reset_parameters()
        if self.lin_bi is not None:
            self.lin_bi.reset_parameters()

    def neighbour_sum(self, x: Tensor, edge_index: Tensor,
                      edge_weight: Optional[Tensor] = None,
                      adj_transposed: Optional[Tensor] = None) -> Tensor:
        r""":math:`\mathbf{e}_{\mathcal{N}_h}` of every node.

        Args:
            x (torch.Tensor): Node embeddings.
            edge_index (torch.Tensor): (tail, head) pairs, :obj:`torch.long`,
                or the weighted adjacency as a :obj:`torch.sparse_csr`
                tensor (rows: heads).
            edge_weight (torch.Tensor, optional): :math:`\pi` of every edge
                (with an :obj:`edge_index`).
            adj_transposed (torch.Tensor, optional): The adjacency's
                transpose as CSR (with a sparse :obj:`edge_index`).

        Shapes:
            - **x:** :math:`(N, F)`
            - **edge_index:** :math:`(2, E)` or sparse :math:`(N, N)`
            - **edge_weight:** :math:`(E)`
            - **output:** :math:`(N, F)`
        """
        if edge_index.layout == torch.sparse_csr:
            if adj_transposed is None:
                raise ValueError("KGATConv: a sparse adjacency needs "
                                 "'adj_transposed' (got None)")
        elif edge_weight is None or edge_weight.shape != (
                edge_index.size(1), ):
            got = None if edge_weight is None else tuple(edge_weight.shape)
            raise ValueError(f"KGATConv: 'edge_weight' must hold one weight "
                             f"per edge of 'edge_index' (got {got} for "
                             f"{edge_index.size(1)} edges)")
        return self.propagate(edge_index, x=x, edge_weight=edge_weight,
                              adj_transposed=adj_transposed,
                              size=(x.size(0), x.size(0)))

    def forward(self, x: Tensor, edge_index: Tensor,
                edge_weight: Optional[Tensor] = None,
                adj_transposed: Optional[Tensor] = None) -> Tensor:
        r"""The aggregated embeddings of every node.

        Args:
            x (torch.Tensor): Node embeddings.
            edge_index (torch.Tensor): (tail, head) pairs, :obj:`torch.long`,
                or the weighted adjacency as a :obj:`torch.sparse_csr`
                tensor (rows: heads).
            edge_weight (torch.Tensor, optional): :math:`\pi` of every edge
                (with an :obj:`edge_index`).
            adj_transposed (torch.Tensor, optional): The adjacency's
                transpose as CSR (with a sparse :obj:`edge_index`).

        Shapes:
            - **x:** :math:`(N, F_{in})`
            - **edge_index:** :math:`(2, E)` or sparse :math:`(N, N)`
            - **edge_weight:** :math:`(E)`
            - **output:** :math:`(N, F_{out})`
        """
        side = self.neighbour_sum(x, edge_index, edge_weight, adj_transposed)
        if self.aggregator == 'graphsage':
            return F.relu(self.lin(torch.cat([x, side], dim=-1)))
        out = F.leaky_relu(self.lin(x + side), self.negative_slope)
        if self.aggregator == 'bi':
            out = out + F.leaky_relu(self.lin_bi(x * side),
                                     self.negative_slope)
        return out

    def message(self, x_j: Tensor, edge_weight: Tensor) -> Tensor:
        return edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor,
                              adj_transposed: Tensor) -> Tensor:
        return _SpMMWithTranspose.apply(adj_t, adj_transposed, x)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.in_channels}, '
                f'{self.out_channels}, aggregator={self.aggregator})')
