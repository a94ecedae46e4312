"""Dynamic negative sampling (DNS)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import Sampler, SamplerOutput, Scorer


class DNS(Sampler):
    r"""Dynamic negative sampling (Zhang et al., SIGIR 2013): draw
    :obj:`num_candidates` uniform non-positive candidates per negative and
    keep the one the recommender currently scores highest.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender to query; can also be set
            later with :meth:`set_scorer`.
        num_candidates (int, optional): Candidates per negative (:math:`M`).
            (default: :obj:`8`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 num_candidates: int = 8, **kwargs):
        super().__init__(train_pos, **kwargs)
        if isinstance(num_candidates, bool) or not isinstance(
                num_candidates, int) or num_candidates < 1:
            raise ValueError(f"DNS: 'num_candidates' must be a positive int "
                             f"(got {num_candidates!r})")
        self.num_candidates = num_candidates
        if scorer is not None:
            self.set_scorer(scorer)

    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        B, M = users.numel(), self.num_candidates
        u = users.view(-1, 1).expand(-1, num_neg * M)
        cand = self.uniform_negatives(u)  # [B, N * M]
        with torch.no_grad():  # the recommender is only queried
            scores = self.scorer.score(users, cand).view(B, num_neg, M)
        best = scores.argmax(dim=-1, keepdim=True)  # [B, N, 1]
        neg = cand.view(B, num_neg, M).gather(-1, best).squeeze(-1)
        return SamplerOutput(neg)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}('
                f'num_candidates={self.num_candidates})')
