"""Shared fixtures: the device, the registry of every sampler (so that a new
sampler gets the property tests of ``tests/sampler/test_sampler_properties.py``
and ``tests/test_determinism.py`` by being added here), and a check that the
tests import the package of this working tree."""
import os
from pathlib import Path
from typing import Callable, Dict, Sequence

import pytest
import torch

REPO_SRC = Path(__file__).resolve().parents[1] / 'src'
#: Set to 1 to test an installed copy of kgsampler on purpose (e.g. a wheel).
ALLOW_INSTALLED = 'KGSAMPLER_TEST_INSTALLED'


def pytest_configure(config):
    """Fails the whole run, before any test, when ``import kgsampler`` does
    not load ``src/kgsampler`` of this working tree (e.g. a stale
    non-editable install shadows it): the tests would test other code."""
    if os.environ.get(ALLOW_INSTALLED) == '1':
        return
    import kgsampler
    found = Path(kgsampler.__file__).resolve()
    if REPO_SRC not in found.parents:
        raise pytest.UsageError(
            f"the tests import kgsampler from {found}, not from this working "
            f"tree's {REPO_SRC}: they would test stale code. Fix: add "
            f"'pythonpath = src' to [tool:pytest] in setup.cfg, or run "
            f"'PYTHONPATH=src python -m pytest', or 'pip install -e .'; set "
            f"{ALLOW_INSTALLED}=1 to test an installed copy on purpose.")


@pytest.fixture(params=['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA'))])
def device(request) -> torch.device:
    """Runs a test on the CPU and, where one is present, on a CUDA GPU."""
    return torch.device(request.param)


# ------------------------------------------------------- sampler registry
def _scorer(dataset, scorer):
    """The recommender a sampler queries: the one given, else a small MF
    drawn from the current random-number stream."""
    if scorer is not None:
        return scorer
    from kgsampler.recommender.mf import MF
    return MF(dataset.num_users, dataset.num_items, embedding_dim=4)


def _kgpolicy(selection):
    def build(dataset, scorer=None, **kwargs):
        from kgsampler.sampler.kgpolicy import KGPolicy
        return KGPolicy.from_dataset(
            dataset, scorer=_scorer(dataset, scorer), selection=selection,
            n1=4, n2=2, num_random=2, embedding_dim=4, hidden_dims=(4, 4),
            pool_size=2, **kwargs)
    return build


def _plain(module, name, **defaults):
    def build(dataset, scorer=None, **kwargs):
        import importlib
        cls = getattr(importlib.import_module(module), name)
        return cls.from_dataset(dataset, **defaults, **kwargs)
    return build


def _with_scorer(module, name, **defaults):
    def build(dataset, scorer=None, **kwargs):
        import importlib
        cls = getattr(importlib.import_module(module), name)
        return cls.from_dataset(dataset, scorer=_scorer(dataset, scorer),
                                **defaults, **kwargs)
    return build


def _dens(dataset, scorer=None, **kwargs):
    """DENS, skipped with a recommender that has no user and item vectors
    whose inner product is its score (it raises a TypeError there, tested in
    tests/sampler/test_dens.py)."""
    from kgsampler.sampler.dens import DENS
    scorer = _scorer(dataset, scorer)
    if not DENS.supports(scorer):
        pytest.skip(f'DENS needs user/item vectors; '
                    f'{type(scorer).__name__} has none')
    return DENS.from_dataset(dataset, scorer=scorer, num_candidates=4,
                             warmup=1, **kwargs)


def _mixgcf(dataset, scorer=None, **kwargs):
    """MixGCF over a tiny LightGCN (it needs ``layer_embeddings()``) unless
    a recommender is given; skipped with one that has none (it raises a
    TypeError there, tested in tests/test_matrix.py)."""
    from kgsampler.recommender.lightgcn import LightGCN
    from kgsampler.sampler.mixgcf import MixGCF
    if scorer is None:
        scorer = LightGCN.from_dataset(dataset, embedding_dim=4, num_layers=2)
    if not MixGCF.supports(scorer):
        pytest.skip(f'MixGCF needs layer_embeddings(); '
                    f'{type(scorer).__name__} has none')
    return MixGCF.from_dataset(dataset, scorer=scorer, num_candidates=4,
                               **kwargs)


