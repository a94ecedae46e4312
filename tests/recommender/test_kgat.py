import copy
import math

import pytest
import torch
import torch.nn.functional as F

from kgsampler import DNS, RNS, Trainer, make_synthetic
from kgsampler.data import KGRecDataset
from kgsampler.recommender import Recommender
from kgsampler.recommender._kgat_conv import KGATConv
from kgsampler.recommender.kgat import KGAT

# relation ids of the collaborative KG of `dataset` (R = 2 KG relations):
# 0 interact, 1 = KG r0, 2 = KG r1, 3 = interact reversed, 4 / 5 = r0 / r1
# reversed; node ids: users 0-1, then entities 2-5 (items i0-i2 = 2-4)
EDGES = {
    (0, 0, 2), (0, 0, 3), (1, 0, 3), (1, 0, 4),  # u -interact-> i
    (2, 3, 0), (3, 3, 0), (3, 3, 1), (4, 3, 1),  # i -interact^-1-> u
    (2, 1, 5), (3, 1, 5), (4, 2, 3),  # KG triples
    (5, 4, 2), (5, 4, 3), (3, 5, 4),  # their reverses
}


@pytest.fixture
def dataset():
    r"""Two users, three items, one non-item entity ``e3``, two KG
    relations; every pair below is a training pair (no validation split)::

        u0 ── i0 ──r0──┐
          └── i1 ──r0──┴── e3
        u1 ──┘ ↑
          └── i2        (i2 ──r1──> i1)

    Test pairs: (u0, i2), (u1, i0). With reverses, the collaborative KG has
    the 14 edges of :obj:`EDGES`; head degrees: u0 2, u1 2, i0 2, i1 4,
    i2 2, e3 2.
    """
    train = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 2]])
    test = torch.tensor([[0, 2], [1, 0]])
    kg = torch.tensor([[0, 0, 3], [1, 0, 3], [2, 1, 1]])
    return KGRecDataset(train, test, kg, num_users=2, num_items=3,
                        num_entities=4, num_relations=2, valid_ratio=0.0)


def model_of(dataset, **kwargs):
    torch.manual_seed(0)
    kwargs.setdefault('embedding_dim', 4)
    kwargs.setdefault('kge_dim', 3)
    kwargs.setdefault('layer_sizes', [4, 2])
    return KGAT(dataset, **kwargs)


def edges_of(model):
    return list(zip(model.edge_head.tolist(), model.edge_rel.tolist(),
                    model.edge_tail.tolist()))


def dense_attention(model):
    r"""Eq. 4-5 edge by edge: :math:`(W_r e_t)^T \tanh(W_r e_h + e_r)`,
    then a softmax over the edges of each head, by explicit loops."""
    e = model.embedding.weight.detach().double()
    rel = model.relation_embedding.weight.detach().double()
    W = model.transfer.detach().double()
    logits = {}
    for h, r, t in edges_of(model):
        logits[h, r, t] = float((e[t] @ W[r]) @ torch.tanh(e[h] @ W[r] +
                                                          rel[r]))
    out = []
    for h, r, t in edges_of(model):
        z = sum(math.exp(v) for (h2, _, _), v in logits.items() if h2 == h)
        out.append(math.exp(logits[h, r, t]) / z)
    return torch.tensor(out, dtype=torch.double)


def dense_adjacency(model):
    A = torch.zeros(model.num_nodes, model.num_nodes, dtype=torch.double)
    for (h, r, t), a in zip(edges_of(model), model.attention.tolist()):
        A[h, t] += a
    return A


def dense_layer(conv, x, A):
    """A KGATConv by hand on a dense adjacency (double precision)."""
    side = A @ x
    W, b = conv.lin.weight.double(), conv.lin.bias.double()
    if conv.aggregator == 'graphsage':
        return torch.relu(torch.cat([x, side], -1) @ W.t() + b)
    out = F.leaky_relu((x + side) @ W.t() + b, 0.2)
    if conv.aggregator == 'bi':
        W2, b2 = conv.lin_bi.weight.double(), conv.lin_bi.bias.double()
        out = out + F.leaky_relu((x * side) @ W2.t() + b2, 0.2)
    return out


def dense_representations(model):
    A = dense_adjacency(model)
    x = model.embedding.weight.detach().double()
    outs = [x]
    with torch.no_grad():
        for conv in model.convs:
            x = dense_layer(conv, x, A)
            outs.append(F.normalize(x, dim=-1))
    return torch.cat(outs, -1)


