import math

import pytest
import torch

from kgsampler.data import KGRecDataset
from kgsampler.recommender import MF
from kgsampler.sampler import (EmbeddingScorer, KGPolicy, KGPolicyOutput,
                               KGPolicyRollout, format_paths)
from kgsampler.sampler import _kgpolicy_graph as kg_graph
from kgsampler.sampler import _kgpolicy_attention as kg_attention
from kgsampler.sampler import _kgpolicy_gradient as kg_gradient
from kgsampler.utils._softmax import HAS_TORCH_SCATTER

NO_SCATTER = ('torch-scatter is not installed: the torch_scatter softmax back '
              'end (the default of `auto` wherever it is installed) is NOT '
              'compared here')
NO_SPARSE = ('torch-sparse is not installed: the torch_sparse aggregation '
             'back end is NOT compared here')


@pytest.fixture
def tiny():
    r"""Three users, five items (entities 0-4), two other entities (5, 6),
    two relations; validation empty so train is exactly what is drawn::

        users       items          entities
        u0 ──────── i0 ──r0── e5
         └───────── i1 ──r0───┘
                     └──r1── e6
        u1 ──────── i2 ──r1───┤
        u2 ──── i0           │
         └───── i3 ──r1──────┘
                    i4          (no interaction, no KG edge)
    """
    train = torch.tensor([[0, 0], [0, 1], [1, 2], [2, 0], [2, 3]])
    test = torch.tensor([[1, 4]])
    kg = torch.tensor([[0, 0, 5], [1, 0, 5], [1, 1, 6], [2, 1, 6],
                       [3, 1, 6]])
    return KGRecDataset(train, test, kg, num_users=3, num_items=5,
                        num_entities=7, valid_ratio=0.0,
                        relation_names=['genre', 'director'],
                        entity_names=['A', 'B', 'C', 'D', 'E', 'Comedy',
                                      'Lynch'])


def random_dataset(seed, U=12, I=20, E=30, T=40):
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(U, I, generator=g) < 0.3
    dense[:, -1] = False  # every user keeps a negative
    dense[torch.arange(U), torch.randint(I - 1, (U, ), generator=g)] = True
    train = dense.nonzero()
    test = torch.stack([torch.arange(U), torch.full((U, ), I - 1)], 1)
    kg = torch.stack([torch.randint(I, (T, ), generator=g),
                      torch.randint(3, (T, ), generator=g),
                      torch.randint(E, (T, ), generator=g)], 1)
    kg = torch.unique(kg, dim=0)
    return KGRecDataset(train, test, kg, num_users=U, num_items=I,
                        num_entities=E, valid_ratio=0.0)


def build(ds, seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    kwargs.setdefault('n1', 4)
    kwargs.setdefault('n2', 2)
    kwargs.setdefault('num_random', 2)
    kwargs.setdefault('embedding_dim', 8)
    kwargs.setdefault('hidden_dims', (8, 8))
    return KGPolicy.from_dataset(ds, scorer=model, **kwargs), model


# --------------------------------------------------------------- the graph
def test_graph_from_hetero_data_equals_graph_from_tensors(tiny):
    ei, rel, n = kg_graph.collaborative_graph(tiny)
    assert n == 3 + 7
    # user-item: 5 interactions, KG: 5 triples; both directions
    assert ei.size(1) == 2 * (5 + 5)
    assert set(rel.tolist()) == {kg_graph.INTERACT, 0, 1}

    class Plain:  # the same dataset without .data
        pass

    plain = Plain()
    for k in ('num_users', 'num_items', 'num_entities', 'train_pos', 'kg'):
        setattr(plain, k, getattr(tiny, k))
    ei2, rel2, _ = kg_graph.collaborative_graph(plain)
    assert torch.equal(ei, ei2) and torch.equal(rel, rel2)
    homo = tiny.homogeneous_kg()
    assert torch.equal(ei, homo.edge_index)


@pytest.mark.parametrize('width', [1, 2, 8])
def test_neighbour_table_rows_are_distinct_neighbours(tiny, width):
    ei, _, n = kg_graph.collaborative_graph(tiny)
    torch.manual_seed(0)
    table = kg_graph.neighbour_table(ei, n, width)
    assert table.shape == (n, width)
    for v in range(n):
        nbrs = set(ei[1, ei[0] == v].tolist())
        row = [x for x in table[v].tolist() if x >= 0]
        assert len(row) == len(set(row)) == min(width, len(nbrs))
        assert set(row) <= nbrs
        assert all(x == -1 for x in table[v, len(row):].tolist())
    # the isolated item 4 (node 3 + 4) has an empty row
    assert (table[7] == -1).all()


@pytest.mark.parametrize('backend', ['scatter', pytest.param(
    'torch_sparse', marks=pytest.mark.skipif(
        not kg_graph.HAS_TORCH_SPARSE, reason=NO_SPARSE))])
def test_aggregation_backends_agree(tiny, backend):
    ei, _, n = kg_graph.collaborative_graph(tiny)
    torch.manual_seed(0)
    a = kg_graph.GraphEncoder(n, ei, 8, (8, 8), aggr_backend='csr')
    b = kg_graph.GraphEncoder(n, ei, 8, (8, 8), aggr_backend=backend)
    b.load_state_dict(a.state_dict())
    ha, hb = a(), b()
    assert torch.allclose(ha, hb, atol=1e-5)
    ha.square().sum().backward()
    hb.square().sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa.grad, pb.grad, atol=1e-4)


# -------------------------------------------------------------- attention
def softmax_backends():
    return ['pyg', pytest.param('torch_scatter', marks=pytest.mark.skipif(
        not HAS_TORCH_SCATTER, reason=NO_SCATTER))]


@pytest.mark.parametrize('backend', softmax_backends())
@pytest.mark.parametrize('rows,cols', [(1, 1), (4, 3), (16, 9)])
@pytest.mark.parametrize('seed', [0, 1])
def test_attention_rows_sum_to_one_and_match_dense(backend, rows, cols, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(30, 8, generator=g)
    users = torch.randint(30, (rows, ), generator=g)
    src = torch.randint(30, (rows, ), generator=g)
    cand = torch.randint(30, (rows, cols), generator=g)
    cand[torch.rand(rows, cols, generator=g) < 0.3] = -1
    cand[0] = -1  # an empty row
    logits = kg_attention.attention_logits(h, users, src, cand)
    # dense reference: h_u^T LeakyReLU(h_src * h_cand), softmax over valid
    z = torch.nn.functional.leaky_relu(h[src][:, None] * h[cand.clamp(min=0)],
                                       0.2)
    ref_logits = torch.einsum('rcd,rd->rc', z, h[users])
    assert torch.allclose(logits, ref_logits, atol=1e-5)
    valid = cand >= 0
    p = kg_attention.masked_scatter_softmax(logits, valid, backend)
    ref = torch.softmax(ref_logits.masked_fill(~valid, -float('inf')), 1)
    ref = torch.nan_to_num(ref, nan=0.0)
    assert torch.allclose(p, ref, atol=1e-6)
    has = valid.any(1)
    assert torch.allclose(p.sum(1)[has], torch.ones(int(has.sum())))
    assert (p[~valid] == 0).all()


@pytest.mark.skipif(not HAS_TORCH_SCATTER, reason=NO_SCATTER)
def test_sampler_softmax_backends_agree(tiny):
    outs = []
    for backend in ('pyg', 'torch_scatter'):
        s, _ = build(tiny, softmax_backend=backend)
        torch.manual_seed(1)
        outs.append(s.sample(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3]),
                             3))
    assert torch.equal(outs[0].neg_items, outs[1].neg_items)
    assert torch.allclose(outs[0].log_prob, outs[1].log_prob, atol=1e-5)


