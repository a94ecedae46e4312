r"""Hardness-controllable hard negative sampling (Shi et al., "On the
Theories behind Hard Negative Sampling for Recommendation", WWW 2023):
:class:`DNSMN` (DNS(M, N)) and :class:`SoftmaxNS` (Softmax(:math:`\rho`, N)).

BPR with DNS(M, N) is an exact estimator of the one-way partial AUC
OPAUC(:math:`\beta = M / N`), Softmax(:math:`\rho`, N) a soft one; the
smaller the :math:`K` of the top-:math:`K` metric that matters, the harder the
negatives should be (smaller :math:`M / N`, larger :math:`\rho`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import Sampler, SamplerOutput, Scorer
from kgsampler.utils._checks import positive_int as check_positive_int




def check_finite(cls: str, name: str, value, positive: bool = False,
                 non_negative: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise TypeError(f"{cls}: '{name}' must be a finite number "
                        f"(got {value!r})")
    if positive and not value > 0:
        raise ValueError(f"{cls}: '{name}' must be positive (got {value!r})")
    if non_negative and not value >= 0:
        raise ValueError(f"{cls}: '{name}' must be non-negative "
                         f"(got {value!r})")
    return float(value)


class _CandidateSampler(Sampler):
    """Draws :obj:`num_candidates` uniform non-positive candidates per
    negative and scores them with the recommender."""
    requires_scorer = True

    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 num_candidates: int = 200, **kwargs):
        super().__init__(train_pos, **kwargs)
        self.num_candidates = check_positive_int(
            self.__class__.__name__, 'num_candidates', num_candidates)
        if scorer is not None:
            self.set_scorer(scorer)

    def _candidates(self, users: Tensor, num_neg: int):
        """Candidates :math:`(B, n, N)` and their scores."""
        B, N = users.numel(), self.num_candidates
        u = users.view(-1, 1).expand(-1, num_neg * N)
        cand = self.uniform_negatives(u)
        scores = self.scorer.score(users, cand)
        return cand.view(B, num_neg, N), scores.view(B, num_neg, N)


class DNSMN(_CandidateSampler):
    r"""DNS(:math:`M`, :math:`N`) (Shi et al., WWW 2023): draw :math:`N`
    uniform non-positive candidates per negative, keep the :math:`M` the
    recommender currently scores highest, and return one of them uniformly at
    random. :math:`M = 1` is :class:`~kgsampler.sampler.DNS` with
    :math:`N` candidates, :math:`M = N` uniform sampling; the hardness is set
    by :math:`\beta = M / N` (BPR then estimates OPAUC(:math:`\beta`)).

    The released code puts the BPR loss on all top-:math:`M` candidates at
    once; with :obj:`num_neg` negatives per row drawn here, each from its
    own :math:`N` candidates, the Trainer's mean BPR loss has the same
    expectation.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender to query; can also be set
            later with :meth:`set_scorer`.
        num_candidates (int, optional): Uniform candidates per negative
            (:math:`N`). (default: :obj:`200`, as the released code)
        top_m (int, optional): How many of the best-scored candidates the
            negative is drawn from (:math:`M \le N`). (default: :obj:`2`, as
            the released running example)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 num_candidates: int = 200, top_m: int = 2, **kwargs):
        super().__init__(train_pos, scorer, num_candidates, **kwargs)
        check_positive_int('DNSMN', 'top_m', top_m)
        if top_m > self.num_candidates:
            raise ValueError(f"DNSMN: 'top_m' must be at most "
                             f"'num_candidates'={self.num_candidates} "
                             f"(got {top_m})")
        self.top_m = top_m

    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        cand, scores = self._candidates(users, num_neg)  # [B, n, N]
        top = scores.topk(self.top_m, dim=-1).indices  # [B, n, M]
        pick = torch.randint(self.top_m, (*top.shape[:2], 1),
                             device=users.device)
        idx = top.gather(-1, pick)  # [B, n, 1]
        return SamplerOutput(cand.gather(-1, idx).squeeze(-1))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(top_m={self.top_m}, '
                f'num_candidates={self.num_candidates})')


class SoftmaxNS(_CandidateSampler):
    r"""Softmax(:math:`\rho`, :math:`N`) (Shi et al., WWW 2023): draw
    :math:`N` uniform non-positive candidates per negative and return one
    with probability

    .. math::
        P(j) \propto \exp\big(\ell_{uij} / \tau\big), \quad
        \ell_{uij} = -\ln \sigma(\hat{y}_{ui} - \hat{y}_{uj}), \quad
        \tau = \sqrt{\mathrm{Var}_j[\ell_{uij}] / (2 \rho)},

    the row's BPR losses reweighted as in the paper's soft OPAUC estimator
    (the temperature from the candidates' loss variance, as in the released
    code: unbiased variance over the :math:`N` candidates). Larger
    :math:`\rho` means harder negatives; all-equal losses give a uniform
    draw.

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        scorer (Scorer, optional): The recommender to query; can also be set
            later with :meth:`set_scorer`.
        num_candidates (int, optional): Uniform candidates per negative
            (:math:`N`, at least 2). (default: :obj:`200`, as the released
            code)
        rho (float, optional): Hardness :math:`\rho > 0`.
            (default: :obj:`1.0`, as the released running example)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    def __init__(self, train_pos: UserItemCSR, scorer: Optional[Scorer] = None,
                 num_candidates: int = 200, rho: float = 1.0, **kwargs):
        super().__init__(train_pos, scorer, num_candidates, **kwargs)
        if self.num_candidates < 2:
            raise ValueError(f"SoftmaxNS: 'num_candidates' must be at least 2 "
                             f"(a variance over the candidates) (got "
                             f"{num_candidates})")
        self.rho = check_finite('SoftmaxNS', 'rho', rho, positive=True)

    def probabilities(self, pos_scores: Tensor, cand_scores: Tensor) -> Tensor:
        r"""The sampling distribution over each row's candidates.

        Args:
            pos_scores (torch.Tensor): The positive's score of each row.
            cand_scores (torch.Tensor): The candidates' scores.

        Shapes:
            - **pos_scores:** :math:`(*, 1)`
            - **cand_scores:** :math:`(*, N)`
            - **output:** :math:`(*, N)`, rows summing to 1
        """
        loss = -F.logsigmoid(pos_scores - cand_scores)
        tau = (loss.var(dim=-1, keepdim=True) / (2 * self.rho)).sqrt()
        logits = (loss - loss.amax(dim=-1, keepdim=True)) / \
            tau.clamp_min(torch.finfo(loss.dtype).tiny)
        return logits.softmax(dim=-1)

    @torch.no_grad()
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        cand, scores = self._candidates(users, num_neg)  # [B, n, N]
        pos = self.scorer.score(users, pos_items.view(-1, 1))  # [B, 1]
        prob = self.probabilities(pos.unsqueeze(-1), scores)
        idx = torch.multinomial(prob.view(-1, self.num_candidates), 1)
        idx = idx.view(*cand.shape[:2], 1)
        return SamplerOutput(cand.gather(-1, idx).squeeze(-1))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rho={self.rho}, '
                f'num_candidates={self.num_candidates})')
