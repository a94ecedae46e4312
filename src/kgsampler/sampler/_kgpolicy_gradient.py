r"""KGPolicy, part 3: the REINFORCE policy gradient with
respect to the cached representations (private).

* :func:`pair_log_prob`: differentiable log-probabilities of the chosen
  candidates over the flat valid (row, candidate) pairs (SDDMM forward,
  sparse-dense backward, scatter softmax): the autograd path.
* :func:`logit_grad`, :func:`pair_matmul`, :func:`pair_matmul_t`,
  :func:`attention_query_backward`, :func:`attention_keys_backward`: the
  same gradient in closed form (:math:`p - \mathrm{onehot}` on the logits,
  then through the key/query rewrite), used when the walk's probabilities
  are at hand.
"""
from __future__ import annotations

import warnings
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.utils._softmax import scatter_softmax

class _PairLogits(torch.autograd.Function):
    r""":math:`s_k = \mathbf{q}_{row_k}^{\top}\mathbf{K}_{col_k}` for flat
    (row, column) pairs: an SDDMM forward; the backward is two sparse-dense
    products, :math:`\partial\mathbf{q} = \mathbf{A}\mathbf{K}` and
    :math:`\partial\mathbf{K} = \mathbf{A}^{\top}\mathbf{q}` with
    :math:`\mathbf{A}` the pairs weighted by the incoming gradient. No
    per-pair feature tensor is built in either direction."""
    @staticmethod
    def forward(ctx, query: Tensor, keys: Tensor, crow: Tensor, col: Tensor,
                row: Tensor):
        ctx.save_for_backward(query, keys, crow, col, row)
        M, N = query.size(0), keys.size(0)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', UserWarning)
            pattern = torch.sparse_csr_tensor(
                crow, col, query.new_zeros(col.numel()), (M, N))
            return torch.sparse.sampled_addmm(pattern, query, keys.t(),
                                              beta=0.0).values().clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        query, keys, crow, col, row = ctx.saved_tensors
        grad = grad.contiguous()
        d_query = d_keys = None
        if ctx.needs_input_grad[0]:
            d_query = _csr_mm(crow, col, grad, keys)
        if ctx.needs_input_grad[1]:
            d_keys = _csr_t_mm(row, col, grad, query, keys.size(0))
        return d_query, d_keys, None, None, None


def _csr_mm(crow: Tensor, col: Tensor, values: Tensor,
            dense: Tensor) -> Tensor:
    r""":math:`\mathbf{A}\,\mathrm{dense}` for the CSR matrix
    :math:`\mathbf{A}` (:obj:`crow`, :obj:`col`, :obj:`values`) with
    :obj:`dense.size(0)` columns."""
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        A = torch.sparse_csr_tensor(crow, col, values.to(dense.dtype),
                                    (crow.numel() - 1, dense.size(0)))
        return A @ dense


def _csr_t_mm(row: Tensor, col: Tensor, values: Tensor, dense: Tensor,
              num_cols: int) -> Tensor:
    r""":math:`\mathbf{A}^{\top}\mathrm{dense}` for the pairs
    (:obj:`row`, :obj:`col`, :obj:`values`) of :math:`\mathbf{A}`, which has
    :obj:`num_cols` columns; output :math:`(\text{num\_cols}, D)`."""
    A = torch.sparse_coo_tensor(torch.stack([col, row]),
                                values.to(dense.dtype),
                                (num_cols, dense.size(0)))
    return torch.sparse.mm(A, dense)


def pair_log_prob(keys: Tensor, query: Tensor, cand: Tensor, choice: Tensor,
                  backend: str = 'auto') -> Tensor:
    r"""Differentiable :math:`\log p` of the chosen column of each row,
    with :math:`p` the scatter softmax over the row's valid candidates
    (:obj:`>= 0`) of the logits :math:`\mathbf{k}_c^{\top}\mathbf{q}_r`
    (:func:`attention_keys`, :func:`attention_query`). The logits are
    computed for the flat valid (row, candidate) pairs only (SDDMM forward,
    sparse-dense backward), and go to :func:`scatter_softmax` as they are.
    0 where :obj:`choice` is :obj:`-1`; :obj:`backend` :obj:`"dense"` means
    the default scatter back end here.

    Shapes: **keys** :math:`(N, 2d)`, **query** :math:`(R, 2d)`, **cand**
    :math:`(R, C)`, **choice** :math:`(R)`, output :math:`(R)`."""
    R = cand.size(0)
    valid = cand >= 0
    count = valid.sum(1)
    crow = torch.zeros(R + 1, dtype=torch.long, device=cand.device)
    crow[1:] = torch.cumsum(count, 0)
    col = cand.masked_select(valid)
    if col.numel() == 0:
        return query.new_zeros(R) * query.sum(1)
    row = torch.repeat_interleave(torch.arange(R, device=cand.device), count)
    logits = _PairLogits.apply(query, keys, crow, col, row)
    p = scatter_softmax(logits, row, R,
                        'auto' if backend == 'dense' else backend)
    has = choice >= 0
    rank = valid.cumsum(1).gather(1, choice.clamp(min=0).view(-1, 1))
    pos = (crow[:-1] + rank.view(-1) - 1).clamp(0, col.numel() - 1)
    logp = torch.log(p.clamp(min=1e-30))
    lp = logp[pos]
    return torch.where(has, lp, torch.zeros_like(lp))


