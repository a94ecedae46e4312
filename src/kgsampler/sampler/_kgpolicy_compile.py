r"""KGPolicy, part 5: fused dense kernels of the walk and of the closed-form
policy gradient, optionally through :func:`torch.compile` (private).

With :obj:`KGPolicy(compile=True)` the attention query and the
closed-form gradient pieces of :mod:`~kgsampler.sampler._kgpolicy_gradient`
run as compiled kernels (inductor's C++ back end on the CPU, dynamic
shapes): one loop per chain instead of one operator (and one temporary) per
step; a hop's masked softmax, inverse-CDF draw, log-probability and entropy
run fused in one function (:func:`hop_sample`, eager: see :obj:`_EAGER`).
Its uniform numbers are taken from the global stream at the same places and
in the same number as the operator-by-operator walk, so that a seed gives
the same walks up to float rounding (the dense masked softmax here and the
scatter softmax of that walk differ in the last bits).

The sparse products (SDDMM, SpMM) stay eager: they are library calls
already. Where :func:`torch.compile` or a C++ compiler is missing, or a
compilation fails, the same kernels run eagerly (:func:`build_kernels`
warns once).
"""
from __future__ import annotations

import os
import shutil
import warnings
from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.sampler import _kgpolicy_gradient as kg_gradient

#: The values of :obj:`KGPolicy(compile=...)`.
COMPILE_MODES = (False, True, 'auto')


