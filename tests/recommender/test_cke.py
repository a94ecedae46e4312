"""TransR on PyG's KGEModel and the CKE recommender built on it."""
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn.kge import KGEModel

from kgsampler import Trainer
from kgsampler.data import KGRecDataset, make_synthetic
from kgsampler.recommender import Recommender
from kgsampler.recommender.transr import TransR
from kgsampler.recommender.cke import CKE
from kgsampler.sampler import DNS, RNS, Scorer

CONF = Path(__file__).resolve().parents[2] / 'conf' / 'recommender'


@pytest.fixture
def kg():
    r"""Three items (entities 0-2), two other entities (3, 4), two
    relations; five triples (head, relation, tail)::

        i0 ──r0──> e3 <──r0── i1
                   ^           \
                   r0           r1
                   |             v
                   i2 ───r1───> e4

    i.e. (0, 0, 3), (1, 0, 3), (1, 1, 4), (2, 0, 3), (2, 1, 4).
    """
    return torch.tensor([[0, 0, 3], [1, 0, 3], [1, 1, 4], [2, 0, 3],
                         [2, 1, 4]])


@pytest.fixture
def ds(kg):
    r"""The KG of :func:`kg` with two users: u0 trained on i0, i1 and u1 on
    i2 (tested on i2 and i0 respectively); no validation split."""
    train = torch.tensor([[0, 0], [0, 1], [1, 2]])
    test = torch.tensor([[0, 2], [1, 0]])
    return KGRecDataset(train, test, kg, num_entities=5, num_relations=2,
                        valid_ratio=0.0)


def transr_reference(model, h, r, t):
    r"""TransR's score triple by triple in double precision, from the
    parameters: :math:`-\|\bar{h M_r} + \bar{r} - \bar{t M_r}\|^2`."""
    E = model.node_emb.weight.detach().double()
    R = model.rel_emb.weight.detach().double()
    W = model.proj.weight.detach().double()
    norm = (lambda x: x / x.norm()) if model.normalize else (lambda x: x)
    out = []
    for hi, ri, ti in zip(h.tolist(), r.tolist(), t.tolist()):
        hr, tr = norm(E[hi] @ W[ri]), norm(E[ti] @ W[ri])
        out.append(-(hr + norm(R[ri]) - tr).pow(2).sum())
    return torch.stack(out).float()


# ----------------------------------------------------------------- TransR
def test_transr_is_a_pyg_kge_model():
    model = TransR(5, 2, hidden_channels=4, rel_channels=3)
    assert isinstance(model, KGEModel)
    assert str(model) == ('TransR(5, num_relations=2, hidden_channels=4, '
                          'rel_channels=3)')
    assert model.node_emb.weight.shape == (5, 4)
    assert model.rel_emb.weight.shape == (2, 3)
    assert model.proj.weight.shape == (2, 4, 3)
    assert TransR(5, 2, 4).rel_channels == 4


def test_transr_score_by_hand():
    r""":math:`d = k = 2`, no normalisation: :math:`e_0 = (1, 1)`,
    :math:`M_0 = \mathrm{diag}(1, 2)` gives :math:`h_r = (1, 2)`;
    :math:`e_3 = (1, 0)` gives :math:`t_r = (1, 0)`; :math:`r_0 = (0, -1)`,
    so :math:`h_r + r - t_r = (0, 1)` and the score is :math:`-1`. With
    normalisation: :math:`\bar{h}_r = (1, 2)/\sqrt{5}`, :math:`\bar{t}_r =
    (1, 0)`, :math:`\bar{r} = (0, -1)`: :math:`-((1/\sqrt5 - 1)^2 +
    (2/\sqrt5 - 1)^2)`."""
    for normalize, expected in (
            (False, -1.0),
            (True, -((1 / math.sqrt(5) - 1)**2 + (2 / math.sqrt(5) - 1)**2))):
        model = TransR(5, 2, 2, normalize=normalize)
        with torch.no_grad():
            model.node_emb.weight[0] = torch.tensor([1., 1.])
            model.node_emb.weight[3] = torch.tensor([1., 0.])
            model.proj.weight[0] = torch.tensor([[1., 0.], [0., 2.]])
            model.rel_emb.weight[0] = torch.tensor([0., -1.])
        out = model(torch.tensor([0]), torch.tensor([0]), torch.tensor([3]))
        assert out.shape == (1, )
        assert out.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('rel_channels', [2, 5])
