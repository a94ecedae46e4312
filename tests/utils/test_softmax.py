import pytest
import torch

from kgsampler.utils._softmax import (HAS_TORCH_SCATTER, resolve_backend,
                                      scatter_softmax)


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
            not HAS_TORCH_SCATTER, reason='torch-scatter is not installed')),
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


@pytest.mark.skipif(not HAS_TORCH_SCATTER,
                    reason='torch-scatter is not installed')
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


def test_auto_backend():
    expected = 'torch_scatter' if HAS_TORCH_SCATTER else 'pyg'
    assert resolve_backend('auto') == expected


def test_errors():
    with pytest.raises(ValueError, match="'backend' must be one of"):
        scatter_softmax(torch.zeros(2), torch.zeros(2, dtype=torch.long),
                        backend='cuda')
    with pytest.raises(ValueError, match='1-D of the same length'):
        scatter_softmax(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long))
    if not HAS_TORCH_SCATTER:
        with pytest.raises(ImportError, match='torch-scatter'):
            resolve_backend('torch_scatter')
