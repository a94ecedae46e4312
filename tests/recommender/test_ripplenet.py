import math

import pytest
import torch
import torch.nn.functional as F

from kgsampler import Trainer
from kgsampler.data import KGRecDataset, make_synthetic
from kgsampler.recommender.base import Recommender
from kgsampler.recommender.ripplenet import RippleNet
from kgsampler.sampler import DNS, RNS

# the KG of the picture below, (head, relation, tail)
KG = [(0, 0, 5), (1, 0, 5), (1, 1, 7), (2, 0, 6), (3, 1, 7), (5, 1, 6)]
UNDIRECTED = set(KG) | {(t, r, h) for h, r, t in KG}


@pytest.fixture(scope='module')
def ds():
    r"""Four users, five items (entities 0-4), three attribute entities
    A = 5, B = 6, C = 7; relations 0 and 1; the KG is read undirected::

        i0 ──0──► A(5) ◄──0── i1 ──1──► C(7) ◄──1── i3
                  │
                  1
                  ▼
        i2 ──0──► B(6)                  i4 (no KG triple)

    Train: u0 {i0, i1}, u1 {i2, i3}, u2 {i1}, u3 {i4}; the split moves one
    of u0's and one of u1's training items to validation (valid_ratio 0.5).
    Test: (u0, i3), (u1, i0), (u2, i2), (u3, i0).
    """
    train = torch.tensor([[0, 0], [0, 1], [1, 2], [1, 3], [2, 1], [3, 4]])
    test = torch.tensor([[0, 3], [1, 0], [2, 2], [3, 0]])
    return KGRecDataset(train, test, torch.tensor(KG), num_users=4,
                        num_items=5, num_entities=8, num_relations=2,
                        valid_ratio=0.5)


def triples(model, u, hop):
    return list(zip(model.memory_head[u, hop].tolist(),
                    model.memory_relation[u, hop].tolist(),
                    model.memory_tail[u, hop].tolist()))


def test_ripple_sets_are_reachable_from_training_items_only(ds):
    torch.manual_seed(0)
    model = RippleNet(ds, num_hops=3, num_memory=400)
    assert ds.valid_pos.nnz == 2  # the split holds one item of u0 and u1
    for u in range(3):
        train = set(ds.train_pos.row(u).tolist())
        assert bool(model.memory_mask[u])
        hop1 = triples(model, u, 0)
        reachable = {x for x in UNDIRECTED if x[0] in train}
        # only triples of training items (never validation/test items),
        # and with 400 draws every one of them
        assert set(hop1) == reachable
        for hop in (1, 2):
            prev_tails = {t for _, _, t in triples(model, u, hop - 1)}
            got = set(triples(model, u, hop))
            assert got <= {x for x in UNDIRECTED if x[0] in prev_tails}
            assert got == {x for x in UNDIRECTED if x[0] in prev_tails}
    assert not bool(model.memory_mask[3])  # i4 has no KG triple


def test_hop_one_draws_are_uniform_over_the_triples(ds):
    torch.manual_seed(0)
    model = RippleNet(ds, num_hops=1, num_memory=20000)
    u = 2  # training item i1: (1, 0, 5) and (1, 1, 7), half each
    counts = torch.bincount(model.memory_relation[u, 0], minlength=2)
    assert abs(counts[0].item() / 20000 - 0.5) < 0.02
    # u1's remaining training item has 1 or 2 triples: the share of each
    # is 1 / (number of triples)
    train = ds.train_pos.row(1).tolist()
    n = sum(1 for x in UNDIRECTED if x[0] in train)
    tails = torch.bincount(model.memory_tail[1, 0], minlength=8).float()
    share = tails[tails > 0] / 20000
    assert torch.allclose(share, torch.full_like(share, 1 / n), atol=0.02)


