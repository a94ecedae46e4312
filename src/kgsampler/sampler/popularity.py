"""Popularity-biased negative sampling (PNS)."""
from __future__ import annotations

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR
from kgsampler.sampler.base import Sampler, SamplerOutput


class PNS(Sampler):
    r"""Popularity negative sampling: item :math:`j` is drawn with probability
    proportional to :math:`\textit{count}(j)^{\alpha}`, its number of training
    interactions to the power :obj:`alpha`, restricted to the user's
    non-positives (rejection; rows still positive after :obj:`max_rounds`
    rounds get a uniform negative and count as fallbacks).

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        alpha (float, optional): Popularity exponent; :obj:`0` is uniform.
            (default: :obj:`1.0`)
        max_rounds (int, optional): Rejection rounds. (default: :obj:`10`)
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    def __init__(self, train_pos: UserItemCSR, alpha: float = 1.0,
                 max_rounds: int = 10, **kwargs):
        super().__init__(train_pos, max_rounds=max_rounds, **kwargs)
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
                or not 0 <= alpha < float('inf'):
            raise ValueError(f"PNS: 'alpha' must be a finite non-negative "
                             f"number (got {alpha!r})")
        self.alpha = float(alpha)
        count = torch.bincount(train_pos.indices, minlength=self.num_items)
        weight = count.double().pow(self.alpha)
        weight[count == 0] = 0.0 if self.alpha > 0 else 1.0
        self.cdf = (weight.cumsum(0) / weight.sum()).float()

    def to(self, device) -> 'PNS':
        super().to(device)
        device = self.train_pos.device  # resolved ("auto")
        self.cdf = self.cdf.to(device)
        return self

    def _draw(self, shape, device) -> Tensor:
        r = torch.rand(shape, device=device)
        return torch.searchsorted(self.cdf, r, right=True).clamp_(
            max=self.num_items - 1)

    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        u = users.view(-1, 1).expand(-1, num_neg)
        items = self._draw(u.shape, users.device)
        fallback = self.redraw_positives(
            u, items, lambda n: self._draw((n, ), users.device))
        self._fill_uniform(u, items, fallback)
        return SamplerOutput(items, fallback=fallback)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(alpha={self.alpha})'
