import types

import pytest
import torch

from kgsampler.utils import _softmax
from kgsampler.utils._softmax import (HAS_TORCH_SCATTER, resolve_backend,
                                      scatter_softmax)

NO_SCATTER = ('torch-scatter is not installed: the torch_scatter softmax back '
              'end (the default of `auto` wherever it is installed) is NOT '
              'compared with the dense reference here')


def dense_reference(src, index, num_segments):
    out = torch.zeros_like(src)
    for r in range(num_segments):
        m = index == r
        if m.any():
            out[m] = torch.softmax(src[m], 0)
    return out


def backends():
    return [
        'pyg',
        pytest.param('torch_scatter', marks=pytest.mark.skipif(
            not HAS_TORCH_SCATTER, reason=NO_SCATTER)),
    ]


@pytest.mark.parametrize('backend', backends())
@pytest.mark.parametrize('num_segments', [1, 3, 17])
@pytest.mark.parametrize('seed', [0, 1])
def test_matches_dense_reference(backend, num_segments, seed):
    g = torch.Generator().manual_seed(seed)
    index = torch.randint(num_segments, (50, ), generator=g)
    src = torch.randn(50, generator=g) * 10
    out = scatter_softmax(src, index, num_segments, backend=backend)
    ref = dense_reference(src, index, num_segments)
    assert torch.allclose(out, ref, atol=1e-6)
    sums = torch.zeros(num_segments).index_add_(0, index, out)
    present = torch.bincount(index, minlength=num_segments) > 0
    assert torch.allclose(sums[present], torch.ones(int(present.sum())))


@pytest.mark.skipif(not HAS_TORCH_SCATTER, reason=NO_SCATTER)
def test_backends_agree_with_gradients():
    g = torch.Generator().manual_seed(0)
    index = torch.randint(5, (40, ), generator=g)
    src = torch.randn(40, generator=g)
    outs, grads = [], []
    for b in ('pyg', 'torch_scatter'):
        x = src.clone().requires_grad_()
        y = scatter_softmax(x, index, 5, backend=b)
        (y * torch.arange(40.)).sum().backward()
        outs.append(y.detach())
        grads.append(x.grad)
    assert torch.allclose(outs[0], outs[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_large_scores_are_stable():
    out = scatter_softmax(torch.tensor([1000., 1001., -1000.]),
                          torch.tensor([0, 0, 1]), backend='pyg')
    assert torch.isfinite(out).all()
    assert out[2] == 1


def test_empty_input():
    out = scatter_softmax(torch.empty(0), torch.empty(0, dtype=torch.long))
    assert out.numel() == 0


def test_auto_backend(monkeypatch):
    expected = 'torch_scatter' if HAS_TORCH_SCATTER else 'pyg'
    assert resolve_backend('auto') == expected
    assert resolve_backend('pyg') == 'pyg'
    monkeypatch.setattr(_softmax, 'HAS_TORCH_SCATTER', True)
    assert resolve_backend('auto') == 'torch_scatter'
    assert resolve_backend('torch_scatter') == 'torch_scatter'
    monkeypatch.setattr(_softmax, 'HAS_TORCH_SCATTER', False)
    assert resolve_backend('auto') == 'pyg'


def fake_torch_scatter(calls):
    """A stand-in for :mod:`torch_scatter` whose :func:`scatter_softmax` is
    the dense reference (recording its arguments): runs the dispatch of the
    :obj:`"torch_scatter"` branch where the extension is not installed."""
    def scatter_softmax(src, index, dim=-1, dim_size=None):
        calls.append({'dim': dim, 'dim_size': dim_size})
        return dense_reference(src, index, dim_size)
    return types.SimpleNamespace(scatter_softmax=scatter_softmax)


@pytest.mark.parametrize('num_segments', [None, 4, 9])
def test_torch_scatter_branch_passes_the_scores_through(monkeypatch,
                                                        num_segments):
    calls = []
    monkeypatch.setattr(_softmax, '_torch_scatter', fake_torch_scatter(calls))
    monkeypatch.setattr(_softmax, 'HAS_TORCH_SCATTER', True)
    g = torch.Generator().manual_seed(0)
    index = torch.tensor([3, 0, 3, 1, 0, 3, 2, 1])
    src = torch.randn(8, generator=g) * 5
    for backend in ('auto', 'torch_scatter'):
        out = scatter_softmax(src, index, num_segments, backend=backend)
        assert torch.allclose(out, dense_reference(src, index, 4), atol=1e-6)
    assert calls == [{'dim': 0, 'dim_size': num_segments or 4}] * 2


def test_errors(monkeypatch):
    with pytest.raises(ValueError, match=r"^scatter_softmax: 'backend' must "
                                         r"be one of \('auto', "
                                         r"'torch_scatter', 'pyg'\) \(got "
                                         r"'cuda'\)$"):
        scatter_softmax(torch.zeros(2), torch.zeros(2, dtype=torch.long),
                        backend='cuda')
    with pytest.raises(ValueError, match=r"'src' and 'index' must be 1-D of "
                                         r"the same length \(got shapes "
                                         r"\(2, 2\) and \(2,\)\)"):
        scatter_softmax(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\(got shapes \(3,\) and "
                                         r"\(2,\)\)"):
        scatter_softmax(torch.zeros(3), torch.zeros(2, dtype=torch.long),
                        backend='pyg')
    monkeypatch.setattr(_softmax, 'HAS_TORCH_SCATTER', False)
    with pytest.raises(ImportError, match=r"backend='torch_scatter' needs the "
                                          r"'torch-scatter' package"):
        resolve_backend('torch_scatter')
    with pytest.raises(ImportError, match="torch-scatter"):
        scatter_softmax(torch.zeros(2), torch.zeros(2, dtype=torch.long),
                        backend='torch_scatter')