def dense_hops(model, u, item):
    """Hop outputs and score of one (user, item) pair, memory by memory."""
    d = model.embedding_dim
    E = model.entity_emb.weight
    Rel = model.relation_emb.weight.view(-1, d, d)
    v = E[item]
    outs = []
    for hop in range(model.num_hops):
        logits, tails = [], []
        for h, r, t in triples(model, u, hop):
            logits.append(v @ (Rel[r] @ E[h]))
            tails.append(E[t])
        p = torch.softmax(torch.stack(logits), 0)
        o = sum(pi * ti for pi, ti in zip(p, tails))
        if not bool(model.memory_mask[u]):
            o = torch.zeros(d)
        outs.append(o)
        if model.item_update == 'replace':
            v = o
        elif model.item_update == 'plus':
            v = v + o
        elif model.item_update == 'replace_transform':
            v = model.transform.weight @ o
        else:
            v = model.transform.weight @ (v + o)
    y = sum(outs) if model.use_all_hops else outs[-1]
    return outs, v @ y


@pytest.mark.parametrize('item_update', ['replace', 'plus',
                                         'replace_transform',
                                         'plus_transform'])
@pytest.mark.parametrize('use_all_hops', [True, False])
@pytest.mark.parametrize('table', [True, False])
def test_hop_outputs_and_scores_match_dense(ds, item_update, use_all_hops,
                                            table):
    torch.manual_seed(0)
    model = RippleNet(ds, embedding_dim=4, num_hops=2, num_memory=3,
                      item_update=item_update, use_all_hops=use_all_hops)
    model._use_table = lambda n: table  # both ways to form R h
    users = torch.tensor([0, 1, 2, 3])
    items = torch.tensor([[4, 0], [1, 1], [2, 3], [0, 2]])
    hops = model.hop_outputs(users, items)
    scores = model.score(users, items)
    for b in range(4):
        for k in range(2):
            outs, s = dense_hops(model, b, items[b, k].item())
            for hop in range(2):
                assert torch.allclose(hops[hop][b, k], outs[hop], atol=1e-5)
            assert torch.allclose(scores[b, k], s, atol=1e-5)
    assert torch.equal(scores[3], torch.zeros(2))  # the masked user


@pytest.mark.parametrize('num_hops', [1, 2, 3])
@pytest.mark.parametrize('item_update', ['replace', 'plus_transform'])
@pytest.mark.parametrize('use_all_hops', [True, False])
@pytest.mark.parametrize('num_users', [1, 4])
def test_full_scores_equal_score_over_all_items(ds, num_hops, item_update,
                                                use_all_hops, num_users):
    """full_scores propagates on its own (hop 1 as one product with the
    item table): it must equal score() with every item as a candidate."""
    torch.manual_seed(0)
    model = RippleNet(ds, embedding_dim=4, num_memory=5, num_hops=num_hops,
                      item_update=item_update, use_all_hops=use_all_hops)
    users = torch.arange(num_users)
    full = model.full_scores(users)
    assert full.shape == (num_users, ds.num_items)
    ref = model.score(users, torch.arange(ds.num_items).expand(num_users, -1))
    assert torch.allclose(full, ref, atol=1e-6)
    assert model.full_scores(torch.zeros(0, dtype=torch.long)).shape == (0, 5)


@pytest.mark.parametrize('kge_weight', [0.0, 0.5])
@pytest.mark.parametrize('reg', [0.0, 0.1])
def test_loss_is_bpr_plus_kg_term_plus_l2(ds, kge_weight, reg):
    torch.manual_seed(0)
    model = RippleNet(ds, embedding_dim=4, num_hops=2, num_memory=3,
                      kge_weight=kge_weight, reg=reg)
    d = 4
    E = model.entity_emb.weight
    Rel = model.relation_emb.weight.view(-1, d, d)
    users, pos = torch.tensor([0, 2, 3]), torch.tensor([1, 0, 2])
    neg = torch.tensor([[3], [4], [1]])
    s_pos = model.score(users, pos.view(-1, 1))
    s_neg = model.score(users, neg)
    ref = -F.logsigmoid(s_pos - s_neg).mean()
    kge, l2 = 0.0, 0.0
    for b, u in enumerate(users.tolist()):
        mem = 0.0
        for hop in range(2):
            for h, r, t in triples(model, u, hop):
                mem = mem + E[h].pow(2).sum() + E[t].pow(2).sum() + \
                    Rel[r].pow(2).sum()
        l2 = l2 + mem + E[pos[b]].pow(2).sum() + E[neg[b, 0]].pow(2).sum()
    for hop in range(2):  # users 0 and 2 have sets; user 3 is masked
        kge = kge + sum(torch.sigmoid(torch.stack(
            [E[h] @ Rel[r] @ E[t] for h, r, t in triples(model, u, hop)]
        )).mean() for u in (0, 2)) / 2
    ref = ref - kge_weight * kge + reg * l2 / 3 / 2
    assert torch.allclose(model.loss(users, pos, neg), ref, atol=1e-5)