def test_prune_keeps_top_scores():
    h = torch.tensor([[1., 0.], [3., 0.], [2., 0.], [-1., 0.], [5., 0.]])
    cand = torch.tensor([[1, 2, 3, 4], [3, -1, -1, -1]])
    out = kg_attention.prune(h, torch.tensor([0, 0]), cand, 2)
    assert out.tolist() == [[4, 1], [3, -1]]


def test_dedupe():
    out = kg_attention.dedupe(torch.tensor([[3, 1, 3, -1, 1], [2, 2, 2, 0, -1]]))
    assert out.tolist() == [[3, 1, -1, -1, -1], [2, -1, -1, 0, -1]]


# -------------------------------------------------------------- guarantees
@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('steps', [1, 3])
def test_never_a_training_positive(seed, steps, device):
    ds = random_dataset(seed)
    s, model = build(ds, seed=seed, steps=steps, num_random=seed % 3,
                     normalize=bool(seed % 2))
    s, model = s.to(device), model.to(device)
    dense = ds.train_pos.to_dense().to(device)
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        users = torch.randint(ds.num_users, (64, ), generator=g).to(device)
        pos = torch.randint(ds.num_items, (64, ), generator=g).to(device)
        out = s.sample(users, pos, 2)
        assert out.neg_items.device == out.proposals.device == users.device
        assert out.neg_items.dtype == torch.long
        assert not dense[users.view(-1, 1), out.neg_items].any()
        # every proposal along the walk avoids the positives too
        assert not dense[users.view(-1, 1, 1), out.proposals].any()
        s.update(users, pos, out)


@pytest.mark.parametrize('seed', range(4))
@pytest.mark.parametrize('steps', [1, 2])
def test_released_rule_takes_the_recommenders_argmax_of_the_top_k(
        seed, steps, device):
    """selection='recommender_max': hop 1 takes the attention's argmax; hop
    2 the candidate the recommender scores highest among the pool_size most
    attended ones (training positives allowed in the pool); a positive that
    wins the last step is replaced by a uniform negative (a fallback)."""
    ds = random_dataset(seed)
    k = 2
    s, model = build(ds, seed=seed, steps=steps, n1=6, n2=6, num_random=4,
                     selection='recommender_max', pool_size=k)
    s, model = s.to(device), model.to(device)
    assert s.lookahead == 1  # its walks ask the recommender
    dense = ds.train_pos.to_dense().to(device)
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(ds.num_users, (256, ), generator=g).to(device)
    pos = torch.randint(ds.num_items, (256, ), generator=g).to(device)
    out = s.sample(users, pos, 2)
    r = out.rollout
    U = ds.num_users
    for t in range(steps):
        p1 = r.prob1[t]
        has = (p1 > 0).any(1)
        assert torch.equal(r.choice1[t][has], p1.argmax(1)[has])
        p2, c2, ch = r.prob2[t], r.cand2[t], r.choice2[t]
        top, col = p2.topk(k, dim=1)
        items = (c2.gather(1, col) - U).clamp(min=0)
        score = model.score(r.users, items).masked_fill(top == 0, -1e9)
        expect = col.gather(1, score.argmax(1, keepdim=True)).view(-1)
        ok = ch >= 0
        assert ok.any()
        assert torch.equal(ch[ok], expect[ok])
    liked = dense[users.view(-1, 1, 1), out.proposals]
    assert liked[..., -1].any()  # positives do win the pool sometimes
    assert not dense[users.view(-1, 1), out.neg_items].any()
    assert torch.equal(out.fallback, liked[..., -1])
    s.update(users, pos, out)
    assert s.summary_stats()['fallback_rate'] == float(
        liked[..., -1].float().mean())


@pytest.mark.parametrize('steps', [1, 2, 3, 4])
@pytest.mark.parametrize('num_neg', [1, 2])
def test_shapes_and_path_history_excluded(tiny, steps, num_neg):
    s, _ = build(tiny, steps=steps)
    users = torch.tensor([0, 1, 2, 2])
    pos = torch.tensor([1, 2, 0, 3])
    out = s.sample(users, pos, num_neg)
    assert isinstance(out, KGPolicyOutput)
    assert out.neg_items.shape == (4, num_neg)
    assert out.paths.shape == (4, num_neg, 2 * steps + 1)
    assert out.log_prob.shape == (4, num_neg)
    assert out.step_log_prob.shape == out.proposals.shape == (4, num_neg,
                                                             steps)
    assert torch.equal(out.paths[..., -1], out.neg_items + 3)
    assert torch.equal(out.paths[..., 0], (pos + 3).view(-1, 1).expand(
        -1, num_neg))
    # walks where no hop dead-ended on a uniform fallback never revisit
    dead = (out.rollout.choice2 < 0).any(0).view(4, num_neg)
    for b in range(4):
        for j in range(num_neg):
            path = out.paths[b, j].tolist()
            nodes = [x for x in path if x >= 0]
            if not dead[b, j]:
                assert len(nodes) == len(set(nodes)), path
            assert users[b].item() not in path[1::2]  # not through u itself


@pytest.mark.parametrize('steps', [1, 2])  # longer walks exhaust the graph
def test_short_walks_on_the_tiny_graph_mostly_move(tiny, steps):
    s, _ = build(tiny, steps=steps)
    torch.manual_seed(0)
    users = torch.tensor([0, 1, 2, 2]).repeat(4)
    pos = torch.tensor([1, 2, 0, 3]).repeat(4)
    out = s.sample(users, pos, 2)
    dead = (out.rollout.choice2 < 0).any(0)
    assert (~dead).any()


def test_batch_of_one_and_one_positive_user(tiny):
    s, _ = build(tiny)
    out = s.sample(torch.tensor([1]), torch.tensor([2]))  # u1 has one item
    assert out.neg_items.shape == (1, 1)
    assert out.neg_items.item() != 2
    logs = s.update(torch.tensor([1]), torch.tensor([2]), out)
    assert set(logs) == {'sampler_reward', 'sampler_loss'}
    # 0-dim tensors, left on the device (no host sync per batch)
    assert all(v.shape == () for v in logs.values())
    assert s.summary_stats()['mean_reward'] == pytest.approx(
        float(logs['sampler_reward']))


def test_item_without_neighbours_falls_back(tiny):
    s, _ = build(tiny, steps=1)
    users = torch.tensor([1]).repeat(20)
    pos = torch.tensor([4]).repeat(20)  # item 4: no user, no KG edge
    out = s.sample(users, pos)
    assert (out.paths[:, 0, 1] == -1).all()  # no intermediate node
    stats = s.summary_stats()
    assert stats['no_neighbour_rate'] == 1.0
    assert (out.neg_items != 2).all()
    # without random items the hop dead-ends on a uniform fallback
    s, _ = build(tiny, steps=1, num_random=0)
    out = s.sample(users, pos)
    assert out.fallback.all()
    assert s.summary_stats()['fallback_rate'] == 1.0
    assert (out.neg_items != 2).all()


def test_deterministic_with_seed(tiny):
    results = []
    for _ in range(2):
        s, _ = build(tiny, seed=3, refresh_interval=1)
        torch.manual_seed(7)
        users, pos = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])
        outs = []
        for _ in range(3):
            out = s.sample(users, pos, 2)
            s.update(users, pos, out)
            outs.append(out)
        results.append(outs)
    for a, b in zip(*results):
        assert torch.equal(a.neg_items, b.neg_items)
        assert torch.equal(a.paths, b.paths)
        assert torch.equal(a.log_prob, b.log_prob)


