"""Edge cases of the KGPolicy walk's pruning, attention and choice helpers
(:mod:`kgsampler.sampler._kgpolicy_attention`), each against a hand
computation or a dense reference: rows of width 1 and 2, a single row or
column, candidate 0, defaults, dtypes and the caller's generator. The
common cases are in ``test_kgpolicy.py``."""
import math

import pytest
import torch

from kgsampler.sampler import _kgpolicy_attention as kg_attention


def dense_logits(h, users, src, cand, slope=0.2):
    """h_u^T LeakyReLU(h_src * h_cand), one row at a time."""
    out = torch.zeros(cand.shape, dtype=h.dtype)
    for r in range(cand.size(0)):
        for c in range(cand.size(1)):
            z = torch.nn.functional.leaky_relu(h[src[r]] * h[max(int(cand[r, c]), 0)],
                                               slope)
            out[r, c] = (z * h[users[r]]).sum()
    return out


# ------------------------------------------------------------------ dedupe
@pytest.mark.parametrize('cand,expected', [
    ([[5, 5], [0, 0], [0, 1]], [[5, -1], [0, -1], [0, 1]]),   # width 2, item 0
    ([[7], [0]], [[7], [0]]),                                  # width 1
    ([[0, 2, 0, 2, -1, 0]], [[0, 2, -1, -1, -1, -1]]),         # repeated 0
])
def test_dedupe_narrow_rows_and_item_zero(cand, expected):
    assert kg_attention.dedupe(torch.tensor(cand)).tolist() == expected


def test_dedupe_keeps_the_first_occurrence_of_long_rows():
    g = torch.Generator().manual_seed(0)
    cand = torch.randint(-1, 6, (64, 300), generator=g)
    ref = cand.clone()
    for r in range(cand.size(0)):
        seen = set()
        for c in range(cand.size(1)):
            v = int(cand[r, c])
            if v >= 0 and v in seen:
                ref[r, c] = -1
            seen.add(v)
    assert torch.equal(kg_attention.dedupe(cand), ref)


# ------------------------------------------------------------------- prune
def test_prune_scores_candidate_zero_and_leaves_narrow_rows_alone():
    r"""Scores are :math:`h_{src}^\top h_c` with one-dimensional ``h``::

        node:   0    1    2    3
        h:      5    1    3    2       src = node 1: scores 5, 1, 3, 2
    """
    h = torch.tensor([[5.], [1.], [3.], [2.]])
    src = torch.tensor([1, 1, 1])
    cand = torch.tensor([[1, 2, 0, 3], [3, 0, -1, 1], [3, -1, 0, -1]])
    out = kg_attention.prune(h, src, cand, 2)
    assert out[:2].tolist() == [[0, 2], [0, 3]]
    # a row with no more than k valid candidates is not scored: all of them
    assert sorted(out[2].tolist()) == [0, 3]
    # rows no wider than k come back as they are (order and padding kept)
    narrow = torch.tensor([[-1, 3], [2, 0], [1, 2]])
    assert torch.equal(kg_attention.prune(h, src, narrow, 2), narrow)


# --------------------------------------------------------------- attention
def test_attention_defaults_use_slope_0_2():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(10, 4, generator=g)
    users, src = torch.tensor([1, 2]), torch.tensor([3, 4])
    cand = torch.tensor([[0, 5, 6], [7, -1, 9]])
    ref = dense_logits(h, users, src, cand, 0.2)
    assert torch.allclose(kg_attention.attention_logits(h, users, src, cand), ref,
                          atol=1e-5)
    q = kg_attention.attention_query(h[users], h[src])
    assert torch.equal(q, kg_attention.attention_query(h[users], h[src], 0.2))


@pytest.mark.parametrize('which', ['user', 'src'])
def test_attention_query_keeps_the_gradient_of_either_input(which):
    g = torch.Generator().manual_seed(1)
    h_user, h_src = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    x = (h_user if which == 'user' else h_src).requires_grad_()
    q = kg_attention.attention_query(h_user, h_src, 0.2)
    q.sum().backward()
    a = 0.2
    t = torch.relu(h_src.detach()) * (1 - a)
    if which == 'user':  # d/dh_u of sum(h_u * (t + a h_s) + h_u * (t - h_s))
        ref = 2 * t + (a - 1) * h_src
    else:  # d/dh_s: h_u * ((1 - a) 1[h_s > 0] + a) + h_u * ((1 - a) 1[h_s > 0] - 1)
        pos = (h_src > 0).to(h_src.dtype) * (1 - a)
        ref = h_user * (2 * pos + a - 1)
    assert torch.allclose(x.grad, ref, atol=1e-6)


