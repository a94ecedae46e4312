import pytest
import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.utils._membership import Membership

METHODS = ['dense', 'bitmap', 'search']


def csr(dense):
    r, c = dense.nonzero().t()
    return UserItemCSR.from_pairs(r, c, dense.size(0), dense.size(1))


@pytest.fixture
def grid() -> torch.Tensor:
    r"""Three users, eleven items (``x``: positive); 33 pairs, so the bitmap
    spans five bytes and the last one is partly used::

              item 0 1 2 3 4 5 6 7 8 9 10
        user 0      x . . . . . . x x . .
        user 1      . . . . . . . . . . .
        user 2      . x . . . . . . . . x
    """
    dense = torch.zeros(3, 11, dtype=torch.bool)
    dense[0, [0, 7, 8]] = True
    dense[2, [1, 10]] = True
    return dense


@pytest.mark.parametrize('method', METHODS)
def test_every_pair_matches_the_dense_reference(grid, method):
    m = Membership(csr(grid), method)
    assert m.method == method
    users = torch.arange(3).view(-1, 1).expand(3, 11)
    items = torch.arange(11).view(1, -1).expand(3, 11)
    out = m(users, items)
    assert out.dtype == torch.bool
    assert torch.equal(out, grid)
    # broadcasting a column of users against a row of items
    assert torch.equal(m(torch.arange(3).view(-1, 1),
                         torch.arange(11).view(1, -1)), grid)
    # a flat batch and a 0-dim query
    assert torch.equal(m(torch.tensor([2, 2, 0]), torch.tensor([10, 9, 8])),
                       torch.tensor([True, False, True]))
    assert m(torch.tensor(0), torch.tensor(7)).item() is True


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('seed', range(3))
def test_random_matrices_match_the_dense_reference(method, seed):
    g = torch.Generator().manual_seed(seed)
    U, I = 13, 29
    dense = torch.rand(U, I, generator=g) < 0.3 * (seed + 1)
    users = torch.randint(U, (7, 50), generator=g)
    items = torch.randint(I, (7, 50), generator=g)
    out = Membership(csr(dense), method)(users, items)
    assert out.shape == (7, 50)
    assert torch.equal(out, dense[users, items])


@pytest.mark.parametrize('method', METHODS)
def test_no_positive_at_all(method):
    m = Membership(csr(torch.zeros(4, 5, dtype=torch.bool)), method)
    out = m(torch.tensor([[0, 3], [1, 2]]), torch.tensor([[4, 0], [1, 2]]))
    assert out.shape == (2, 2) and out.dtype == torch.bool
    assert not out.any()


@pytest.mark.parametrize('method', METHODS)
def test_every_pair_positive(method):
    m = Membership(csr(torch.ones(3, 9, dtype=torch.bool)), method)
    assert m(torch.arange(3).view(-1, 1), torch.arange(9).view(1, -1)).all()


def test_auto_choice_and_memory(grid):
    pos = csr(grid)
    assert Membership(pos).method == 'dense'
    assert Membership(pos, max_dense_bytes=33).method == 'dense'
    assert Membership(pos, max_dense_bytes=32).method == 'bitmap'
    assert Membership(pos, max_dense_bytes=32,
                      max_bitmap_bytes=5).method == 'bitmap'
    assert Membership(pos, max_dense_bytes=32,
                      max_bitmap_bytes=4).method == 'search'
    assert Membership(pos, 'dense').nbytes == 33  # one byte a pair
    assert Membership(pos, 'bitmap').nbytes == 5  # ceil(33 / 8)
    assert Membership(pos, 'search').nbytes == 5 * 8  # one int64 a positive
    # 32 pairs fill exactly four bytes
    full_bytes = csr(torch.eye(4, 8, dtype=torch.bool))
    assert Membership(full_bytes, 'bitmap').nbytes == 4
    assert Membership(full_bytes, max_dense_bytes=31,
                      max_bitmap_bytes=4).method == 'bitmap'


@pytest.mark.parametrize('method', METHODS)
def test_to_and_repr(grid, device, method):
    m = Membership(csr(grid), method).to(device)
    assert repr(m) == f"Membership(method='{method}')"
    users = torch.arange(3, device=device).view(-1, 1)
    items = torch.arange(11, device=device).view(1, -1)
    out = m(users, items)
    assert out.device == users.device
    assert torch.equal(out.cpu(), grid)


def test_errors(grid):
    with pytest.raises(ValueError, match=r"^Membership: 'method' must be "
                                         r"'auto', 'dense', 'bitmap' or "
                                         r"'search' \(got 'hash'\)$"):
        Membership(csr(grid), 'hash')