# ---------------------------------------------------------------- learning
def co_training_step_is_isolated(s, model, users, pos):
    """One trainer step; each half must touch only its own parameters."""
    out = s.sample(users, pos, 2)  # grad mode on, as in the trainer
    # recommender step: no sampler gradient
    model.loss(users, pos, out.neg_items).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert all(p.grad is None for p in s.parameters())
    model.zero_grad(set_to_none=True)
    # sampler step: no recommender gradient, sampler parameters move
    before = [p.detach().clone() for p in s.parameters()]
    rec_before = [p.detach().clone() for p in model.parameters()]
    s.update(users, pos, out)
    assert all(p.grad is None for p in model.parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, s.parameters()))
    assert all(torch.equal(a, p) for a, p in zip(rec_before,
                                                 model.parameters()))


def test_gradients_reach_only_the_right_parameters(tiny):
    s, model = build(tiny, refresh_interval=1)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])
    co_training_step_is_isolated(s, model, users, pos)
    # the public loss reaches the encoder
    out = s.sample(users, pos, 2)
    reward = s.reward(users, pos, out.proposals)
    s.loss(out, reward).backward()
    assert s.encoder.embedding.weight.grad is not None
    assert all(p.grad is None for p in model.parameters())


def test_step_log_prob_matches_sampling_log_prob(tiny):
    s, _ = build(tiny, steps=3)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])
    with torch.no_grad():
        out = s.sample(users, pos, 2)
    lp = s.step_log_prob(out)
    assert lp.requires_grad
    assert torch.allclose(lp.detach(), out.step_log_prob, atol=1e-5)
    assert torch.allclose(out.log_prob, out.step_log_prob.sum(-1))


def test_discounted_returns(tiny):
    s, _ = build(tiny, steps=3, gamma=0.5)
    r = torch.tensor([[[1., 2., 4.]]])
    assert s.returns(r).tolist() == [[[3., 4., 4.]]]


@pytest.mark.parametrize('interval', [1, 3])
def test_representations_at_most_once_per_batch(tiny, interval):
    s, _ = build(tiny, refresh_interval=interval)
    calls = []
    s.encoder.register_forward_hook(lambda *a: calls.append(1))
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])
    for _ in range(6):
        s.update(users, pos, s.sample(users, pos))
    assert len(calls) == 6 // interval
    assert s.stats['num_updates'] == 6 // interval


def test_tables_refresh_every_epoch(tiny):
    s, _ = build(tiny, n1=1, n2=1)
    seen = set()
    for epoch in range(1, 30):
        s.on_epoch_start(epoch)
        seen.add(tuple(s._nbr1[1].tolist()))  # item 1: u0, e5, e6
    assert len(seen) > 1
    s, _ = build(tiny, n1=1, n2=1, table_refresh_epochs=0)
    first = s._nbr1.clone()
    for epoch in range(1, 5):
        s.on_epoch_start(epoch)
    assert torch.equal(first, s._nbr1)


def test_similarity_only_and_prediction_only(tiny):
    for w_p, w_s in ((1.0, 0.0), (0.0, 1.0), (1.0, -1.0)):
        s, model = build(tiny, w_p=w_p, w_s=w_s)
        users, pos = torch.tensor([0, 1]), torch.tensor([0, 2])
        out = s.sample(users, pos, 2)
        r = s.reward(users, pos, out.proposals)
        with torch.no_grad():
            ref = w_p * model.score(users, out.proposals.view(2, -1)) + \
                w_s * model.similarity(pos, out.proposals.view(2, -1))
        assert torch.allclose(r.view(2, -1), ref)


def test_scorer_without_similarity():
    class ScoreOnly:
        def score(self, users, items):
            return torch.zeros(items.shape)

    ds = random_dataset(0)
    s, _ = build(ds, w_s=0.0)
    s.set_scorer(ScoreOnly())
    out = s.sample(torch.tensor([0]), torch.tensor([1]))
    s.update(torch.tensor([0]), torch.tensor([1]), out)
    s, _ = build(ds)
    with pytest.raises(TypeError, match='needs .scorer.similarity'):
        s.set_scorer(ScoreOnly())


# ------------------------------------------------------------------- misc
def test_module_behaviour(tiny):
    s, model = build(tiny)
    names = [n for n, _ in s.named_parameters()]
    assert names and all(n.startswith('encoder.') for n in names)
    assert s.scorer is model and 'scorer' not in dict(s.named_modules())
    assert s.to('cpu') is s
    assert '\n' not in repr(s) and repr(s).startswith('KGPolicy(')
    assert repr(s.encoder) == ("GraphEncoder(10, dims=[8, 8, 8], "
                               "aggr_backend='csr')")
    state = {k: v.clone() for k, v in s.state_dict().items()}
    assert state
    h0 = s.representations().detach().clone()
    s.reset_parameters()
    assert any(not torch.equal(v, state[k])
               for k, v in s.state_dict().items())
    assert not torch.allclose(s.representations(), h0)
    s.load_state_dict(state)
    assert s.state_dict().keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in s.state_dict().items())
    # the cached representations follow the loaded parameters
    assert torch.allclose(s.representations(), h0)
    assert s.learnable and s.requires_scorer
    stats = s.summary_stats()
    for k in ('fallback_rate', 'dead_end_rate', 'random_pick_rate',
              'mean_reward'):
        assert k in stats


def test_format_paths(tiny):
    s, _ = build(tiny, steps=1, num_random=0)
    users, pos = torch.tensor([0, 1]), torch.tensor([1, 2])
    torch.manual_seed(0)
    out = s.sample(users, pos)
    lines = format_paths(tiny, users, out, n=2)
    assert len(lines) == 2
    assert lines[0].startswith('user 0: item 1 "B"')
    assert '=> negative' in lines[0]
    assert any(r in ' '.join(lines) for r in ('genre', 'director',
                                              'interacted_by'))
    with pytest.raises(ValueError, match="'n' must be a non-negative int"):
        format_paths(tiny, users, out, n=-1)


