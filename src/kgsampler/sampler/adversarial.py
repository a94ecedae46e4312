r"""Adversarial negative sampling: a generator trained against the
recommender (IRGAN-style, with a sampled candidate pool)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import (ModuleSamplerMixin, Sampler,
                                    SamplerOutput, Scorer,
                                    check_update_batch)


@dataclass
class AdversarialOutput(SamplerOutput):
    r""":class:`~kgsampler.sampler.SamplerOutput` of :class:`Adversarial`:
    also the candidate pool each negative was drawn from.

    Args:
        candidates (torch.Tensor): The pool of uniform non-positive items of
            each negative, :math:`(B, N, M)`.
    """
    candidates: Optional[Tensor] = None


def _check_positive_ints(owner, **values) -> None:
    r"""Raises :class:`ValueError` naming :obj:`owner`'s class unless every
    value is a positive :obj:`int` (not a :obj:`bool`)."""
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{owner.__class__.__name__}: '{name}' must be "
                             f"a positive int (got {v!r})")


def _check_numbers(owner, **values) -> None:
    r""":obj:`name=(value, 'positive' | 'non-negative')`: raises
    :class:`TypeError` unless each value is a finite number and
    :class:`ValueError` unless it has the stated sign, naming
    :obj:`owner`'s class."""
    cls = owner.__class__.__name__
    for name, (v, _) in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                not math.isfinite(v):
            raise TypeError(f"{cls}: '{name}' must be a finite number "
                            f"(got {v!r})")
    for name, (v, what) in values.items():
        if not (v > 0 if what == 'positive' else v >= 0):
            raise ValueError(f"{cls}: '{name}' must be {what} (got {v!r})")