def test_collaborative_kg_from_training_pairs_and_kg(dataset):
    model = model_of(dataset)
    assert isinstance(model, Recommender)
    assert (model.num_users, model.num_items, model.num_entities,
            model.num_nodes, model.num_relations) == (2, 3, 4, 6, 6)
    assert set(edges_of(model)) == EDGES and len(edges_of(model)) == 14
    assert model.edge_index.shape == (2, 14)
    assert model.edge_index.dtype == torch.long
    # test pairs (u0, i2) and (u1, i0) never enter the graph
    assert (0, 0, 4) not in edges_of(model)
    assert (1, 0, 2) not in edges_of(model)
    assert str(model) == ('KGAT(2, 3, num_entities=4, layer_sizes=[4, 2], '
                          'aggregator=bi)')
    assert 'attention' in model.state_dict()


def test_attention_is_normalised_per_head_and_matches_dense(dataset):
    model = model_of(dataset)
    with torch.no_grad():  # make the logits far from uniform
        model.embedding.weight.mul_(5)
        model.transfer.mul_(3)
    model.update_attention()
    att = model.attention
    sums = torch.zeros(6).index_add_(0, model.edge_head, att)
    assert torch.allclose(sums, torch.ones(6), atol=1e-6)
    ref = dense_attention(model)
    assert torch.allclose(att.double(), ref, atol=1e-5)
    assert att.std() > 0.05  # not the uniform 1 / degree
    logits = model.attention_logits()
    assert logits.shape == (14, ) and logits.requires_grad


@pytest.mark.parametrize('aggregator', ['bi', 'gcn', 'graphsage'])
@pytest.mark.parametrize('path', ['sparse', 'edge_index'])
def test_aggregator_matches_dense(dataset, aggregator, path):
    model = model_of(dataset, aggregator=aggregator)
    model.update_attention()
    conv = model.convs[0]
    x = torch.randn(6, 4, requires_grad=True)
    if path == 'sparse':
        adj, adj_t = model.adjacency()
        out = conv(x, adj, adj_transposed=adj_t)
    else:
        out = conv(x, model.edge_index, edge_weight=model.attention)
    A = dense_adjacency(model)
    xd = x.detach().double().requires_grad_()
    ref = dense_layer(conv, xd, A)
    assert out.shape == (6, 4)
    assert torch.allclose(out.double(), ref, atol=1e-5)
    w = torch.randn(6, 4)
    (out * w).sum().backward()
    (ref * w.double()).sum().backward()
    assert torch.allclose(x.grad.double(), xd.grad, atol=1e-5)
    assert conv.lin.weight.grad.abs().sum() > 0
    assert str(conv) == f'KGATConv(4, 4, aggregator={aggregator})'


@pytest.mark.parametrize('layer_sizes', [[3], [4, 2, 5]])
@pytest.mark.parametrize('aggregator', ['bi', 'graphsage'])
def test_representations_concatenate_normalised_layers(dataset, layer_sizes,
                                                       aggregator):
    model = model_of(dataset, layer_sizes=layer_sizes, aggregator=aggregator)
    model.eval()
    with torch.no_grad():
        emb = model.get_embedding()
    assert emb.shape == (6, 4 + sum(layer_sizes))
    assert torch.allclose(emb.double(), dense_representations(model),
                          atol=1e-5)


def test_transr_score_and_loss_by_hand(dataset):
    model = model_of(dataset, kg_reg=0.5)
    h, r = torch.tensor([0, 3, 5]), torch.tensor([0, 5, 4])
    t, t_neg = torch.tensor([2, 4, 2]), torch.tensor([5, 0, 1])
    e, W = model.embedding.weight.detach(), model.transfer.detach()
    rel = model.relation_embedding.weight.detach()
    pos, neg, l2 = [], [], []
    for b in range(3):
        Wr = W[r[b]]
        ph, pt, pn = e[h[b]] @ Wr, e[t[b]] @ Wr, e[t_neg[b]] @ Wr
        pos.append(((ph + rel[r[b]] - pt)**2).sum())
        neg.append(((ph + rel[r[b]] - pn)**2).sum())
        l2.append((ph @ ph + rel[r[b]] @ rel[r[b]] + pt @ pt + pn @ pn) / 2)
    pos, neg, l2 = torch.stack(pos), torch.stack(neg), torch.stack(l2)
    assert torch.allclose(model.transr_score(h, r, t), pos, atol=1e-6)
    want = -F.logsigmoid(neg - pos).mean() + 0.5 * l2.mean()
    loss = model.kg_loss(h, r, t, t_neg)
    assert torch.allclose(loss, want, atol=1e-6)
    loss.backward()
    assert model.transfer.grad[[0, 4, 5]].abs().sum() > 0
    assert model.transfer.grad[[1, 2, 3]].abs().sum() == 0
    assert model.relation_embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize('reg', [0.0, 0.1])
