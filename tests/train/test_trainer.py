import math
from types import SimpleNamespace

import pytest
import torch

from kgsampler.data.csr import UserItemCSR
from kgsampler.recommender import MF
from kgsampler.sampler import DNS, RNS, SamplerOutput
from kgsampler.train import Trainer


def block_dataset(num_users=60, num_items=40, seed=0):
    r"""Two communities: users < 30 like items < 20, the others items >= 20.
    Each user has 8 train, 2 valid and 3 test positives inside its block."""
    g = torch.Generator().manual_seed(seed)
    rows, cols = [], []
    for part in range(2):
        us = torch.arange(part * 30, part * 30 + 30)
        for u in us.tolist():
            items = torch.randperm(20, generator=g)[:13] + 20 * part
            rows.append(torch.full((13, ), u))
            cols.append(items)
    rows, cols = torch.stack(rows), torch.stack(cols)

    def split(a, b):
        return UserItemCSR.from_pairs(rows[:, a:b].reshape(-1),
                                      cols[:, a:b].reshape(-1), num_users,
                                      num_items)

    return SimpleNamespace(num_users=num_users, num_items=num_items,
                           train_pos=split(0, 8), valid_pos=split(8, 10),
                           test_pos=split(10, 13))


@pytest.mark.parametrize('sampler_cls', [RNS, DNS])
def test_learns_the_blocks(sampler_cls, tmp_path):
    torch.manual_seed(0)
    ds = block_dataset()
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    trainer = Trainer(model, sampler_cls(ds.train_pos), ds, lr=0.05,
                      batch_size=64, max_epochs=30, patience=5,
                      progress=False,
                      checkpoint_path=str(tmp_path / 'best.pt'))
    before = trainer.evaluate('valid')['recall@20']
    res = trainer.fit()
    assert res.valid['recall@20'] > before + 0.3
    assert 1 <= res.best_epoch <= res.epochs_run <= 30
    assert len(res.epoch_seconds) == res.epochs_run
    # the restored model is the best one, also on disk
    assert trainer.evaluate('valid')['ndcg@20'] == pytest.approx(
        res.valid['ndcg@20'])
    state = torch.load(tmp_path / 'best.pt')
    assert torch.equal(state['user_emb.weight'], model.user_emb.weight)


def test_weight_decay_shrinks_rows_outside_the_batch():
    ds = block_dataset()
    model = MF(ds.num_users, ds.num_items, embedding_dim=8, reg=0.0)
    trainer = Trainer(model, RNS(ds.train_pos), ds, lr=0.01,
                      weight_decay=1.0, progress=False)
    before = model.user_emb.weight[0].norm().item()
    users = torch.tensor([1])  # user 0 is not in the batch
    for _ in range(20):
        loss = model.loss(users, torch.tensor([0]), torch.tensor([[5]]))
        trainer.optimizer.zero_grad()
        loss.backward()
        trainer.optimizer.step()
    assert model.user_emb.weight[0].norm().item() < 0.9 * before


def test_dynamics_are_recorded_per_epoch():
    torch.manual_seed(0)
    ds = block_dataset()
    held_out = ds.valid_pos
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    sampler = RNS(ds.train_pos, monitor_pos=held_out)
    res = Trainer(model, sampler, ds, lr=0.05, batch_size=64, max_epochs=3,
                  progress=False).fit()
    g = [h['grad_magnitude'] for h in res.history]
    assert all(0 < x < 1 for x in g)
    assert g[-1] < g[0]  # uniform negatives get easy as the model learns
    fn = [h['false_negative_rate'] for h in res.history]
    assert all(0 <= x <= 1 for x in fn)
    # epoch rates average to the overall rate (equal epoch sizes)
    assert sum(fn) / 3 == pytest.approx(
        res.sampler_stats['false_negative_rate'])
    res = Trainer(model, RNS(ds.train_pos), ds, max_epochs=1,
                  progress=False, track_dynamics=False).fit()
    assert 'grad_magnitude' not in res.history[0]


