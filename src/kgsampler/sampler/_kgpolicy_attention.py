r"""KGPolicy, part 2: the walk's neighbour pruning and two-stage attention
of the paper, without gradients (private).

* :func:`prune`: keeps the :math:`n_2` neighbours with the largest
  :math:`\mathbf{h}_e^{\top}\mathbf{h}_{e'}` (neighbour pruning).
* :func:`attention_logits` (direct) and :func:`attention_keys` /
  :func:`attention_query` / :func:`attention_logits_keys` (its exact
  key/query rewrite, one SDDMM a hop): the scores
  :math:`\mathbf{h}_u^{\top}\mathrm{LeakyReLU}(\mathbf{h}_{e}\odot
  \mathbf{h}_{e'})` of both hops.
* :func:`masked_softmax`, :func:`choose`: the softmax over each row's valid
  candidates and the draw from it.
* :func:`entropy_ratio`, :func:`row_correlation`: what the diagnostics
  measure (entropy against its maximum; dependence on the user).
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from kgsampler.utils._softmax import scatter_softmax

def dedupe(cand: Tensor) -> Tensor:
    r"""Sets repeated entries of each row to :obj:`-1` (keeps the first).

    Shapes: **cand** :math:`(R, C)`, output :math:`(R, C)`."""
    if cand.size(1) < 2:
        return cand
    val, idx = torch.sort(cand, dim=1, stable=True)
    dup = torch.zeros_like(cand, dtype=torch.bool)
    dup[:, 1:] = (val[:, 1:] == val[:, :-1]) & (val[:, 1:] >= 0)
    mask = torch.zeros_like(dup).scatter_(1, idx, dup)
    return cand.masked_fill(mask, -1)


def rows(h: Tensor, index: Tensor) -> Tensor:
    r""":obj:`h[index]` through :func:`torch.index_select`, whose backward
    (an :obj:`index_add_`) is much faster on CPU than that of advanced
    indexing. Shapes: **index** :math:`(*)`, output :math:`(*, d)`."""
    return h.index_select(0, index.reshape(-1)).view(*index.shape, -1)


def prune(h: Tensor, src: Tensor, cand: Tensor, k: int) -> Tensor:
    r"""Keeps, per row, the :obj:`k` valid candidates (:obj:`>= 0`) with the
    largest :math:`\mathbf{h}_{src}^{\top}\mathbf{h}_{cand}`; :obj:`-1` pads
    rows with fewer. Scores are computed only for the valid entries of rows
    that hold more than :obj:`k` of them. Not differentiable (a selection).

    Shapes: **src** :math:`(R)`, **cand** :math:`(R, C)`, output
    :math:`(R, \min(k, C))`."""
    if cand.size(1) <= k:
        return cand
    with torch.no_grad():
        valid = cand >= 0
        score = torch.zeros(cand.shape, device=cand.device)
        score = score.masked_fill(~valid, -float('inf'))
        count = valid.sum(1)
        full = count > k
        mask = valid & full.unsqueeze(1)
        if bool(full.any()):
            # one SDDMM over the (row, candidate) pattern: far cheaper than
            # gathering both sides of every pair
            crow = torch.zeros(int(full.sum()) + 1, dtype=torch.long,
                               device=cand.device)
            crow[1:] = torch.cumsum(count[full], 0)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore', UserWarning)
                pattern = torch.sparse_csr_tensor(
                    crow, cand.masked_select(mask),
                    torch.zeros(int(crow[-1]), dtype=h.dtype,
                                device=cand.device),
                    (int(full.sum()), h.size(0)))
                val = torch.sparse.sampled_addmm(pattern, h[src[full]], h.t(),
                                                 beta=0.0).values()
            score = score.masked_scatter(mask, val.to(score.dtype))
        top, idx = score.topk(k, dim=1)
        return cand.gather(1, idx).masked_fill(top == -float('inf'), -1)


def attention_logits(h: Tensor, users: Tensor, src: Tensor, cand: Tensor,
                     negative_slope: float = 0.2) -> Tensor:
    r"""The neighbour attention score
    :math:`\mathbf{h}_u^{\top}\,\mathrm{LeakyReLU}(\mathbf{h}_{src} \odot
    \mathbf{h}_{cand})` (padding :obj:`-1` reads node 0; mask it after).

    Shapes: **users, src** :math:`(R)`, **cand** :math:`(R, C)`, output
    :math:`(R, C)`."""
    z = F.leaky_relu(rows(h, src).unsqueeze(1) * rows(h, cand.clamp(min=0)),
                     negative_slope)
    # multiply-and-sum: ~3x faster than a batched mat-vec (bmm) on CPU
    return (z * rows(h, users).unsqueeze(1)).sum(-1)


def attention_keys(h: Tensor) -> Tensor:
    r"""Keys :math:`\mathbf{k}_c = [\mathrm{ReLU}(\mathbf{h}_c),
    \mathrm{ReLU}(-\mathbf{h}_c)]` of every node for
    :func:`attention_query` (computed once per refresh).

    Shapes: **h** :math:`(N, d)`, output :math:`(N, 2d)`."""
    return torch.cat([F.relu(h), F.relu(-h)], 1)


def attention_query(h_user: Tensor, h_src: Tensor,
                    negative_slope: float = 0.2) -> Tensor:
    r"""Queries :math:`\mathbf{q}` such that :math:`\mathbf{k}_c^{\top}
    \mathbf{q} = \mathbf{h}_u^{\top}\mathrm{LeakyReLU}(\mathbf{h}_{src}
    \odot \mathbf{h}_c)` exactly, with :math:`\mathbf{k}_c` from
    :func:`attention_keys`. With :math:`a` the slope,
    :math:`\mathrm{LeakyReLU}(x) = a x + (1 - a)\mathrm{ReLU}(x)`,
    :math:`x = x^+ - x^-` and :math:`\mathrm{ReLU}(s c) = s^+ c^+ + s^- c^-`
    give

    .. math::
        \mathbf{q} = [\mathbf{h}_u \odot (a\,\mathbf{h}_{src} + (1 - a)\,
        \mathbf{h}_{src}^+),\ \mathbf{h}_u \odot (-a\,\mathbf{h}_{src} +
        (1 - a)\,\mathbf{h}_{src}^-)].

    With :math:`\mathbf{t} = (1 - a)\,\mathbf{h}_{src}^+` and
    :math:`\mathbf{h}_{src}^- = \mathbf{h}_{src}^+ - \mathbf{h}_{src}`,
    this is :math:`[\mathbf{h}_u \odot (\mathbf{t} + a\,\mathbf{h}_{src}),\
    \mathbf{h}_u \odot (\mathbf{t} - \mathbf{h}_{src})]` (fewer operations).

    Shapes: **h_user, h_src** :math:`(R, d)`, output :math:`(R, 2d)`."""
    a = negative_slope
    t = F.relu(h_src) * (1 - a)
    if torch.is_grad_enabled() and (h_user.requires_grad or
                                    h_src.requires_grad):
        return torch.cat([h_user * (t + a * h_src), h_user * (t - h_src)], 1)
    d = h_src.size(1)  # no autograd: both halves written in place
    out = torch.empty(h_src.size(0), 2 * d, dtype=t.dtype, device=t.device)
    torch.add(t, h_src, alpha=a, out=out[:, :d]).mul_(h_user)
    torch.sub(t, h_src, out=out[:, d:]).mul_(h_user)
    return out


def attention_logits_keys(keys: Tensor, query: Tensor,
                          cand: Tensor) -> Tensor:
    r"""The attention logits :math:`\mathbf{k}_{c}^{\top}\mathbf{q}_r` of
    every (row, candidate) pair as one sampled dense-dense product (SDDMM,
    :func:`torch.sparse.sampled_addmm`) over the :obj:`(row, candidate)`
    pattern: no :obj:`[R, C, d]` tensor is built. Equals
    :func:`attention_logits` (up to float rounding) with :obj:`keys =
    attention_keys(h)` and :obj:`query = attention_query(h[users], h[src])`;
    padding :obj:`-1` reads node 0 (mask it after). Not differentiable (for
    sampling).

    Shapes: **keys** :math:`(N, 2d)`, **query** :math:`(R, 2d)`, **cand**
    :math:`(R, C)`, output :math:`(R, C)`."""
    R, C = cand.shape
    if R == 0 or C == 0:
        return query.new_zeros(cand.shape)
    if C >= keys.size(0):
        # tiny graphs: a pattern row longer than the matrix row (padding
        # repeats node 0) is rejected by sampled_addmm; gather instead
        return (keys[cand.clamp(min=0)] @ query.unsqueeze(-1)).squeeze(-1)
    crow = torch.arange(0, R * C + 1, C, device=cand.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter('ignore', UserWarning)
        pattern = torch.sparse_csr_tensor(
            crow, cand.clamp(min=0).reshape(-1),
            query.new_zeros(R * C), (R, keys.size(0)))
        val = torch.sparse.sampled_addmm(pattern, query, keys.t(), beta=0.0)
    return val.values().view(R, C)


def masked_softmax(logits: Tensor, valid: Tensor,
                   backend: str = 'auto') -> Tensor:
    r"""Softmax of each row over its valid entries: the scatter softmax of
    :func:`masked_scatter_softmax` for :obj:`backend` in
    :obj:`("auto", "torch_scatter", "pyg")`, or a dense masked softmax over
    the padded rows for :obj:`"dense"` (same result up to float rounding).
    Invalid entries and empty rows get probability 0.

    Shapes: **logits, valid** :math:`(R, C)`, output :math:`(R, C)`."""
    if backend == 'dense':
        p = torch.softmax(logits.masked_fill(~valid, -float('inf')), 1)
        return p.masked_fill(~valid, 0.0)  # empty rows: NaN -> 0
    return masked_scatter_softmax(logits, valid, backend)


def masked_scatter_softmax(logits: Tensor, valid: Tensor,
                           backend: str = 'auto') -> Tensor:
    r"""Softmax of each row over its valid entries only, computed as a scatter
    softmax over the flat (row, candidate) pairs of the padded rows, the
    invalid ones at the lowest finite score (their :math:`\exp` underflows
    to 0, so they take no mass from the valid ones); invalid entries and
    empty rows get probability 0. Flattening the padded rows rather than
    selecting the valid pairs needs no :func:`torch.nonzero` (no host sync
    on a GPU) and was faster on CPU too.

    Shapes: **logits, valid** :math:`(R, C)`, output :math:`(R, C)`."""
    R, C = logits.shape
    row = torch.arange(R, device=logits.device).view(-1, 1).expand(R, C)
    low = torch.finfo(logits.dtype).min
    p = scatter_softmax(logits.masked_fill(~valid, low).reshape(-1),
                        row.reshape(-1), R, backend)
    return p.view(R, C).masked_fill(~valid, 0.0)


def choose(prob: Tensor, greedy: bool, generator=None) -> Tensor:
    r"""One column per row drawn from :obj:`prob` (or its argmax); :obj:`-1`
    for rows with no mass. Drawn by inverting the row's cumulative
    distribution with one uniform number per row (cheaper than
    :func:`torch.multinomial`); columns of probability 0 are never drawn.

    Shapes: **prob** :math:`(R, C)`, output :math:`(R)`."""
    if prob.size(1) == 0:
        return torch.full((prob.size(0), ), -1, dtype=torch.long,
                          device=prob.device)
    if greedy:
        has = prob.sum(1) > 0
        idx = prob.argmax(1)
    else:
        cdf = prob.cumsum(1)
        total = cdf[:, -1:]
        has = total.squeeze(1) > 0
        # r in (0, total] (a product with a factor <= 1 never rounds above
        # total): the first column with cdf >= r exists and, as cdf rose
        # there, has mass
        r = (1.0 - torch.rand(total.shape, generator=generator,
                              device=prob.device)) * total
        idx = (cdf < r).sum(1)
    return torch.where(has, idx, torch.full_like(idx, -1))


def gather_log_prob(prob: Tensor, idx: Tensor) -> Tensor:
    r""":math:`\log p` of the chosen column; 0 where :obj:`idx` is :obj:`-1`.

    Shapes: **prob** :math:`(R, C)`, **idx** :math:`(R)`, output
    :math:`(R)`."""
    has = idx >= 0
    p = prob.gather(1, idx.clamp(min=0).unsqueeze(1)).squeeze(1)
    return torch.where(has, torch.log(p.clamp(min=1e-30)),
                       torch.zeros_like(p))


def in_history(cand: Tensor, history: Optional[Tensor]) -> Tensor:
    r"""Whether each candidate appears in its row's history.

    Shapes: **cand** :math:`(R, C)`, **history** :math:`(R, L)`, output
    :math:`(R, C)`."""
    if history is None or history.numel() == 0:
        return torch.zeros_like(cand, dtype=torch.bool)
    if history.size(1) <= 8:  # short histories: one [R, C] compare a column
        out = cand == history[:, :1]
        for k in range(1, history.size(1)):
            out |= cand == history[:, k:k + 1]
        return out
    return (cand.unsqueeze(-1) == history.unsqueeze(1)).any(-1)


def entropy_ratio(prob: Tensor, valid: Tensor) -> Tensor:
    r"""Sum over the rows with at least two valid candidates of the
    entropy of the row's distribution relative to its maximum,
    :math:`-\sum_c p_c \log p_c / \log n_{\text{valid}}`, and the number
    of those rows: :math:`[\text{sum}, \text{count}]` (1 for a uniform
    row, 0 for a deterministic one).

    Shapes: **prob, valid** :math:`(R, C)`, output :math:`(2)`."""
    n = valid.sum(1)
    keep = n >= 2
    ent = -(prob * torch.log(prob.clamp(min=1e-30))).sum(1)
    ratio = ent / torch.log(n.clamp(min=2).to(prob.dtype))
    return torch.stack([ratio.masked_fill(~keep, 0.).sum(),
                        keep.sum().to(prob.dtype)])


def row_correlation(a: Tensor, b: Tensor, valid: Tensor) -> Optional[float]:
    r"""Mean over the rows with at least 3 valid entries (and a spread in
    both) of the Pearson correlation of :obj:`a` and :obj:`b` over the row's
    valid entries (in double precision); :obj:`None` without such a row.

    Shapes: **a, b, valid** :math:`(R, C)`."""
    w = valid.double()
    n = w.sum(1)
    da = (a.double() - (a.double() * w).sum(1, keepdim=True) /
          n.clamp(min=1).unsqueeze(1)) * w
    db = (b.double() - (b.double() * w).sum(1, keepdim=True) /
          n.clamp(min=1).unsqueeze(1)) * w
    va, vb = (da * da).sum(1), (db * db).sum(1)
    keep = (n >= 3) & (va > 0) & (vb > 0)
    if not bool(keep.any()):
        return None
    r = (da * db).sum(1)[keep] / (va[keep] * vb[keep]).sqrt()
    return float(r.mean())


def pad_columns(x: Tensor, width: int, value: float) -> Tensor:
    r"""Pads the last dimension of :obj:`x` to :obj:`width` with
    :obj:`value`."""
    return F.pad(x, (0, width - x.size(-1)), value=value)