@pytest.mark.parametrize('num_neg', [1, 3])
def test_loss_is_bpr_plus_l2_on_representations(dataset, reg, num_neg):
    model = model_of(dataset, reg=reg).eval()  # no dropout
    users, pos = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 2])
    neg = torch.randint(3, (3, num_neg))
    e = dense_representations(model).float()
    u, p, n = e[users], e[2 + pos], e[2 + neg]
    bpr = -F.logsigmoid((u * p).sum(-1, keepdim=True) -
                        (n @ u.unsqueeze(-1)).squeeze(-1)).mean()
    l2 = (u.pow(2).sum(-1) + p.pow(2).sum(-1) +
          n.pow(2).sum(-1).mean(-1)).mean() / 2
    loss = model.loss(users, pos, neg)
    assert torch.allclose(loss, bpr + reg * l2, atol=1e-5)
    loss.backward()
    assert model.embedding.weight.grad.abs().sum() > 0
    for conv in model.convs:
        assert conv.lin.weight.grad.abs().sum() > 0
        assert conv.lin_bi.weight.grad.abs().sum() > 0
    # the attention is a constant of this phase
    assert model.transfer.grad is None


def test_message_dropout_only_in_training(dataset):
    model = model_of(dataset, mess_dropout=0.5)
    users, pos, neg = torch.tensor([0, 1]), torch.tensor([0, 2]), \
        torch.tensor([[2], [0]])
    model.eval()
    ref = model.loss(users, pos, neg)
    assert torch.equal(ref, model.loss(users, pos, neg))
    model.train()
    torch.manual_seed(1)
    losses = {float(model.loss(users, pos, neg).detach()) for _ in range(5)}
    assert len(losses) > 1
    with torch.no_grad():  # scores never drop messages
        assert torch.equal(model.score(users, neg),
                           model.eval().score(users, neg))


@pytest.mark.parametrize('batch', [1, 2])
@pytest.mark.parametrize('num_cand', [1, 3])
def test_full_scores_equal_score_over_all_items(dataset, device, batch,
                                                num_cand):
    model = model_of(dataset).to(device)
    users = torch.arange(batch, device=device)
    items = torch.randint(3, (batch, num_cand), device=device)
    with torch.no_grad():
        full = model.full_scores(users)
        every = model.score(users, torch.arange(3, device=device).expand(
            batch, 3))
        score = model.score(users, items)
    assert full.shape == (batch, 3) and score.shape == (batch, num_cand)
    assert full.device == users.device
    assert torch.allclose(full, every, atol=1e-6)
    assert torch.allclose(score, full.gather(1, items), atol=1e-6)
    ref = dense_representations(model.cpu()).float()
    assert torch.allclose(full.cpu(), ref[:batch] @ ref[2:5].t(), atol=1e-5)
    model.to(device)
    sim = model.similarity(items[:, 0], items)
    assert sim.shape == (batch, num_cand)
    assert model.item_representations(items).shape == (batch, num_cand, 10)