class Adversarial(ModuleSamplerMixin, Sampler, torch.nn.Module):
    r"""Adversarial negative sampling in the spirit of IRGAN (Wang et al.,
    SIGIR 2017): a generator with its own user and item embeddings
    :math:`\mathbf{p}_u, \mathbf{q}_j` proposes negatives, and is trained to
    maximise the recommender's (the discriminator's) BPR loss on them, with
    the recommender frozen.

    For every negative, :obj:`num_candidates` uniform non-positive items
    :math:`\mathcal{C}` are drawn and the negative is sampled from the
    generator's distribution over them,

    .. math::
        \pi(j \mid u) = \mathrm{softmax}_{j \in \mathcal{C}}
        \big(\mathbf{p}_u^{\top}\mathbf{q}_j / \tau\big),

    a sampled-softmax stand-in for the full softmax over all items (cost
    :math:`O(M)` instead of :math:`O(|\mathcal{I}|)` a negative). In
    :meth:`update` every candidate is rewarded with the recommender's BPR
    loss :math:`R_j = \log(1 + e^{f(u, j) - f(u, i)})` and the generator
    takes an Adam step on :math:`-\sum_j \pi_j (R_j - \bar{R})`,
    :math:`\bar{R} = \sum_j \pi_j R_j`: the policy gradient of the expected
    reward, computed exactly over the pool rather than from the one sampled
    item (no sampling variance). With an untrained generator the negatives
    are uniform; :obj:`num_candidates=1` is RNS.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender.
        num_candidates (int, optional): Pool size :math:`M` (4 was the
            best of 4, 8 and 16 on ml-1m and lastfm validation; larger pools
            let the generator pick more held-out positives).
            (default: :obj:`4`)
        embedding_dim (int, optional): Generator embedding size.
            (default: :obj:`64`)
        temperature (float, optional): Softmax temperature :math:`\tau`.
            (default: :obj:`1.0`)
        lr (float, optional): Adam learning rate of the generator.
            (default: :obj:`1e-3`)
        weight_decay (float, optional): Adam weight decay of the generator.
            (default: :obj:`0.0`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    learnable = True
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR,
                 scorer: Optional[Scorer] = None, num_candidates: int = 4,
                 embedding_dim: int = 64, temperature: float = 1.0,
                 lr: float = 1e-3, weight_decay: float = 0.0, **kwargs):
        torch.nn.Module.__init__(self)
        Sampler.__init__(self, train_pos, **kwargs)
        _check_positive_ints(self, num_candidates=num_candidates,
                             embedding_dim=embedding_dim)
        _check_numbers(self, temperature=(temperature, 'positive'),
                       lr=(lr, 'positive'),
                       weight_decay=(weight_decay, 'non-negative'))
        self.num_candidates, self.embedding_dim = num_candidates, embedding_dim
        self.temperature, self.lr = float(temperature), float(lr)
        self.weight_decay = float(weight_decay)
        self._build_generator()
        self.reset_parameters()
        if scorer is not None:
            self.set_scorer(scorer)

    def __setattr__(self, name, value):
        if name == 'scorer':  # never register the recommender as a submodule
            object.__setattr__(self, name, value)
        else:
            torch.nn.Module.__setattr__(self, name, value)

    def _build_generator(self) -> None:
        """Creates the generator's parameters (subclasses add theirs)."""
        self.user_emb = torch.nn.Embedding(self.num_users, self.embedding_dim)
        self.item_emb = torch.nn.Embedding(self.num_items, self.embedding_dim)

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_normal_(self.user_emb.weight)
        torch.nn.init.xavier_normal_(self.item_emb.weight)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr,
                                          weight_decay=self.weight_decay)


    def logits(self, users: Tensor, items: Tensor) -> Tensor:
        r"""The generator's logits :math:`\mathbf{p}_u^{\top}\mathbf{q}_j /
        \tau` (differentiable).

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
        return (self.item_emb(items) @ u.unsqueeze(-1)).squeeze(-1) / \
            self.temperature

    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> AdversarialOutput:
        B, N, M = users.numel(), num_neg, self.num_candidates
        pool = self.uniform_negatives(users.view(-1, 1).expand(B, N * M))
        logp = F.log_softmax(self.logits(users, pool).view(B, N, M).float(),
                             dim=-1)
        pick = torch.multinomial(logp.exp().view(B * N, M), 1).view(B, N, 1)
        neg = pool.view(B, N, M).gather(-1, pick).squeeze(-1)
        return AdversarialOutput(neg, log_prob=logp.gather(-1, pick)
                                 .squeeze(-1),
                                 candidates=pool.view(B, N, M))

    def update(self, users: Tensor, pos_items: Tensor,
               output: SamplerOutput) -> Dict[str, Union[float, Tensor]]:
        r"""One generator step against the frozen recommender: every pool
        candidate is rewarded with the recommender's BPR loss, and the
        expected reward under the generator goes up.

        Args:
            users (torch.Tensor): The users :obj:`output` was sampled for,
                :obj:`torch.long`.
            pos_items (torch.Tensor): Their positive items,
                :obj:`torch.long`.
            output (AdversarialOutput): The :meth:`sample` output.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **output.candidates:** :math:`(B, N, M)`

        Returns :obj:`sampler_reward` (the mean expected reward) and
        :obj:`sampler_gain` (its excess over a uniform pick from the pool)
        as 0-dim tensors."""
        cls = self.__class__.__name__
        if not isinstance(output, AdversarialOutput) or \
                output.candidates is None:
            raise TypeError(f"{cls}.update: 'output' must come from "
                            f"{cls}.sample")
        B, N, M = output.candidates.shape
        check_update_batch(cls, users, pos_items, B)
        self._updated()
        cand = output.candidates.reshape(B, N * M)
        with torch.no_grad():
            f_pos = self.scorer.score(users, pos_items.view(-1, 1)).float()
            f_neg = self.scorer.score(users, cand).float()
            reward = self.reward(users, pos_items, cand, f_pos,
                                 f_neg).view(B, N, M)
        prob = F.softmax(self.logits(users, cand).view(B, N, M).float(), -1)
        mean = (prob.detach() * reward).sum(-1, keepdim=True)
        loss = -(prob * (reward - mean)).sum(-1).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        # the loss is 0 in value (only its gradient counts); report how much
        # harder the generator's pick is than a uniform pick from the pool
        gain = (mean - reward.mean(-1, keepdim=True)).mean()
        return {'sampler_reward': mean.mean(), 'sampler_gain': gain}

    def reward(self, users: Tensor, pos_items: Tensor, candidates: Tensor,
               pos_scores: Tensor, neg_scores: Tensor) -> Tensor:
        r"""The reward of each pool candidate: the recommender's BPR loss
        :math:`\log(1 + e^{f(u, j) - f(u, i)})` here (subclasses change the
        rule; the recommender is frozen, nothing here is differentiated).

        Args:
            users (torch.Tensor): User ids, :obj:`torch.long`.
            pos_items (torch.Tensor): Their positive items,
                :obj:`torch.long`.
            candidates (torch.Tensor): The pool items, :obj:`torch.long`.
            pos_scores (torch.Tensor): :math:`f(u, i)`.
            neg_scores (torch.Tensor): :math:`f(u, j)` of each candidate.

        Shapes:
            - **users, pos_items:** :math:`(B)`
            - **candidates, neg_scores:** :math:`(B, NM)`
            - **pos_scores:** :math:`(B, 1)`
            - **output:** :math:`(B, NM)`
        """
        return F.softplus(neg_scores - pos_scores)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_users={self.num_users}, '
                f'num_items={self.num_items}, '
                f'num_candidates={self.num_candidates}, '
                f'temperature={self.temperature})')
