"""Adversarial training of matrix factorisation (APR; the adversarial
training half of AdvIR)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.recommender.base import bpr_l2
from kgsampler.recommender.mf import MF


@dataclass
class Perturbation:
    r"""The adversarial perturbations of a batch's embedding rows
    (:meth:`APR.perturbations`).

    Args:
        user (torch.Tensor): Of the user embeddings, :math:`(B, d)`.
        pos (torch.Tensor): Of the positive item embeddings, :math:`(B, d)`.
        neg (torch.Tensor): Of the negative item embeddings,
            :math:`(B, N, d)`.
    """
    user: Tensor
    pos: Tensor
    neg: Tensor


class APR(MF):
    r""":class:`MF` trained adversarially: BPR plus the BPR loss under the
    worst-case :math:`L_2`-bounded perturbation of the batch's embeddings
    (He et al., SIGIR 2018, *Adversarial Personalized Ranking*; the
    adversarial training of AdvIR, Park & Chang, WWW 2019):

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}}(\Theta) + \lambda\,
        \mathcal{L}_{\mathrm{BPR}}(\Theta + \Delta_{\mathrm{adv}}) +
        \mathrm{reg}\cdot\mathcal{L}_2, \qquad
        \Delta_{\mathrm{adv}} = \epsilon \,
        \frac{\mathbf{g}}{\|\mathbf{g}\|_2}, \quad
        \mathbf{g} = \nabla_{\Delta} \mathcal{L}_{\mathrm{BPR}}(\Theta +
        \Delta)\big|_{\Delta = 0},

    the fast-gradient (first-order) solution of
    :math:`\max_{\|\Delta\| \le \epsilon}
    \mathcal{L}_{\mathrm{BPR}}(\Theta + \Delta)`. The perturbation is taken
    per row of the batch (each occurrence of a user, positive or negative
    embedding gets its own :math:`\Delta` of norm :math:`\epsilon`, as
    AdvIR perturbs each example's query and document vectors), held
    constant while the loss is differentiated, and never stored: scoring,
    evaluation and samplers see the clean embeddings. :obj:`epsilon=0` or
    :obj:`adv_weight=0` is :class:`MF`.

    For the adversarial samplers (:class:`~kgsampler.sampler.AdvIR`),
    :meth:`pair_losses` gives each (user, positive, candidate) triple's
    loss under its own worst-case perturbation.

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        reg (float, optional): L2 weight on the batch's (clean)
            embeddings, as in :class:`MF`. (default: :obj:`1e-2`)
        epsilon (float, optional): Perturbation norm :math:`\epsilon`
            (APR's default). (default: :obj:`0.5`)
        adv_weight (float, optional): Weight :math:`\lambda` of the
            adversarial loss (APR's default). (default: :obj:`1.0`)
        sparse (bool, optional): Sparse embedding gradients, as in
            :class:`MF`. (default: :obj:`False`)
    """
    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 reg: float = 1e-2, epsilon: float = 0.5,
                 adv_weight: float = 1.0, sparse: bool = False):
        for name, v in (('epsilon', epsilon), ('adv_weight', adv_weight)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    not math.isfinite(v):
                raise TypeError(f"APR: '{name}' must be a finite number "
                                f"(got {v!r})")
            if v < 0:
                raise ValueError(f"APR: '{name}' must be non-negative "
                                 f"(got {v!r})")
        super().__init__(num_users, num_items, embedding_dim=embedding_dim,
                         reg=reg, sparse=sparse)
        self.epsilon, self.adv_weight = float(epsilon), float(adv_weight)

    def perturbations(self, u: Tensor, p: Tensor, n: Tensor) -> Perturbation:
        r"""The worst-case perturbations :math:`\epsilon\,\mathbf{g} /
        \|\mathbf{g}\|_2` of the batch's embedding rows for the mean BPR
        loss (each row normalised on its own; a zero gradient gives a zero
        perturbation). Detached.

        Args:
            u (torch.Tensor): User embeddings.
            p (torch.Tensor): Positive item embeddings.
            n (torch.Tensor): Negative item embeddings.

        Shapes:
            - **u, p:** :math:`(B, d)`
            - **n:** :math:`(B, N, d)`
            - **output:** a :class:`Perturbation` whose fields are shaped
              as **u**, **p**, **n**
        """
        leaves = [t.detach().requires_grad_(True) for t in (u, p, n)]
        with torch.enable_grad():
            loss = bpr_l2(*leaves, *leaves, 0.0)
            grads = torch.autograd.grad(loss, leaves)
        return Perturbation(*(self.epsilon * F.normalize(g, dim=-1)
                              for g in grads))

    def loss(self, users: Tensor, pos_items: Tensor,
             neg_items: Tensor) -> Tensor:
        r""":class:`MF`'s loss plus :obj:`adv_weight` times the BPR loss of
        the perturbed embeddings.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): The positive item of each row,
                :obj:`torch.long`.
            neg_items (torch.Tensor): :math:`N` negative item ids per row,
                :obj:`torch.long`.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **neg_items:** :math:`(B, N)`
            - **output:** :math:`()`
        """
        u = self.user_emb(users)
        p = self.item_emb(pos_items)
        n = self.item_emb(neg_items)
        out = bpr_l2(u, p, n, u, p, n, self.reg)
        if self.epsilon == 0 or self.adv_weight == 0:
            return out
        d = self.perturbations(u, p, n)
        adv = bpr_l2(u + d.user, p + d.pos, n + d.neg, u, p, n, 0.0)
        return out + self.adv_weight * adv

    @torch.no_grad()
    def pair_losses(self, users: Tensor, pos_items: Tensor,
                    items: Tensor) -> Tensor:
        r"""The training loss of each (user, positive, candidate) triple
        taken alone, :math:`\ell + \lambda\,\ell_{\mathrm{adv}}` with
        :math:`\ell = \log(1 + e^{f(u, j) - f(u, i)})` and
        :math:`\ell_{\mathrm{adv}}` the same under the triple's own
        worst-case perturbation (closed form: the gradient directions are
        :math:`\mathbf{q}_j - \mathbf{q}_i` for the user,
        :math:`-\mathbf{p}_u` for the positive and :math:`\mathbf{p}_u`
        for the candidate). No L2 term; no gradient.

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): Their positive items,
                :obj:`torch.long`.
            items (torch.Tensor): Candidate negatives, :obj:`torch.long`.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        u = self.user_emb(users).unsqueeze(1)  # [B, 1, d]
        p = self.item_emb(pos_items).unsqueeze(1)  # [B, 1, d]
        n = self.item_emb(items)  # [B, K, d]
        x = (u * (n - p)).sum(-1)  # f(u, j) - f(u, i)
        out = F.softplus(x)
        if self.epsilon == 0 or self.adv_weight == 0:
            return out
        du = self.epsilon * F.normalize(n - p, dim=-1)
        dq = self.epsilon * F.normalize(u, dim=-1)  # +dq on n, -dq on p
        x_adv = ((u + du) * ((n + dq) - (p - dq))).sum(-1)
        return out + self.adv_weight * F.softplus(x_adv)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}({self.num_users}, '
                f'{self.num_items}, embedding_dim={self.embedding_dim}, '
                f'epsilon={self.epsilon}, adv_weight={self.adv_weight})')
