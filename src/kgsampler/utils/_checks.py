"""Argument checks shared by the recommenders and samplers, so that every
class words the same mistake the same way."""
from __future__ import annotations

import numbers
from typing import Any


def positive_int(cls: str, name: str, v: Any, low: int = 1) -> int:
    r""":obj:`v` as an :obj:`int` (numpy integers accepted, :obj:`bool`
    not); a :class:`ValueError` naming :obj:`cls` and :obj:`name` when it is
    not an integer of at least :obj:`low`."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < low:
        what = 'a positive int' if low == 1 else f'an int >= {low}'
        raise ValueError(f"{cls}: '{name}' must be {what} (got {v!r})")
    return int(v)
