"""Matrix factorisation trained with the BPR loss."""
from __future__ import annotations

import torch
from torch import Tensor

from kgsampler.recommender.base import Recommender, bpr_l2


class MF(Recommender):
    r"""Matrix factorisation, :math:`\hat{y}_{ui} = \mathbf{e}_u^{\top}
    \mathbf{e}_i`, trained with Bayesian personalised ranking
    (Rendle et al., UAI 2009):

    .. math::
        \mathcal{L} = -\frac{1}{BN} \sum_{(u,i,j)} \ln \sigma(\hat{y}_{ui} -
        \hat{y}_{uj}) + \lambda \frac{1}{B} \sum_{(u,i,j)}
        \left( \|\mathbf{e}_u\|^2 + \|\mathbf{e}_i\|^2 +
        \frac{1}{N}\sum_j \|\mathbf{e}_j\|^2 \right) / 2

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        reg (float, optional): L2 weight :math:`\lambda` on the batch's
            embeddings. (default: :obj:`1e-2`)
        sparse (bool, optional): Sparse gradients for the user and item
            embeddings (:obj:`torch.nn.Embedding(sparse=True)`): a step then
            touches only the batch's rows, and the
            :class:`~kgsampler.train.Trainer` updates them with
            :class:`torch.optim.SparseAdam` (a lazy Adam: the moments of
            the rows outside the batch are not decayed, a different
            optimiser from Adam; see :doc:`recommenders`).
            (default: :obj:`False`)
    """
    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 reg: float = 1e-2, sparse: bool = False):
        super().__init__()
        for name, v in (('num_users', num_users), ('num_items', num_items),
                        ('embedding_dim', embedding_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"MF: '{name}' must be a positive int "
                                 f"(got {v!r})")
        if isinstance(reg, bool) or not isinstance(reg, (int, float)) or \
                not 0 <= reg < float('inf'):
            raise ValueError(f"MF: 'reg' must be a finite non-negative number "
                             f"(got {reg!r})")
        if not isinstance(sparse, bool):
            raise TypeError(f"MF: 'sparse' must be a bool (got {sparse!r})")
        self.sparse = sparse
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.reg = embedding_dim, float(reg)
        self.user_emb = torch.nn.Embedding(num_users, embedding_dim,
                                           sparse=sparse)
        self.item_emb = torch.nn.Embedding(num_items, embedding_dim,
                                           sparse=sparse)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_normal_(self.user_emb.weight)
        torch.nn.init.xavier_normal_(self.item_emb.weight)

    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Inner products :math:`\mathbf{e}_u^{\top} \mathbf{e}_i` of each
        user with its candidate items.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        u = self.user_emb(users)
        return (self.item_emb(items) @ u.unsqueeze(-1)).squeeze(-1)

    def item_representations(self, items: Tensor) -> Tensor:
        r"""The item embeddings :math:`\mathbf{e}_i` (so :meth:`similarity`
        is :math:`\mathbf{e}_i^{\top} \mathbf{e}_j`).

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`, :math:`d` = :obj:`embedding_dim`
        """
        return self.item_emb(items)

    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item for each user.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, |\mathcal{I}|)`
        """
        return self.user_emb(users) @ self.item_emb.weight.t()

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""BPR loss (mean over the :math:`B N` (user, positive, negative)
        triples) plus L2 regularisation of the batch's embeddings, as in
        :class:`MF`.

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
        u = self.user_emb(users)  # [B, d]
        p = self.item_emb(pos_items)  # [B, d]
        n = self.item_emb(neg_items)  # [B, N, d]
        return bpr_l2(u, p, n, u, p, n, self.reg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}'
                + (', sparse=True)' if self.sparse else ')'))