@pytest.mark.parametrize('kwargs,match', [
    ({'steps': 0}, "'steps' must be an int >= 1"),
    ({'n1': 0}, "'n1' must be an int >= 1"),
    ({'n2': 5, 'n1': 4}, "'n2' must not exceed 'n1'"),
    ({'num_random': -1}, "'num_random' must be an int >= 0"),
    ({'refresh_interval': 0}, "'refresh_interval' must be an int >= 1"),
    ({'walk_ahead': 0}, r"'walk_ahead' must be an int >= 1 \(got 0\)"),
    ({'temperature': 0.0}, r"'temperature' must be positive \(got 0.0\)"),
    ({'selection': 'max'}, r"'selection' must be one of \('sample', "),
    ({'pool_size': 0}, r"'pool_size' must be an int >= 1 \(got 0\)"),
    ({'table_refresh_epochs': -1}, "'table_refresh_epochs' must be"),
    ({'gamma': 1.5}, "'gamma' must lie in"),
    ({'baseline_decay': 1.0}, "'baseline_decay' must lie in"),
    ({'lr': 0.0}, "'lr' must be positive"),
    ({'w_p': 0.0, 'w_s': 0.0}, "at least one of 'w_p' and 'w_s'"),
    ({'hidden_dims': (8, 0)}, "'hidden_dims' must be positive ints"),
    ({'softmax_backend': 'x'}, "KGPolicy: 'softmax_backend' must be one "
     "of"),
    ({'negative_slope': -5.0}, r"'negative_slope' must lie in \[0, 1\) "
     r"\(got -5.0\)"),
    ({'weight_decay': -1.0}, r"'weight_decay' must be a non-negative number "
     r"\(got -1.0\)"),
    ({'aggr_backend': 'x'}, "'aggr_backend' must be one of"),
])
def test_argument_errors(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        build(tiny, **kwargs)


@pytest.mark.parametrize('kwargs,match', [
    ({'w_p': float('nan')}, r"'w_p' must be a finite number \(got nan\)"),
    ({'w_s': '1'}, r"'w_s' must be a finite number \(got '1'\)"),
    ({'gamma': '0.9'}, r"'gamma' must be a finite number"),
    ({'lr': float('inf')}, r"'lr' must be a finite number"),
    ({'normalize': 'false'}, r"'normalize' must be a bool \(got 'false'\)"),
])
def test_argument_type_errors(tiny, kwargs, match):
    with pytest.raises(TypeError, match='KGPolicy: ' + match):
        build(tiny, **kwargs)


def test_constructor_errors(tiny):
    ei, _, _ = kg_graph.collaborative_graph(tiny)
    with pytest.raises(ValueError, match="'num_entities' must count"):
        KGPolicy(tiny.train_pos, ei, 2)
    with pytest.raises(ValueError, match=r"'edge_index' must be a \[2, E\]"):
        KGPolicy(tiny.train_pos, ei[0], 7)
    with pytest.raises(ValueError, match="'edge_index' must hold node ids"):
        KGPolicy(tiny.train_pos, ei + 100, 7)
    with pytest.raises(TypeError, match="'edge_index' must hold integer"):
        KGPolicy(tiny.train_pos, ei.float(), 7)
    with pytest.raises(TypeError, match=r"'num_entities' must be an int "
                                        r"\(got 7.5\)"):
        KGPolicy(tiny.train_pos, ei, 7.5)
    with pytest.raises(ValueError, match=r"'edge_rel' must hold one relation "
                                         r"id per edge"):
        KGPolicy(tiny.train_pos, ei, 7, edge_rel=torch.zeros(3,
                                                            dtype=torch.long))
    s = KGPolicy(tiny.train_pos, ei, 7, n1=4, n2=2)
    with pytest.raises(RuntimeError, match='no scorer set'):
        s.sample(torch.tensor([0]), torch.tensor([0]))
    s.set_scorer(EmbeddingScorer(torch.randn(3, 4), torch.randn(5, 4)))
    with pytest.raises(TypeError, match='must come from KGPolicy.sample'):
        s.update(torch.tensor([0]), torch.tensor([0]), None)
    out = s.sample(torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="'reward' must have shape"):
        s.loss(out, torch.zeros(1))
    two = s.sample(torch.tensor([0, 1]), torch.tensor([0, 2]))
    for users, pos in ((torch.tensor([0]), torch.tensor([0])),
                       (torch.tensor([0, 1]).int(), torch.tensor([0, 2]))):
        with pytest.raises(ValueError, match=r"KGPolicy.update: 'users' must "
                                             r"be the 1-D torch.long tensor "
                                             r"of the 2 rows"):
            s.update(users, pos, two)
    with pytest.raises(ValueError, match="one policy version"):
        s.reset_parameters()  # a new policy version
        KGPolicyRollout.cat([two.rollout, s.sample(
            torch.tensor([0]), torch.tensor([0])).rollout])
    with pytest.raises(ValueError, match="must not be empty"):
        KGPolicyRollout.cat([])


def test_double_and_back_and_load_state_dict(tiny):
    s, model = build(tiny, refresh_interval=4)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([1, 2, 3])
    s.double()  # the tables and the aggregation follow every _apply
    assert s.encoder._adj.adj.dtype == torch.float64
    for _ in range(4):  # one policy step in float64
        s.update(users, pos, s.sample(users, pos))
    s.float()  # Adam's moments follow the parameters back
    for _ in range(5):
        s.update(users, pos, s.sample(users, pos))
    assert s.encoder.embedding.weight.dtype == torch.float32
    assert s._num_pending == 1
    s.load_state_dict(s.state_dict())  # a fresh refresh interval
    assert s._num_pending == 0 and s._buffer == []


# ------------------------------------------------------ fast-path pieces
@pytest.mark.parametrize('slope', [0.0, 0.2, 0.5])
@pytest.mark.parametrize('seed', [0, 1])
def test_key_query_rewrite_equals_direct_attention(slope, seed):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(40, 8, generator=g)
    users = torch.randint(40, (12, ), generator=g)
    src = torch.randint(40, (12, ), generator=g)
    cand = torch.randint(40, (12, 7), generator=g)
    cand[torch.rand(12, 7, generator=g) < 0.3] = -1
    valid = cand >= 0
    # dense reference: h_u^T LeakyReLU(h_src * h_cand)
    z = torch.nn.functional.leaky_relu(h[src][:, None] * h[cand.clamp(min=0)],
                                       slope)
    ref = torch.einsum('rcd,rd->rc', z, h[users])
    keys = kg_attention.attention_keys(h)
    q = kg_attention.attention_query(h[users], h[src], slope)
    assert torch.allclose(torch.einsum('rcd,rd->rc', keys[cand.clamp(min=0)],
                                       q), ref, atol=1e-5)
    out = kg_attention.attention_logits_keys(keys, q, cand)
    assert torch.allclose(out[valid], ref[valid], atol=1e-5)
    assert torch.allclose(kg_attention.attention_logits(h, users, src, cand, slope),
                          ref, atol=1e-5)


@pytest.mark.parametrize('backend', softmax_backends())
def test_pair_log_prob_value_and_gradient_match_direct(backend):
    g = torch.Generator().manual_seed(0)
    h = torch.randn(30, 8, generator=g, dtype=torch.double)
    users = torch.randint(30, (10, ), generator=g)
    src = torch.randint(30, (10, ), generator=g)
    cand = torch.randint(30, (10, 6), generator=g)
    cand[torch.rand(10, 6, generator=g) < 0.3] = -1
    cand[0] = -1  # an empty row: no choice
    valid = cand >= 0
    choice = torch.where(valid.any(1), valid.to(torch.long).argmax(1), -1)

    def direct(h):
        z = torch.nn.functional.leaky_relu(
            h[src][:, None] * h[cand.clamp(min=0)], 0.2)
        logit = torch.einsum('rcd,rd->rc', z, h[users])
        lp = torch.log_softmax(logit.masked_fill(~valid, -float('inf')), 1)
        lp = lp.gather(1, choice.clamp(min=0).view(-1, 1)).view(-1)
        return torch.where(choice >= 0, lp, torch.zeros_like(lp))

    def fast(h):
        q = kg_attention.attention_query(h[users], h[src], 0.2)
        return kg_gradient.pair_log_prob(kg_attention.attention_keys(h), q, cand, choice,
                                backend)

    w = torch.randn(10, generator=g, dtype=torch.double)
    ha = h.clone().requires_grad_()
    hb = h.clone().requires_grad_()
    a, b = direct(ha), fast(hb)
    assert torch.allclose(a, b, atol=1e-8)
    assert b[0] == 0
    (a * w).sum().backward()
    (b * w).sum().backward()
    assert torch.allclose(ha.grad, hb.grad, atol=1e-8)


@pytest.mark.parametrize('backend', ['dense'] + softmax_backends())
def test_masked_softmax_dense_and_scatter_agree(backend):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20, 9, generator=g) * 30
    valid = torch.rand(20, 9, generator=g) < 0.6
    valid[3] = False  # an empty row
    valid[4] = False
    valid[4, 2] = True  # a single candidate
    # row by row over the valid entries only
    ref = torch.zeros_like(logits)
    for r in range(20):
        if valid[r].any():
            ref[r, valid[r]] = torch.softmax(logits[r, valid[r]], 0)
    out = kg_attention.masked_softmax(logits, valid, backend)
    assert torch.allclose(out, ref, atol=1e-6)
    assert (out[~valid] == 0).all() and out[4, 2] == 1