@pytest.mark.parametrize('hidden_channels', [1, 3])
def test_transr_forward_matches_reference(kg, device, hidden_channels,
                                          rel_channels, normalize):
    torch.manual_seed(0)
    model = TransR(5, 2, hidden_channels, rel_channels,
                   normalize=normalize).to(device)
    h, r, t = kg.t().to(device)
    out = model(h, r, t)
    assert out.shape == (5, ) and out.device.type == device.type
    ref = transr_reference(model.cpu(), h.cpu(), r.cpu(), t.cpu())
    assert torch.allclose(out.cpu(), ref, atol=1e-5)
    model.to(device)
    # any shape (*): a (2, 5) grid of the triples with swapped tails
    grid_t = torch.stack([t, t.flip(0)])
    out2 = model(torch.stack([h, h]), torch.stack([r, r]), grid_t)
    assert out2.shape == (2, 5)
    assert torch.allclose(out2[0], out, atol=1e-6)


@pytest.mark.parametrize('normalize', [True, False])
@pytest.mark.parametrize('num_rows', [1, 7, 40])
def test_transr_projection(device, num_rows, normalize):
    torch.manual_seed(1)
    model = TransR(6, 4, 3, 2, normalize=normalize).to(device)
    nodes = torch.randint(6, (num_rows, ), device=device)
    rels = torch.randint(4, (num_rows, ), device=device)  # unsorted
    out = model.project(nodes, rels)
    assert out.shape == (num_rows, 2)
    ref = (model.node_emb.weight[nodes].unsqueeze(1) @
           model.proj.weight[rels]).squeeze(1)
    if normalize:
        ref = ref / ref.norm(dim=-1, keepdim=True)
        assert torch.allclose(out.norm(dim=-1),
                              torch.ones(num_rows, device=device), atol=1e-5)
    assert torch.allclose(out, ref, atol=1e-5)
    # (*) shapes keep their layout
    assert model.project(nodes.view(1, -1), rels.view(1, -1)).shape == \
        (1, num_rows, 2)


@pytest.mark.parametrize('num_rows', [1, 9, 50])
def test_transr_projection_matches_heterolinear(num_rows):
    r"""The per-relation product (and its gradients) equals PyG's
    :class:`HeteroLinear` forward on the same weight, relations missing
    from the batch included."""
    torch.manual_seed(2)
    model = TransR(8, 5, 4, 3)
    x = torch.randn(num_rows, 4, requires_grad=True)
    rels = torch.randint(3, (num_rows, ))  # relations 3, 4 absent
    out = model.project_embeddings(x, rels)
    gx, gw = torch.autograd.grad(out.pow(2).sum(), [x, model.proj.weight])
    ref = model.proj(x, rels)
    rx, rw = torch.autograd.grad(ref.pow(2).sum(), [x, model.proj.weight])
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(gx, rx, atol=1e-5)
    assert torch.allclose(gw, rw, atol=1e-5)
    assert gw[3:].abs().sum() == 0


def test_transr_loss(kg):
    torch.manual_seed(3)
    model = TransR(5, 2, 3, 4)
    h, r, t = kg.t()
    neg_t = torch.tensor([4, 4, 3, 4, 3])
    pos = transr_reference(model, h, r, t)
    neg = transr_reference(model, h, r, neg_t)
    ref = -F.logsigmoid(pos - neg).mean()
    assert torch.allclose(model.loss(h, r, t, neg_t), ref, atol=1e-6)
    # without corrupted tails: PyG's random_sample (half heads, half tails)
    torch.manual_seed(4)
    out = model.loss(h, r, t)
    torch.manual_seed(4)
    nh, _, nt = model.random_sample(h, r, t)
    assert torch.equal(nh[2:], h[2:]) and torch.equal(nt[:2], t[:2])
    ref = -F.logsigmoid(pos - transr_reference(model, nh, r, nt)).mean()
    assert torch.allclose(out, ref, atol=1e-6)


