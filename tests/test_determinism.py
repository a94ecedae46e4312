"""Same seed, same run; another seed, another run: with every registered
sampler (``SAMPLERS`` in ``tests/conftest.py``) through :class:`Trainer`,
and through the CLI's :func:`kgsampler.cli.run` in-process (the config
composed by Hydra from this working tree's ``conf/``)."""
import math
from pathlib import Path

import pytest
import torch

from kgsampler.data import KGRecDataset
from kgsampler.recommender.mf import MF
from kgsampler.train.trainer import Trainer

CONF = Path(__file__).resolve().parents[1] / 'conf'


def strip_times(x):
    """:obj:`x` without wall-clock entries (keys naming seconds or time)."""
    if isinstance(x, dict):
        return {k: strip_times(v) for k, v in x.items()
                if 'second' not in k and 'time' not in k}
    if isinstance(x, (list, tuple)):
        return [strip_times(v) for v in x]
    return x


def same(a, b) -> bool:
    """Exact equality, NaN equal to NaN."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


@pytest.fixture(scope='module')
def dataset() -> KGRecDataset:
    r"""Thirty users, twenty items (entities 0-19), five attribute entities
    (20-24); each user likes about a third of the items, with one test item
    and a validation carve-out (seeded apart from torch's global stream)::

        user u --- ~7 random items;  item i --r(i % 2)--> e(20 + i % 5)
                                     item i --r2--> item (i + 1) % 20
    """
    g = torch.Generator().manual_seed(0)
    dense = torch.rand(30, 20, generator=g) < 0.35
    dense[torch.arange(30), torch.randint(19, (30, ), generator=g)] = True
    test_item = torch.randint(20, (30, ), generator=g)
    dense[torch.arange(30), test_item] = False
    kg = [[i, i % 2, 20 + i % 5] for i in range(20)] + \
        [[i, 2, (i + 1) % 20] for i in range(20)]
    return KGRecDataset(dense.nonzero(), torch.stack(
        [torch.arange(30), test_item], 1), torch.tensor(kg), num_users=30,
        num_items=20, num_entities=25, valid_ratio=0.2, seed=1)


def fit(make_sampler, dataset, seed):
    torch.manual_seed(seed)
    model = MF(dataset.num_users, dataset.num_items, embedding_dim=8)
    sampler = make_sampler(dataset, scorer=model)
    trainer = Trainer(model, sampler, dataset, lr=0.02, batch_size=32,
                      max_epochs=2, patience=2, progress=False)
    res = trainer.fit()
    return strip_times({'valid': res.valid, 'test': res.test,
                        'history': res.history,
                        'sampler_stats': res.sampler_stats,
                        'best_epoch': res.best_epoch}), model


def test_trainer_same_seed_same_metrics(make_sampler, dataset):
    a, model_a = fit(make_sampler, dataset, 5)
    b, model_b = fit(make_sampler, dataset, 5)
    assert same(a, b)
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)
    c, model_c = fit(make_sampler, dataset, 6)
    assert not all(torch.equal(pa, pc) for pa, pc in
                   zip(model_a.parameters(), model_c.parameters()))
    losses = [[row['loss'] for row in r['history'] if 'loss' in row]
              for r in (a, c)]
    assert losses[0] and losses[0] != losses[1]


# ------------------------------------------------------------- the CLI
hydra = pytest.importorskip('hydra')

TINY = ['dataset.num_users=120', 'dataset.num_items=90', 'num_threads=1',
        'trainer.max_epochs=2', 'trainer.progress=false',
        'trainer.batch_size=256']


def cli_run(tmp_path, name, overrides):
    from hydra import compose, initialize_config_dir
    from kgsampler import cli
    out = tmp_path / name
    out.mkdir()
    with initialize_config_dir(config_dir=str(CONF), version_base='1.3'):
        cfg = compose('train', overrides=overrides)
    return strip_times(cli.run(cfg, str(out)))


@pytest.mark.parametrize('sampler', ['rns', 'dns'])
def test_cli_same_seed_same_metrics(tmp_path, monkeypatch, sampler):
    monkeypatch.setenv('KGSAMPLER_CACHE', str(tmp_path / 'cache'))
    torch_threads = torch.get_num_threads()
    try:
        args = [f'sampler={sampler}', *TINY]
        a = cli_run(tmp_path, 'a', [*args, 'seed=3'])
        torch.manual_seed(123)  # the global stream elsewhere plays no part
        b = cli_run(tmp_path, 'b', [*args, 'seed=3'])
        c = cli_run(tmp_path, 'c', [*args, 'seed=4'])
    finally:
        torch.set_num_threads(torch_threads)
    assert a['seed'] == 3 and c['seed'] == 4
    assert same(a, b)
    assert not same(a['history'], c['history'])