def test_greedy_choice_is_the_argmax():
    """:obj:`selection="recommender_max"` takes the first hop's argmax."""
    p = torch.tensor([[0.1, 0.6, 0.3], [0.0, 0.0, 0.0], [0.5, 0.2, 0.3],
                      [0.0, 0.0, 1.0]])
    assert kg_attention.choose(p, True).tolist() == [1, -1, 0, 2]
    assert kg_attention.choose(p[:, :0], True).tolist() == [-1] * 4


@pytest.mark.parametrize('length', [0, 1, 3, 8, 9, 16])
def test_in_history_matches_broadcast_reference(length):
    g = torch.Generator().manual_seed(length)
    cand = torch.randint(-1, 12, (30, 7), generator=g)
    history = torch.randint(0, 12, (30, length), generator=g)
    ref = (cand.unsqueeze(-1) == history.unsqueeze(1)).any(-1)
    assert torch.equal(kg_attention.in_history(cand, history), ref)


def test_choose_never_draws_zero_probability_columns():
    g = torch.Generator().manual_seed(0)
    p = torch.rand(500, 7, generator=g)
    p[torch.rand(500, 7, generator=g) < 0.5] = 0
    p[0] = 0  # no mass
    p = p / p.sum(1, keepdim=True).clamp(min=1e-30)
    idx = kg_attention.choose(p, False, generator=g)
    assert idx[0] == -1
    ok = idx >= 0
    assert (ok == (p.sum(1) > 0)).all()
    assert (p[ok].gather(1, idx[ok].view(-1, 1)) > 0).all()
    # the empirical frequencies follow p
    row = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).expand(20000, -1)
    freq = torch.bincount(kg_attention.choose(row, False, generator=g), minlength=4)
    assert torch.allclose(freq / 20000., row[0], atol=0.02)


@pytest.mark.parametrize('selection', ['sample', 'recommender_max'])
@pytest.mark.parametrize('normalize', [False, True])
@pytest.mark.parametrize('softmax_backend', ['pyg', 'dense'])
def test_policy_gradient_fraction_one_matches_full_batch(
        tiny, selection, normalize, softmax_backend, device):
    """The gradient an update accumulates in the cached representations
    (in closed form) equals autograd of the REINFORCE loss recomputed from
    scratch, whichever rule chose the walk's entries."""
    users = torch.tensor([0, 1, 2], device=device)
    pos = torch.tensor([0, 2, 3], device=device)
    s, model = build(tiny, refresh_interval=4, pg_fraction=1.0,
                     selection=selection, normalize=normalize,
                     softmax_backend=softmax_backend, num_random=3)
    s, model = s.to(device), model.to(device)
    torch.manual_seed(5)
    out = s.sample(users, pos, 2)
    reward = s.reward(users, pos, out.proposals)
    G = s.returns(reward)
    s.update(users, pos, out)  # first batch: baseline = mean return
    adv = G - G.mean(dim=(0, 1))
    h = s._h.detach().clone().requires_grad_()
    lp = s._rollout_log_prob(out.rollout, h)
    assert torch.allclose(lp.t().reshape(3, 2, -1), s.step_log_prob(out, h))
    ref = -(adv * s.step_log_prob(out, h)).sum(-1).mean() / 4
    ref.backward()
    assert torch.allclose(s._pending_h_grad(), h.grad, atol=1e-6)
    assert s._grad_h is not None  # the closed form was used
    assert all(p.grad is None for p in model.parameters())


def test_policy_gradient_subset_reaches_only_sampler(tiny):
    s, model = build(tiny, refresh_interval=1, pg_fraction=0.5)
    users, pos = torch.tensor([0, 1, 2, 0]), torch.tensor([0, 2, 3, 1])
    co_training_step_is_isolated(s, model, users, pos)
    assert s._pg_rows(8, torch.device('cpu')).numel() == 4
    assert s._pg_rows(1, torch.device('cpu')) is None


@pytest.mark.parametrize('value', [0.0, 1.5, -0.1, True])
def test_pg_fraction_errors(tiny, value):
    with pytest.raises(ValueError, match='pg_fraction'):
        build(tiny, pg_fraction=value)


def test_default_widths_on_a_graph_smaller_than_them(tiny):
    """n1=64, n2=16 candidates on a 10-node graph: rows padded with -1 are
    longer than the graph; sampling and co-training still work."""
    from kgsampler.train import Trainer
    torch.manual_seed(0)
    model = MF(tiny.num_users, tiny.num_items, embedding_dim=8)
    sampler = KGPolicy.from_dataset(tiny, scorer=model, embedding_dim=8,
                                    hidden_dims=(8, 8))
    res = Trainer(model, sampler, tiny, max_epochs=2, batch_size=2,
                  progress=False).fit()
    assert res.epochs_run == 2
    dense = tiny.train_pos.to_dense()
    users = torch.tensor([0, 1, 2, 1])
    out = sampler.sample(users, torch.tensor([0, 2, 3, 2]), 3)
    assert not dense[users.view(-1, 1), out.neg_items].any()


@pytest.mark.parametrize('rows', [1, 6])
@pytest.mark.parametrize('seed', [0, 1])
def test_closed_form_gradients_match_autograd(rows, seed, device):
    """The closed-form pieces of the policy gradient (logits -> queries and
    keys -> representations) against autograd on a dense reference."""
    g = torch.Generator().manual_seed(seed)
    N, d, C = 9, 4, 3
    h = torch.randn(N, d, generator=g).to(device).requires_grad_()
    users = torch.randint(N, (rows, ), generator=g).to(device)
    src = torch.randint(N, (rows, ), generator=g).to(device)
    cand = torch.randint(N, (rows, C), generator=g).to(device)
    cand[0, -1] = -1  # padding
    valid = cand >= 0
    choice = torch.randint(C - 1, (rows, ), generator=g).to(device)
    choice[-1] = -1 if rows > 1 else choice[-1]
    coef = torch.randn(rows, generator=g).to(device)
    # dense reference: -sum_r coef_r log softmax(logits_r)[choice_r]
    logits = kg_attention.attention_logits(h, users, src, cand, 0.2)
    logp = torch.log_softmax(logits.masked_fill(~valid, -float('inf')), 1)
    lp = logp.gather(1, choice.clamp(min=0).view(-1, 1)).view(-1)
    loss = -(coef * torch.where(choice >= 0, lp, torch.zeros_like(lp))).sum()
    loss.backward()
    # closed form
    hd = h.detach()
    prob = logp.detach().exp().masked_fill(~valid, 0.0)
    grad_logits = kg_gradient.logit_grad(prob, choice, coef)
    assert (grad_logits[~valid] == 0).all()
    keys = kg_attention.attention_keys(hd)
    q = kg_attention.attention_query(hd[users], hd[src], 0.2)
    d_user, d_src = kg_gradient.attention_query_backward(
        hd[users], hd[src], kg_gradient.pair_matmul(cand, grad_logits, keys), 0.2)
    got = torch.zeros_like(hd).index_add_(0, torch.cat([users, src]),
                                          torch.cat([d_user, d_src]))
    got += kg_gradient.attention_keys_backward(
        hd, kg_gradient.pair_matmul_t(cand, grad_logits, q, N))
    assert torch.allclose(got, h.grad, atol=1e-5)


