"""MixGCF: positive mixing, hop mixing and the synthetic-negative path
through LightGCN's loss and the Trainer."""
import copy

import pytest
import torch
import torch.nn.functional as F

from kgsampler import MF, LightGCN, MixGCF, Trainer, UserItemCSR
from kgsampler.recommender.base import LayerEmbeddings
from kgsampler.sampler import SamplerOutput


@pytest.fixture
def graph():
    r"""Three users, six items; training positives (``x``)::

                 item 0  1  2  3  4  5
        user 0        x  x  .  .  .  .
        user 1        .  x  x  .  .  .
        user 2        .  .  .  x  .  .

    Every user keeps at least three non-positives.
    """
    pairs = torch.tensor([[0, 0, 1, 1, 2], [0, 1, 1, 2, 3]])
    return UserItemCSR.from_pairs(pairs[0], pairs[1], 3, 6)


@pytest.fixture
def model(graph):
    torch.manual_seed(0)
    return LightGCN(3, 6, graph, embedding_dim=4, num_layers=2, reg=1e-2)


USERS = torch.tensor([0, 1, 2, 0])
POS = torch.tensor([1, 2, 3, 0])


@pytest.mark.parametrize('num_neg', [1, 3])
@pytest.mark.parametrize('num_candidates', [1, 4])
def test_shapes_and_no_training_positive(graph, model, num_neg,
                                         num_candidates):
    s = MixGCF(graph, scorer=model, num_candidates=num_candidates)
    dense = graph.to_dense().bool()
    for seed in range(20):
        torch.manual_seed(seed)
        out = s.sample(USERS, POS, num_neg)
        assert out.neg_items.shape == (4, num_neg)
        assert out.neg_items.dtype == torch.long
        assert not dense[USERS.view(-1, 1), out.neg_items].any()
        assert out.neg_embeddings.shape == (4, num_neg, 3, 4)
        assert out.neg_embeddings.requires_grad


def _fixed(monkeypatch, s, cand, alpha):
    """Makes the sampler's candidates :obj:`cand` ``[B, N*M]`` and its
    mixing weights :obj:`alpha` ``[B, N, L+1, 1]``."""
    monkeypatch.setattr(s, 'uniform_negatives',
                        lambda users: cand.clone())
    monkeypatch.setattr(torch, 'rand', lambda *a, **k: alpha.clone())


def test_matches_dense_reference(graph, model, monkeypatch):
    s = MixGCF(graph, scorer=model, num_candidates=3)
    B, N, M, L1 = 4, 2, 3, 3
    cand = torch.tensor([[2, 3, 4, 5, 2, 3], [0, 3, 4, 5, 4, 0],
                         [0, 1, 2, 4, 5, 5], [2, 3, 4, 5, 3, 2]])
    g = torch.Generator().manual_seed(1)
    alpha = torch.rand(B, N, L1, 1, generator=g)
    _fixed(monkeypatch, s, cand, alpha)
    out = s.sample(USERS, POS, N)
    monkeypatch.undo()
    with torch.no_grad():
        le = model.layer_embeddings()
        w = le.weight
        ref_emb = torch.empty(B, N, L1, 4)
        ref_items = torch.empty(B, N, dtype=torch.long)
        overruled = 0  # rows whose real item is not layer 0's choice
        for b in range(B):
            u = (le.user[USERS[b]] * w.view(-1, 1)).sum(0)  # pooled query
            p = le.item[POS[b]]
            for n in range(N):
                picks = []
                for layer in range(L1):
                    a = alpha[b, n, layer, 0]
                    mixed = [a * p[layer] + (1 - a) *
                             le.item[cand[b, n * M + m], layer]
                             for m in range(M)]  # positive mixing
                    best = max(range(M), key=lambda m: float(u @ mixed[m]))
                    ref_emb[b, n, layer] = mixed[best]  # hop mixing
                    picks.append(int(cand[b, n * M + best]))
                counts = [picks.count(i) for i in picks]
                ref_items[b, n] = picks[counts.index(max(counts))]
                overruled += ref_items[b, n] != picks[0]
    torch.testing.assert_close(out.neg_embeddings.detach(), ref_emb)
    assert torch.equal(out.neg_items, ref_items)
    assert overruled > 0  # the data exercise the most-chosen rule