def hop_sample(logits: Tensor, valid: Tensor, u: Optional[Tensor]
               ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""One hop of the walk after its logits, fused: the softmax over each
    row's valid candidates, the column drawn by inverting the row's
    cumulative distribution with the uniform number :obj:`u` (its argmax
    when :obj:`u` is :obj:`None`), the log-probability of that column and
    the row-entropy sums of
    :func:`~kgsampler.sampler._kgpolicy_attention.entropy_ratio`. The same
    values as :func:`~kgsampler.sampler._kgpolicy_attention.masked_softmax`,
    :func:`~kgsampler.sampler._kgpolicy_attention.choose`,
    :func:`~kgsampler.sampler._kgpolicy_attention.gather_log_prob` and
    :func:`~kgsampler.sampler._kgpolicy_attention.entropy_ratio` up to float
    rounding; :obj:`-1` and log-probability 0 for rows without a valid
    candidate.

    Shapes: **logits, valid** :math:`(R, C)`, **u** :math:`(R, 1)`;
    outputs **prob** :math:`(R, C)`, **choice** :math:`(R)`, **log_prob**
    :math:`(R)`, **entropy** :math:`(2)`."""
    masked = logits.masked_fill(~valid, -float('inf'))
    top = masked.amax(1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.where(valid, torch.exp(logits - top), torch.zeros_like(logits))
    s = e.sum(1, keepdim=True)
    p = e / torch.where(s > 0, s, torch.ones_like(s))
    if u is None:
        has = s.view(-1) > 0
        idx = p.argmax(1)
    else:
        cdf = p.cumsum(1)
        total = cdf[:, -1:]
        has = total.view(-1) > 0
        idx = (cdf < (1.0 - u) * total).sum(1)
    idx = torch.where(has, idx, torch.full_like(idx, -1))
    chosen = p.gather(1, idx.clamp(min=0).view(-1, 1)).view(-1)
    lp = torch.where(has, torch.log(chosen.clamp(min=1e-30)),
                     torch.zeros_like(chosen))
    n = valid.sum(1)
    keep = n >= 2
    ent = -(p * torch.log(p.clamp(min=1e-30))).sum(1)
    ratio = ent / torch.log(n.clamp(min=2).to(p.dtype))
    ent = torch.stack([ratio.masked_fill(~keep, 0.).sum(),
                       keep.sum().to(p.dtype)])
    return p, idx, lp, ent


def attention_query(h_user: Tensor, h_src: Tensor,
                    negative_slope: float) -> Tensor:
    r""":func:`~kgsampler.sampler._kgpolicy_attention.attention_query`
    written without in-place writes (compiles to one loop).

    Shapes: **h_user, h_src** :math:`(R, d)`, output :math:`(R, 2d)`."""
    a = negative_slope
    t = F.relu(h_src) * (1 - a)
    return torch.cat([h_user * (t + a * h_src), h_user * (t - h_src)], 1)


class _Kernel:
    r"""A compiled function that runs its eager twin instead (with one
    warning) once compiling or running it fails."""
    def __init__(self, fn: Callable, compiled: Callable, owner: 'Kernels'):
        self.fn, self.compiled, self.owner = fn, compiled, owner

    def __call__(self, *args):
        if self.owner.compiled:
            # dynamo cannot trace a view of a sparse tensor (the SDDMM's
            # values): it gets a dense copy
            args = tuple(a.clone() if isinstance(a, Tensor) and
                         a._base is not None and
                         a._base.layout != torch.strided else a
                         for a in args)
            try:
                return self.compiled(*args)
            except Exception as e:  # inductor/dynamo failures of any kind
                self.owner.fail(e)
        return self.fn(*args)


class Kernels:
    r"""The fused kernels of one :class:`KGPolicy`: :func:`hop_sample`,
    :func:`attention_query`, and :func:`~kgsampler.sampler.
    _kgpolicy_gradient.logit_grad`, :func:`~kgsampler.sampler.
    _kgpolicy_gradient.attention_query_backward`, :func:`~kgsampler.
    sampler._kgpolicy_gradient.attention_keys_backward`; compiled when
    :obj:`compiled` is :obj:`True` (all but those named in :obj:`_EAGER`).

    Args:
        compiled (bool): Compile them (:func:`torch.compile`, dynamic
            shapes) or run them eagerly.
    """
    FUNCTIONS = {
        'hop_sample': hop_sample,
        'attention_query': attention_query,
        'logit_grad': kg_gradient.logit_grad,
        'attention_query_backward': kg_gradient.attention_query_backward,
        'attention_keys_backward': kg_gradient.attention_keys_backward,
    }

    def __init__(self, compiled: bool):
        self.compiled = bool(compiled)
        for name, fn in self.FUNCTIONS.items():
            setattr(self, name, _Kernel(fn, _compiled(name, fn)
                                        if self.compiled else fn, self))

    def fail(self, error: Exception) -> None:
        r"""Switches to the eager kernels, with a warning."""
        self.compiled = False
        warnings.warn(f"KGPolicy: torch.compile failed ({type(error).__name__}"
                      f": {str(error).splitlines()[0] if str(error) else ''}"
                      f"); running the kernels eagerly", RuntimeWarning,
                      stacklevel=3)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(compiled={self.compiled})'


#: One compiled function per kernel, shared by every KGPolicy of the
#: process (compiled on its first call).
_CACHE = {}

#: Kernels left eager even when compiling: the row-wise reductions of
#: :func:`hop_sample` were no faster compiled with dynamic shapes (inductor
#: C++, one thread, ml-1m rows), and with static shapes every epoch brought
#: new row counts (the walk-ahead chunks shift against the epoch's batches):
#: recompilations that cost more than they saved. Fused, it still does
#: fewer operations than the operator-by-operator hop.
_EAGER = ('hop_sample', )


def _compiled(name: str, fn: Callable) -> Callable:
    if name in _EAGER:
        return fn
    if name not in _CACHE:
        _CACHE[name] = torch.compile(fn, dynamic=True)
    return _CACHE[name]


def compile_unavailable() -> Optional[str]:
    r"""Why :func:`torch.compile` cannot run the kernels here (:obj:`None`
    when it can): no :func:`torch.compile`, a Python that dynamo does not
    support, or no C++ compiler for inductor's CPU back end."""
    if not callable(getattr(torch, 'compile', None)):
        return 'this torch has no torch.compile'
    try:
        import torch._dynamo as dynamo
        if not dynamo.is_dynamo_supported():
            return 'torch.compile does not support this Python'
    except Exception as e:  # pragma: no cover - broken installs
        return f'torch._dynamo cannot be imported ({type(e).__name__})'
    cxx = os.environ.get('CXX')
    if not any(shutil.which(c) for c in ([cxx] if cxx else []) +
               ['g++', 'c++', 'clang++']):
        return 'no C++ compiler (g++, c++ or clang++) for inductor'
    return None


def build_kernels(mode: Union[bool, str]) -> Kernels:
    r"""The kernels for :obj:`KGPolicy(compile=mode)`: compiled for
    :obj:`True` and :obj:`"auto"` where :func:`compile_unavailable` finds
    nothing missing; otherwise eager (with a warning for :obj:`True`)."""
    if mode is False:
        return Kernels(False)
    why = compile_unavailable()
    if why is not None:
        if mode is True:
            warnings.warn(f"KGPolicy: compile=True but {why}; running the "
                          f"kernels eagerly", RuntimeWarning, stacklevel=3)
        return Kernels(False)
    return Kernels(True)
