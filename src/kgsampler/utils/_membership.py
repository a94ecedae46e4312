"""Vectorised "is item j a training positive of user u?" look-ups.

Three interchangeable back ends, chosen by memory:

* a dense boolean matrix over all ``num_users * num_items`` pairs (one byte a
  pair: 14 MB for ml-1m), the fewest operations per query;
* a bit-packed bitmap (one bit a pair: 1.8 MB for ml-1m, 220 MB for
  amazon-book), O(1) per query;
* a sorted array of flat keys ``user * num_items + item`` searched with
  :func:`torch.searchsorted`, O(log nnz) per query and O(nnz) memory.

Both return identical answers; the tests compare them against a dense
reference.
"""
from __future__ import annotations

import torch
from torch import Tensor

from kgsampler.data.csr import UserItemCSR

#: Largest bitmap (in bytes) built by default; above it the sorted-key path
#: is used.
DEFAULT_MAX_BITMAP_BYTES = 512 * 1024**2
#: Largest dense boolean matrix (in bytes) built by default.
DEFAULT_MAX_DENSE_BYTES = 64 * 1024**2


class Membership:
    r"""Answers :obj:`(users, items) -> bool` membership queries for a
    :class:`~kgsampler.data.UserItemCSR`.

    Args:
        pos (UserItemCSR): The positive pairs.
        method (str, optional): :obj:`"dense"`, :obj:`"bitmap"`,
            :obj:`"search"` or :obj:`"auto"` (dense if it needs at most
            :obj:`max_dense_bytes`, else bitmap if it needs at most
            :obj:`max_bitmap_bytes`, else search). (default: :obj:`"auto"`)
        max_bitmap_bytes (int, optional): Bitmap memory cap for
            :obj:`"auto"`.
        max_dense_bytes (int, optional): Dense-matrix memory cap for
            :obj:`"auto"`.
    """
    def __init__(self, pos: UserItemCSR, method: str = 'auto',
                 max_bitmap_bytes: int = DEFAULT_MAX_BITMAP_BYTES,
                 max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES):
        if method not in ('auto', 'dense', 'bitmap', 'search'):
            raise ValueError(f"Membership: 'method' must be 'auto', 'dense', "
                             f"'bitmap' or 'search' (got {method!r})")
        self.num_cols = pos.num_cols
        total = pos.num_rows * pos.num_cols
        nbytes = (total + 7) // 8
        if method == 'auto':
            method = ('dense' if total <= max_dense_bytes else
                      'bitmap' if nbytes <= max_bitmap_bytes else 'search')
        self.method = method
        keys = pos.keys()
        self.dense = None
        if method == 'dense':
            self.dense = torch.zeros(total, dtype=torch.bool,
                                     device=keys.device)
            self.dense[keys] = True
            self.bits = self.keys = None
        elif method == 'bitmap':
            # Keys are unique, so adding distinct powers of two into a byte
            # equals OR-ing them.
            bits = torch.zeros(nbytes, dtype=torch.uint8, device=keys.device)
            bits.index_add_(0, keys >> 3, (1 << (keys & 7)).to(torch.uint8))
            self.bits = bits
            self.keys = None
        else:
            self.bits = None
            self.keys = keys.contiguous()

    def __call__(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Returns a :obj:`torch.bool` tensor, :obj:`True` where
        :obj:`items` is a positive of :obj:`users`.

        Shapes:
            - **users:** :math:`(*)`, broadcastable against **items**
            - **items:** :math:`(*)`
            - **output:** broadcast shape of both
        """
        key = users * self.num_cols + items
        # index_select on the flat key: several times faster than advanced
        # indexing (tensor[key]) on CPU
        if self.dense is not None:
            return self.dense.index_select(0, key.reshape(-1)).view(key.shape)
        if self.bits is not None:
            byte = self.bits.index_select(0, (key >> 3).reshape(-1))
            byte = byte.view(key.shape)
            return ((byte >> (key & 7).to(torch.uint8)) & 1).bool()
        if self.keys.numel() == 0:
            return torch.zeros_like(key, dtype=torch.bool)
        flat = key.reshape(-1)
        pos = torch.searchsorted(self.keys, flat)
        pos = pos.clamp_(max=self.keys.numel() - 1)
        return (self.keys[pos] == flat).view(key.shape)

    def to(self, device) -> 'Membership':
        if self.dense is not None:
            self.dense = self.dense.to(device)
        if self.bits is not None:
            self.bits = self.bits.to(device)
        if self.keys is not None:
            self.keys = self.keys.to(device)
        return self

    @property
    def nbytes(self) -> int:
        t = next(t for t in (self.dense, self.bits, self.keys)
                 if t is not None)
        return t.numel() * t.element_size()

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(method={self.method!r})'