def test_loss_matches_dense_reference(graph, model):
    torch.manual_seed(3)
    s = MixGCF(graph, scorer=model, num_candidates=3)
    out = s.sample(USERS, POS, 2)
    loss = model.loss(USERS, POS, out.neg_items,
                      neg_embeddings=out.neg_embeddings)
    syn = out.neg_embeddings.detach()
    with torch.no_grad():
        le = model.layer_embeddings()
        u = le.user[USERS].mean(1)
        p = le.item[POS].mean(1)
        n = syn.mean(2)
        bpr = -F.logsigmoid((u * p).sum(-1, keepdim=True) -
                            (n * u.unsqueeze(1)).sum(-1)).mean()
        e0 = model.gnn.embedding.weight
        l2 = (e0[USERS].pow(2).sum(-1) + e0[POS + 3].pow(2).sum(-1) +
              syn[:, :, 0].pow(2).sum(-1).mean(-1)).mean() / 2
    torch.testing.assert_close(loss.detach(), bpr + 1e-2 * l2)


def test_loss_of_real_items_as_embeddings_is_the_id_loss(graph, model):
    neg = torch.tensor([[3, 4], [0, 5], [4, 4], [2, 5]])
    with torch.no_grad():
        emb = model.layer_embeddings().item[neg].clone()
    a = model.loss(USERS, POS, neg)
    b = model.loss(USERS, POS, neg, neg_embeddings=emb)
    torch.testing.assert_close(a, b)


def test_shared_propagation_gives_the_fresh_gradients(graph, model):
    torch.manual_seed(5)
    twin = copy.deepcopy(model)
    s = MixGCF(graph, scorer=model, num_candidates=3)
    out = s.sample(USERS, POS, 2)
    model.loss(USERS, POS, out.neg_items,
               neg_embeddings=out.neg_embeddings).backward()
    assert model._layer_grad is None  # used once
    # the twin: the same synthetic negatives, a fresh propagation in loss
    torch.manual_seed(5)
    t = MixGCF(graph, scorer=twin, num_candidates=3)
    out_t = t.sample(USERS, POS, 2)
    twin._layer_grad = None
    twin.loss(USERS, POS, out_t.neg_items,
              neg_embeddings=out_t.neg_embeddings).backward()
    g, gt = model.gnn.embedding.weight.grad, twin.gnn.embedding.weight.grad
    assert g.abs().sum() > 0
    torch.testing.assert_close(g, gt)
    # the positive's and the chosen candidates' ego rows get gradients
    rows = torch.cat([POS, out.neg_items.view(-1)]) + 3
    assert (g[rows].abs().sum(-1) > 0).all()


def test_layer_embeddings_cache(graph, model):
    with torch.no_grad():
        a, b = model.layer_embeddings(), model.layer_embeddings()
        assert a.user.data_ptr() == b.user.data_ptr()  # one propagation
        torch.testing.assert_close(
            torch.cat([a.pool(a.user), a.pool(a.item)]),
            model.get_embedding())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.loss(USERS, POS, torch.tensor([[3], [0], [4], [2]])).backward()
    opt.step()
    with torch.no_grad():
        c = model.layer_embeddings()
    assert not torch.equal(c.user, a.user)  # propagated afresh
    assert isinstance(c, LayerEmbeddings) and c.num_layers == 2


def test_layer_propagation_serves_score(graph, model, monkeypatch):
    s = MixGCF(graph, scorer=model, num_candidates=2)
    s.sample(USERS, POS, 1)
    items = torch.tensor([[4], [5], [0], [3]])

    def no_propagation(*args, **kwargs):
        raise AssertionError('propagated again')
    monkeypatch.setattr(model.gnn, 'get_embedding', no_propagation)
    with torch.no_grad():  # what the Trainer's grad_magnitude asks
        got = model.score(USERS, items)
        le = model.layer_embeddings()
        ref = le.score(USERS, le.item[items])
    torch.testing.assert_close(got, ref)


def test_deepcopy_after_sampling(graph, model):
    s = MixGCF(graph, scorer=model, num_candidates=2)
    s.sample(USERS, POS, 1)  # leaves an autograd propagation for loss
    twin = copy.deepcopy(model)
    assert twin._layer_grad is None


def test_narrow_keeps_synthetic_rows(graph, model):
    s = MixGCF(graph, scorer=model, num_candidates=2)
    out = s.sample(USERS, POS, 2)
    part = out.narrow(1, 2)
    assert torch.equal(part.neg_items, out.neg_items[1:3])
    assert torch.equal(part.neg_embeddings, out.neg_embeddings[1:3])
    assert SamplerOutput(out.neg_items).neg_embeddings is None


def _synthetic():
    from kgsampler import make_synthetic
    return make_synthetic(num_users=24, num_items=30, num_genres=3,
                          num_creators=4, num_eras=2, seed=0)


class _Recording(LightGCN):
    seen = []

    def loss(self, users, pos_items, neg_items, **kwargs):
        self.seen.append(sorted(kwargs))
        return super().loss(users, pos_items, neg_items, **kwargs)


