"""Per-user positive item sets stored as a compressed sparse row (CSR) matrix."""
from __future__ import annotations

import numbers
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
        name = self.__class__.__name__
        if not isinstance(self.indptr, Tensor) or not isinstance(
                self.indices, Tensor):
            raise TypeError(f"{name}: 'indptr' and 'indices' must be tensors "
                            f"(got {type(self.indptr).__name__} and "
                            f"{type(self.indices).__name__})")
        if isinstance(self.num_cols, bool) or not isinstance(
                self.num_cols, numbers.Integral) or self.num_cols < 0:
            raise TypeError(f"{name}: 'num_cols' must be a non-negative int "
                            f"(got {self.num_cols!r})")
        self.num_cols = int(self.num_cols)
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
        if self.indices.dim() != 1:
            raise ValueError(f"{name}: 'indices' must be 1-D (got shape "
                             f"{tuple(self.indices.shape)})")
        if int(self.indptr[0]) != 0:
            raise ValueError(f"{name}: 'indptr[0]' must be 0 (got "
                             f"{int(self.indptr[0])})")
        step = self.indptr[1:] - self.indptr[:-1]
        if step.numel() > 0 and int(step.min()) < 0:
            row = int((step < 0).nonzero()[0, 0])
            raise ValueError(f"{name}: 'indptr' must be non-decreasing (got "
                             f"indptr[{row}]={int(self.indptr[row])} > "
                             f"indptr[{row + 1}]={int(self.indptr[row + 1])})")
        if self.indices.numel() > 0 and (int(self.indices.min()) < 0 or int(
                self.indices.max()) >= self.num_cols):
            raise ValueError(f"{name}: column ids must lie "
                             f"in [0, {self.num_cols}) (got range "
                             f"[{int(self.indices.min())}, "
                             f"{int(self.indices.max())}])")
        if self.indices.numel() > 1:
            # sorted and duplicate-free within each row: every step inside a
            # row rises (a row's first entry may be anything)
            rise = self.indices[1:] > self.indices[:-1]
            new_row = torch.zeros(self.indices.numel(), dtype=torch.bool,
                                  device=self.indices.device)
            starts = self.indptr[:-1][step > 0]
            new_row[starts] = True
            bad = ~(rise | new_row[1:])
            if bool(bad.any()):
                k = int(bad.nonzero()[0, 0]) + 1
                row = int(torch.searchsorted(self.indptr, torch.tensor(
                    [k], device=self.indptr.device), right=True)[0]) - 1
                raise ValueError(
                    f"{name}: the column ids of each row must be sorted and "
                    f"free of duplicates (got row {row}: "
                    f"{int(self.indices[k - 1])} then {int(self.indices[k])}"
                    f"); build it with {name}.from_pairs")

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
        for arg, t in (('rows', rows), ('cols', cols)):
            if not isinstance(t, Tensor) or t.is_floating_point() or \
                    t.is_complex() or t.dtype == torch.bool:
                raise TypeError(f"{cls.__name__}.from_pairs: '{arg}' must be "
                                f"an integer tensor (got "
                                f"{getattr(t, 'dtype', type(t).__name__)})")
        for arg, n in (('num_rows', num_rows), ('num_cols', num_cols)):
            if isinstance(n, bool) or not isinstance(
                    n, numbers.Integral) or n < 0:
                raise TypeError(f"{cls.__name__}.from_pairs: '{arg}' must be "
                                f"a non-negative int (got {n!r})")
        num_rows, num_cols = int(num_rows), int(num_cols)
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
        if cols.numel() > 0 and (int(cols.min()) < 0
                                 or int(cols.max()) >= num_cols):
            raise ValueError(f"{cls.__name__}.from_pairs: column ids must lie "
                             f"in [0, {num_cols}) (got range "
                             f"[{int(cols.min())}, {int(cols.max())}])")
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
        r"""The sorted item ids of row :obj:`u` (a view of
        :obj:`indices`).

        Args:
            u (int): Row (user) id.

        Shapes:
            - **output:** :math:`(\deg(u))`
        """
        return self.indices[int(self.indptr[u]):int(self.indptr[u + 1])]

    def gather_rows(self, rows: Tensor) -> 'tuple[Tensor, Tensor]':
        r"""The entries of the given rows, flattened: returns
        :obj:`(local_row, col)` where :obj:`local_row` indexes into
        :obj:`rows`.

        Args:
            rows (torch.Tensor): Row (user) ids, :obj:`torch.long`.

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