@pytest.mark.parametrize('rows,cols,nodes', [
    (1, 3, 10),   # one row (a batch of one), the sparse path
    (4, 1, 10),   # one candidate a row, the sparse path
    (1, 1, 10),
    (3, 5, 4),    # rows wider than the graph: the gather path
    (2, 4, 4),
])
def test_attention_logits_keys_on_narrow_shapes(rows, cols, nodes):
    g = torch.Generator().manual_seed(rows * 10 + cols)
    h = torch.randn(nodes, 6, generator=g, dtype=torch.double)
    users = torch.randint(nodes, (rows, ), generator=g)
    src = torch.randint(nodes, (rows, ), generator=g)
    cand = torch.randint(nodes, (rows, cols), generator=g)
    cand[0, 0] = 0  # node 0 is a candidate like any other
    ref = dense_logits(h, users, src, cand)
    keys = kg_attention.attention_keys(h)
    q = kg_attention.attention_query(h[users], h[src], 0.2)
    out = kg_attention.attention_logits_keys(keys, q, cand)
    assert out.shape == (rows, cols)
    assert torch.allclose(out, ref, atol=1e-10)


@pytest.mark.parametrize('shape', [(0, 5), (3, 0), (0, 0)])
def test_attention_logits_keys_of_empty_patterns(shape):
    keys = torch.randn(6, 8)
    out = kg_attention.attention_logits_keys(
        keys, torch.randn(shape[0], 8), torch.zeros(shape, dtype=torch.long))
    assert out.shape == shape


# ----------------------------------------------------------------- softmax
@pytest.mark.parametrize('fn', [kg_attention.masked_softmax,
                                kg_attention.masked_scatter_softmax])
def test_masked_softmax_default_backend_and_unknown_backend(fn):
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    valid = torch.tensor([[True, True, False], [True, True, True]])
    ref = torch.softmax(logits.masked_fill(~valid, -math.inf), 1)
    assert torch.allclose(fn(logits, valid), ref, atol=1e-6)
    with pytest.raises(ValueError, match="'nope'"):
        fn(logits, valid, 'nope')


# ------------------------------------------------------------------ choose
@pytest.mark.parametrize('greedy', [False, True])
def test_choose_returns_long_indices_also_without_columns(greedy):
    p = torch.tensor([[0.2, 0.8], [0.0, 0.0]])
    for prob in (p, p[:, :0]):
        out = kg_attention.choose(prob, greedy)
        assert out.dtype == torch.long and out.shape == (2, )


def test_choose_draws_from_the_callers_generator():
    p = torch.full((400, 5), 0.2)

    def draw(seed):
        return kg_attention.choose(p, False, torch.Generator().manual_seed(seed))
    torch.manual_seed(0)
    a = draw(3)
    torch.manual_seed(1)  # the global stream must not matter
    assert torch.equal(a, draw(3))
    assert not torch.equal(a, draw(4))


def test_choose_from_unnormalised_rows():
    """Rows need not sum to one: a row of mass 2 is drawn as its halves."""
    g = torch.Generator().manual_seed(0)
    row = torch.tensor([[0.2, 0.0, 1.2, 0.6]]).expand(20000, -1)
    freq = torch.bincount(kg_attention.choose(row, False, generator=g), minlength=4)
    assert torch.allclose(freq / 20000., row[0] / 2.0, atol=0.02)


# ------------------------------------------------------------- in_history
@pytest.mark.parametrize('history', [None, torch.zeros(3, 0, dtype=torch.long),
                                     torch.tensor([[1], [2], [3]])])
def test_in_history_is_a_bool_mask(history):
    cand = torch.tensor([[1, 2], [2, -1], [0, 0]])
    out = kg_attention.in_history(cand, history)
    assert out.dtype == torch.bool and out.shape == cand.shape
    if history is not None and history.numel():
        assert out.tolist() == [[True, False], [True, False], [False, False]]


# ------------------------------------------------------------- diagnostics
def test_entropy_ratio_in_double_precision():
    g = torch.Generator().manual_seed(0)
    valid = torch.rand(50, 7, generator=g) < 0.7
    p = torch.rand(50, 7, generator=g, dtype=torch.double) * valid
    p = p / p.sum(1, keepdim=True).clamp(min=1e-300)
    ref_sum, ref_n = 0.0, 0
    for r in range(50):
        n = int(valid[r].sum())
        if n >= 2:
            q = p[r][valid[r]]
            q = q[q > 0]
            ref_sum += float(-(q * q.log()).sum()) / math.log(n)
            ref_n += 1
    out = kg_attention.entropy_ratio(p, valid)
    assert out.dtype == torch.double
    assert out[1].item() == ref_n
    assert out[0].item() == pytest.approx(ref_sum, rel=1e-12)
