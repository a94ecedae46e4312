import pytest
import torch

from kgsampler.data import KGRecDataset
from kgsampler.sampler import RandomWalk, format_paths
from kgsampler.sampler import _kgpolicy_graph as kg_graph


@pytest.fixture
def star():
    r"""Two users, seven items (entities 0-6), one genre entity 7::

        u0 ── i0 ──┐            u1 ── i6
                   genre e7 ── i1, i2, i3, i4, i5
        (i6: no KG edge)

    From i0 the only first hop is e7, whose items other than i0 are i1..i5,
    none of them a positive of u0: a one-step walk of u0 ends uniformly on
    i1..i5.
    """
    train = torch.tensor([[0, 0], [1, 6]])
    test = torch.tensor([[0, 1]])
    kg = torch.tensor([[i, 0, 7] for i in range(6)])
    return KGRecDataset(train, test, kg, num_users=2, num_items=7,
                        num_entities=8, valid_ratio=0.0,
                        relation_names=['genre'])


def random_dataset(seed, U=12, I=20, E=30, T=40):
    g = torch.Generator().manual_seed(seed)
    dense = torch.rand(U, I, generator=g) < 0.3
    dense[:, -1] = False  # every user keeps a negative
    dense[torch.arange(U), torch.randint(I - 1, (U, ), generator=g)] = True
    kg = torch.stack([torch.randint(I, (T, ), generator=g),
                      torch.randint(3, (T, ), generator=g),
                      torch.randint(E, (T, ), generator=g)], 1)
    test = torch.stack([torch.arange(U), torch.full((U, ), I - 1)], 1)
    return KGRecDataset(dense.nonzero(), test, torch.unique(kg, dim=0),
                        num_users=U, num_items=I, num_entities=E,
                        valid_ratio=0.0)


def test_one_step_is_uniform_over_the_allowed_items(star):
    torch.manual_seed(0)
    s = RandomWalk.from_dataset(star, steps=1)
    n = 20000
    out = s.sample(torch.zeros(n, dtype=torch.long),
                   torch.zeros(n, dtype=torch.long))
    counts = torch.bincount(out.neg_items.view(-1), minlength=7)
    assert counts[0] == 0 and counts[6] == 0  # the positive, no path to i6
    expected = n / 5  # std ~57: allow 4 std
    assert ((counts[1:6] - expected).abs() < 230).all(), counts
    assert torch.equal(out.paths[:, 0, 1], torch.full((n, ), 2 + 7))
    assert s.summary_stats()['fallback_rate'] == 0.0


@pytest.mark.parametrize('seed', [0, 1, 2])
@pytest.mark.parametrize('steps', [1, 2, 4])
@pytest.mark.parametrize('user_hops', [False, True])
def test_paths_follow_edges_and_never_return_positives(seed, steps,
                                                       user_hops, device):
    ds = random_dataset(seed)
    torch.manual_seed(seed)
    s = RandomWalk.from_dataset(ds, steps=steps, user_hops=user_hops)
    ei, _, num_nodes = kg_graph.collaborative_graph(ds)
    adj = torch.zeros(num_nodes, num_nodes, dtype=torch.bool)
    adj[ei[0], ei[1]] = True  # dense reference of the graph
    users = ds.train_pos.row_ids()
    pos = ds.train_pos.indices
    out = s.to(device).sample(users.to(device), pos.to(device), num_neg=3)
    assert out.neg_items.device == out.paths.device == users.to(device).device
    out.neg_items, out.paths = out.neg_items.cpu(), out.paths.cpu()
    out.fallback = out.fallback.cpu()
    B, U = users.numel(), ds.num_users
    assert out.neg_items.shape == (B, 3) and out.neg_items.dtype == torch.long
    assert out.paths.shape == (B, 3, 2 * steps + 1)
    dense_pos = ds.train_pos.to_dense()
    assert not dense_pos[users.view(-1, 1), out.neg_items].any()
    paths = out.paths.view(-1, 2 * steps + 1)
    cur = paths[:, 0]
    for t in range(steps):
        mid, nxt = paths[:, 2 * t + 1], paths[:, 2 * t + 2]
        hop1 = mid >= 0
        assert adj[cur[hop1], mid[hop1]].all()
        if not user_hops:
            assert (mid[hop1] >= U).all()
        hop2 = nxt >= 0
        assert (hop1 | ~hop2).all()
        assert adj[mid[hop2], nxt[hop2]].all()
        assert ((nxt[hop2] >= U) & (nxt[hop2] < U + ds.num_items)).all()
        u = users.repeat_interleave(3)[hop2]
        assert not dense_pos[u, nxt[hop2] - U].any()  # no proposal positive
        cur = torch.where(hop2, nxt, cur)
    # no node twice on a path
    for row in paths.tolist():
        nodes = [v for v in row if v >= 0]
        assert len(nodes) == len(set(nodes))
    # the negative is the last item reached (or a counted fallback)
    last = (cur - U).view(B, 3)
    assert torch.equal(out.neg_items[~out.fallback], last[~out.fallback])


def test_item_without_kg_neighbour_falls_back(star):
    s = RandomWalk.from_dataset(star)
    out = s.sample(torch.tensor([1]), torch.tensor([6]))  # B = 1
    assert out.neg_items.shape == (1, 1) and out.fallback.all()
    assert out.neg_items.item() != 6
    assert (out.paths[0, 0, 1:] == -1).all()
    stats = s.summary_stats()
    assert stats['fallback_rate'] == 1.0
    assert stats['no_neighbour_rate'] == 1.0
    lines = format_paths(star, torch.tensor([1]), out, n=1)
    assert 'uniform fallback' in lines[0]


def test_deterministic_with_seed_and_device(star):
    s = RandomWalk.from_dataset(star, steps=3)
    users, pos = torch.tensor([0, 0, 1]), torch.tensor([0, 0, 6])
    torch.manual_seed(5)
    a = s.sample(users, pos, 2)
    torch.manual_seed(5)
    b = s.sample(users, pos, 2)
    assert torch.equal(a.neg_items, b.neg_items)
    assert torch.equal(a.paths, b.paths)
    assert s.to('cpu') is s and a.neg_items.device == users.device
    assert repr(s) == 'RandomWalk(num_nodes=10, steps=3, user_hops=False)'
    assert not s.learnable and not s.requires_scorer


def test_errors(star):
    ei, _, _ = kg_graph.collaborative_graph(star)
    with pytest.raises(ValueError, match=r"RandomWalk: 'steps' must be a "
                                         r"positive int \(got 0\)"):
        RandomWalk(star.train_pos, ei, 8, steps=0)
    with pytest.raises(ValueError, match=r"'num_tries' must be a positive "
                                         r"int \(got True\)"):
        RandomWalk(star.train_pos, ei, 8, num_tries=True)
    with pytest.raises(ValueError, match=r"'num_entities' must count the "
                                         r"items too \(got 3 < 7 items\)"):
        RandomWalk(star.train_pos, ei, 3)
    with pytest.raises(ValueError, match=r"'edge_index' must hold node ids in "
                                         r"\[0, 10\)"):
        RandomWalk(star.train_pos, ei + 10, 8)
    with pytest.raises(ValueError, match=r"'edge_index' must be an integer "
                                         r"\[2, E\] tensor"):
        RandomWalk(star.train_pos, ei.float(), 8)
    with pytest.raises(TypeError, match=r"'user_hops' must be a bool"):
        RandomWalk(star.train_pos, ei, 8, user_hops='no')
