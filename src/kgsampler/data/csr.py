"""Per-user positive item sets stored as a compressed sparse row (CSR) matrix."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class UserItemCSR:
    r"""A binary user-item matrix in CSR form: row :obj:`u` holds the sorted,
    duplicate-free item ids :obj:`indices[indptr[u]:indptr[u + 1]]`.

    Args:
        indptr (torch.Tensor): Row pointers, :obj:`torch.long`.
        indices (torch.Tensor): Column (item) ids, :obj:`torch.long`, sorted
            within each row and without duplicates.
        num_cols (int): Number of columns (items).

    Shapes:
        - **indptr:** :math:`(|\mathcal{U}| + 1)`
        - **indices:** :math:`(\textit{nnz})`
    """
    indptr: Tensor
    indices: Tensor
    num_cols: int

    def __post_init__(self) -> None:
        if self.indptr.dtype != torch.long or self.indices.dtype != torch.long:
            raise TypeError(f"{self.__class__.__name__}: 'indptr' and "
                            f"'indices' must be torch.long (got "
                            f"{self.indptr.dtype} and {self.indices.dtype})")
        if self.indptr.dim() != 1 or self.indptr.numel() < 1:
            raise ValueError(f"{self.__class__.__name__}: 'indptr' must be a "
                             f"non-empty 1-D tensor (got shape "
                             f"{tuple(self.indptr.shape)})")
        if int(self.indptr[-1]) != self.indices.numel():
            raise ValueError(f"{self.__class__.__name__}: 'indptr[-1]' must "
                             f"equal the number of indices (got "
                             f"{int(self.indptr[-1])} and "
                             f"{self.indices.numel()})")
        if self.indices.numel() > 0 and (int(self.indices.min()) < 0 or int(
                self.indices.max()) >= self.num_cols):
            raise ValueError(f"{self.__class__.__name__}: column ids must lie "
                             f"in [0, {self.num_cols}) (got range "
                             f"[{int(self.indices.min())}, "
                             f"{int(self.indices.max())}])")

    @classmethod
    def from_pairs(cls, rows: Tensor, cols: Tensor, num_rows: int,
                   num_cols: int) -> 'UserItemCSR':
        r"""Builds the matrix from (row, col) pairs; duplicates are merged.

        Args:
            rows (torch.Tensor): Row (user) ids, :obj:`torch.long`.
            cols (torch.Tensor): Column (item) ids, :obj:`torch.long`.
            num_rows (int): Number of rows.
            num_cols (int): Number of columns.

        Shapes:
            - **rows, cols:** :math:`(E)`
        """
        rows = rows.long().view(-1)
        cols = cols.long().view(-1)
        if rows.numel() != cols.numel():
            raise ValueError(f"{cls.__name__}.from_pairs: 'rows' and 'cols' "
                             f"must have the same length (got {rows.numel()} "
                             f"and {cols.numel()})")
        if rows.numel() > 0 and (int(rows.min()) < 0
                                 or int(rows.max()) >= num_rows):
            raise ValueError(f"{cls.__name__}.from_pairs: row ids must lie in "
                             f"[0, {num_rows}) (got range [{int(rows.min())}, "
                             f"{int(rows.max())}])")
        key = torch.unique(rows * num_cols + cols)  # sorted
        r, c = key // num_cols, key % num_cols
        indptr = torch.zeros(num_rows + 1, dtype=torch.long, device=key.device)
        indptr[1:] = torch.cumsum(torch.bincount(r, minlength=num_rows), 0)
        return cls(indptr, c, num_cols)

    @property
    def num_rows(self) -> int:
        return self.indptr.numel() - 1

    @property
    def nnz(self) -> int:
        return self.indices.numel()

    @property
    def device(self) -> torch.device:
        return self.indices.device

    def degree(self) -> Tensor:
        r"""Number of items per row, shape :math:`(|\mathcal{U}|)`."""
        return self.indptr[1:] - self.indptr[:-1]

    def row_ids(self) -> Tensor:
        r"""Row id of every stored entry, shape :math:`(\textit{nnz})`."""
        return torch.repeat_interleave(
            torch.arange(self.num_rows, device=self.device), self.degree())

    def row(self, u: int) -> Tensor:
        """The sorted item ids of row :obj:`u`."""
        return self.indices[int(self.indptr[u]):int(self.indptr[u + 1])]

    def gather_rows(self, rows: Tensor) -> 'tuple[Tensor, Tensor]':
        r"""The entries of the given rows, flattened: returns
        :obj:`(local_row, col)` where :obj:`local_row` indexes into
        :obj:`rows`.

        Shapes:
            - **rows:** :math:`(B)`
            - **output:** two tensors of shape :math:`(\sum_b \deg(rows_b))`
        """
        start = self.indptr[rows]
        deg = self.indptr[rows + 1] - start
        local = torch.repeat_interleave(
            torch.arange(rows.numel(), device=rows.device), deg)
        offset = torch.cumsum(deg, 0) - deg  # first flat position per row
        pos = torch.arange(local.numel(), device=rows.device) - \
            offset[local] + start[local]
        return local, self.indices[pos]

    def keys(self) -> Tensor:
        r"""Sorted flat keys :obj:`row * num_cols + col`, shape
        :math:`(\textit{nnz})`."""
        return self.row_ids() * self.num_cols + self.indices

    def to_dense(self) -> Tensor:
        """A dense :obj:`torch.bool` matrix (for tests and small data)."""
        out = torch.zeros(self.num_rows, self.num_cols, dtype=torch.bool,
                          device=self.device)
        out[self.row_ids(), self.indices] = True
        return out

    def to(self, device) -> 'UserItemCSR':
        return UserItemCSR(self.indptr.to(device), self.indices.to(device),
                           self.num_cols)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(rows={self.num_rows}, '
                f'cols={self.num_cols}, nnz={self.nnz})')