def test_sparsity_groups_partition_the_test_users():
    r"""Users 0..59 get 2..8 training items (user u: 2 + u % 7), so the
    quartile groups have increasing interaction ranges."""
    ds = block_dataset()
    rows, cols = ds.train_pos.row_ids(), ds.train_pos.indices
    keep = (ds.train_pos.indptr[:-1].repeat_interleave(8) + 2 +
            rows % 7) > torch.arange(rows.numel())
    ds.train_pos = UserItemCSR.from_pairs(rows[keep], cols[keep],
                                          ds.num_users, ds.num_items)
    torch.manual_seed(0)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    trainer = Trainer(model, RNS(ds.train_pos), ds, max_epochs=1,
                      progress=False)
    res = trainer.fit()
    groups = res.test_by_sparsity
    assert [g['group'] for g in groups] == [1, 2, 3, 4]
    assert sum(g['num_users'] for g in groups) == 60
    assert all(a['max_interactions'] <= b['min_interactions']
               for a, b in zip(groups, groups[1:]))
    mean = sum(g['ndcg@20'] * g['num_users'] for g in groups) / 60
    assert mean == pytest.approx(res.test['ndcg@20'], abs=1e-6)


def test_early_stopping_stops():
    torch.manual_seed(0)
    ds = block_dataset()
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    res = Trainer(model, RNS(ds.train_pos), ds, lr=0.5, batch_size=64,
                  max_epochs=200, patience=2, progress=False).fit()
    assert res.epochs_run < 200
    assert res.epochs_run - res.best_epoch == 2


def test_no_validation_split_uses_last_epoch():
    ds = block_dataset()
    ds.valid_pos = UserItemCSR.from_pairs(torch.zeros(0, dtype=torch.long),
                                          torch.zeros(0, dtype=torch.long),
                                          ds.num_users, ds.num_items)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    res = Trainer(model, RNS(ds.train_pos), ds, max_epochs=3,
                  progress=False).fit()
    assert res.best_epoch == 3 and res.valid == {}
    assert 'ndcg@20' in res.test


class CountingSampler(RNS):
    """A learnable sampler stub that records the trainer's calls."""
    learnable = True

    def __init__(self, pos):
        super().__init__(pos)
        self.calls, self.epochs = 0, []

    def on_epoch_start(self, epoch):
        self.epochs.append(epoch)

    def update(self, users, pos_items, output):
        assert isinstance(output, SamplerOutput)
        assert output.neg_items.shape == (users.numel(), 2)
        self.calls += 1
        return {'policy_loss': 1.0}


def test_learnable_sampler_hooks():
    ds = block_dataset()
    sampler = CountingSampler(ds.train_pos)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    res = Trainer(model, sampler, ds, batch_size=100, max_epochs=2,
                  num_neg=2, progress=False).fit()
    assert sampler.epochs == [1, 2]
    assert sampler.calls == 2 * 5  # 480 interactions / 100 per batch
    assert res.history[0]['policy_loss'] == 1.0
    assert res.sampler_stats['num_sampled'] == 2 * 480 * 2


class LookaheadSampler(RNS):
    """Offers :obj:`ahead` batches a call; records the call sizes and the
    rows each update sees."""
    learnable = True

    def __init__(self, pos, ahead):
        super().__init__(pos)
        self.ahead, self.sample_sizes, self.updates = ahead, [], []

    @property
    def lookahead(self):
        return self.ahead

    def _sample(self, users, pos_items, num_neg):
        self.sample_sizes.append(users.numel())
        out = super()._sample(users, pos_items, num_neg)
        # tag each row with its (user, item) pair to check the split
        out.paths = torch.stack([users, pos_items], 1).view(-1, 1, 2).expand(
            -1, num_neg, 2)
        return out

    def update(self, users, pos_items, output):
        assert output.neg_items.shape == (users.numel(), 2)
        assert torch.equal(output.paths[:, 0, 0], users)
        assert torch.equal(output.paths[:, 0, 1], pos_items)
        assert not self.is_pos(users.view(-1, 1).expand(-1, 2),
                               output.neg_items).any()
        self.updates.append(users.numel())
        return {}


