"""The recommender's optimiser: dense Adam, or SparseAdam on embeddings
built with ``sparse=True`` (kgsampler.train._optim)."""
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from kgsampler.data import KGRecDataset
from kgsampler.recommender import CKE, MF, NFM
from kgsampler.sampler import DNS, RNS
from kgsampler.train import Trainer
from kgsampler.train._optim import (SparseDenseAdam, build_optimizer,
                                    sparse_parameters)

CONF = Path(__file__).resolve().parents[1] / 'conf'


@pytest.fixture
def ds():
    r"""Four users, six items (entities 0-5) and two attribute entities
    (6, 7), two relations::

        u0 ── i0, i1, i2        i0 ──r0──► e6 ◄──r0── i1
        u1 ── i1, i3, i4        i3 ──r1──► e7 ◄──r1── i4
        u2 ── i0, i4, i5        i5 ──r0──► e6
        u3 ── i2, i3, i5

    Training pairs as drawn; test pairs (u0, i3), (u1, i0), (u2, i2),
    (u3, i1); one training pair of each user (seeded) is held out for
    validation.
    """
    train = torch.tensor([[0, 0], [0, 1], [0, 2], [1, 1], [1, 3], [1, 4],
                          [2, 0], [2, 4], [2, 5], [3, 2], [3, 3], [3, 5]])
    test = torch.tensor([[0, 3], [1, 0], [2, 2], [3, 1]])
    kg = torch.tensor([[0, 0, 6], [1, 0, 6], [3, 1, 7], [4, 1, 7],
                       [5, 0, 6]])
    return KGRecDataset(train, test, kg, num_entities=8, num_relations=2,
                        valid_ratio=0.34)


def make(name, ds, sparse):
    torch.manual_seed(0)
    if name == 'mf':
        return MF(ds.num_users, ds.num_items, embedding_dim=4, sparse=sparse)
    if name == 'cke':
        return CKE(ds, embedding_dim=4, kg_embedding_dim=4, sparse=sparse)
    return NFM(ds, embedding_dim=4, hidden_dims=[4], sparse=sparse)


#: The names of each model's sparse-gradient parameters when sparse=True.
SPARSE_NAMES = {
    'mf': {'user_emb.weight', 'item_emb.weight'},
    'cke': {'user_emb.weight', 'item_emb.weight', 'kge.node_emb.weight',
            'kge.rel_emb.weight'},
    'nfm': {'feat_emb.weight', 'feat_linear.weight'},
}


def names_of(model, params):
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


# ---------------------------------------------------------------- building
@pytest.mark.parametrize('name', ['mf', 'cke', 'nfm'])
@pytest.mark.parametrize('optimizer', ['auto', 'sparse_adam'])
def test_sparse_models_get_sparse_adam(ds, name, optimizer):
    model = make(name, ds, sparse=True)
    assert names_of(model, sparse_parameters(model)) == SPARSE_NAMES[name]
    opt = build_optimizer(model, optimizer, lr=0.01)
    assert isinstance(opt, SparseDenseAdam)
    assert isinstance(opt.sparse, torch.optim.SparseAdam)
    got_sparse = names_of(model, opt.sparse.param_groups[0]['params'])
    assert got_sparse == SPARSE_NAMES[name]
    dense = set() if opt.dense is None else names_of(
        model, opt.dense.param_groups[0]['params'])
    # every parameter is updated by exactly one of the two
    assert dense == {n for n, _ in model.named_parameters()} - got_sparse
    assert (opt.dense is None) == (name == 'mf')
    assert all(g['lr'] == 0.01 for g in opt.param_groups)
    assert repr(opt).startswith('SparseDenseAdam(sparse=')


@pytest.mark.parametrize('name', ['mf', 'cke', 'nfm'])
@pytest.mark.parametrize('optimizer', ['auto', 'adam'])
def test_dense_models_get_adam(ds, name, optimizer):
    model = make(name, ds, sparse=False)
    assert sparse_parameters(model) == []
    opt = build_optimizer(model, optimizer, lr=0.01, weight_decay=1e-4)
    assert type(opt) is torch.optim.Adam
    assert opt.param_groups[0]['weight_decay'] == 1e-4


def test_trainer_builds_the_optimizer(ds):
    t = Trainer(make('mf', ds, True), RNS(ds.train_pos), ds, progress=False)
    assert isinstance(t.optimizer, SparseDenseAdam)
    t = Trainer(make('mf', ds, False), RNS(ds.train_pos), ds, progress=False)
    assert type(t.optimizer) is torch.optim.Adam


