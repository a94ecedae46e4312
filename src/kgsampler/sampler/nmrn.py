r"""NMRN's adversarial negative sampler (Wang et al., KDD 2018): a
translation-based key-value memory generator trained against the
recommender's hinge loss."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.adversarial import (Adversarial, _check_numbers,
                                           _check_positive_ints)
from kgsampler.sampler.base import Scorer


class NMRN(Adversarial):
    r"""The GAN-based negative sampler of NMRN (Wang et al., KDD 2018,
    *Neural Memory Streaming Recommender Networks with Adversarial
    Training*), as the KGPolicy paper used it with a non-streaming
    recommender: the generator is NMRN's translation-based key-value memory
    scorer, the discriminator is the recommender, and the reward is the
    discriminator's hinge loss.

    The generator has user and item embeddings :math:`\mathbf{p}_u,
    \mathbf{q}_j` and a memory of :math:`S` key/value slots
    :math:`\mathbf{K}, \mathbf{V} \in \mathbb{R}^{S \times d}`. A user
    addresses the memory softly and reads its interest vector,

    .. math::
        \mathbf{w}_u = \mathrm{softmax}(\mathbf{K}\mathbf{p}_u), \qquad
        \mathbf{m}_u = \mathbf{V}^{\top}\mathbf{w}_u,

    and scores an item by translation, :math:`g(u, j) = -\|\mathbf{p}_u +
    \mathbf{m}_u - \mathbf{q}_j\|_2^2`. Each negative is drawn from
    :math:`\mathrm{softmax}(g(u, j) / \tau)` over :obj:`num_candidates`
    uniform non-positive items (as in :class:`Adversarial`); the generator
    is trained by the exact pool policy gradient of :class:`Adversarial`
    with the reward :math:`R_j = [\gamma + f(u, j) - f(u, i)]_+`, the
    recommender's hinge loss with margin :math:`\gamma` (NMRN's pairwise
    loss): only candidates inside the margin count, so the generator is
    pushed to negatives the recommender does not yet separate. The
    streaming (time-ordered) part of NMRN is not used; its memory-network
    recommender is replaced by the recommender being trained (MF in the
    KGPolicy paper's comparison).

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender.
        num_candidates (int, optional): Pool size :math:`M`.
            (default: :obj:`4`)
        embedding_dim (int, optional): Generator embedding size.
            (default: :obj:`64`)
        memory_size (int, optional): Number of memory slots :math:`S`.
            (default: :obj:`8`)
        margin (float, optional): Hinge margin :math:`\gamma` of the
            reward. (default: :obj:`1.0`)
        temperature (float, optional): Softmax temperature :math:`\tau`.
            (default: :obj:`1.0`)
        lr (float, optional): Adam learning rate of the generator.
            (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam weight decay of the generator.
            (default: :obj:`0.0`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    def __init__(self, train_pos: UserItemCSR,
                 scorer: Optional[Scorer] = None, num_candidates: int = 4,
                 embedding_dim: int = 64, memory_size: int = 8,
                 margin: float = 1.0, temperature: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, **kwargs):
        _check_positive_ints(self, memory_size=memory_size)
        _check_numbers(self, margin=(margin, 'non-negative'))
        object.__setattr__(self, 'memory_size', memory_size)
        object.__setattr__(self, 'margin', float(margin))
        super().__init__(train_pos, scorer=scorer,
                         num_candidates=num_candidates,
                         embedding_dim=embedding_dim,
                         temperature=temperature, lr=lr,
                         weight_decay=weight_decay, **kwargs)

    def _build_generator(self) -> None:
        super()._build_generator()
        self.keys = torch.nn.Parameter(
            torch.empty(self.memory_size, self.embedding_dim))
        self.values = torch.nn.Parameter(
            torch.empty(self.memory_size, self.embedding_dim))

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_normal_(self.keys)
        torch.nn.init.xavier_normal_(self.values)
        super().reset_parameters()  # embeddings, then the optimiser

    def memory_read(self, users: Tensor) -> Tensor:
        r"""Each user's memory read-out :math:`\mathbf{m}_u =
        \mathbf{V}^{\top}\mathrm{softmax}(\mathbf{K}\mathbf{p}_u)`
        (differentiable).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **output:** :math:`(B, d)`
        """
        address = F.softmax(self.user_emb(users) @ self.keys.t(), dim=-1)
        return address @ self.values

    def logits(self, users: Tensor, items: Tensor) -> Tensor:
        r"""The generator's logits :math:`-\|\mathbf{p}_u + \mathbf{m}_u -
        \mathbf{q}_j\|_2^2 / \tau` (differentiable).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            items (torch.Tensor): Candidate item ids per user,
                :obj:`torch.long`.

        Shapes:
            - **users:** :math:`(B)`
            - **items:** :math:`(B, K)`
            - **output:** :math:`(B, K)`
        """
        query = self.user_emb(users) + self.memory_read(users)  # [B, d]
        diff = query.unsqueeze(1) - self.item_emb(items)  # [B, K, d]
        return -diff.pow(2).sum(-1) / self.temperature

    def reward(self, users: Tensor, pos_items: Tensor, candidates: Tensor,
               pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
        r"""The recommender's hinge loss :math:`[\gamma + f(u, j) -
        f(u, i)]_+` of each pool candidate.

        Arguments and shapes as
        :meth:`~kgsampler.sampler.Adversarial.reward`.
        """
        return (self.margin + neg_scores - pos_scores).clamp_min(0)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, '
                f'num_candidates={self.num_candidates}, '
                f'memory_size={self.memory_size}, margin={self.margin})')