def test_policy_gradient_accumulates_over_batches(tiny):
    """Two batches before an update: the pending gradient is the sum of
    both batches' REINFORCE gradients (each with the baseline it saw), and
    the update then moves the encoder."""
    s, _ = build(tiny, refresh_interval=4, pg_fraction=1.0)
    torch.manual_seed(3)
    h = s.representations().detach().clone().requires_grad_()
    total = 0.
    batches = [(torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])),
               (torch.tensor([1, 0]), torch.tensor([2, 1]))]
    for users, pos in batches:
        out = s.sample(users, pos, 2)
        G = s.returns(s.reward(users, pos, out.proposals))
        base = G.mean(dim=(0, 1)) if not bool(s.baseline_ready) else \
            s.baseline.clone()
        s.update(users, pos, out)
        total = total - ((G - base) * s.step_log_prob(out, h)).sum(
            -1).mean() / 4
    total.backward()
    assert s._num_pending == 2
    assert torch.allclose(s._pending_h_grad(), h.grad, atol=1e-6)
    before = [p.detach().clone() for p in s.encoder.parameters()]
    s.flush()
    assert s._num_pending == 0 and s._grad_h is None
    assert any(not torch.equal(a, b) for a, b in
               zip(before, s.encoder.parameters()))


@pytest.mark.parametrize('walk_ahead', [1, 2, 16])
@pytest.mark.parametrize('pg_fraction', [1.0, 0.5])
def test_one_walk_split_over_batches_matches_batchwise(tiny, walk_ahead,
                                                       pg_fraction):
    """Walks for three batches drawn in one call and split with
    :meth:`KGPolicyOutput.narrow`: each batch's update adds its own
    REINFORCE gradient (its rows, the baseline it saw), whether the
    closed-form gradients are computed batch by batch or deferred and
    computed together (:obj:`walk_ahead`)."""
    s, _ = build(tiny, refresh_interval=4, pg_fraction=pg_fraction,
                 walk_ahead=walk_ahead)
    torch.manual_seed(3)
    h = s.representations().detach().clone().requires_grad_()
    users = torch.tensor([0, 1, 2, 1, 0, 2, 2])
    pos = torch.tensor([0, 2, 3, 2, 1, 0, 3])
    assert s.lookahead == min(walk_ahead, 4)
    out_all = s.sample(users, pos, 2)
    total, start = 0., 0
    for n in (3, 1, 3):
        out = out_all.narrow(start, n)
        u, p = users[start:start + n], pos[start:start + n]
        assert torch.equal(out.neg_items, out_all.neg_items[start:start + n])
        assert torch.equal(out.rollout.users, u.repeat_interleave(2))
        G = s.returns(s.reward(u, p, out.proposals))
        base = G.mean(dim=(0, 1)) if not bool(s.baseline_ready) else \
            s.baseline.clone()
        torch.manual_seed(start)  # the rows a pg_fraction < 1 keeps
        rows = s._pg_rows(2 * n, u.device)
        torch.manual_seed(start)
        s.update(u, p, out)
        lp = s.step_log_prob(out, h).view(2 * n, -1)
        adv = (G - base).view(2 * n, -1)
        if rows is not None:
            lp, adv = lp[rows], adv[rows]
        total = total - (adv * lp).sum(-1).mean() / 4
        start += n
    # updates whose closed-form gradient still waits for the next drain
    assert len(s._deferred) == (3 % walk_ahead if walk_ahead <= 3 else 3)
    assert s.lookahead == 1  # one batch left before the policy update
    total.backward()
    assert torch.allclose(s._pending_h_grad(), h.grad, atol=1e-6)
    assert not s._deferred and not s._buffer


def test_trainer_walks_ahead_within_one_policy_version():
    """In a training run with :obj:`walk_ahead` batches a call, every walk
    comes from the policy of its batch's update: no update falls back to
    recomputing log-probabilities (the path for stale walks)."""
    ds = random_dataset(1)
    s, model = build(ds, refresh_interval=5, walk_ahead=3)
    versions = []
    update = s.update

    def spy(users, pos_items, output):
        versions.append(output.rollout.version == s._version)
        return update(users, pos_items, output)

    s.update = spy
    s._pg_loss = None  # would be called for stale walks only
    from kgsampler.train import Trainer
    Trainer(model, s, ds, batch_size=4, max_epochs=2, progress=False).fit()
    assert len(versions) == 2 * math.ceil(ds.train_pos.nnz / 4)
    assert all(versions) and s.stats['num_updates'] > 0


def test_update_after_sampling_without_grad_matches(tiny):
    """Walks sampled under torch.no_grad() get the same policy step (the
    encoder is run again with its graph at the update)."""
    users, pos = torch.tensor([0, 1, 2, 1]), torch.tensor([0, 2, 3, 2])
    params = []
    for grad in (True, False):
        s, _ = build(tiny, refresh_interval=1, pg_fraction=1.0)
        torch.manual_seed(7)
        with torch.set_grad_enabled(grad):
            out = s.sample(users, pos, 2)
        s.update(users, pos, out)  # refresh_interval=1: steps now
        assert s.stats['num_updates'] == 1
        params.append([p.detach().clone() for p in s.encoder.parameters()])
    for a, b in zip(*params):
        assert torch.allclose(a, b, atol=1e-6)


# --------------------------------------------------- the paper's encoder
@pytest.mark.parametrize('backend', ['csr', 'scatter'])
@pytest.mark.parametrize('slope', [0.0, 0.2])
def test_encoder_matches_a_dense_reference_of_eq_9_10(tiny, backend, slope):
    r"""Eq. 9-10 by hand on the tiny graph: :math:`\mathbf{h}^{(l)} =
    \mathrm{LeakyReLU}(\hat{A}\mathbf{h}^{(l-1)}\mathbf{W}_1^{\top} +
    \mathbf{h}^{(l-1)}\mathbf{W}_2^{\top})` with :math:`\hat{A} =
    D^{-1/2} A D^{-1/2}`, no bias."""
    ei, _, n = kg_graph.collaborative_graph(tiny)
    torch.manual_seed(0)
    enc = kg_graph.GraphEncoder(n, ei, 4, (3, 2), slope, aggr_backend=backend)
    A = torch.zeros(n, n)
    A[ei[1], ei[0]] = 1.0
    d = A.sum(1).clamp(min=1).rsqrt()
    A_hat = d.view(-1, 1) * A * d.view(1, -1)
    h = enc.embedding.weight
    for conv in enc.convs:
        assert conv.lin_l.bias is None and conv.lin_r.bias is None
        h = torch.nn.functional.leaky_relu(
            A_hat @ h @ conv.lin_l.weight.t() + h @ conv.lin_r.weight.t(),
            slope)
    assert torch.allclose(enc(), h, atol=1e-6)