def test_errors(ds):
    sparse, dense = make('mf', ds, True), make('mf', ds, False)
    with pytest.raises(ValueError, match=r"Trainer: 'optimizer' must be one "
                                         r"of .* \(got 'sgd'\)"):
        build_optimizer(dense, 'sgd')
    with pytest.raises(ValueError, match=r"Trainer: 'optimizer' must be one "
                                         r"of .* \(got 'sgd'\)"):
        Trainer(dense, RNS(ds.train_pos), ds, optimizer='sgd')
    with pytest.raises(ValueError, match=r"optimizer='adam' cannot update "
                                         r"the 2 sparse-gradient"):
        build_optimizer(sparse, 'adam')
    with pytest.raises(ValueError, match=r"optimizer='sparse_adam' needs a "
                                         r"model with sparse-gradient "
                                         r"embeddings .* MF has none"):
        build_optimizer(dense, 'sparse_adam')
    with pytest.raises(ValueError, match=r"'weight_decay' must be 0 with "
                                         r"sparse embeddings .* \(got "
                                         r"weight_decay=0.01\)"):
        Trainer(sparse, RNS(ds.train_pos), ds, weight_decay=0.01)
    with pytest.raises(ValueError, match=r"Trainer: 'lr' must be a positive "
                                         r"number \(got 0\)"):
        build_optimizer(dense, 'adam', lr=0)
    with pytest.raises(ValueError, match=r"SparseDenseAdam: 'sparse' must "
                                         r"hold at least one parameter"):
        SparseDenseAdam([], list(dense.parameters()))
    for cls, args in ((MF, (4, 6)), (CKE, (ds, )), (NFM, (ds, ))):
        with pytest.raises(TypeError, match=rf"{cls.__name__}: 'sparse' "
                                            rf"must be a bool \(got 1\)"):
            cls(*args, sparse=1)


def test_load_state_dict_errors(ds):
    mf = build_optimizer(make('mf', ds, True))
    cke = build_optimizer(make('cke', ds, True))
    with pytest.raises(ValueError, match=r"SparseDenseAdam: the state must "
                                         r"come from a SparseDenseAdam.* "
                                         r"\(got \['param_groups', "
                                         r"'state'\]\)"):
        mf.load_state_dict(torch.optim.Adam(
            make('mf', ds, False).parameters()).state_dict())
    with pytest.raises(ValueError, match=r"another split of sparse and "
                                         r"dense parameters"):
        mf.load_state_dict(cke.state_dict())


def test_repr_and_config_keys():
    assert 'sparse=True' in repr(MF(3, 4, sparse=True))
    assert 'sparse' not in repr(MF(3, 4))
    assert OmegaConf.load(CONF / 'trainer' / 'default.yaml').optimizer \
        == 'auto'
    for name in ('mf', 'cke', 'nfm'):
        assert OmegaConf.load(CONF / 'recommender' /
                              f'{name}.yaml').sparse is False


# ------------------------------------------------ steps against dense Adam
def twins(lr=0.1):
    """A dense MF with Adam and a sparse MF with SparseAdam, equal weights
    (5 users, 7 items, d = 3)."""
    torch.manual_seed(0)
    dense = MF(5, 7, embedding_dim=3, reg=0.1)
    sparse = MF(5, 7, embedding_dim=3, reg=0.1, sparse=True)
    sparse.load_state_dict(dense.state_dict())
    return (dense, build_optimizer(dense, 'adam', lr=lr),
            sparse, build_optimizer(sparse, 'sparse_adam', lr=lr))


def step(model, opt, users, pos, neg):
    opt.zero_grad()
    model.loss(users, pos, neg).backward()
    opt.step()


def rows_equal(a, b, atol=1e-7):
    """Per row of two (R, d) tensors: whether they are equal (float32)."""
    return torch.isclose(a, b, rtol=1e-5, atol=atol).all(-1)


@pytest.mark.parametrize('lr', [0.1, 1e-3])
def test_first_step_equals_adam_on_touched_rows(lr):
    dense, d_opt, sparse, s_opt = twins(lr)
    u0, i0 = dense.user_emb.weight.detach().clone(), \
        dense.item_emb.weight.detach().clone()
    # users 0 (twice) and 2; items 1, 3 (positives), 4, 5 (negatives)
    users, pos = torch.tensor([0, 0, 2]), torch.tensor([1, 3, 1])
    neg = torch.tensor([[4, 5], [5, 4], [4, 4]])
    step(dense, d_opt, users, pos, neg)
    step(sparse, s_opt, users, pos, neg)
    assert sparse.user_emb.weight.grad.is_sparse
    for name, init, touched in (('user_emb', u0, [0, 2]),
                                ('item_emb', i0, [1, 3, 4, 5])):
        w_d = getattr(dense, name).weight.detach()
        w_s = getattr(sparse, name).weight.detach()
        assert rows_equal(w_d, w_s).all()  # untouched rows: both unchanged
        moved = ~rows_equal(w_s, init)
        assert moved.nonzero().view(-1).tolist() == touched


