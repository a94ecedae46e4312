import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn.models import LightGCN as PyGLightGCN

from kgsampler import (DNS, PNS, RNS, Adversarial, KGPolicy, RandomWalk,
                       Trainer, make_synthetic)
from kgsampler.data import UserItemCSR
from kgsampler.recommender import LightGCN, Recommender
from kgsampler.sampler import Scorer


@pytest.fixture
def graph():
    r"""Three users, four items; one user-item edge per interaction, in
    both directions (node ids: users 0-2, items 3-6)::

        u0 ──── i0
         └───── i1
        u1 ─────┘
         └───── i2
        u2 ──── i3        (a component of its own)

    Degrees: u0 2, u1 2, u2 1, i0 1, i1 2, i2 1, i3 1.
    """
    users = torch.tensor([0, 0, 1, 1, 2])
    items = torch.tensor([0, 1, 1, 2, 3])
    return UserItemCSR.from_pairs(users, items, 3, 4)


def dense_reference(model):
    r""":math:`\sum_l \alpha_l (D^{-1/2} A D^{-1/2})^l E^{(0)}` by hand, on
    the dense 7 x 7 adjacency of :func:`graph`."""
    A = torch.zeros(7, 7, dtype=torch.double)
    for u, i in [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3)]:
        A[u, 3 + i] = A[3 + i, u] = 1.0
    d = A.sum(1).rsqrt()
    norm = d[:, None] * A * d[None, :]
    x = model.gnn.embedding.weight.detach().double()
    alpha = model.gnn.alpha.double()
    out = alpha[0] * x
    for layer in range(1, model.num_layers + 1):
        x = norm @ x
        out = out + alpha[layer] * x
    return out


def test_is_a_recommender_and_repr(graph):
    model = LightGCN(3, 4, graph, embedding_dim=5, num_layers=2)
    assert isinstance(model, Recommender) and isinstance(model, Scorer)
    assert str(model) == 'LightGCN(3, 4, embedding_dim=5, num_layers=2)'
    assert isinstance(model.gnn, PyGLightGCN)
    # the adjacency follows the module but is not part of its state
    assert set(model.state_dict()) == {'gnn.alpha', 'gnn.embedding.weight'}
    assert model.adj_t.layout == torch.sparse_csr
    assert model.adj_t.shape == (7, 7) and model.adj_t.values().numel() == 10


@pytest.mark.parametrize('alpha', [None, 0.5, [0.1, 0.2, 0.3, 0.4]])
@pytest.mark.parametrize('num_layers', [0, 1, 3])
def test_propagation_matches_the_dense_reference(graph, device, num_layers,
                                                 alpha):
    if isinstance(alpha, list) and len(alpha) != num_layers + 1:
        alpha = alpha[:num_layers + 1]
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph.to(device), embedding_dim=4,
                     num_layers=num_layers, alpha=alpha).to(device)
    ref = dense_reference(model.cpu()).float()
    model.to(device)
    with torch.no_grad():
        out = model.get_embedding()
    assert out.shape == (7, 4)
    assert torch.allclose(out.cpu(), ref, atol=1e-6)
    if alpha is None:  # PyG's default weights
        assert torch.allclose(model.gnn.alpha.cpu(),
                              torch.full((num_layers + 1, ),
                                         1 / (num_layers + 1)))
    users, items = torch.tensor([0, 2]), torch.tensor([[0, 1, 3], [3, 2, 0]])
    with torch.no_grad():
        score = model.score(users.to(device), items.to(device)).cpu()
        sim = model.similarity(torch.tensor([1, 3], device=device),
                               items.to(device)).cpu()
    assert torch.allclose(score, (ref[users, None] * ref[3 + items]).sum(-1),
                          atol=1e-6)
    assert torch.allclose(sim, (ref[3 + torch.tensor([1, 3]), None] *
                                ref[3 + items]).sum(-1), atol=1e-6)


@pytest.mark.parametrize('num_layers', [1, 3])
def test_same_values_and_gradients_as_pygs_own_edge_index_path(graph,
                                                               num_layers):
    r"""The precomputed CSR with its symmetric backward gives what PyG's
    :class:`LightGCN` gives on the plain :obj:`edge_index` (normalised on
    every call, gather/scatter message passing)."""
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph, embedding_dim=4, num_layers=num_layers)
    plain = PyGLightGCN(7, 4, num_layers)
    plain.load_state_dict(model.gnn.state_dict())
    users, items = graph.row_ids(), graph.indices + 3
    edge_index = torch.cat([torch.stack([users, items]),
                            torch.stack([items, users])], 1)
    w = torch.randn(7, 4)
    out, ref = model.get_embedding(), plain.get_embedding(edge_index)
    assert torch.allclose(out, ref, atol=1e-6)
    (out * w).sum().backward()
    (ref * w).sum().backward()
    assert torch.allclose(model.gnn.embedding.weight.grad,
                          plain.embedding.weight.grad, atol=1e-6)


