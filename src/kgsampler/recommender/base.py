"""What the trainer needs from a recommender."""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor


def bpr_l2(u: Tensor, p: Tensor, n: Tensor, u0: Tensor, p0: Tensor,
           n0: Tensor, reg: float) -> Tensor:
    r"""The BPR loss of MF and LightGCN: mean over the :math:`B N`
    (user, positive, negative) triples of :math:`-\ln\sigma(\mathbf{u}^{\top}
    \mathbf{p} - \mathbf{u}^{\top}\mathbf{n})`, plus :obj:`reg` times the
    batch's L2 penalty :math:`\frac{1}{B}\sum (\|\mathbf{u}_0\|^2 +
    \|\mathbf{p}_0\|^2 + \frac{1}{N}\sum_j \|\mathbf{n}_{0j}\|^2) / 2` on the
    embeddings :obj:`u0, p0, n0` (the scored ones for MF, layer 0 for
    LightGCN).

    Shapes: **u, p, u0, p0** :math:`(B, d)`, **n, n0** :math:`(B, N, d)`,
    output :math:`()`."""
    pos = (u * p).sum(-1, keepdim=True)  # [B, 1]
    neg = (n @ u.unsqueeze(-1)).squeeze(-1)  # [B, N]
    bpr = -F.logsigmoid(pos - neg).mean()
    if reg == 0:
        return bpr
    l2 = (u0.pow(2).sum(-1) + p0.pow(2).sum(-1) +
          n0.pow(2).sum(-1).mean(-1)).mean() / 2
    return bpr + reg * l2


class Recommender(torch.nn.Module, ABC):
    r"""Base class of recommenders trained by :class:`~kgsampler.Trainer`.

    A recommender is a :class:`torch.nn.Module` that is also a
    :class:`~kgsampler.sampler.Scorer`. To plug in your own model, subclass
    this and implement:

    * :meth:`score` -- :math:`(B), (B, K) \to (B, K)`, higher is more relevant
      (used by adaptive samplers and KGPolicy's prediction reward);
    * :meth:`loss` -- the training loss of a batch of (user, positive,
      negatives);
    * :meth:`full_scores` -- scores of all items for full-ranking evaluation.

    :meth:`similarity` (item-item, used by KGPolicy's similarity reward)
    defaults to the inner product of :meth:`item_representations`.
    """
    num_users: int
    num_items: int

    @abstractmethod
    def score(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Scores of user-item pairs; higher means more relevant.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """

    @abstractmethod
    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r"""Scalar training loss of a batch of (user, positive, negatives).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            neg_items (torch.Tensor): :math:`N` negative item ids per row
                (e.g. :obj:`output.neg_items` of a
                :class:`~kgsampler.sampler.Sampler`), :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **pos_items:** :math:`(B)`
            - **neg_items:** :math:`(B, N)`
            - **output:** :math:`()`
        """

    @abstractmethod
    def full_scores(self, users: Tensor) -> Tensor:
        r"""Scores of every item, for full-ranking evaluation.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, |\mathcal{I}|)`
        """

    def item_representations(self, items: Tensor) -> Tensor:
        r"""Item vectors used by the default :meth:`similarity`. Raises
        :class:`NotImplementedError` unless overridden.

        Args:
            items (torch.Tensor): Item ids, :obj:`torch.long`.

        Shapes:
            - **items:** :math:`(*)`
            - **output:** :math:`(*, d)`
        """
        raise NotImplementedError(
            f"{self.__class__.__name__} implements neither similarity() nor "
            f"item_representations(); KGPolicy's similarity reward needs one")

    def similarity(self, items_a: Tensor, items_b: Tensor) -> Tensor:
        r"""Item-item similarity, inner product of
        :meth:`item_representations` by default.

        Args:
            items_a (torch.Tensor): Reference item ids, :obj:`torch.long`.
            items_b (torch.Tensor): Item ids compared with the row's
                :obj:`items_a`, :obj:`torch.long`.

        Shapes:
            - **items_a:** :math:`(B)`
            - **items_b:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        a = self.item_representations(items_a)
        b = self.item_representations(items_b)
        return (b @ a.unsqueeze(-1)).squeeze(-1)