@pytest.mark.parametrize('ahead', [1, 2, 3, 10])
def test_lookahead_splits_one_call_over_batches(ahead):
    """480 interactions in batches of 100: 5 batches a epoch, drawn
    :obj:`ahead` at a time (never across the epoch's end), each batch
    updated once with its own rows of the call's output."""
    ds = block_dataset()
    sampler = LookaheadSampler(ds.train_pos, ahead)
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    Trainer(model, sampler, ds, batch_size=100, max_epochs=1, num_neg=2,
            progress=False).fit()
    sizes = [100, 100, 100, 100, 80]
    expect = [sum(sizes[i:i + ahead]) for i in range(0, 5, ahead)]
    assert sampler.sample_sizes == expect
    assert sampler.updates == sizes


def test_sampler_output_narrow():
    out = SamplerOutput(neg_items=torch.arange(12).view(4, 3),
                        log_prob=torch.zeros(4, 3),
                        paths=torch.arange(24).view(4, 3, 2))
    part = out.narrow(1, 2)
    assert torch.equal(part.neg_items, out.neg_items[1:3])
    assert torch.equal(part.paths, out.paths[1:3])
    assert part.fallback is None and part.log_prob.shape == (2, 3)
    assert part.neg_items.data_ptr() == out.neg_items[1].data_ptr()  # view
    with pytest.raises(ValueError, match=r"SamplerOutput.narrow: rows "
                       r"\[3, 3\+2\) must lie in \[0, 4\)"):
        out.narrow(3, 2)
    with pytest.raises(ValueError, match=r"\(got start=-1, length=1\)"):
        out.narrow(-1, 1)
    assert RNS(block_dataset().train_pos).lookahead == 1


def test_errors():
    ds = block_dataset()
    model = MF(ds.num_users, ds.num_items)
    s = RNS(ds.train_pos)
    with pytest.raises(ValueError, match=r"Trainer: 'batch_size' must be a "
                       r"positive int \(got 0\)"):
        Trainer(model, s, ds, batch_size=0)
    with pytest.raises(ValueError, match=r"'sparsity_groups' must be a pos"):
        Trainer(model, s, ds, sparsity_groups=0)
    with pytest.raises(ValueError, match=r"'patience' must be a positive"):
        Trainer(model, s, ds, patience=0)
    with pytest.raises(ValueError, match=r"'lr' must be positive"):
        Trainer(model, s, ds, lr=0.0)
    with pytest.raises(ValueError, match=r"'weight_decay' must be non-neg"):
        Trainer(model, s, ds, weight_decay=-1.0)
    for monitor in ('ndcg@10', 'ndcg', 'ndcg@x', None):
        with pytest.raises(ValueError, match=r"'monitor' must be one of "
                                             r"\('recall'"):
            Trainer(model, s, ds, monitor=monitor)
    with pytest.raises(ValueError, match=r"'monitor' must be one of \('recall"
                                         r"', 'ndcg', 'precision', 'hit'\) "):
        Trainer(model, s, ds, monitor='ndcg_kgat@20', kgat_ndcg=False)
    for ks in (20, [0, 20], [True], []):
        with pytest.raises(ValueError, match=r"'ks' must be a non-empty "
                                             r"sequence of positive ints"):
            Trainer(model, s, ds, ks=ks)
    with pytest.raises(ValueError, match=r"'batch_size' must be a positive "
                                         r"int \(got True\)"):
        Trainer(model, s, ds, batch_size=True)
    with pytest.raises(TypeError, match=r"'lr' must be a finite number "
                                        r"\(got '1'\)"):
        Trainer(model, s, ds, lr='1')
    with pytest.raises(ValueError, match=r"'device' must be 'cpu', 'cuda'"):
        Trainer(model, s, ds, device='gpu')
    with pytest.raises(ValueError, match=r"the model was built for 10 users "
                                         r"and 10 items, the dataset has"):
        Trainer(MF(10, 10), s, ds)
    with pytest.raises(ValueError, match=r"the sampler was built for"):
        Trainer(model, RNS(UserItemCSR.from_pairs(
            torch.tensor([0]), torch.tensor([0]), 2, 3)), ds)
    with pytest.raises(TypeError, match=r"'dataset' must provide 'train_pos'"):
        Trainer(model, s, None)
    with pytest.raises(TypeError, match=r"'model' must be a Recommender"):
        Trainer(object(), s, ds)
    with pytest.raises(TypeError, match=r"'sampler' must be a Sampler"):
        Trainer(model, object(), ds)
    with pytest.raises(ValueError, match=r"'split' must be 'valid' or"):
        Trainer(model, s, ds).evaluate('train')