@pytest.mark.parametrize('reg', [0.0, 0.1])
@pytest.mark.parametrize('num_neg', [1, 3])
def test_loss_is_bpr_on_propagated_plus_l2_on_layer_0(graph, reg, num_neg):
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph, embedding_dim=4, num_layers=2, reg=reg)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    neg = torch.randint(4, (3, num_neg))
    e = dense_reference(model).float()
    e0 = model.gnn.embedding.weight.detach()
    bpr = -F.logsigmoid((e[users] * e[3 + pos]).sum(-1, keepdim=True) -
                        (e[users, None] * e[3 + neg]).sum(-1)).mean()
    l2 = (e0[users].pow(2).sum(-1) + e0[3 + pos].pow(2).sum(-1) +
          e0[3 + neg].pow(2).sum(-1).mean(-1)).mean() / 2
    loss = model.loss(users, pos, neg)
    assert loss.requires_grad
    assert torch.allclose(loss, bpr + reg * l2, atol=1e-6)
    loss.backward()
    assert model.gnn.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('batch', [1, 3])
@pytest.mark.parametrize('num_cand', [1, 4])
def test_score_gathers_full_scores(graph, batch, num_cand):
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph, embedding_dim=4)
    users = torch.arange(batch)
    items = torch.randint(4, (batch, num_cand))
    with torch.no_grad():
        full = model.full_scores(users)
        score = model.score(users, items)
    assert full.shape == (batch, 4) and score.shape == (batch, num_cand)
    assert torch.allclose(score, full.gather(1, items))
    assert model.item_representations(items).shape == (batch, num_cand, 4)


def count_propagations(model, monkeypatch):
    calls = []
    inner = model.gnn.get_embedding

    def counted(*args, **kwargs):
        calls.append(torch.is_grad_enabled())
        return inner(*args, **kwargs)
    monkeypatch.setattr(model.gnn, 'get_embedding', counted)
    return calls


def test_cache_until_the_parameters_change(graph, monkeypatch):
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph, embedding_dim=4)
    calls = count_propagations(model, monkeypatch)
    users, items = torch.tensor([0, 1]), torch.tensor([[0, 1], [2, 3]])
    with torch.no_grad():
        first = model.score(users, items)
        model.score(users, items)
        model.full_scores(users)
        model.similarity(torch.tensor([0, 1]), items)
    assert calls == [False]  # one propagation for all four
    # loss propagates with autograd every time (and refreshes the cache)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    loss = model.loss(users, torch.tensor([1, 2]), items)
    assert calls == [False, True]
    with torch.no_grad():
        assert torch.allclose(model.score(users, items), first)
    assert calls == [False, True]  # same parameters: the loss' result
    opt.zero_grad()
    loss.backward()
    opt.step()  # new parameters: the cache is stale
    with torch.no_grad():
        after = model.score(users, items)
        model.score(users, items)
    assert calls == [False, True, False]
    assert not torch.allclose(after, first)
    # gradients enabled outside loss: a fresh differentiable propagation
    assert model.score(users, items).requires_grad
    assert calls == [False, True, False, True]
    # load_state_dict and reset_parameters also invalidate it
    state = copy.deepcopy(model.state_dict())
    model.reset_parameters()
    with torch.no_grad():
        model.score(users, items)
    model.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(model.score(users, items), after)
    assert calls == [False, True, False, True, False, False]


def test_to_and_deepcopy(graph, device):
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph, embedding_dim=4)
    with torch.no_grad():
        ref = model.full_scores(torch.arange(3))
    clone = copy.deepcopy(model).to(device).double()
    with torch.no_grad():
        out = clone.full_scores(torch.arange(3, device=device))
    assert out.dtype == torch.double and out.device.type == device.type
    assert torch.allclose(out.float().cpu(), ref, atol=1e-6)


def test_from_dataset_and_pairs_give_the_same_graph(graph):
    class DS:  # what from_dataset reads
        num_users, num_items, train_pos = 3, 4, graph
    a = LightGCN.from_dataset(DS, embedding_dim=4)
    pairs = torch.stack([graph.row_ids(), graph.indices])
    b = LightGCN(3, 4, torch.cat([pairs, pairs], 1), embedding_dim=4)
    assert torch.equal(a.adj_crow, b.adj_crow)
    assert torch.equal(a.adj_col, b.adj_col)
    assert torch.allclose(a.adj_value, b.adj_value)
    # u0 - i1: 1 / sqrt(2 * 2)
    assert a.adj_t.to_dense()[0, 4] == pytest.approx(0.5)


def test_reset_parameters(graph):
    model = LightGCN(3, 4, graph)
    before = model.gnn.embedding.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.gnn.embedding.weight)


def test_dns_never_returns_a_training_positive(graph):
    torch.manual_seed(0)
    model = LightGCN(3, 4, graph, embedding_dim=4)
    sampler = DNS(graph, scorer=model, num_candidates=3)
    users = graph.row_ids().repeat(20)
    pos = graph.indices.repeat(20)
    neg = sampler.sample(users, pos, num_neg=2).neg_items
    assert neg.shape == (users.numel(), 2)
    dense = graph.to_dense()
    assert not dense[users[:, None], neg].any()


