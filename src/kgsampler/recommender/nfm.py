"""NFM (He & Chua, SIGIR 2017) over user, item and KG-entity features, as the
KGAT paper (Wang et al., KDD 2019) uses it as a knowledge-aware baseline."""
from __future__ import annotations

import math
import numbers
from typing import Any, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.nn import MLP
from torch_geometric.utils import scatter

from kgsampler.recommender import base as _base
from kgsampler.recommender.base import Recommender
from kgsampler.utils._checks import positive_int as _positive_int




def _check_kg_dataset(cls: str, dataset: Any) -> None:
    need = ('num_users', 'num_items', 'num_entities', 'kg', 'train_pos')
    missing = [a for a in need if not hasattr(dataset, a)]
    if missing:
        raise TypeError(f"{cls}: 'dataset' must be a KGRecDataset (with "
                        f"{', '.join(need)}) (got {type(dataset).__name__} "
                        f"without {', '.join(missing)})")
    kg = dataset.kg
    if not isinstance(kg, Tensor) or kg.dim() != 2 or kg.size(1) != 3 or \
            kg.dtype != torch.long:
        raise ValueError(f"{cls}: 'dataset.kg' must be a (T, 3) torch.long "
                         f"tensor of (head, relation, tail) triples (got "
                         f"{getattr(kg, 'dtype', type(kg).__name__)} of shape "
                         f"{tuple(getattr(kg, 'shape', ()))})")