def test_cache_reused_until_weights_or_attention_change(dataset,
                                                        monkeypatch):
    model = model_of(dataset)
    calls = []
    real = model.propagate
    monkeypatch.setattr(model, 'propagate',
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    users = torch.tensor([0, 1])
    with torch.no_grad():
        first = model.full_scores(users)
        model.full_scores(users)
        model.score(users, torch.tensor([[0], [1]]))
    assert len(calls) == 1
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.loss(users, torch.tensor([0, 1]), torch.tensor([[2], [0]])) \
        .backward()
    opt.step()
    with torch.no_grad():
        second = model.full_scores(users)
    assert len(calls) == 3 and not torch.allclose(first, second)
    model.update_attention()  # new attention, same weights
    with torch.no_grad():
        model.full_scores(users)
    assert len(calls) == 4
    model.load_state_dict(model.state_dict())
    with torch.no_grad():
        model.full_scores(users)
    assert len(calls) == 5


def test_state_dict_restores_scores(dataset):
    model = model_of(dataset)
    with torch.no_grad():
        model.embedding.weight.mul_(4)
    model.update_attention()
    other = model_of(dataset)
    other.load_state_dict(copy.deepcopy(model.state_dict()))
    users = torch.tensor([0, 1])
    with torch.no_grad():
        assert torch.allclose(other.full_scores(users),
                              model.full_scores(users))
    other.reset_parameters()
    with torch.no_grad():
        assert not torch.allclose(other.full_scores(users),
                                  model.full_scores(users))


@pytest.mark.parametrize('batch_size', [1, 64])
def test_kg_batches_are_edges_with_corrupted_tails(dataset, batch_size):
    model = model_of(dataset)
    torch.manual_seed(0)
    h, r, t, t_neg = model.sample_kg_batch(batch_size)
    for x in (h, r, t, t_neg):
        assert x.shape == (batch_size, ) and x.dtype == torch.long
    for row in zip(h.tolist(), r.tolist(), t.tolist(), t_neg.tolist()):
        assert row[:3] in EDGES
        assert (row[0], row[1], row[3]) not in EDGES
        assert 0 <= row[3] < 6


@pytest.mark.parametrize('kg_steps', [0, 3])
def test_auxiliary_phase_then_attention_refresh(dataset, kg_steps):
    model = model_of(dataset, kg_steps=kg_steps, kg_batch_size=8)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    before = model.attention.clone()
    losses = []
    for loss in model.auxiliary_losses(1024):
        assert loss.dim() == 0 and loss.requires_grad
        assert torch.equal(model.attention, before)  # not yet refreshed
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert len(losses) == kg_steps
    assert torch.allclose(model.attention.double(), dense_attention(model),
                          atol=1e-5)
    assert torch.equal(model.attention, before) == (kg_steps == 0)


def test_default_kg_steps_follow_the_released_schedule(dataset):
    model = model_of(dataset, kg_batch_size=4)  # 14 // 4 + 1
    assert sum(1 for _ in model.auxiliary_losses(1024)) == 4


@pytest.mark.parametrize('kwargs,err,match', [
    ({'embedding_dim': 0}, ValueError, "'embedding_dim' must be a positive "
     r"int \(got 0\)"),
    ({'kge_dim': 2.0}, ValueError, "'kge_dim'"),
    ({'layer_sizes': []}, ValueError, r"'layer_sizes' .* \(got \[\]\)"),
    ({'layer_sizes': [4, -1]}, ValueError, "'layer_sizes'"),
    ({'aggregator': 'sum'}, ValueError, r"'aggregator' .* \(got 'sum'\)"),
    ({'mess_dropout': 1.0}, ValueError, r"'mess_dropout' .* \(got 1.0\)"),
    ({'mess_dropout': [0.1, 0.1, 0.1]}, ValueError, "2 of them"),
    ({'reg': -1.0}, ValueError, r"KGAT: 'reg' .* \(got -1.0\)"),
    ({'kg_reg': float('nan')}, ValueError, "'kg_reg'"),
    ({'kg_batch_size': 0}, ValueError, "'kg_batch_size'"),
    ({'kg_steps': -1}, ValueError, r"'kg_steps' .* \(got -1\)"),
])
def test_constructor_errors(dataset, kwargs, err, match):
    with pytest.raises(err, match=match):
        model_of(dataset, **kwargs)


def test_call_errors(dataset):
    with pytest.raises(TypeError, match="KGAT: 'dataset' must be a "
                       "KGRecDataset \\(got dict\\)"):
        KGAT({})
    model = model_of(dataset)
    users = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"KGAT.score: 'users' must be \(B\)"
                       r" and 'items' \(B, K\) \(got shapes \(2,\) and "
                       r"\(2,\)\)"):
        model.score(users, torch.tensor([0, 1]))
    with pytest.raises(TypeError, match="'items' must be torch.long"):
        model.score(users, torch.zeros(2, 1))
    with pytest.raises(ValueError, match="KGAT.loss: 'pos_items' must have "
                       "the shape of 'users'"):
        model.loss(users, torch.tensor([0]), torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match="KGAT.full_scores: 'users'"):
        model.full_scores(users.view(2, 1))
    with pytest.raises(ValueError, match="KGAT.transr_score: the id tensors"):
        model.transr_score(users, users, torch.tensor([1]))
    conv = model.convs[0]
    with pytest.raises(ValueError, match="KGATConv: 'edge_weight' must hold "
                       r"one weight per edge .* \(got None for 14 edges\)"):
        conv(torch.randn(6, 4), model.edge_index)
    with pytest.raises(ValueError, match="needs 'adj_transposed'"):
        conv(torch.randn(6, 4), model.adjacency()[0])
    with pytest.raises(ValueError, match="KGATConv: 'aggregator'"):
        KGATConv(4, 4, aggregator='max')


@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_one_trainer_epoch_on_synthetic_data(sampler):
    torch.manual_seed(0)
    ds = make_synthetic(num_users=120, num_items=100, num_genres=5,
                        num_creators=12, num_eras=3, seed=1)
    model = KGAT(ds, embedding_dim=16, kge_dim=8, layer_sizes=[16, 8],
                 kg_batch_size=256)
    s = RNS(ds.train_pos) if sampler == 'rns' else DNS(ds.train_pos,
                                                       num_candidates=4)
    res = Trainer(model, s, ds, max_epochs=1, batch_size=256,
                  progress=False).fit()
    assert res.epochs_run == 1
    row = res.history[0]
    assert math.isfinite(row['loss']) and math.isfinite(
        row['auxiliary_loss'])
    assert row['auxiliary_steps'] == model.edge_head.numel() // 256 + 1
    for split in (res.valid, res.test):
        assert all(math.isfinite(v) for v in split.values())
        assert 0 < split['ndcg@20'] <= 1
