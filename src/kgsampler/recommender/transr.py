"""TransR (Lin et al., AAAI 2015) on PyG's :class:`~torch_geometric.nn.kge.
KGEModel` interface, as used by CKE's structural-knowledge part."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
import torch_geometric.typing
from torch import Tensor
from torch.nn import Embedding
from torch_geometric.nn import HeteroLinear
from torch_geometric.nn.kge import KGEModel
from torch_geometric.utils import index_sort

from kgsampler.utils._checks import positive_int as _positive_int




class TransR(KGEModel):
    r"""The TransR model from the `"Learning Entity and Relation Embeddings
    for Knowledge Graph Completion" <https://ojs.aaai.org/index.php/AAAI/
    article/view/9491>`_ paper, in the form CKE (Zhang et al., KDD 2016)
    trains it: entities live in :math:`\mathbb{R}^d`, each relation
    :math:`r` has its own space :math:`\mathbb{R}^k`, a vector
    :math:`\mathbf{e}_r` and a projection :math:`\mathbf{M}_r \in
    \mathbb{R}^{d \times k}`, and

    .. math::
        \mathbf{h}_r = \mathbf{e}_h \mathbf{M}_r, \qquad
        \mathbf{t}_r = \mathbf{e}_t \mathbf{M}_r, \qquad
        f(h, r, t) = -\| \bar{\mathbf{h}}_r + \bar{\mathbf{e}}_r -
        \bar{\mathbf{t}}_r \|_2^2

    where :math:`\bar{\mathbf{x}} = \mathbf{x} / \|\mathbf{x}\|_2` when
    :obj:`normalize` is set (the released CKE code of KGAT and RecBole's
    CKE; the paper's constraint :math:`\|\mathbf{x}\|_2 \le 1` made exact)
    and :math:`\bar{\mathbf{x}} = \mathbf{x}` otherwise. As in PyG's KGE
    models, :meth:`forward` returns the score (higher is more plausible) and
    :meth:`loss` draws its own corrupted triples (PyG's
    :meth:`~torch_geometric.nn.kge.KGEModel.random_sample`) unless corrupted
    tails are given; the loss is CKE's pairwise ranking loss
    :math:`-\ln\sigma(f(h, r, t) - f(h', r, t'))`, averaged.
    :meth:`~torch_geometric.nn.kge.KGEModel.loader` and
    :meth:`~torch_geometric.nn.kge.KGEModel.test` (mean rank, MRR,
    Hits@k over all tails) are the base class's.

    The projections are the weight of a PyG
    :class:`~torch_geometric.nn.HeteroLinear` (:obj:`proj`, relation = type,
    no bias, :math:`(|\mathcal{R}|, d, k)`), applied by its own forward
    (:obj:`pyg_lib`'s fused :obj:`segment_matmul`) when :obj:`pyg_lib` is
    installed, else by :meth:`project_embeddings`: rows sorted by relation,
    one matrix product per relation, whose backward writes each relation's
    gradient once (HeteroLinear's fallback loop zero-fills the full weight
    and input gradient once per relation). Forward + backward of 3,189 rows
    (a KG batch of lastfm: 60 relations), :math:`d = k = 64`, one CPU
    thread of a shared machine, the three interleaved in one process, best
    of 5: this 43 ms, HeteroLinear's fallback 111 ms, a gathered
    :math:`d \times k` matrix per row and a :func:`torch.bmm` 721 ms.

    Args:
        num_nodes (int): The number of entities :math:`|\mathcal{E}|`.
        num_relations (int): The number of relations :math:`|\mathcal{R}|`.
        hidden_channels (int): The entity embedding size :math:`d`.
        rel_channels (int, optional): The relation space size :math:`k`;
            :obj:`None` is :obj:`hidden_channels`. (default: :obj:`None`)
        normalize (bool, optional): L2-normalise the projected entities and
            the relation vectors before scoring. (default: :obj:`True`)
        sparse (bool, optional): If set to :obj:`True`, gradients w.r.t. the
            entity and relation embedding matrices will be sparse (the
            projections' are always dense). (default: :obj:`False`)
    """
    def __init__(self, num_nodes: int, num_relations: int,
                 hidden_channels: int, rel_channels: Optional[int] = None,
                 normalize: bool = True, sparse: bool = False):
        cls = self.__class__.__name__
        num_nodes = _positive_int(cls, 'num_nodes', num_nodes)
        num_relations = _positive_int(cls, 'num_relations', num_relations)
        hidden_channels = _positive_int(cls, 'hidden_channels',
                                        hidden_channels)
        rel_channels = hidden_channels if rel_channels is None else \
            _positive_int(cls, 'rel_channels', rel_channels)
        for name, v in (('normalize', normalize), ('sparse', sparse)):
            if not isinstance(v, bool):
                raise TypeError(f"{cls}: '{name}' must be a bool "
                                f"(got {v!r})")
        super().__init__(num_nodes, num_relations, hidden_channels, sparse)
        self.rel_channels, self.normalize = rel_channels, normalize
        self.rel_emb = Embedding(num_relations, rel_channels, sparse=sparse)
        self.proj = HeteroLinear(hidden_channels, rel_channels,
                                 num_relations, bias=False,
                                 weight_initializer='glorot')
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Resets all learnable parameters: Xavier-uniform entity and
        relation embeddings (as the released CKE code) and Glorot-uniform
        projections, :math:`\pm\sqrt{6 / (d + k)}` for each
        :math:`\mathbf{M}_r`."""
        torch.nn.init.xavier_uniform_(self.node_emb.weight)
        torch.nn.init.xavier_uniform_(self.rel_emb.weight)
        self.proj.reset_parameters()

    def _check(self, who: str, **tensors: Tensor) -> None:
        shape = None
        for name, t in tensors.items():
            if not isinstance(t, Tensor) or t.is_floating_point() or \
                    t.is_complex() or t.dtype == torch.bool:
                what = t.dtype if isinstance(t, Tensor) else type(t).__name__
                raise TypeError(f"{self.__class__.__name__}.{who}: '{name}' "
                                f"must be an integer tensor (got {what})")
            if shape is None:
                shape = t.shape
            elif t.shape != shape:
                names = ', '.join(f"'{n}'" for n in tensors)
                shapes = ', '.join(str(tuple(v.shape))
                                   for v in tensors.values())
                raise ValueError(f"{self.__class__.__name__}.{who}: {names} "
                                 f"must have the same shape (got {shapes})")

    def project(self, node_index: Tensor, rel_type: Tensor) -> Tensor:
        r"""The entities projected into their relation's space,
        :math:`\bar{\mathbf{h}}_r` (normalised if :obj:`normalize`).

        Args:
            node_index (torch.Tensor): Entity ids, :obj:`torch.long`.
            rel_type (torch.Tensor): The relation of each entry,
                :obj:`torch.long`.

        Shapes:
            - **node_index, rel_type:** :math:`(*)`
            - **output:** :math:`(*, k)`, :math:`k` = :obj:`rel_channels`
        """
        self._check('project', node_index=node_index, rel_type=rel_type)
        return self._project(node_index, rel_type)

    def project_embeddings(self, x: Tensor, rel_type: Tensor) -> Tensor:
        r"""Multiplies each row by its relation's projection,
        :math:`\mathbf{x} \mathbf{M}_r` (no normalisation), as
        :obj:`self.proj(x, rel_type)` computes it.

        Args:
            x (torch.Tensor): Entity embeddings.
            rel_type (torch.Tensor): The relation of each row,
                :obj:`torch.long`.

        Shapes:
            - **x:** :math:`(n, d)`
            - **rel_type:** :math:`(n)`
            - **output:** :math:`(n, k)`
        """
        if x.dim() != 2 or rel_type.shape != x.shape[:1]:
            raise ValueError(f"{self.__class__.__name__}.project_embeddings:"
                             f" 'x' must be (n, d) and 'rel_type' (n) (got "
                             f"shapes {tuple(x.shape)} and "
                             f"{tuple(rel_type.shape)})")
        if torch_geometric.typing.WITH_SEGMM:
            return self.proj(x, rel_type)
        weight = self.proj.weight
        rel_sorted, perm = index_sort(rel_type, self.num_relations)
        counts = torch.bincount(rel_sorted,
                                minlength=self.num_relations).tolist()
        out = torch.cat([part @ w for part, w in zip(
            x[perm].split(counts), weight.unbind(0))])
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(perm.numel(), device=perm.device)
        return out[inv]

    def _project(self, node_index: Tensor, rel_type: Tensor) -> Tensor:
        shape = node_index.shape
        x = self.node_emb(node_index.reshape(-1))
        out = self.project_embeddings(x, rel_type.reshape(-1))
        if self.normalize:
            out = F.normalize(out, p=2.0, dim=-1)
        return out.view(*shape, self.rel_channels)

    def _relation(self, rel_type: Tensor) -> Tensor:
        r = self.rel_emb(rel_type)
        return F.normalize(r, p=2.0, dim=-1) if self.normalize else r

    def forward(self, head_index: Tensor, rel_type: Tensor,
                tail_index: Tensor) -> Tensor:
        r"""Returns the score :math:`f(h, r, t)` of each triple.

        Args:
            head_index (torch.Tensor): The head indices, :obj:`torch.long`.
            rel_type (torch.Tensor): The relation type, :obj:`torch.long`.
            tail_index (torch.Tensor): The tail indices, :obj:`torch.long`.

        Shapes:
            - **head_index, rel_type, tail_index:** :math:`(*)`
            - **output:** :math:`(*)`
        """
        self._check('forward', head_index=head_index, rel_type=rel_type,
                    tail_index=tail_index)
        n = head_index.numel()
        x = self._project(torch.cat([head_index.reshape(-1),
                                     tail_index.reshape(-1)]),
                          rel_type.reshape(-1).repeat(2))
        h, t = x[:n], x[n:]
        r = self._relation(rel_type.reshape(-1))
        return -(h + r - t).pow(2).sum(-1).view(head_index.shape)

    def loss(self, head_index: Tensor, rel_type: Tensor, tail_index: Tensor,
             neg_tail_index: Optional[Tensor] = None) -> Tensor:
        r"""Returns the pairwise ranking loss of the given (true) triples,
        :math:`-\frac{1}{n}\sum \ln\sigma(f(h, r, t) - f(h', r, t'))`,
        against corrupted ones: with :obj:`neg_tail_index`, :math:`(h, r,
        t')` (CKE's tail corruption); otherwise PyG's
        :meth:`~torch_geometric.nn.kge.KGEModel.random_sample` (the head of
        the first half, the tail of the second half replaced by a uniform
        entity). All entities of a call are projected in one
        :class:`~torch_geometric.nn.HeteroLinear` call.

        Args:
            head_index (torch.Tensor): The head indices, :obj:`torch.long`.
            rel_type (torch.Tensor): The relation type, :obj:`torch.long`.
            tail_index (torch.Tensor): The tail indices, :obj:`torch.long`.
            neg_tail_index (torch.Tensor, optional): Corrupted tails, one per
                triple, :obj:`torch.long`. (default: :obj:`None`)

        Shapes:
            - **head_index, rel_type, tail_index, neg_tail_index:**
              :math:`(n)`
            - **output:** :math:`()`
        """
        if neg_tail_index is None:
            self._check('loss', head_index=head_index, rel_type=rel_type,
                        tail_index=tail_index)
            neg_head, _, neg_tail = self.random_sample(head_index, rel_type,
                                                       tail_index)
            nodes = [head_index, tail_index, neg_head, neg_tail]
        else:
            self._check('loss', head_index=head_index, rel_type=rel_type,
                        tail_index=tail_index, neg_tail_index=neg_tail_index)
            nodes = [head_index, tail_index, neg_tail_index]
        if head_index.dim() != 1:
            raise ValueError(f"{self.__class__.__name__}.loss: the indices "
                             f"must be one-dimensional (got shape "
                             f"{tuple(head_index.shape)})")
        n = head_index.numel()
        x = self._project(torch.cat(nodes), rel_type.repeat(len(nodes)))
        r = self._relation(rel_type)
        x = x.view(len(nodes), n, self.rel_channels)
        if len(nodes) == 3:  # (h, t, t'): the head is shared
            h, t, neg_h, neg_t = x[0], x[1], x[0], x[2]
        else:
            h, t, neg_h, neg_t = x[0], x[1], x[2], x[3]
        pos = -(h + r - t).pow(2).sum(-1)
        neg = -(neg_h + r - neg_t).pow(2).sum(-1)
        return F.softplus(neg - pos).mean()  # = -log sigmoid(pos - neg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_nodes}, '
                f'num_relations={self.num_relations}, '
                f'hidden_channels={self.hidden_channels}, '
                f'rel_channels={self.rel_channels})')