@pytest.mark.parametrize('temperature', [0.01, 0.5])
def test_normalised_representations_and_temperature(tiny, temperature):
    s, _ = build(tiny, temperature=temperature)
    raw = s.encoder()
    ref = torch.nn.functional.normalize(raw - raw.mean(0), dim=-1)
    assert torch.allclose(s.forward(), ref * temperature ** (-1 / 3),
                          atol=1e-6)
    # the attention logits scale exactly as 1 / temperature
    users, src = torch.tensor([0, 1]), torch.tensor([3, 5])
    cand = torch.tensor([[3, 8, 9], [4, 5, 8]])
    logit = kg_attention.attention_logits(s.forward(), users, src, cand)
    assert torch.allclose(logit * temperature,
                          kg_attention.attention_logits(ref, users, src, cand),
                          atol=1e-6)
    s.normalize = False
    assert torch.equal(s.forward(), raw)


# ---------------------------------------------------------- diagnostics
def test_entropy_ratio_on_known_rows():
    p = torch.tensor([[0.25, 0.25, 0.25, 0.25],   # uniform: 1
                      [1.0, 0.0, 0.0, 0.0],       # deterministic: 0
                      [0.5, 0.5, 0.0, 0.0],       # uniform over 2 valid: 1
                      [1.0, 0.0, 0.0, 0.0]])      # one valid: not counted
    valid = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0],
                          [1, 0, 0, 0]], dtype=torch.bool)
    s, n = kg_attention.entropy_ratio(p, valid).tolist()
    assert n == 3 and s == pytest.approx(2.0)


def test_row_correlation_on_known_rows():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200, 6, generator=g)
    valid = torch.ones(200, 6, dtype=torch.bool)
    assert kg_attention.row_correlation(a, 3 * a + 1, valid) == pytest.approx(1.0)
    assert kg_attention.row_correlation(a, -a, valid) == pytest.approx(-1.0)
    assert abs(kg_attention.row_correlation(a, torch.randn(200, 6, generator=g),
                                  valid)) < 0.1
    # invalid entries are ignored; rows with < 3 valid entries are skipped
    b = a.clone()
    b[:, 3:] = torch.randn(200, 3, generator=g)
    valid[:, 3:] = False
    assert kg_attention.row_correlation(a, b, valid) == pytest.approx(1.0)
    assert kg_attention.row_correlation(a[:, :2], a[:, :2], valid[:, :2]) is None


def test_row_correlation_matches_a_per_row_reference():
    r"""Rows of small spread (variance below 1) count; rows without spread
    in either input, or with fewer than 3 valid entries, do not::

        row 0: a = 0.01 * (0 1 2 3),  b = a ** 2        counted
        row 1: a constant,            b anything        skipped (no spread)
        row 2: a anything,            b constant        skipped
        row 3: 2 valid entries                          skipped
        row 4: a = (3 1 2 .), b = (1 2 3 .)              counted (3 valid)
    """
    a = torch.tensor([[0.0, 0.01, 0.02, 0.03], [5.0, 5.0, 5.0, 5.0],
                      [1.0, 4.0, 2.0, 3.0], [1.0, 2.0, 0.0, 0.0],
                      [3.0, 1.0, 2.0, 9.0]])
    b = torch.tensor([[0.0, 0.0001, 0.0004, 0.0009], [1.0, 2.0, 0.0, 3.0],
                      [7.0, 7.0, 7.0, 7.0], [2.0, 1.0, 0.0, 0.0],
                      [1.0, 2.0, 3.0, -9.0]])
    valid = torch.ones(5, 4, dtype=torch.bool)
    valid[3, 2:] = False
    valid[4, 3] = False

    def pearson(x, y):
        x, y = x.double() - x.double().mean(), y.double() - y.double().mean()
        return float((x * y).sum() / (x.square().sum() * y.square().sum()
                                      ).sqrt())
    ref = (pearson(a[0], b[0]) + pearson(a[4, :3], b[4, :3])) / 2
    assert kg_attention.row_correlation(a, b, valid) == pytest.approx(ref)


def test_personalisation_is_one_for_a_user_independent_policy():
    """Every user with the same representation: the logits cannot depend
    on the user (score 1); the real representations do depend on it."""
    ds = random_dataset(0)
    s, _ = build(ds, n1=8, n2=8)
    own = s.personalisation()
    assert set(own) == {'hop1', 'hop2'}
    assert own['hop1'] < 0.9 and own['hop2'] < 0.9
    h = s.representations().detach().clone()
    h[:ds.num_users] = h[0]
    s._h = h
    same = s.personalisation()
    assert same['hop1'] == pytest.approx(1.0)
    assert same['hop2'] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="'pos_items' must have the shape"):
        s.personalisation(torch.tensor([0, 1]), torch.tensor([0]))


def test_diagnostics_per_call_and_policy_warnings():
    ds = random_dataset(1)
    s, _ = build(ds, refresh_interval=2, n1=8, n2=8)
    users, pos = ds.train_pos.row_ids()[:16], ds.train_pos.indices[:16]
    state = torch.random.get_rng_state()
    d0 = s.diagnostics()
    assert torch.equal(state, torch.random.get_rng_state())  # no draws
    assert d0['policy_updates'] == 0 and 'entropy_hop1' not in d0
    assert any('no policy update' in m for m in s.policy_warnings(d0))
    for _ in range(4):
        s.update(users, pos, s.sample(users, pos, 2))
    d1 = s.diagnostics()
    assert d1['policy_updates'] == d1['num_updates'] == 2
    assert 0 < d1['entropy_hop1'] <= 1 and 0 < d1['entropy_hop2'] <= 1
    assert 'mean_reward' in d1 and 0 <= d1['random_pick_rate'] <= 1
    assert s.diagnostics()['policy_updates'] == 0  # per call
    msgs = s.policy_warnings({'num_updates': 3, 'entropy_hop2': 0.995,
                              'personalisation_hop1': 0.999})
    assert len(msgs) == 2
    assert 'hop-1 logits for the true and for another user correlate at ' \
        '0.999: the policy ignores the user' in msgs[0]
    assert 'hop-2 attention entropy is 99.5% of its maximum' in msgs[1]
    assert s.policy_warnings({'num_updates': 3, 'entropy_hop1': 0.5}) == []


def test_sampling_without_update_warns_once(tiny):
    s, _ = build(tiny)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])
    s.UPDATE_WARNING_CALLS = 3
    out = s.sample(users, pos)
    s.update(users, pos, out)  # resets the count
    s.sample(users, pos)
    s.sample(users, pos)
    with pytest.warns(RuntimeWarning, match=r"KGPolicy: sample\(\) was called "
                      r"3 times without update\(\)"):
        s.sample(users, pos)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        s.sample(users, pos)  # once only


@pytest.mark.parametrize('selection', ['sample', 'recommender_max'])
@pytest.mark.parametrize('normalize', [False, True])
def test_encoder_gradient_matches_autograd_end_to_end(selection, normalize):
    """The gradient Adam receives at a policy step (closed form into the
    cached representations, then one backward pass through forward(),
    normalisation included) equals autograd of the REINFORCE loss."""
    ds = random_dataset(0)
    s, _ = build(ds, refresh_interval=1, pg_fraction=1.0, n1=6, n2=6,
                 selection=selection, normalize=normalize)
    s.personalisation()  # caches the representations without a graph
    users, pos = ds.train_pos.row_ids()[:24], ds.train_pos.indices[:24]
    torch.manual_seed(3)
    out = s.sample(users, pos, 2)
    G = s.returns(s.reward(users, pos, out.proposals))
    adv = G - G.mean(dim=(0, 1))  # first batch: the baseline is the mean
    ref = -(adv * s.step_log_prob(out, s.forward())).sum(-1).mean()
    expect = torch.autograd.grad(ref, list(s.parameters()))
    seen = []
    s.optimizer.step = lambda: seen.append(
        [p.grad.detach().clone() for p in s.parameters()])
    s.update(users, pos, out)
    assert len(seen) == 1
    for got, want in zip(seen[0], expect):
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-7)


