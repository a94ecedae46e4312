"""Segment ("scatter") softmax over flat (row, candidate) pairs, with a choice
of back end.

KGPolicy's attention normalises scores over candidate sets of variable size
(a node's pruned neighbours minus the path's history, the user's positives and
padding). The scores are stored flat, one entry per valid (row, candidate)
pair, with :obj:`index` naming the row; the softmax is taken within each row.

Two back ends give the same result (up to float rounding):

* :obj:`"torch_scatter"`: :func:`torch_scatter.scatter_softmax`, used by
  default when :mod:`torch_scatter` is importable;
* :obj:`"pyg"`: :func:`torch_geometric.utils.softmax`, always available.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor

try:  # optional fast path
    import torch_scatter as _torch_scatter
except (ImportError, OSError):  # pragma: no cover - depends on the install
    _torch_scatter = None

#: Whether :mod:`torch_scatter` could be imported.
HAS_TORCH_SCATTER: bool = _torch_scatter is not None

#: Back ends accepted by :func:`scatter_softmax`.
BACKENDS = ('auto', 'torch_scatter', 'pyg')


def resolve_backend(backend: str = 'auto') -> str:
    r"""Maps :obj:`"auto"` to the back end that will be used and checks that
    an explicitly requested one is available."""
    if backend not in BACKENDS:
        raise ValueError(f"scatter_softmax: 'backend' must be one of "
                         f"{BACKENDS} (got {backend!r})")
    if backend == 'auto':
        return 'torch_scatter' if HAS_TORCH_SCATTER else 'pyg'
    if backend == 'torch_scatter' and not HAS_TORCH_SCATTER:
        raise ImportError("scatter_softmax: backend='torch_scatter' needs the "
                          "'torch-scatter' package (pip install "
                          "kgsampler[scatter]); use backend='pyg' or 'auto'")
    return backend


def scatter_softmax(src: Tensor, index: Tensor,
                    num_segments: Optional[int] = None,
                    backend: str = 'auto') -> Tensor:
    r"""Softmax of :obj:`src` within each group of entries that share the same
    :obj:`index`:

    .. math::
        \mathrm{out}_k = \frac{\exp(s_k - m_{r})}
        {\sum_{j : \mathrm{index}_j = r} \exp(s_j - m_{r})},
        \quad r = \mathrm{index}_k,\ m_r = \max_{j : \mathrm{index}_j = r} s_j

    Args:
        src (torch.Tensor): Flat scores.
        index (torch.Tensor): Row (segment) of each score, :obj:`torch.long`;
            need not be sorted.
        num_segments (int, optional): Number of rows; inferred from
            :obj:`index` if omitted.
        backend (str, optional): :obj:`"auto"`, :obj:`"torch_scatter"` or
            :obj:`"pyg"`. (default: :obj:`"auto"`)

    Shapes:
        - **src, index:** :math:`(P)`
        - **output:** :math:`(P)`, sums to 1 within each non-empty row
    """
    backend = resolve_backend(backend)
    if src.dim() != 1 or index.shape != src.shape:
        raise ValueError(f"scatter_softmax: 'src' and 'index' must be 1-D of "
                         f"the same length (got shapes {tuple(src.shape)} and "
                         f"{tuple(index.shape)})")
    if src.numel() == 0:
        return src.clone()
    if num_segments is None:
        num_segments = int(index.max()) + 1
    if backend == 'torch_scatter':
        return _torch_scatter.scatter_softmax(src, index, dim=0,
                                              dim_size=num_segments)
    from torch_geometric.utils import softmax
    return softmax(src, index, num_nodes=num_segments, dim=0)