def test_resample_each_epoch_and_state(ds):
    torch.manual_seed(0)
    model = RippleNet(ds, num_memory=16)
    assert isinstance(model, Recommender)
    assert str(model) == ("RippleNet(4, 5, num_entities=8, embedding_dim=16, "
                          "num_hops=2, num_memory=16, "
                          "item_update='plus_transform')")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert list(model.auxiliary_losses(1024)) == []  # no loss, a redraw
    assert not torch.equal(state['memory_tail'], model.memory_tail)
    model.load_state_dict(state)  # the sets travel with the state
    assert torch.equal(state['memory_tail'], model.memory_tail)
    assert 'adj_tail' not in state
    before = model.entity_emb.weight.clone()
    model.reset_parameters()
    assert not torch.equal(before, model.entity_emb.weight)
    assert model.item_representations(torch.tensor([[0, 1]])).shape == \
        (1, 2, 16)


def test_errors(ds):
    for name in ('embedding_dim', 'num_hops', 'num_memory'):
        with pytest.raises(ValueError, match=rf"RippleNet: '{name}' must be "
                                             rf"a positive int \(got 0\)"):
            RippleNet(ds, **{name: 0})
    with pytest.raises(ValueError, match=r"RippleNet: 'item_update' must be "
                                         r"one of .* \(got 'sum'\)"):
        RippleNet(ds, item_update='sum')
    with pytest.raises(TypeError, match=r"RippleNet: 'use_all_hops' must be "
                                        r"a bool \(got 1\)"):
        RippleNet(ds, use_all_hops=1)
    for arg in ('kge_weight', 'reg'):
        with pytest.raises(ValueError, match=rf"RippleNet: '{arg}' must be a "
                                             rf"finite non-negative number "
                                             rf"\(got -1.0\)"):
            RippleNet(ds, **{arg: -1.0})
    with pytest.raises(TypeError, match=r"RippleNet: 'dataset' must be a "
                                        r"KGRecDataset .* \(got str"):
        RippleNet('ml-1m')
    model = RippleNet(ds)
    with pytest.raises(ValueError, match=r"RippleNet.score: 'users' must be "
                                         r"\(B\) and 'items' \(B, K\) \(got "
                                         r"shapes \(1,\) and \(2, 1\)\)"):
        model.score(torch.tensor([0]), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match=r"RippleNet.loss: 'pos_items' must "
                                         r"have the shape of 'users'"):
        model.loss(torch.tensor([0]), torch.tensor([[0]]),
                   torch.tensor([[2]]))
    with pytest.raises(ValueError, match=r"RippleNet.full_scores: 'users' "
                                         r"must be \(B\)"):
        model.full_scores(torch.tensor(0))


@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_one_trainer_epoch(sampler):
    torch.manual_seed(0)
    data = make_synthetic(num_users=40, num_items=30, num_genres=3,
                          num_creators=5, num_eras=2)
    model = RippleNet(data, embedding_dim=8, num_memory=8)
    neg = RNS(data.train_pos) if sampler == 'rns' else \
        DNS(data.train_pos, scorer=model, num_candidates=4)
    before = model.memory_tail.clone()
    res = Trainer(model, neg, data, lr=1e-2, batch_size=64, max_epochs=1,
                  progress=False).fit()
    assert res.epochs_run == 1
    assert math.isfinite(res.history[-1]['loss'])
    assert all(math.isfinite(v) for v in res.test.values()
               if isinstance(v, float))
    assert 0 <= res.test['ndcg@20'] <= 1
    # the epoch's auxiliary phase redrew the sets (the best state, restored
    # after fit, holds those the validation was computed with)
    assert not torch.equal(before, model.memory_tail)