@pytest.fixture(scope='module')
def tiny_synthetic():
    """60 users, 50 items, a KG of genres, creators and eras."""
    return make_synthetic(num_users=60, num_items=50, num_genres=4,
                          num_creators=10, num_eras=3)


SAMPLERS = {
    'rns': lambda ds: RNS(ds.train_pos),
    'pns': lambda ds: PNS(ds.train_pos),
    'dns': lambda ds: DNS(ds.train_pos, num_candidates=4),
    'kgpolicy': lambda ds: KGPolicy.from_dataset(
        ds, n1=4, n2=2, num_random=2, embedding_dim=8, hidden_dims=(8, 8)),
    'randomwalk': lambda ds: RandomWalk.from_dataset(ds),
    'adversarial': lambda ds: Adversarial(ds.train_pos, embedding_dim=8),
}


@pytest.mark.parametrize('name', list(SAMPLERS))
def test_one_epoch_with_every_sampler(tiny_synthetic, name):
    torch.manual_seed(0)
    ds = tiny_synthetic
    model = LightGCN.from_dataset(ds, embedding_dim=8, num_layers=2)
    res = Trainer(model, SAMPLERS[name](ds), ds, lr=0.01, batch_size=128,
                  max_epochs=1, progress=False).fit()
    assert res.epochs_run == 1
    assert math.isfinite(res.history[0]['loss'])
    assert 0 < res.history[0]['grad_magnitude'] < 1
    for split in (res.valid, res.test):
        for key in ('recall@20', 'ndcg@20', 'precision@20', 'hit@20'):
            assert 0.0 <= split[key] <= 1.0


def test_errors(graph):
    with pytest.raises(ValueError, match=r"LightGCN: 'num_users' must be a "
                       r"positive int \(got 0\)"):
        LightGCN(0, 4, graph)
    with pytest.raises(ValueError, match=r"LightGCN: 'num_items' must be a "
                       r"positive int \(got True\)"):
        LightGCN(3, True, graph)
    with pytest.raises(ValueError, match=r"LightGCN: 'embedding_dim' must be "
                       r"a positive int \(got 2.0\)"):
        LightGCN(3, 4, graph, embedding_dim=2.0)
    with pytest.raises(ValueError, match=r"LightGCN: 'num_layers' must be an "
                       r"int >= 0 \(got -1\)"):
        LightGCN(3, 4, graph, num_layers=-1)
    for reg in (-1.0, float('nan'), 'a'):
        with pytest.raises(ValueError, match=r"LightGCN: 'reg' must be a "
                           r"finite non-negative number \(got"):
            LightGCN(3, 4, graph, reg=reg)
    for alpha in ([0.5, 0.5], 'a', [0.5, float('inf'), 0, 0], True):
        with pytest.raises(ValueError, match=r"LightGCN: 'alpha' must be "
                           r"null, a finite number or num_layers \+ 1 = 4 "
                           r"finite numbers \(got"):
            LightGCN(3, 4, graph, alpha=alpha)
    with pytest.raises(TypeError, match=r"LightGCN: 'train_pos' must be a "
                       r"UserItemCSR .* \(got list\)"):
        LightGCN(3, 4, [[0, 1]])
    with pytest.raises(ValueError, match=r"LightGCN: 'train_pos' must have "
                       r"num_users=3 rows and num_items=5 columns \(got "
                       r"3 x 4\)"):
        LightGCN(3, 5, graph)
    with pytest.raises(ValueError, match=r"LightGCN: 'train_pos' as a tensor "
                       r"must hold integer \(user, item\) pairs of shape "
                       r"\(2, E\) \(got torch.float32 of shape \(2, 1\)\)"):
        LightGCN(3, 4, torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"LightGCN: 'train_pos' must hold "
                       r"user ids in \[0, 3\) and item ids in \[0, 4\) \(got"):
        LightGCN(3, 4, torch.tensor([[0], [4]]))
    model = LightGCN(3, 4, graph, embedding_dim=4)
    with pytest.raises(ValueError, match=r"LightGCN.score: 'users' must be "
                       r"\(B\) and 'items' \(B, K\) \(got shapes \(2,\) and "
                       r"\(2,\)\)"):
        model.score(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"LightGCN.loss: 'users' must be "
                       r"\(B\) and 'neg_items' \(B, K\) \(got shapes \(2,\) "
                       r"and \(3, 1\)\)"):
        model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]),
                   torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"LightGCN.loss: 'pos_items' must "
                       r"have the shape of 'users' \(got \(2, 1\) and "
                       r"\(2,\)\)"):
        model.loss(torch.tensor([0, 1]), torch.tensor([[0], [1]]),
                   torch.zeros(2, 1, dtype=torch.long))