def test_trainer_passes_synthetic_negatives(graph):
    from kgsampler.sampler import RNS
    ds = _synthetic()
    torch.manual_seed(0)
    model = _Recording.from_dataset(ds, embedding_dim=4, num_layers=1)
    _Recording.seen = []
    Trainer(model, MixGCF.from_dataset(ds, scorer=model, num_candidates=2),
            ds, batch_size=16, max_epochs=1, progress=False).fit()
    assert _Recording.seen and all(k == ['neg_embeddings']
                                   for k in _Recording.seen)
    _Recording.seen = []
    Trainer(model, RNS(ds.train_pos), ds, batch_size=16, max_epochs=1,
            progress=False).fit()
    assert _Recording.seen and all(k == [] for k in _Recording.seen)


def _fit(seed):
    ds = _synthetic()
    torch.manual_seed(seed)
    model = LightGCN.from_dataset(ds, embedding_dim=4, num_layers=2)
    res = Trainer(model, MixGCF.from_dataset(ds, scorer=model,
                                             num_candidates=3),
                  ds, batch_size=16, max_epochs=2, progress=False).fit()
    return [row['loss'] for row in res.history], model


def test_same_seed_same_training():
    (la, ma), (lb, mb), (lc, _) = _fit(1), _fit(1), _fit(2)
    assert la == lb and la != lc
    assert torch.equal(ma.gnn.embedding.weight, mb.gnn.embedding.weight)


def test_grad_magnitude_scores_the_synthetic_negative(graph, model):
    ds = _synthetic()
    m = LightGCN.from_dataset(ds, embedding_dim=4, num_layers=2)
    trainer = Trainer(m, MixGCF.from_dataset(ds, scorer=m), ds,
                      progress=False)
    users, pos = torch.tensor([0, 1]), torch.tensor([0, 1])
    neg = torch.tensor([[2], [3]])
    syn = torch.randn(2, 1, 3, 4)
    with torch.no_grad():
        le = m.layer_embeddings()
        u, p = le.pool(le.user[users]), le.pool(le.item[pos])
        n = syn.mean(2)[:, 0]
        ref = (1 - torch.sigmoid((u * p).sum(-1) - (u * n).sum(-1))).mean()
    got = trainer._grad_magnitude(users, pos, neg, neg_embeddings=syn)
    torch.testing.assert_close(got, ref)
    assert not torch.allclose(trainer._grad_magnitude(users, pos, neg), ref)


# ------------------------------------------------------------------ errors
@pytest.mark.parametrize('bad', [0, -1, 2.0, True])
def test_bad_num_candidates(graph, bad):
    with pytest.raises(ValueError, match=r"MixGCF: 'num_candidates' must be "
                       r"a positive int \(got"):
        MixGCF(graph, num_candidates=bad)


def test_recommender_without_layer_embeddings(graph):
    with pytest.raises(TypeError, match=r'MixGCF: the recommender MF has no '
                       r'layer_embeddings\(\)'):
        MixGCF(graph, scorer=MF(3, 6))
    s = MixGCF(graph)
    with pytest.raises(TypeError, match=r'recommender MF has no'):
        s.set_scorer(MF(3, 6))


def test_no_scorer(graph):
    with pytest.raises(RuntimeError, match=r'MixGCF: no scorer set'):
        MixGCF(graph).sample(USERS, POS)


def test_malformed_layer_embeddings(graph, model):
    class Wrong:
        def score(self, users, items):
            return model.score(users, items)

        def layer_embeddings(self):
            le = model.layer_embeddings()
            return LayerEmbeddings(le.user, le.item[:-1], le.weight)

    s = MixGCF(graph, scorer=Wrong())
    with pytest.raises(RuntimeError, match=r'MixGCF: Wrong.layer_embeddings'
                       r'\(\) must return user \(3, L \+ 1, D\) and item '
                       r'\(6, L \+ 1, D\)'):
        s.sample(USERS, POS)


@pytest.mark.parametrize('shape', [(4, 1, 3, 4), (4, 2, 2, 4), (4, 2, 3, 5)])
def test_loss_rejects_misshapen_neg_embeddings(model, shape):
    neg = torch.tensor([[3, 4], [0, 5], [4, 4], [2, 5]])
    with pytest.raises(ValueError, match=r"LightGCN.loss: 'neg_embeddings' "
                       r"must be of shape \(B, N, num_layers \+ 1, "
                       r"embedding_dim\) = \(4, 2, 3, 4\)"):
        model.loss(USERS, POS, neg, neg_embeddings=torch.zeros(shape))


def test_repr(graph, model):
    assert repr(MixGCF(graph, num_candidates=5)) == \
        'MixGCF(num_candidates=5)'
    assert repr(model.layer_embeddings()) == (
        'LayerEmbeddings(num_users=3, num_items=6, num_layers=2, dim=4)')