# -------------------------------------------- fused and compiled kernels
from kgsampler.sampler import _kgpolicy_compile as kg_compile  # noqa: E402

NO_COMPILE = kg_compile.compile_unavailable()
#: 'eager': the fused kernels run eagerly; 'compiled': through
#: torch.compile (skipped where it cannot run).
KERNELS = ['eager', pytest.param('compiled', marks=pytest.mark.skipif(
    NO_COMPILE is not None, reason=f'torch.compile: {NO_COMPILE}'))]


def with_kernels(s, kind):
    """Gives the sampler the fused kernels (as compile=True does)."""
    s._kernels = kg_compile.Kernels(kind == 'compiled')
    return s


@pytest.mark.parametrize('kind', KERNELS)
@pytest.mark.parametrize('greedy', [False, True])
@pytest.mark.parametrize('seed', [0, 1])
def test_fused_hop_matches_the_operators(kind, greedy, seed):
    """hop_sample against masked_softmax, choose, gather_log_prob and
    entropy_ratio on rows with 0, 1 and several valid candidates (the same
    uniform numbers)."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(9, 5, generator=g) * 3
    valid = torch.rand(9, 5, generator=g) < 0.6
    valid[0] = False  # no candidate
    valid[1] = torch.tensor([False, False, True, False, False])  # one
    valid[2] = True
    k = kg_compile.Kernels(kind == 'compiled')
    torch.manual_seed(seed)
    p_ref = kg_attention.masked_softmax(logits, valid, 'pyg')
    i_ref = kg_attention.choose(p_ref, greedy=greedy)
    torch.manual_seed(seed)
    u = None if greedy else torch.rand(9, 1)
    p, i, lp, ent = k.hop_sample(logits, valid, u)
    assert torch.allclose(p, p_ref, atol=1e-6)
    assert torch.equal(i, i_ref)
    assert i[0] == -1 and i[1] == 2 and lp[0] == 0 and lp[1] == 0
    assert torch.allclose(lp, kg_attention.gather_log_prob(p_ref, i_ref),
                          atol=1e-5)
    assert torch.allclose(ent, kg_attention.entropy_ratio(p_ref, valid),
                          atol=1e-5)
    assert k.compiled == (kind == 'compiled')  # no fallback happened


def test_fused_hop_can_fail():
    """The comparison above fails for a wrong kernel (a shifted draw)."""
    logits, valid = torch.zeros(64, 4), torch.ones(64, 4, dtype=torch.bool)
    torch.manual_seed(0)
    u = torch.rand(64, 1)
    _, i, _, _ = kg_compile.hop_sample(logits, valid, u)
    _, j, _, _ = kg_compile.hop_sample(logits, valid, 1 - u)
    assert not torch.equal(i, j)


@pytest.mark.parametrize('kind', KERNELS)
@pytest.mark.parametrize('selection', ['sample', 'recommender_max'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_fused_walk_and_update_match_eager(kind, selection, seed):
    """Same seed, same walks: the fused (or compiled) sampler draws the
    negatives, proposals and paths of the operator-by-operator one, with
    the same log-probabilities, and its policy steps (closed-form gradient
    through the fused kernels) leave the same parameters."""
    ds = random_dataset(seed)
    runs = []
    for fused in (False, True):
        s, _ = build(ds, seed=seed, refresh_interval=2, pg_fraction=1.0,
                     selection=selection, num_random=seed % 3)
        if fused:
            with_kernels(s, kind)
        torch.manual_seed(10 + seed)
        users = ds.train_pos.row_ids()[:32]
        pos = ds.train_pos.indices[:32]
        outs = []
        for _ in range(4):
            out = s.sample(users, pos, 2)
            s.update(users, pos, out)
            outs.append(out)
        runs.append((s, outs))
    (a, outs_a), (b, outs_b) = runs
    for x, y in zip(outs_a, outs_b):
        assert torch.equal(x.neg_items, y.neg_items)
        assert torch.equal(x.paths, y.paths)
        assert torch.equal(x.fallback, y.fallback)
        assert torch.allclose(x.step_log_prob, y.step_log_prob, atol=1e-5)
        assert torch.allclose(x.rollout.prob2, y.rollout.prob2, atol=1e-6)
    assert a.stats['num_updates'] == b.stats['num_updates'] == 2
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    assert torch.allclose(a.baseline, b.baseline)
    assert b._kernels.compiled == (kind == 'compiled')


@pytest.mark.parametrize('kind', KERNELS)
@pytest.mark.parametrize('seed', range(4))
def test_fused_walk_never_a_training_positive(kind, seed):
    ds = random_dataset(seed)
    s, _ = build(ds, seed=seed, steps=1 + seed % 3, num_random=seed % 3)
    with_kernels(s, kind)
    dense = ds.train_pos.to_dense()
    g = torch.Generator().manual_seed(seed)
    for _ in range(3):
        users = torch.randint(ds.num_users, (64, ), generator=g)
        pos = torch.randint(ds.num_items, (64, ), generator=g)
        out = s.sample(users, pos, 2)
        assert not dense[users.view(-1, 1), out.neg_items].any()
        assert not dense[users.view(-1, 1, 1), out.proposals].any()
        s.update(users, pos, out)
    assert s._kernels.compiled == (kind == 'compiled')


def test_compile_option_and_fallback(tiny, monkeypatch):
    s, _ = build(tiny)
    assert s._kernels is None and s.compile_mode is False
    # where torch.compile cannot run: a warning for True, eager either way
    monkeypatch.setattr(kg_compile, 'compile_unavailable',
                        lambda: 'no C++ compiler (test)')
    with pytest.warns(RuntimeWarning, match='compile=True but no C\\+\\+ '
                      'compiler'):
        s, _ = build(tiny, compile=True)
    assert s._kernels is None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        s, _ = build(tiny, compile='auto')
    assert s._kernels is None
    # where it can: the kernels are compiled (lazily, at their first call)
    monkeypatch.setattr(kg_compile, 'compile_unavailable', lambda: None)
    s, _ = build(tiny, compile='auto')
    assert s._kernels is not None and s._kernels.compiled


def test_compile_failure_at_run_time_falls_back(tiny, monkeypatch):
    """A compilation that fails when first called: one warning, then the
    eager kernels, and the same walks as an eager sampler."""
    def broken(name, fn):
        def run(*args):
            raise RuntimeError('inductor exploded\nsecond line')
        return run
    monkeypatch.setattr(kg_compile, '_compiled', broken)
    monkeypatch.setattr(kg_compile, 'compile_unavailable', lambda: None)
    s, _ = build(tiny, compile=True)
    ref, _ = build(tiny)
    users, pos = torch.tensor([0, 1, 2]), torch.tensor([0, 2, 3])
    torch.manual_seed(5)
    with pytest.warns(RuntimeWarning, match='torch.compile failed '
                      '\\(RuntimeError: inductor exploded\\); running'):
        out = s.sample(users, pos, 2)
    assert not s._kernels.compiled
    torch.manual_seed(5)
    assert torch.equal(out.neg_items, ref.sample(users, pos, 2).neg_items)


@pytest.mark.parametrize('value', ['yes', 1, None])
def test_compile_argument_errors(tiny, value):
    with pytest.raises(ValueError, match="KGPolicy: 'compile' must be True, "
                       "False or 'auto' \\(got"):
        build(tiny, compile=value)