def test_kgpolicy_co_training_on_device(device):
    """A KGPolicy co-training run (sampling, BPR step, policy step, the
    full-ranking evaluation) on :obj:`device`, kept there throughout."""
    from kgsampler.data import KGRecDataset
    from kgsampler.sampler import KGPolicy
    ds = block_dataset()
    train = torch.stack([ds.train_pos.row_ids(), ds.train_pos.indices], 1)
    test = torch.stack([ds.test_pos.row_ids(), ds.test_pos.indices], 1)
    # a KG linking the items of each block through 4 entities
    items = torch.arange(ds.num_items)
    kg = torch.stack([items, items % 2, ds.num_items + items // 10], 1)
    data = KGRecDataset(train, test, kg, num_users=ds.num_users,
                        num_items=ds.num_items, num_entities=ds.num_items + 4,
                        valid_ratio=0.2)
    torch.manual_seed(0)
    model = MF(data.num_users, data.num_items, embedding_dim=8)
    sampler = KGPolicy.from_dataset(data, scorer=model, n1=4, n2=4,
                                    embedding_dim=8, hidden_dims=(8, 8),
                                    refresh_interval=2)
    trainer = Trainer(model, sampler, data, lr=0.05, batch_size=64,
                      max_epochs=3, patience=3, progress=False, device=device)
    res = trainer.fit()
    assert model.user_emb.weight.device.type == device.type
    assert sampler.device.type == device.type
    assert res.sampler_stats['num_sampled'] == 3 * data.train_pos.nnz
    assert res.sampler_stats['num_updates'] > 0
    assert 0.0 <= res.sampler_stats['fallback_rate'] < 0.5
    assert math.isfinite(res.test['ndcg@20'])
    users = data.train_pos.row_ids()[:128].to(device)
    pos = data.train_pos.indices[:128].to(device)
    out = sampler.sample(users, pos, 2)
    dense = data.train_pos.to_dense().to(device)
    assert out.neg_items.device.type == device.type
    assert not dense[users.view(-1, 1), out.neg_items].any()


def test_sampler_warmup_and_policy_update_accounting():
    """Warm-up batches train the sampler alone (the recommender untouched);
    every history row counts the policy updates, and the run reports those
    taken before the selected epoch."""
    from kgsampler.sampler import KGPolicy
    torch.manual_seed(0)
    ds = block_dataset()
    kg = torch.stack([torch.arange(40), torch.zeros(40, dtype=torch.long),
                      40 + torch.arange(40) // 10], 1)
    from kgsampler.data import KGRecDataset
    data = KGRecDataset(torch.stack([ds.train_pos.row_ids(),
                                     ds.train_pos.indices], 1),
                        torch.stack([ds.test_pos.row_ids(),
                                     ds.test_pos.indices], 1), kg,
                        num_users=60, num_items=40, num_entities=44,
                        valid_ratio=0.2, seed=0)
    model = MF(60, 40, embedding_dim=8)
    sampler = KGPolicy.from_dataset(data, scorer=model, n1=4, n2=4,
                                    embedding_dim=8, hidden_dims=(8, ),
                                    refresh_interval=3, walk_ahead=1)
    trainer = Trainer(model, sampler, data, batch_size=64, max_epochs=3,
                      patience=5, progress=False, sampler_warmup=6,
                      track_test=True)
    before = [p.detach().clone() for p in model.parameters()]
    warm = trainer.warmup_sampler()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert warm['num_updates'] == 2  # 6 batches / refresh_interval 3
    sampler.reset_stats()
    res = trainer.fit()
    h = res.history
    assert h[0]['epoch'] == 0 and h[0]['sampler_num_updates'] == 2
    batches = -(-data.train_pos.nnz // 64)
    total = 2
    for row in h[1:]:
        total += row['sampler_policy_updates']
        assert row['sampler_num_updates'] == total
        assert 'test_ndcg@20' in row and 'sampler_entropy_hop2' in row
    assert total == (6 + 3 * batches) // 3
    assert res.sampler_stats['updates_before_best_epoch'] == \
        h[res.best_epoch]['sampler_num_updates']
    with pytest.raises(ValueError, match=r"'sampler_warmup' must be a non-n"):
        Trainer(model, sampler, data, sampler_warmup=-1)


def test_time_budget_stops_after_the_epoch_under_way():
    ds = block_dataset()
    model = MF(ds.num_users, ds.num_items, embedding_dim=8)
    res = Trainer(model, RNS(ds.train_pos), ds, batch_size=32, max_epochs=50,
                  patience=50, progress=False, time_budget=1e-9).fit()
    assert (res.epochs_run, res.stopped_by) == (1, 'time_budget')
    res = Trainer(model, RNS(ds.train_pos), ds, batch_size=32, max_epochs=2,
                  patience=50, progress=False, time_budget=1e6).fit()
    assert (res.epochs_run, res.stopped_by) == (2, 'max_epochs')
    res = Trainer(model, RNS(ds.train_pos), ds, batch_size=32, max_epochs=50,
                  patience=1, progress=False).fit()
    assert res.stopped_by == 'patience'


@pytest.mark.parametrize('arg,bad,match', [
    *[('time_budget', b, r"'time_budget' must be None or a positive number "
       r"of seconds") for b in (0, -1.0, float('inf'), True, '10')],
    *[('valid_users', b, r"'valid_users' must be None or a positive int")
      for b in (0, -3, 2.5, True, '10')],
])
def test_budget_and_valid_users_errors(arg, bad, match):
    ds = block_dataset()
    with pytest.raises(ValueError, match=rf"Trainer: {match} \(got"):
        Trainer(MF(ds.num_users, ds.num_items), RNS(ds.train_pos), ds,
                **{arg: bad})


@pytest.mark.parametrize('size', [1, 7, 60, 1000])
def test_valid_users_validates_on_a_fixed_subset(size):
    """Validation ranks `size` users (all 60 when not fewer), the same ones
    for every training seed; the test split ranks every user."""
    ds = block_dataset()
    seen = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        tr = Trainer(MF(ds.num_users, ds.num_items, embedding_dim=8),
                     RNS(ds.train_pos), ds, max_epochs=1, progress=False,
                     valid_users=size)
        calls = []
        full = tr.model.full_scores
        tr.model.full_scores = lambda u: calls.append(u.clone()) or full(u)
        res = tr.evaluate('valid')
        assert res['num_users'] == min(size, 60)
        users = torch.cat(calls)
        assert torch.equal(users, users.sort().values)
        assert users.unique().numel() == users.numel() == min(size, 60)
        seen.append(users)
        assert tr.evaluate('test')['num_users'] == 60
    assert torch.equal(seen[0], seen[1])


def test_valid_users_subset_mean_equals_the_per_user_mean():
    ds = block_dataset()
    torch.manual_seed(0)
    tr = Trainer(MF(ds.num_users, ds.num_items, embedding_dim=8),
                 RNS(ds.train_pos), ds, progress=False, valid_users=9)
    every = Trainer(tr.model, RNS(ds.train_pos), ds, progress=False)
    full = every.evaluate('valid', per_user=True)
    sub = tr.evaluate('valid')
    pick = torch.isin(full['users'], tr._valid_subset)
    assert sub['ndcg@20'] == pytest.approx(
        float(full['per_user']['ndcg@20'][pick].mean()), abs=1e-6)
