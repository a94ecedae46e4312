"""Fixtures shared by the sampler tests (a module's own fixture of the same
name takes precedence)."""
import pytest
import torch

from kgsampler.data.csr import UserItemCSR


@pytest.fixture
def pos() -> UserItemCSR:
    r"""Three users over 6 items (x: training positive)::

              i0 i1 i2 i3 i4 i5
        u0     x  x
        u1           x
        u2     x        x  x  x
    """
    rows = torch.tensor([0, 0, 1, 2, 2, 2, 2])
    cols = torch.tensor([0, 1, 2, 0, 3, 4, 5])
    return UserItemCSR.from_pairs(rows, cols, 3, 6)
