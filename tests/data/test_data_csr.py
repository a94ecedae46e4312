import pytest
import torch

from kgsampler.data import UserItemCSR


def t(*values):
    return torch.tensor(values, dtype=torch.long)


@pytest.fixture
def csr() -> UserItemCSR:
    """Three users over 6 items, user 1 without items::

        u0: i1 i4
        u1: -
        u2: i0 i2 i5
    """
    return UserItemCSR(t(0, 2, 2, 5), t(1, 4, 0, 2, 5), 6)


def test_valid_csr(csr):
    assert (csr.num_rows, csr.num_cols, csr.nnz) == (3, 6, 5)
    assert csr.to_dense().sum().item() == 5
    pairs = UserItemCSR.from_pairs(t(2, 0, 2, 2, 0, 2), t(5, 4, 0, 2, 1, 0),
                                   3, 6)  # unsorted, one duplicate
    assert torch.equal(pairs.indptr, csr.indptr)
    assert torch.equal(pairs.indices, csr.indices)


@pytest.mark.parametrize('indptr,indices,num_cols,error,match', [
    (t(0, 4), t(7, 1, 3, 5), 8, ValueError, r"sorted and free of duplicates "
     r"\(got row 0: 7 then 1\)"),
    (t(0, 2, 2, 4), t(1, 5, 3, 3), 8, ValueError, r"\(got row 2: 3 then 3\)"),
    (t(0, 3, 1, 3), t(1, 2, 3), 8, ValueError,
     r"'indptr' must be non-decreasing \(got indptr\[1\]=3 > indptr\[2\]=1\)"),
    (t(1, 2), t(1, 2), 8, ValueError, r"'indptr\[0\]' must be 0 \(got 1\)"),
    (t(0, 2), t(1, 2), 8.5, TypeError, r"'num_cols' must be a non-negative "
     r"int \(got 8.5\)"),
    (t(0, 2), t(1, 9), 8, ValueError, r"column ids must lie in \[0, 8\)"),
    (t(0, 2), t(1, 2).int(), 8, TypeError, r"must be torch.long"),
    (t(0, 3), t(1, 2), 8, ValueError, r"'indptr\[-1\]' must equal"),
])
def test_malformed_csr(indptr, indices, num_cols, error, match):
    with pytest.raises(error, match=r'UserItemCSR: .*' + match):
        UserItemCSR(indptr, indices, num_cols)


@pytest.mark.parametrize('rows,cols,error,match', [
    (t(0), t(5), ValueError, r"column ids must lie in \[0, 3\) \(got range "
     r"\[5, 5\]\)"),
    (t(0), t(-1), ValueError, r"column ids must lie in \[0, 3\)"),
    (t(2), t(0), ValueError, r"row ids must lie in \[0, 2\)"),
    (t(0), torch.tensor([1.7]), TypeError, r"'cols' must be an integer "
     r"tensor \(got torch.float32\)"),
    (t(0, 1), t(0), ValueError, r".*same length \(got 2 and 1\)"),
])
def test_malformed_pairs(rows, cols, error, match):
    with pytest.raises(error, match=r'UserItemCSR.from_pairs: ' + match):
        UserItemCSR.from_pairs(rows, cols, 2, 3)