def test_second_step_is_lazy():
    r"""Step 2 touches users 0, 3 and items 0, 1, 2, 6: those rows equal
    dense Adam's (their moments have the same history); the rows touched
    at step 1 only (user 2, items 3, 4, 5) keep their step-1 values with
    SparseAdam, while dense Adam moves them with their decayed moments
    (by ~0.07 here). "Equal" is up to 1e-5: SparseAdam adds its epsilon
    before the second moment's bias correction, Adam after it (a few 1e-6
    apart here)."""
    dense, d_opt, sparse, s_opt = twins()
    step1 = (torch.tensor([0, 0, 2]), torch.tensor([1, 3, 1]),
             torch.tensor([[4], [5], [4]]))
    step2 = (torch.tensor([0, 3]), torch.tensor([1, 6]),
             torch.tensor([[2], [0]]))
    for model, opt in ((dense, d_opt), (sparse, s_opt)):
        step(model, opt, *step1)
    after1 = {n: p.detach().clone() for n, p in sparse.named_parameters()}
    for model, opt in ((dense, d_opt), (sparse, s_opt)):
        step(model, opt, *step2)
    for name, now_touched, before_only in (('user_emb', [0, 3], [2]),
                                           ('item_emb', [0, 1, 2, 6],
                                            [3, 4, 5])):
        w_d = getattr(dense, name).weight.detach()
        w_s = getattr(sparse, name).weight.detach()
        same = rows_equal(w_d, w_s, atol=1e-5)
        assert same[now_touched].all()
        assert not same[before_only].any()
        assert rows_equal(w_s, after1[f'{name}.weight'])[before_only].all()


# ------------------------------------------------------- training, resume
@pytest.mark.parametrize('name', ['mf', 'cke', 'nfm'])
@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_trainer_fits_with_sparse_embeddings(ds, name, sampler):
    model = make(name, ds, sparse=True)
    s = RNS(ds.train_pos) if sampler == 'rns' else DNS(
        ds.train_pos, num_candidates=3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    res = Trainer(model, s, ds, lr=0.05, batch_size=4, max_epochs=3,
                  progress=False).fit()
    assert res.epochs_run == 3 and 0 <= res.test['ndcg@20'] <= 1
    moved = {n for n, p in model.named_parameters()
             if not torch.equal(p.detach(), before[n])}
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert SPARSE_NAMES[name] <= moved  # SparseAdam's part learns
    if name != 'mf':  # and Adam's (a BPR-invariant output bias need not)
        assert moved - SPARSE_NAMES[name]


@pytest.mark.parametrize('name', ['mf', 'cke'])
@pytest.mark.parametrize('stop_at', [(1, 2), (2, 1)])
def test_resume_with_sparse_equals_an_uninterrupted_run(ds, tmp_path, name,
                                                         stop_at):
    def build(state, resume=False):
        model = make(name, ds, sparse=True)
        return Trainer(model, RNS(ds.train_pos), ds, lr=0.05, batch_size=4,
                       max_epochs=3, progress=False, state_path=state,
                       resume=resume)

    def comparable(res):
        hist = [{k: v for k, v in h.items() if k != 'seconds'}
                for h in res.history]
        return res.best_epoch, res.epochs_run, res.valid, res.test, hist

    torch.manual_seed(1)
    ref = comparable(build(None).fit())
    state = str(tmp_path / 'last.pt')
    torch.manual_seed(1)
    trainer = build(state)
    real_batch, real_epoch, now = trainer._train_batch, \
        trainer.train_epoch, {}

    def batch(users, pos, out, sums, b=0):  # killed at (epoch, batch)
        if (now['epoch'], b) == stop_at:
            raise KeyboardInterrupt('killed')
        return real_batch(users, pos, out, sums, b)

    def epoch(e):
        now['epoch'] = e
        return real_epoch(e)
    trainer._train_batch, trainer.train_epoch = batch, epoch
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    torch.manual_seed(123)  # restored from the state file
    resumed = build(state, resume=True)
    assert comparable(resumed.fit()) == ref
    if stop_at[0] > 1:  # the SparseAdam moments came back from the file
        blob = torch.load(state, weights_only=True)
        assert set(blob['optimizer']) == {'sparse', 'dense'}


def test_resume_across_optimizers_is_refused(ds, tmp_path):
    state = str(tmp_path / 'last.pt')
    Trainer(make('mf', ds, False), RNS(ds.train_pos), ds, max_epochs=1,
            progress=False, state_path=state).fit()
    with pytest.raises(ValueError, match=r"saved by a different model, "
                                         r"optimiser or sampler"):
        Trainer(make('mf', ds, True), RNS(ds.train_pos), ds, max_epochs=2,
                progress=False, state_path=state, resume=True).fit()
    Trainer(make('mf', ds, True), RNS(ds.train_pos), ds, max_epochs=1,
            progress=False, state_path=state).fit()
    with pytest.raises(ValueError, match=r"saved by a different model, "
                                         r"optimiser or sampler"):
        Trainer(make('mf', ds, False), RNS(ds.train_pos), ds, max_epochs=2,
                progress=False, state_path=state, resume=True).fit()