#: Every sampler of the package, as ``name -> build(dataset, scorer=None,
#: **kwargs)`` (small settings; :obj:`kwargs` go to the constructor, e.g.
#: :obj:`membership`). KGPolicy once per selection rule.
#: ``tests/sampler/test_sampler_properties.py`` fails when a sampler class
#: or a KGPolicy selection is missing here.
SAMPLERS: Dict[str, Callable] = {
    'RNS': _plain('kgsampler.sampler.uniform', 'RNS'),
    'PNS': _plain('kgsampler.sampler.popularity', 'PNS'),
    'DNS': _with_scorer('kgsampler.sampler.dns', 'DNS', num_candidates=4),
    'Adversarial': _with_scorer('kgsampler.sampler.adversarial',
                                'Adversarial', embedding_dim=4),
    'AdvIR': _with_scorer('kgsampler.sampler.advir', 'AdvIR',
                          embedding_dim=4),
    'NMRN': _with_scorer('kgsampler.sampler.nmrn', 'NMRN', embedding_dim=4,
                         memory_size=2),
    'RandomWalk': _plain('kgsampler.sampler.random_walk', 'RandomWalk'),
    'DNSMN': _with_scorer('kgsampler.sampler.hard_negative', 'DNSMN',
                          num_candidates=4),
    'SoftmaxNS': _with_scorer('kgsampler.sampler.hard_negative', 'SoftmaxNS',
                              num_candidates=4),
    'AHNS': _with_scorer('kgsampler.sampler.ahns', 'AHNS', num_candidates=4),
    'SRNS': _with_scorer('kgsampler.sampler.srns', 'SRNS', memory_size=3,
                         num_refresh=4, pool_size=6, warmup=1),
    'DENS': _dens,
    'MixGCF': _mixgcf,
    'KGPolicy-sample': _kgpolicy('sample'),
    'KGPolicy-recommender_max': _kgpolicy('recommender_max'),
}


@pytest.fixture(params=sorted(SAMPLERS))
def sampler_name(request) -> str:
    """Each registered sampler in turn (see :data:`SAMPLERS`)."""
    return request.param


@pytest.fixture
def make_sampler(sampler_name) -> Callable:
    """``make_sampler(dataset, scorer=None, **kwargs)`` builds the sampler of
    :func:`sampler_name` on a :class:`~kgsampler.data.KGRecDataset`."""
    return SAMPLERS[sampler_name]


@pytest.fixture
def sampler_registry() -> Dict[str, Callable]:
    """:data:`SAMPLERS` itself."""
    return SAMPLERS


# ------------------------------------------------------- the CLI in-process
@pytest.fixture
def train(tmp_path, monkeypatch, caplog):
    """``train(overrides, output_dir)`` composes ``conf/train.yaml`` of this
    working tree with :obj:`overrides`, sets the Hydra config as
    ``kgsampler-train`` does (the run sees the config-group choices) and
    calls :func:`kgsampler.cli.run` in-process; returns its metrics. The
    warm-start cache is ``tmp_path/cache``; log records from INFO on are
    captured (``caplog``); the torch thread count and the Hydra config are
    restored afterwards."""
    import logging

    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    from kgsampler import cli
    monkeypatch.setenv('KGSAMPLER_CACHE', str(tmp_path / 'cache'))
    caplog.set_level(logging.INFO)
    threads = torch.get_num_threads()

    def call(overrides: Sequence[str], output_dir: Path):
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        with initialize_config_dir(
                config_dir=str(REPO_SRC.parent / 'conf'), version_base='1.3'):
            cfg = compose('train', overrides=overrides,
                          return_hydra_config=True)
        with read_write(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = str(output_dir)
        HydraConfig.instance().set_config(cfg)
        with read_write(cfg), open_dict(cfg):
            del cfg['hydra']
        return cli.run(cfg, str(output_dir))
    yield call
    HydraConfig.instance().cfg = None
    torch.set_num_threads(threads)