def attention_query_backward(h_user: Tensor, h_src: Tensor, grad: Tensor,
                             negative_slope: float = 0.2
                             ) -> Tuple[Tensor, Tensor]:
    r"""Gradients of :func:`attention_query` with respect to
    :obj:`h_user` and :obj:`h_src` given the gradient :obj:`grad` of its
    output, in closed form (no autograd graph). With
    :math:`\mathbf{g} = [\mathbf{A}, \mathbf{B}]` and :math:`s = h_{src}`:
    :math:`\partial h_u = \mathbf{A} \odot (a s + (1 - a) s^+) +
    \mathbf{B} \odot ((1 - a) s^- - a s)` and :math:`\partial s = h_u \odot
    (\mathbf{A} \odot (a + (1 - a) [s > 0]) - \mathbf{B} \odot (a + (1 - a)
    [s < 0]))`.

    Shapes: **h_user, h_src** :math:`(R, d)`, **grad** :math:`(R, 2d)`,
    outputs :math:`(R, d)` each."""
    a = negative_slope
    A, B = grad.chunk(2, dim=1)
    t = F.relu(h_src) * (1 - a)  # as in attention_query
    d_user = A * (t + a * h_src) + B * (t - h_src)
    pos = (h_src > 0).to(A.dtype).mul_(1 - a).add_(a)
    neg = (h_src < 0).to(B.dtype).mul_(1 - a).add_(a)
    d_src = h_user * (A * pos - B * neg)
    return d_user, d_src


def attention_keys_backward(h: Tensor, grad: Tensor) -> Tensor:
    r"""Gradient of :func:`attention_keys` with respect to :obj:`h` given
    the gradient :obj:`grad` of the keys (closed form).

    Shapes: **h** :math:`(N, d)`, **grad** :math:`(N, 2d)`, output
    :math:`(N, d)`."""
    A, B = grad.chunk(2, dim=1)
    return A * (h > 0).to(A.dtype) - B * (h < 0).to(B.dtype)


def logit_grad(prob: Tensor, choice: Tensor, coef: Tensor) -> Tensor:
    r"""Gradient of :math:`-c_r \log p_r(\text{choice}_r)` with respect to
    the logits of a row-wise softmax, :math:`c_r (p - \mathrm{onehot})`
    (0 on rows without a choice, :obj:`-1`).

    Shapes: **prob** :math:`(R, C)`, **choice, coef** :math:`(R)`, output
    :math:`(R, C)`."""
    g = prob.clone()
    has = (choice >= 0).to(g.dtype)
    g.scatter_add_(1, choice.clamp(min=0).view(-1, 1), -has.view(-1, 1))
    return g * (coef * has).view(-1, 1)


def pair_matmul(cand: Tensor, values: Tensor, dense: Tensor) -> Tensor:
    r""":math:`\mathbf{Y}_r = \sum_c \mathrm{values}_{rc}\,
    \mathrm{dense}_{\mathrm{cand}_{rc}}`: one sparse-dense product over the
    fixed :obj:`(R, C)` pattern (padding :obj:`-1` must carry value 0).

    Shapes: **cand, values** :math:`(R, C)`, **dense** :math:`(N, D)`,
    output :math:`(R, D)`."""
    R, C = cand.shape
    crow = torch.arange(R + 1, device=cand.device) * C
    return _csr_mm(crow, cand.clamp(min=0).reshape(-1), values.reshape(-1),
                   dense)


def pair_matmul_t(cand: Tensor, values: Tensor, dense: Tensor,
                  num_nodes: int) -> Tensor:
    r"""The transposed product, :math:`\mathbf{Z}_n = \sum_{(r, c):
    \mathrm{cand}_{rc} = n} \mathrm{values}_{rc}\,\mathrm{dense}_r` (padding
    :obj:`-1` must carry value 0).

    Shapes: **cand, values** :math:`(R, C)`, **dense** :math:`(R, D)`,
    output :math:`(N, D)`."""
    R, C = cand.shape
    keep = values.reshape(-1) != 0
    row = torch.arange(R, device=cand.device).repeat_interleave(C)[keep]
    return _csr_t_mm(row, cand.reshape(-1)[keep], values.reshape(-1)[keep],
                     dense, num_nodes)
