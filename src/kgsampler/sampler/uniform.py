"""Uniform negative sampling (RNS)."""
from __future__ import annotations

from torch import Tensor

from kgsampler.sampler.base import Sampler, SamplerOutput


class RNS(Sampler):
    r"""Random negative sampling: each negative is drawn uniformly from the
    items that are not a training positive of the user (Rendle et al., BPR).

    Args:
        train_pos (UserItemCSR): Each user's training positives.
        **kwargs (optional): Arguments of :class:`Sampler`.
    """
    def _sample(self, users: Tensor, pos_items: Tensor,
                num_neg: int) -> SamplerOutput:
        u = users.view(-1, 1).expand(-1, num_neg)
        return SamplerOutput(self.uniform_negatives(u))