class NFM(Recommender):
    r"""Neural factorisation machine from the `"Neural Factorization Machines
    for Sparse Predictive Analytics" <https://arxiv.org/abs/1708.05027>`_
    paper, with the features the KGAT paper gives it as a knowledge-aware
    baseline: a (user, item) pair is the multi-hot vector :math:`\mathbf{x}`
    of the user id, the item id and the item's KG entities (the tails
    :math:`t` of the triples :math:`(i, r, t)` whose head is the item,
    relations ignored, value = number of such triples, as in KGAT's
    released loader), one embedding :math:`\mathbf{v}_f` and one linear
    weight :math:`w_f` per feature (:math:`|\mathcal{U}| + |\mathcal{E}|`
    features; items are entities). The score is the paper's eq. 1 and 7,

    .. math::
        \hat{y}(\mathbf{x}) = w_0 + \sum_f w_f x_f + \mathbf{h}^{\top}
        \mathrm{MLP}\big(f_{BI}(\mathbf{x})\big), \qquad
        f_{BI}(\mathbf{x}) = \frac{1}{2}\Big[\big(\sum_f x_f
        \mathbf{v}_f\big)^2 - \sum_f (x_f \mathbf{v}_f)^2\Big]
        = \sum_{f < f'} x_f \mathbf{v}_f \odot x_{f'} \mathbf{v}_{f'},

    where the MLP has ReLU hidden layers of sizes :obj:`hidden_dims`, each
    followed by dropout (KGAT's NFM; PyG's :class:`~torch_geometric.nn.MLP`
    without normalisation, its plain last layer being :math:`\mathbf{h}` and
    :math:`w_0`). With no hidden layer it is a factorisation machine with a
    learnt :math:`\mathbf{h}`.

    The user's feature is shared by all of its candidate items, so with
    :math:`\mathbf{s}_i = \sum_{f \in i} x_f \mathbf{v}_f` and
    :math:`\mathbf{q}_i = \sum_{f \in i} (x_f \mathbf{v}_f)^2` over the
    item's features,

    .. math::
        f_{BI}(u, i) = \mathbf{v}_u \odot \mathbf{s}_i + \frac{1}{2}
        (\mathbf{s}_i^2 - \mathbf{q}_i):

    :math:`\mathbf{s}`, :math:`\mathbf{q}` and the item's linear term are
    computed for the batch's distinct items only (one gather of their rows
    of the precomputed item-feature CSR and one
    :func:`~torch_geometric.utils.scatter`), so a batch of :math:`B \times
    K` pairs costs :math:`O(BK(d + F d))` before the MLP, :math:`F` the
    mean number of features of an item, whatever the catalogue size (on
    amazon-book, batch 1024, one negative, one thread: forward and backward
    0.08 s a batch, against 0.8-1.0 s when every item's side was recomputed
    for each batch).
    :meth:`full_scores` computes every item's side once, then is one matrix
    product when there is no hidden layer, and otherwise runs the MLP on
    user chunks of :math:`(b, I, d)` bi-interaction vectors (11-15 ms a
    user on amazon-book, one thread: use the
    :class:`~kgsampler.Trainer`'s :obj:`valid_users` there).

    Trained with BPR (mean over the :math:`BN` (user, positive, negative)
    triples) plus :obj:`reg` times the batch's L2 penalty on the embeddings
    of the features it uses, :math:`\frac{1}{B}\sum \big(\|\mathbf{v}_u\|^2 +
    \sum_{f \in i} \|x_f \mathbf{v}_f\|^2 + \frac{1}{N}\sum_j
    \sum_{f \in j} \|x_f \mathbf{v}_f\|^2\big) / 2` (the item sums are
    :math:`\mathbf{1}^{\top}\mathbf{q}`). (KGAT's code regularises
    :math:`\mathbf{h}` only; the Trainer's :obj:`weight_decay` covers the
    MLP.)

    Args:
        dataset (KGRecDataset): Provides :obj:`num_users`,
            :obj:`num_items`, :obj:`num_entities` and :obj:`kg`.
        embedding_dim (int, optional): Feature embedding size :math:`d`.
            (default: :obj:`64`, KGAT's)
        hidden_dims (sequence of int, optional): Sizes of the MLP's hidden
            layers; empty for an FM. (default: :obj:`(64,)`, KGAT's one
            layer)
        dropout (float, optional): Dropout after every hidden layer, in
            :math:`[0, 1)`. (default: :obj:`0.1`, KGAT's)
        reg (float, optional): L2 weight :math:`\lambda` on the batch's
            feature embeddings. (default: :obj:`1e-3`)
        sparse (bool, optional): Sparse gradients for the feature tables
            (:obj:`feat_emb`, :obj:`feat_linear`), updated by
            :class:`torch.optim.SparseAdam` in the
            :class:`~kgsampler.train.Trainer` (the MLP keeps Adam; the
            Trainer's :obj:`weight_decay` must then be 0). A step then
            touches the rows of the batch's users, items and their KG
            tails only. (default: :obj:`False`)
    """
    def __init__(self, dataset, embedding_dim: int = 64,
                 hidden_dims: Sequence[int] = (64, ), dropout: float = 0.1,
                 reg: float = 1e-3, sparse: bool = False):
        super().__init__()
        cls = self.__class__.__name__
        _check_kg_dataset(cls, dataset)
        embedding_dim = _positive_int(cls, 'embedding_dim', embedding_dim)
        if isinstance(hidden_dims, (str, bytes)) or not isinstance(
                hidden_dims, Sequence) or not all(
                    isinstance(h, numbers.Integral) and not isinstance(
                        h, bool) and h >= 1 for h in hidden_dims):
            raise ValueError(f"{cls}: 'hidden_dims' must be a list of "
                             f"positive ints (got {hidden_dims!r})")
        if isinstance(dropout, bool) or not isinstance(
                dropout, numbers.Real) or not 0 <= dropout < 1:
            raise ValueError(f"{cls}: 'dropout' must be a float in [0, 1) "
                             f"(got {dropout!r})")
        if isinstance(reg, bool) or not isinstance(reg, numbers.Real) or \
                not 0 <= reg < math.inf:
            raise ValueError(f"{cls}: 'reg' must be a finite non-negative "
                             f"number (got {reg!r})")
        if not isinstance(sparse, bool):
            raise TypeError(f"{cls}: 'sparse' must be a bool "
                            f"(got {sparse!r})")
        self.sparse = sparse
        self.num_users = int(dataset.num_users)
        self.num_items = int(dataset.num_items)
        self.num_entities = int(dataset.num_entities)
        self.embedding_dim = embedding_dim
        self.hidden_dims = tuple(int(h) for h in hidden_dims)
        self.dropout, self.reg = float(dropout), float(reg)
        num_features = self.num_users + self.num_entities
        self.feat_emb = torch.nn.Embedding(num_features, embedding_dim,
                                           sparse=sparse)
        self.feat_linear = torch.nn.Embedding(num_features, 1,
                                              sparse=sparse)
        channels = [embedding_dim, *self.hidden_dims, 1]
        self.mlp = MLP(channels, dropout=[self.dropout] * (len(channels) - 2)
                       + [0.0], act='relu', norm=None, plain_last=True)
        row, col, val = self._item_features(dataset.kg)
        # the item-feature CSR in COO order (row-sorted); derived from the
        # dataset: non-persistent buffers (follow .to(), not in state_dict)
        self.register_buffer('feat_row', row, persistent=False)
        self.register_buffer('feat_col', col, persistent=False)
        self.register_buffer('feat_val', val, persistent=False)
        ptr = torch.zeros(self.num_items + 1, dtype=torch.long)
        ptr[1:] = torch.cumsum(torch.bincount(row, minlength=self.num_items),
                               0)
        self.register_buffer('feat_ptr', ptr, persistent=False)
        self.reset_parameters()

    def _item_features(self, kg: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(item, feature id, value) of every non-zero item-side feature:
        the item's own id and the tails of its triples, counted."""
        I, E, U = self.num_items, self.num_entities, self.num_users
        kg = kg.cpu()
        items = torch.arange(I)
        head, tail = kg[:, 0], kg[:, 2]
        keep = head < I
        rows = torch.cat([items, head[keep]])
        cols = torch.cat([items, tail[keep]])
        key, count = torch.unique(rows * E + cols, return_counts=True)
        return key // E, key % E + U, count.float()

    def reset_parameters(self) -> None:
        r"""Resets the feature embeddings (Xavier-normal over the whole
        table, as KGAT's code), the linear weights (zero) and the MLP."""
        torch.nn.init.xavier_normal_(self.feat_emb.weight)
        torch.nn.init.zeros_(self.feat_linear.weight)
        self.mlp.reset_parameters()

    # ------------------------------------------------------------ pieces
    def item_side(self, items: Optional[Tensor] = None
                  ) -> Tuple[Tensor, Tensor, Tensor]:
        r"""Per item :math:`i`, over its features (own id and KG tails):
        :math:`\mathbf{s}_i = \sum_f x_f \mathbf{v}_f`,
        :math:`\mathbf{q}_i = \sum_f (x_f \mathbf{v}_f)^2` and the linear
        term :math:`\sum_f w_f x_f`, of every item or of the given ones
        (each distinct item computed once, from its own features only).

        Args:
            items (torch.Tensor, optional): Item ids, :obj:`torch.long`;
                :obj:`None`: every item. (default: :obj:`None`)

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`, :math:`(*, d)`, :math:`(*)`;
              :math:`(I, d)`, :math:`(I, d)`, :math:`(I)` without
              **items**
        """
        return self._side(items)[2:]

    def _side(self, items: Optional[Tensor],
              users: Optional[Tensor] = None) -> Tuple[Tensor, ...]:
        """The users' embeddings (B, d) and linear weights (B, 1), then
        :meth:`item_side`, from one lookup per feature table (one dense
        gradient each, not one per use)."""
        if items is None:
            col, val, row = self.feat_col, self.feat_val, self.feat_row
            n = self.num_items
        else:
            uniq, inv = torch.unique(items.reshape(-1), return_inverse=True)
            start = self.feat_ptr[uniq]
            count = self.feat_ptr[uniq + 1] - start  # [M] features each
            n = uniq.numel()
            row = torch.repeat_interleave(
                torch.arange(n, device=uniq.device), count)
            first = torch.cumsum(count, 0) - count  # row's first position
            pos = start[row] + torch.arange(row.numel(),
                                            device=uniq.device) - first[row]
            col, val = self.feat_col[pos], self.feat_val[pos]
        B = 0 if users is None else users.numel()
        ids = col if users is None else torch.cat([users, col])
        emb, w = self.feat_emb(ids), self.feat_linear(ids)
        xv = emb[B:] * val.unsqueeze(-1)
        s = scatter(xv, row, 0, n, reduce='sum')
        q = scatter(xv * xv, row, 0, n, reduce='sum')
        lin = scatter(w[B:].view(-1) * val, row, 0, n, reduce='sum')
        if items is not None:
            shape = tuple(items.shape)
            s, q = s[inv].view(*shape, -1), q[inv].view(*shape, -1)
            lin = lin[inv].view(shape)
        return emb[:B], w[:B], s, q, lin

    @staticmethod
    def bi_interaction(u: Tensor, s: Tensor, q: Tensor) -> Tensor:
        r"""Bi-interaction pooling of the user feature with an item's
        features, :math:`\frac{1}{2}[(\mathbf{v}_u + \mathbf{s})^2 -
        (\mathbf{v}_u^2 + \mathbf{q})] = \mathbf{v}_u \odot \mathbf{s} +
        \frac{1}{2}(\mathbf{s}^2 - \mathbf{q})`.

        Args:
            u (torch.Tensor): User feature embeddings.
            s (torch.Tensor): Item-side feature sums.
            q (torch.Tensor): Item-side sums of squares.

        Shapes:
            - **u:** :math:`(B, 1, d)` (or broadcastable to **s**)
            - **s, q:** :math:`(B, K, d)`
            - **output:** :math:`(B, K, d)`
        """
        return u * s + 0.5 * (s * s - q)

    def _check(self, who: str, users: Tensor, items: Tensor,
               name: str) -> None:
        if users.dim() != 1 or items.dim() != 2 or \
                items.size(0) != users.size(0):
            raise ValueError(f"NFM.{who}: 'users' must be (B) and '{name}' "
                             f"(B, K) (got shapes {tuple(users.shape)} and "
                             f"{tuple(items.shape)})")

    def _scores(self, users: Tensor, items: Tensor) -> Tuple[Tensor, ...]:
        """Scores (B, K), the users' embeddings (B, d) and the items'
        sums of squares q (B, K, d)."""
        u, w_u, s, q, lin = self._side(items, users)
        f = self.bi_interaction(u.unsqueeze(1), s, q)  # [B, K, d]
        out = self.mlp(f).squeeze(-1)  # [B, K]
        return out + lin + w_u, u, q

    # ---------------------------------------------------------------- API
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""NFM scores :math:`\hat{y}(u, i)` of each user with its candidate
        items.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        self._check('score', users, items, 'items')
        return self._scores(users, items)[0]

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item for each user: one matrix product without
        hidden layers, otherwise the MLP over user chunks.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, I)`
        """
        if users.dim() != 1:
            raise ValueError(f"NFM.full_scores: 'users' must be (B) (got "
                             f"shape {tuple(users.shape)})")
        s, q, lin = self.item_side()
        g = 0.5 * (s * s - q)  # [I, d], the user-free part of f_BI
        w_u = self.feat_linear(users)  # [B, 1]
        if not self.hidden_dims:  # h^T f_BI + b: linear in f_BI
            last = self.mlp.lins[-1]
            h = last.weight.view(-1)  # [d]
            item = g @ h + lin + last.bias.view(())  # [I]
            return (self.feat_emb(users) * h) @ s.t() + item + w_u
        width = max(self.embedding_dim, *self.hidden_dims)
        step = max(1, _base.FULL_SCORES_CHUNK //
                   max(self.num_items * width, 1))
        # written into one preallocated output: a list of small rows kept
        # between the chunks' large temporaries fragments the heap (RSS grew
        # ~4 MB a user on amazon-book, 21 GB for its test split)
        out = s.new_empty((users.numel(), self.num_items))
        for start in range(0, users.numel(), step):
            u = users[start:start + step]
            f = self.feat_emb(u).unsqueeze(1) * s + g  # [b, I, d]
            out[start:start + u.numel()] = self.mlp(f).squeeze(-1)
        return out.add_(lin).add_(w_u)

    def item_representations(self, items: Tensor) -> Tensor:
        r"""The item-side feature sums :math:`\mathbf{s}_i` (the vector a
        user's embedding meets in :math:`f_{BI}`).

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`
        """
        return self.item_side(items)[0]

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""BPR loss plus :obj:`reg` times the batch's L2 penalty, as in
        :class:`NFM`.

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
        self._check('loss', users, neg_items, 'neg_items')
        if pos_items.shape != users.shape:
            raise ValueError(f"NFM.loss: 'pos_items' must have the shape of "
                             f"'users' (got {tuple(pos_items.shape)} and "
                             f"{tuple(users.shape)})")
        items = torch.cat([pos_items.view(-1, 1), neg_items], dim=1)
        out, u, q = self._scores(users, items)  # [B, 1 + N]
        bpr = -F.logsigmoid(out[:, :1] - out[:, 1:]).mean()
        if self.reg == 0:
            return bpr
        sq = q.sum(-1)  # [B, 1 + N], sum_f ||x_f v_f||^2 per item
        l2 = (u.pow(2).sum(-1) + sq[:, 0] +
              sq[:, 1:].mean(-1)).mean() / 2
        return bpr + self.reg * l2

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, num_entities={self.num_entities}, '
                f'embedding_dim={self.embedding_dim}, '
                f'hidden_dims={list(self.hidden_dims)}'
                + (', sparse=True)' if self.sparse else ')'))
