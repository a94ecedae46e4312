r"""Adaptive hardness negative sampling (AHNS)."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import SamplerOutput, Scorer
from kgsampler.sampler.hard_negative import _CandidateSampler, check_finite


class AHNS(_CandidateSampler):
    r"""Adaptive hardness negative sampling (Lai et al., "Adaptive Hardness
    Negative Sampling for Collaborative Filtering", AAAI 2024): the hardness
    of the negative adapts to how well the positive is already ranked. Of
    :math:`N` uniform non-positive candidates, return the one whose score is
    closest to a target that falls as the positive's score rises:

    .. math::
        j^{*} = \operatorname*{argmin}_{j} \left| \hat{y}_{uj} -
        \beta \, (\hat{y}_{ui} + \alpha)^{p + 1} \right|

    (positive-aware, negatively correlated with the positive's score for
    :math:`p + 1 < 0`, adjustable through :math:`\alpha, \beta, p`), as the
    paper's instantiation and its released code. A well-fitted positive thus
    gets an easier negative (fewer false negatives), a poorly-fitted one a
    harder negative.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender to query; can also be set
            later with :meth:`set_scorer`.
        num_candidates (int, optional): Uniform candidates per negative
            (:math:`N`). (default: :obj:`32`, the released default)
        alpha (float, optional): Shift :math:`\alpha` of the positive's
            score. (default: :obj:`1.0`)
        beta (float, optional): Scale :math:`\beta > 0` of the target.
            (default: :obj:`0.1`)
        p (int, optional): Power; the target is
            :math:`\beta (\hat{y}_{ui} + \alpha)^{p + 1}`, so :math:`p = -2`
            gives :math:`\beta / (\hat{y}_{ui} + \alpha)`. An int, so that
            the power of a negative base is defined. (default: :obj:`-2`)
        **kwargs (optional): Arguments of :class:`Sampler`.

    A positive whose shifted score is 0 with :math:`p + 1 < 0` has an
    infinite target: the candidate nearest to it in the limit is returned
    (the best-scored for :math:`+\infty`).
    """
    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 num_candidates: int = 32, alpha: float = 1.0,
                 beta: float = 0.1, p: int = -2, **kwargs):
        super().__init__(train_pos, scorer, num_candidates, **kwargs)
        self.alpha = check_finite('AHNS', 'alpha', alpha)
        self.beta = check_finite('AHNS', 'beta', beta, positive=True)
        if isinstance(p, bool) or not isinstance(p, int):
            raise TypeError(f"AHNS: 'p' must be an int (got {p!r})")
        self.p = p

    def target(self, pos_scores: Tensor) -> Tensor:
        r"""The target score :math:`\beta (\hat{y}_{ui} + \alpha)^{p + 1}` of
        each row's negative.

        Args:
            pos_scores (torch.Tensor): The positive's score of each row.

        Shapes:
            - **pos_scores:** :math:`(*)`
            - **output:** :math:`(*)`
        """
        return self.beta * (pos_scores + self.alpha).pow(self.p + 1)

    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        cand, scores = self._candidates(users, num_neg)  # [B, n, N]
        pos = self.scorer.score(users, pos_items.view(-1, 1))  # [B, 1]
        t = self.target(pos).unsqueeze(-1)  # [B, 1, 1]
        # an infinite target: the candidate nearest to it in the limit
        gap = torch.where(torch.isfinite(t), (scores - t).abs(),
                          -scores * t.sign())
        idx = gap.argmin(dim=-1, keepdim=True)  # [B, n, 1]
        return SamplerOutput(cand.gather(-1, idx).squeeze(-1))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(alpha={self.alpha}, '
                f'beta={self.beta}, p={self.p}, '
                f'num_candidates={self.num_candidates})')