def test_transr_trains_with_pyg_loader_and_test(kg):
    r"""PyG's :meth:`loader` feeds :meth:`loss`; a few hundred Adam steps
    rank the true tails first (:meth:`test`: mean rank, MRR, Hits@1)."""
    torch.manual_seed(5)
    model = TransR(5, 2, 8, 8)
    h, r, t = kg.t()
    loader = model.loader(h, r, t, batch_size=2, shuffle=True)
    batch = next(iter(loader))
    assert len(batch) == 3 and batch[0].numel() == 2
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        for hb, rb, tb in loader:
            loss = model.loss(hb, rb, tb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            first = loss.item() if first is None else first
    assert model.loss(h, r, t).item() < first
    mean_rank, mrr, hits = model.test(h, r, t, batch_size=3, k=2, log=False)
    assert mean_rank <= 1.0 and mrr > 0.7 and hits >= 0.8


def test_transr_reset_parameters():
    model = TransR(5, 2, 3)
    before = [p.clone() for p in model.parameters()]
    model.reset_parameters()
    assert all(not torch.equal(a, b)
               for a, b in zip(before, model.parameters()))
    bound = math.sqrt(6 / (3 + 3))
    assert model.proj.weight.abs().max() <= bound


def test_transr_errors():
    with pytest.raises(ValueError, match=r"TransR: 'num_nodes' must be a "
                       r"positive int \(got 0\)"):
        TransR(0, 2, 3)
    with pytest.raises(ValueError, match=r"TransR: 'rel_channels' must be a "
                       r"positive int \(got -1\)"):
        TransR(5, 2, 3, rel_channels=-1)
    with pytest.raises(ValueError, match=r"TransR: 'hidden_channels' must "
                       r"be a positive int \(got True\)"):
        TransR(5, 2, True)
    with pytest.raises(TypeError, match=r"TransR: 'normalize' must be a "
                       r"bool \(got 'yes'\)"):
        TransR(5, 2, 3, normalize='yes')
    model = TransR(5, 2, 3)
    i = torch.tensor([0, 1])
    with pytest.raises(ValueError, match=r"TransR.forward: 'head_index', "
                       r"'rel_type', 'tail_index' must have the same shape "
                       r"\(got \(2,\), \(1,\), \(2,\)\)"):
        model(i, i[:1], i)
    with pytest.raises(TypeError, match=r"TransR.forward: 'tail_index' must "
                       r"be an integer tensor \(got torch.float32\)"):
        model(i, i, i.float())
    with pytest.raises(ValueError, match=r"TransR.loss: 'head_index', "
                       r"'rel_type', 'tail_index', 'neg_tail_index' must "
                       r"have the same shape"):
        model.loss(i, i, i, i[:1])
    with pytest.raises(ValueError, match=r"TransR.loss: the indices must be "
                       r"one-dimensional \(got shape \(1, 2\)\)"):
        model.loss(i.view(1, 2), i.view(1, 2), i.view(1, 2))
    with pytest.raises(ValueError, match=r"TransR.project_embeddings: 'x' "
                       r"must be \(n, d\) and 'rel_type' \(n\)"):
        model.project_embeddings(torch.randn(2, 3), i[:1])


# -------------------------------------------------------------------- CKE
def test_cke_is_a_recommender(ds):
    model = CKE(ds, embedding_dim=4, kg_embedding_dim=3)
    assert isinstance(model, Recommender) and isinstance(model, Scorer)
    assert str(model) == ('CKE(2, 3, num_entities=5, num_relations=2, '
                          'embedding_dim=4, kg_embedding_dim=3)')
    assert isinstance(model.kge, TransR)
    assert model.kge.node_emb.weight.shape == (5, 4)
    assert model.kge.rel_channels == 3
    # default KG batch: triples / training pairs = 5 / 3
    assert model.kg_batch_ratio == pytest.approx(5 / 3)
    # the triples follow the module but stay out of its state
    assert not any(k.startswith('kg_') for k in model.state_dict())


def dense_item_vectors(model):
    return model.item_emb.weight + model.kge.node_emb.weight[:3]


@pytest.mark.parametrize('num_cand', [1, 3])
@pytest.mark.parametrize('users', [[1], [0, 1], [1, 1, 0]])
def test_cke_score_matches_dense_reference(ds, device, users, num_cand):
    torch.manual_seed(0)
    model = CKE(ds, embedding_dim=4).to(device)
    users = torch.tensor(users, device=device)
    items = torch.randint(3, (users.numel(), num_cand), device=device)
    out = model.score(users, items)
    assert out.shape == (users.numel(), num_cand)
    dense = model.user_emb.weight @ dense_item_vectors(model).t()  # [2, 3]
    assert torch.allclose(out, dense[users.view(-1, 1), items], atol=1e-6)
    full = model.full_scores(users)
    assert full.shape == (users.numel(), 3) and full.device == users.device
    all_items = torch.arange(3, device=device).expand(users.numel(), 3)
    assert torch.allclose(full, model.score(users, all_items), atol=1e-6)
    assert torch.allclose(full, dense[users], atol=1e-6)
    sim = model.similarity(users, items)  # item ids 0..1 as references
    v = dense_item_vectors(model)
    assert torch.allclose(sim, (v[items] * v[users].unsqueeze(1)).sum(-1),
                          atol=1e-6)


@pytest.mark.parametrize('num_neg', [1, 2])
@pytest.mark.parametrize('batch', [1, 4])
def test_cke_loss_matches_reference(ds, batch, num_neg):
    torch.manual_seed(1)
    model = CKE(ds, embedding_dim=4, reg=0.3, kg_weight=0.7,
                kg_batch_ratio=1.5)
    users = torch.randint(2, (batch, ))
    pos = torch.randint(3, (batch, ))
    neg = torch.randint(3, (batch, num_neg))
    U, V = model.user_emb.weight, dense_item_vectors(model)
    u, p, n = U[users], V[pos], V[neg]
    bpr = -F.logsigmoid((u * p).sum(-1, keepdim=True) -
                        (u.unsqueeze(1) * n).sum(-1)).mean()
    l2 = (u.pow(2).sum(-1) + p.pow(2).sum(-1) +
          n.pow(2).sum(-1).mean(-1)).mean() / 2
    torch.manual_seed(2)
    out = model.loss(users, pos, neg)
    torch.manual_seed(2)
    h, r, t, nt = model.sample_kg_batch(math.ceil(1.5 * batch))
    assert h.numel() == math.ceil(1.5 * batch)
    kg = -F.logsigmoid(transr_reference(model.kge, h, r, t) -
                       transr_reference(model.kge, h, r, nt)).mean()
    assert torch.allclose(out, bpr + 0.3 * l2 + 0.7 * kg, atol=1e-5)
    # kg_weight 0: MF-like loss on the summed vectors, no KG batch drawn
    model.kg_weight = 0.0
    state = torch.get_rng_state()
    assert torch.allclose(model.loss(users, pos, neg), bpr + 0.3 * l2,
                          atol=1e-6)
    assert torch.equal(state, torch.get_rng_state())


def test_cke_loss_trains_both_parts(ds):
    r"""The recommendation loss reaches the item entities' embeddings, the
    KG loss also the other entities and TransR's relations."""
    model = CKE(ds, embedding_dim=4, kg_weight=0.0)
    users, pos, neg = torch.tensor([0]), torch.tensor([1]), \
        torch.tensor([[2]])
    model.loss(users, pos, neg).backward()
    g = model.kge.node_emb.weight.grad
    assert g[[1, 2]].abs().sum() > 0 and g[3:].abs().sum() == 0
    assert model.kge.proj.weight.grad is None
    model.zero_grad()
    model.kg_weight = 1.0
    model.kg_batch_ratio = 50.0
    model.loss(users, pos, neg).backward()
    assert model.kge.node_emb.weight.grad[3:].abs().sum() > 0
    assert model.kge.proj.weight.grad.abs().sum() > 0
    assert model.kge.rel_emb.weight.grad.abs().sum() > 0


def test_cke_kg_batch(ds, kg):
    model = CKE(ds)
    h, r, t, nt = model.sample_kg_batch(2000)
    for x in (h, r, t, nt):
        assert x.shape == (2000, ) and x.dtype == torch.long
    true = {tuple(row) for row in kg.tolist()}
    assert all(row in true for row in zip(h.tolist(), r.tolist(),
                                          t.tolist()))
    assert nt.min() >= 0 and nt.max() < 5
    # a corrupted tail that hits a true triple is redrawn (4 times): of the
    # 2000 rows here about 2000 / 3^4 would still hit without the filter
    # on the first draw alone 2/5 or 1/5 do
    hits = sum(row in true for row in zip(h.tolist(), r.tolist(),
                                          nt.tolist()))
    assert hits < 100


def test_cke_corrupted_tails_are_never_true_on_a_larger_kg():
    ds = make_synthetic(num_users=40, num_items=60, num_genres=4,
                        num_creators=6, num_eras=3)
    model = CKE(ds)
    torch.manual_seed(0)
    h, r, t, nt = model.sample_kg_batch(20000)
    E, R = ds.num_entities, ds.num_relations
    keys = set(((ds.kg[:, 0] * R + ds.kg[:, 1]) * E + ds.kg[:, 2]).tolist())
    assert not any(k in keys for k in ((h * R + r) * E + nt).tolist())
    assert len(set(nt.tolist())) > 0.9 * E  # uniform over all entities


def test_cke_kg_batch_size_follows_the_cf_batch(ds, monkeypatch):
    model = CKE(ds, kg_batch_ratio=0.25)
    sizes = []
    orig = model.sample_kg_batch
    monkeypatch.setattr(model, 'sample_kg_batch',
                        lambda n: sizes.append(n) or orig(n))
    for batch in (1, 4, 9):
        users = torch.zeros(batch, dtype=torch.long)
        model.loss(users, users, users.view(-1, 1))
    assert sizes == [1, 1, 3]


def test_cke_reset_parameters(ds):
    model = CKE(ds)
    before = [p.clone() for p in model.parameters()]
    model.reset_parameters()
    assert all(not torch.equal(a, b)
               for a, b in zip(before, model.parameters()))


def test_cke_errors(ds, kg):
    with pytest.raises(TypeError, match=r"CKE: 'dataset' must provide "
                       r"'num_users', as KGRecDataset does \(got int\)"):
        CKE(3)
    with pytest.raises(ValueError, match=r"CKE: 'embedding_dim' must be a "
                       r"positive int \(got 0\)"):
        CKE(ds, embedding_dim=0)
    with pytest.raises(ValueError, match=r"CKE: 'reg' must be a finite "
                       r"non-negative number \(got -1.0\)"):
        CKE(ds, reg=-1.0)
    with pytest.raises(ValueError, match=r"CKE: 'kg_weight' must be a "
                       r"finite non-negative number \(got nan\)"):
        CKE(ds, kg_weight=float('nan'))
    with pytest.raises(ValueError, match=r"CKE: 'kg_batch_ratio' must be a "
                       r"finite positive number \(got 0\)"):
        CKE(ds, kg_batch_ratio=0)
    empty = KGRecDataset(torch.tensor([[0, 0]]), torch.tensor([[0, 1]]),
                         torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"CKE: 'dataset.kg' holds no "
                       r"triples"):
        CKE(empty)
    model = CKE(ds)
    with pytest.raises(ValueError, match=r"CKE.score: 'users' must be \(B\) "
                       r"and 'items' \(B, K\) \(got shapes \(2,\) and "
                       r"\(2,\)\)"):
        model.score(torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"CKE.loss: 'pos_items' must have "
                       r"the shape of 'users' \(got \(1,\) and \(2,\)\)"):
        model.loss(torch.tensor([0, 1]), torch.tensor([0]),
                   torch.tensor([[1], [2]]))
    with pytest.raises(ValueError, match=r"CKE.sample_kg_batch: "
                       r"'num_triples' must be a positive int \(got 0\)"):
        model.sample_kg_batch(0)


def test_cke_from_the_cli_config(ds):
    """The packaged config builds CKE the way ``kgsampler-train`` does: the
    CLI hands over ``dataset`` because the constructor names it."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from kgsampler.cli import recommender_args
    cfg = OmegaConf.load(CONF / 'cke.yaml')
    args = recommender_args(cfg._target_, ds)
    assert set(args) == {'dataset'}
    model = instantiate(cfg, _partial_=True)(**args)
    assert isinstance(model, CKE) and model.embedding_dim == 64


@pytest.fixture(scope='module')
def synthetic():
    return make_synthetic(num_users=60, num_items=50, num_genres=4,
                          num_creators=6, num_eras=3)


@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_cke_trains_one_epoch(synthetic, sampler):
    torch.manual_seed(0)
    model = CKE(synthetic, embedding_dim=16, kg_embedding_dim=8)
    s = RNS(synthetic.train_pos) if sampler == 'rns' else \
        DNS(synthetic.train_pos, num_candidates=4)
    res = Trainer(model, s, synthetic, lr=0.01, batch_size=64, max_epochs=1,
                  progress=False).fit()
    assert res.epochs_run == 1
    assert math.isfinite(res.history[0]['loss'])
    for key in ('recall@20', 'ndcg@20'):
        assert math.isfinite(res.test[key]) and 0 <= res.test[key] <= 1
        assert math.isfinite(res.valid[key])
