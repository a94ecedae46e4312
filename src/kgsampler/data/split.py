r"""Seeded, vectorised per-user hold-out splits of a :class:`UserItemCSR`."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from kgsampler.data.csr import UserItemCSR

__all__ = ['PerUserSplit', 'split_per_user']


@dataclass
class PerUserSplit:
    r"""The two parts of :func:`split_per_user`.

    Args:
        keep (UserItemCSR): The entries that stay (e.g. train).
        held_out (UserItemCSR): The entries held out (e.g. validation).
    """
    keep: UserItemCSR
    held_out: UserItemCSR


def split_per_user(pos: UserItemCSR, ratio: float,
                   generator: torch.Generator) -> PerUserSplit:
    r"""Holds out a random share of every user's items.

    User :math:`u` with :math:`n_u` items gets
    :math:`\min(\lfloor \textit{ratio} \cdot n_u + 0.5 \rfloor, n_u - 1)`
    held-out items (at least zero), so that every user with items keeps at
    least one of them. The held-out items are those with the smallest random
    keys within the user: one :func:`torch.randint` call, one sort by
    (user, key) and the rank within the user, with no loop over users.

    Args:
        pos (UserItemCSR): The user-item matrix to split.
        ratio (float): Share to hold out, in :math:`[0, 1)`.
        generator (torch.Generator): A CPU generator; the split is a pure
            function of its state.
    """
    if not isinstance(pos, UserItemCSR):
        raise TypeError(f"split_per_user: 'pos' must be a UserItemCSR "
                        f"(got {type(pos).__name__})")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) \
            or not 0.0 <= ratio < 1.0:
        raise ValueError(f"split_per_user: 'ratio' must be a float in "
                         f"[0, 1) (got {ratio!r})")
    device = pos.device
    deg = pos.degree().cpu()
    rows = pos.row_ids().cpu()
    indptr = pos.indptr.cpu()
    # One int64 sort by (user, random key):
    key = torch.randint(0, 2**31, (pos.nnz, ), generator=generator)
    perm = torch.argsort((rows << 31) | key, stable=True)
    # Rows are sorted, so position p of `perm` lies in row rows[p]:
    rank = torch.arange(pos.nnz) - indptr[rows]
    num_held = torch.floor(ratio * deg.double() + 0.5).long()
    num_held = torch.minimum(num_held, (deg - 1).clamp(min=0))
    held = torch.zeros(pos.nnz, dtype=torch.bool)
    held[perm] = rank < num_held[rows]
    held = held.to(device)

    def part(mask: torch.Tensor) -> UserItemCSR:
        cnt = torch.zeros(pos.num_rows + 1, dtype=torch.long, device=device)
        cnt[1:] = torch.cumsum(
            torch.bincount(pos.row_ids()[mask], minlength=pos.num_rows), 0)
        return UserItemCSR(cnt, pos.indices[mask], pos.num_cols)

    return PerUserSplit(keep=part(~held), held_out=part(held))
