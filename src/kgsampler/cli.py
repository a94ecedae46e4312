"""``kgsampler-train``: the Hydra command line.

This is the only module that imports Hydra. The configs ship inside the
package (``kgsampler/conf``, built from the checkout's top-level ``conf/``),
so the command works from any directory after ``pip install``. To use an
edited copy instead, pass ``--config-path /abs/path/to/conf``;
``--config-dir DIR`` adds new options (it does not replace packaged files).

**Your own recommender.** Put ``recommender/mymodel.yaml`` into ``DIR``
with ``_target_: mypkg.MyModel`` (a class, or any callable such as a
``from_dataset`` classmethod) and its own keys, then run
``kgsampler-train --config-dir DIR recommender=mymodel``. The CLI reads the
target's signature (:func:`inspect.signature`) and passes, besides the
config's keys, exactly the parameters it names among
:data:`RECOMMENDER_ARGS`: ``num_users``, ``num_items``, ``num_entities``,
``num_relations`` (the dataset's sizes), ``dataset`` (the
:class:`~kgsampler.data.KGRecDataset`) and ``train_pos`` (its training
:class:`~kgsampler.data.UserItemCSR`). A target that names none of them but
takes ``**kwargs`` gets the sizes ``num_users`` and ``num_items`` only.
``metrics.json`` records the config-group choice (``recommender``) and the
built object's class (``recommender_class``, ``module.QualName``).

**Where** ``mypkg`` **must be importable from.** The ``kgsampler-train``
console script does *not* put the current directory on :data:`sys.path`
(only ``python -m kgsampler.cli`` does). ``mypkg`` must be installed
(``pip install -e .`` of your project), or its folder on ``PYTHONPATH``,
or named by the top-level key ``extra_sys_path`` (a list of folders put at
the front of :data:`sys.path` before anything is built; relative folders
are taken from the directory the command was started in), e.g.
``kgsampler-train --config-dir DIR recommender=mymodel 'extra_sys_path=[.]'``.
The same holds for a sampler or dataset ``_target_`` of your own.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any, Dict, Sequence

import hydra
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_method, instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch_geometric import seed_everything

from kgsampler.utils._device import resolve_device
from kgsampler.utils._io import atomic_json_dump, atomic_torch_save

log = logging.getLogger('kgsampler.cli')


#: Trainer settings that do not change the weights a warm start ends with
#: (display, bookkeeping, evaluation speed, the main run's own budget and
#: resume files): left out of the warm-start cache key.
COSMETIC_TRAINER_KEYS = ('progress', 'eval_batch_size', 'track_dynamics',
                         'track_test', 'sparsity_groups', 'kgat_ndcg',
                         'time_budget', 'sampler_warmup', 'checkpoint_path',
                         'state_path', 'checkpoint_every', 'resume')


def _pretrain_trainer_cfg(cfg: DictConfig) -> Dict[str, Any]:
    """The trainer settings of the warm start (pretrain.lr / weight_decay
    override the main run's)."""
    out = OmegaConf.to_container(cfg.trainer, resolve=True)
    out['max_epochs'] = cfg.pretrain.epochs
    # uniform negatives need no sampler warm-up, the test split is not
    # tracked during the warm start, the main run's budget and resume files
    # are not the warm start's
    for k in ('sampler_warmup', 'track_test', 'time_budget',
              'checkpoint_every', 'resume'):
        out.pop(k, None)
    for k in ('lr', 'weight_decay'):
        if cfg.pretrain.get(k) is not None:
            out[k] = cfg.pretrain[k]
    return out


def dataset_digest(dataset) -> str:
    """SHA-256 of a dataset's content: its sizes, the three splits and the
    knowledge graph (what a model trained on it sees; not its path)."""
    h = hashlib.sha256()
    h.update(json.dumps(dataset.statistics(), sort_keys=True).encode())
    for csr in (dataset.train_pos, dataset.valid_pos, dataset.test_pos):
        for t in (csr.indptr, csr.indices):
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    h.update(dataset.kg.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _code_digest(model) -> str:
    """SHA-256 of the source files a warm start runs: the recommender's
    module (and its bases' within kgsampler), the trainer, the evaluation
    and the uniform sampler."""
    import kgsampler
    root = Path(kgsampler.__file__).parent
    files = {root / 'train' / 'trainer.py', root / 'train' / 'evaluate.py',
             root / 'sampler' / 'base.py', root / 'sampler' / 'uniform.py',
             root / 'utils' / '_membership.py'}
    for cls in type(model).__mro__:
        f = inspect.getsourcefile(cls) if cls.__module__ not in (
            'builtins', ) else None
        if f and cls.__module__.split('.')[0] in ('kgsampler',
                                                   type(model).__module__
                                                   .split('.')[0]):
            files.add(Path(f))
    h = hashlib.sha256()
    for f in sorted(files):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


def pretrain_key(cfg: DictConfig, dataset, model=None) -> Dict[str, Any]:
    """What the warm start's weights depend on: the dataset's content
    (:func:`dataset_digest`), the recommender config, the trainer's
    optimisation settings (all but :data:`COSMETIC_TRAINER_KEYS`), the
    warm start's epochs, the seed, the device type, the package version and
    (with :obj:`model`) a digest of the code it runs."""
    import kgsampler
    trainer = {k: v for k, v in _pretrain_trainer_cfg(cfg).items()
               if k not in COSMETIC_TRAINER_KEYS}
    device = resolve_device('kgsampler-train', cfg.device)
    return {
        'dataset': dataset_digest(dataset),
        'recommender': OmegaConf.to_container(cfg.recommender, resolve=True),
        'trainer': trainer,
        'epochs': int(cfg.pretrain.epochs),
        'seed': int(cfg.seed),
        'device': device.type,
        'version': getattr(kgsampler, '__version__', 'unknown'),
        'code': _code_digest(model) if model is not None else None,
        # a warm start trained on several ranks (only then: the keys of
        # single-process runs are unchanged)
        **({'world_size': _world_size()} if _world_size() > 1 else {}),
    }


def _pretrain_key(cfg: DictConfig, dataset, model=None) -> str:
    blob = json.dumps(pretrain_key(cfg, dataset, model), sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


_CACHE_FORMAT = 'kgsampler-warm-start-1'


def _load_cache(cache: Path, key: str, model) -> bool:
    """Loads a cached warm start into :obj:`model`; a file that cannot be
    read, was written for another key or does not fit the model is reported
    by path, deleted and :obj:`False` returned (so it is recomputed)."""
    try:
        blob = torch.load(cache, map_location='cpu', weights_only=True)
        if not isinstance(blob, dict) or blob.get('format') != \
                _CACHE_FORMAT or blob.get('key') != key:
            raise ValueError('not a warm start written for these settings')
        model.load_state_dict(blob['state_dict'])
    except Exception as e:  # truncated zip, unpickling, shapes, keys...
        log.warning("the cached warm start '%s' is unusable (%s: %s); "
                    "deleting it and pretraining again", cache,
                    type(e).__name__, ' '.join(str(e).split())[:300])
        try:
            cache.unlink()
        except OSError as e2:
            log.warning("could not delete '%s' (%s)", cache, e2)
        return False
    return True


def _save_cache(cache: Path, key: str, model) -> None:
    """Writes the warm start atomically; an unwritable cache folder is a
    warning (the run goes on without caching)."""
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_torch_save({'format': _CACHE_FORMAT, 'key': key,
                           'state_dict': model.state_dict()}, cache)
    except OSError as e:
        log.warning("could not write the warm-start cache '%s' (%s); the run "
                    "goes on without caching it (set pretrain.cache_dir or "
                    "KGSAMPLER_CACHE to a writable folder)", cache,
                    e.strerror or e)
    else:
        log.info('cached the warm start in %s', cache)


def _cache_file(cfg: DictConfig, key: str) -> Path:
    """The warm start's cache file, ``<pretrain.cache_dir>/pretrain-<key>.pt``
    (:obj:`key` from :func:`_pretrain_key`)."""
    return Path(cfg.pretrain.cache_dir).expanduser() / f'pretrain-{key}.pt'


#: Seconds between two tries to take a warm start's lock, and between two
#: "still waiting" messages.
_LOCK_POLL_S = 0.2
_LOCK_REPORT_S = 60.0


class _CacheLock:
    """An exclusive lock around "look into the cache, pretrain, write" of
    one warm start: :func:`fcntl.flock` on ``pretrain-<key>.pt.lock`` next to
    the cache file. Runs that share :obj:`pretrain.cache_dir` and start at
    once (a parallel sweep) pretrain a warm start once; the others wait,
    then load it. The kernel drops the lock when its holder exits, killed or
    not, so a lock file left behind never blocks; the file (holding the
    holder's process id) stays in place, as deleting it would let two runs
    lock two different files. Where :mod:`fcntl` is missing (Windows) or
    the file system refuses locks (some network mounts), the run goes on
    unlocked: runs started together may then each pretrain, and the atomic
    write still keeps every reader from a partial file."""

    def __init__(self, cache: Path):
        self.path = cache.with_name(cache.name + '.lock')
        self.fd = None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or '?'
        except OSError:
            return '?'

    def __enter__(self) -> '_CacheLock':
        try:
            import fcntl
        except ImportError:  # Windows
            log.info('no fcntl here: the warm-start cache is used unlocked')
            return self
        import time
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            log.warning("could not open the warm-start lock '%s' (%s); going "
                        "on unlocked", self.path, e.strerror or e)
            return self
        start = reported = None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:  # another run holds it
                    now = time.monotonic()
                    if start is None:
                        start = reported = now
                        log.info("waiting for the warm start that process %s "
                                 "is pretraining (lock '%s')", self._holder(),
                                 self.path)
                    elif now - reported >= _LOCK_REPORT_S:
                        reported = now
                        log.info('still waiting for the warm-start lock '
                                 "'%s' (%.0f s, held by process %s)",
                                 self.path, now - start, self._holder())
                    time.sleep(_LOCK_POLL_S)
        except OSError as e:  # ENOLCK, EOPNOTSUPP: no locks on this mount
            os.close(fd)
            log.warning("could not lock '%s' (%s); going on unlocked",
                        self.path, e.strerror or e)
            return self
        except BaseException:  # SIGTERM / Ctrl-C while waiting
            os.close(fd)
            raise
        self.fd = fd
        if start is not None:
            log.info('took the warm-start lock after %.1f s',
                     time.monotonic() - start)
        try:  # who holds it, for the messages of those who wait
            os.ftruncate(fd, 0)
            os.pwrite(fd, f'{os.getpid()}\n'.encode(), 0)
        except OSError:
            pass
        return self

    def __exit__(self, *exc) -> bool:
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # releases the lock
            self.fd = None
        return False


def _pretrain_rns(cfg: DictConfig, dataset, model) -> None:
    """Trains the warm start: the recommender with uniform negatives."""
    from kgsampler.sampler import RNS
    log.info('pretraining the recommender with RNS for up to %d epochs',
             cfg.pretrain.epochs)
    trainer = instantiate(_pretrain_trainer_cfg(cfg), model=model,
                          sampler=RNS(dataset.train_pos), dataset=dataset,
                          device=cfg.device)
    res = trainer.fit()
    log.info('pretraining: best epoch %d, valid ndcg@20 %.4f', res.best_epoch,
             res.valid.get('ndcg@20', float('nan')))
    model.cpu()


def _pretrain(cfg: DictConfig, dataset, model) -> None:
    """Loads or trains the recommender's warm start (uniform negatives);
    with :obj:`pretrain.cache`, under the warm start's :class:`_CacheLock`."""
    if cfg.pretrain.checkpoint:
        path = Path(cfg.pretrain.checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretrain.checkpoint: no file {path}")
        try:
            state = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as e:
            raise ValueError(f"pretrain.checkpoint: cannot read '{path}' "
                             f"({type(e).__name__}: "
                             f"{' '.join(str(e).split())[:300]})") from e
        if isinstance(state, dict) and state.get('format') == _CACHE_FORMAT:
            state = state['state_dict']  # a cached warm start
        model.load_state_dict(state)
        log.info('loaded pretrained recommender from %s', path)
        return
    if cfg.pretrain.epochs <= 0:
        return
    if not cfg.pretrain.cache:
        _pretrain_rns(cfg, dataset, model)
        return
    key = _pretrain_key(cfg, dataset, model)
    cache = _cache_file(cfg, key)
    from kgsampler.train._distributed import get_context
    ctx = get_context()
    if ctx.world_size > 1:
        _pretrain_ranks(cfg, dataset, model, key, cache, ctx)
        return
    # one run pretrains, the others sharing the cache wait and load its file
    with _CacheLock(cache):
        if cache.is_file() and _load_cache(cache, key, model):
            log.info('loaded cached pretrained recommender %s', cache)
            return
        _pretrain_rns(cfg, dataset, model)
        _save_cache(cache, key, model)


def _pretrain_ranks(cfg: DictConfig, dataset, model, key: str, cache: Path,
                    ctx) -> None:
    """The cached warm start under ``torchrun``: the ranks pretrain
    together (their collectives must not wait on a file lock), so only
    rank 0 takes the lock, looks into the cache and tells every rank what it
    found; on a hit rank 0 loads the file (the Trainer then broadcasts rank
    0's parameters), on a miss every rank pretrains and rank 0 writes it.
    While rank 0 waits for another run's lock, the other ranks wait in that
    broadcast (up to the process group's timeout)."""
    import contextlib

    from kgsampler.train._distributed import broadcast_object
    with _CacheLock(cache) if ctx.is_main else contextlib.nullcontext():
        hit = bool(ctx.is_main and cache.is_file() and
                   _load_cache(cache, key, model))
        if broadcast_object(hit):
            log.info('loaded cached pretrained recommender %s', cache)
            return
        _pretrain_rns(cfg, dataset, model)
        if ctx.is_main:
            _save_cache(cache, key, model)


def _rng_state():
    state = (random.getstate(), np.random.get_state(),
             torch.random.get_rng_state())
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() \
        else None
    return state, cuda


def _set_rng_state(saved) -> None:
    (py, npy, cpu), cuda = saved
    random.setstate(py)
    np.random.set_state(npy)
    torch.random.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def _check_int(name: str, value, low: int, none_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"kgsampler-train: '{name}' must be an int >= {low}"
                         f"{' or null' if none_ok else ''} (got {value!r})")


def _check_show_paths_users(users, num_users: int) -> None:
    if users is None:
        return
    if isinstance(users, (str, bytes)) or not OmegaConf.is_list(users) and \
            not isinstance(users, (list, tuple)):
        raise ValueError(f"kgsampler-train: 'show_paths_users' must be a "
                         f"list of user ids, e.g. [0,1] (got {users!r})")
    bad = [u for u in users if isinstance(u, bool) or not isinstance(u, int)
           or not 0 <= u < num_users]
    if bad:
        raise ValueError(f"kgsampler-train: 'show_paths_users' must hold user "
                         f"ids in [0, {num_users}) (got {bad})")


#: The arguments the CLI hands a recommender's ``_target_`` when its
#: signature names them (see the module docstring).
RECOMMENDER_ARGS = ('num_users', 'num_items', 'num_entities',
                    'num_relations', 'dataset', 'train_pos')


def _extend_sys_path(folders) -> None:
    """Puts the :obj:`extra_sys_path` folders at the front of
    :data:`sys.path` (relative ones from the directory the command was
    started in)."""
    if folders is None:
        return
    if isinstance(folders, (str, bytes)) or not OmegaConf.is_list(
            folders) and not isinstance(folders, (list, tuple)) or any(
            not isinstance(f, str) or not f for f in folders):
        raise ValueError(f"kgsampler-train: 'extra_sys_path' must be a list "
                         f"of folders, e.g. [.] or [/abs/src] (got "
                         f"{folders!r})")
    for folder in reversed(list(folders)):
        path = to_absolute_path(os.path.expanduser(folder))
        if not os.path.isdir(path):
            raise ValueError(f"kgsampler-train: 'extra_sys_path' names "
                             f"{folder!r}, which is not a folder ({path})")
        if path not in sys.path:
            sys.path.insert(0, path)


def recommender_args(target: str, dataset,
                     names: Sequence[str] = RECOMMENDER_ARGS
                     ) -> Dict[str, Any]:
    """The arguments among :obj:`names` that the callable :obj:`target`
    (a dotted path, e.g. :obj:`"kgsampler.recommender.MF"`) names in its
    signature, with their values from :obj:`dataset`; the sizes
    :obj:`num_users` and :obj:`num_items` for a target that names none of
    them but takes :obj:`**kwargs`."""
    try:
        fn = get_method(target)
    except Exception as e:  # ImportError, AttributeError, ValueError
        raise ValueError(
            f"kgsampler-train: cannot import recommender._target_="
            f"{target!r} ({' '.join(str(e).split())}). Its module must be "
            f"importable: installed, on "
            f"PYTHONPATH, or in a folder listed in extra_sys_path (the "
            f"console script does not search the current directory)") from e
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no readable signature: the sizes
        params = None
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
             inspect.Parameter.KEYWORD_ONLY)
    named = [n for n in names if params is not None and n in params
             and params[n].kind in kinds]
    if not named and (params is None or any(
            p.kind == inspect.Parameter.VAR_KEYWORD
            for p in params.values())):
        named = ['num_users', 'num_items']
    values = {'dataset': dataset, 'train_pos': dataset.train_pos}
    out = {}
    for n in named:
        if n not in values and not hasattr(dataset, n):
            raise ValueError(f"kgsampler-train: recommender._target_="
                             f"{target!r} asks for {n!r}, which the dataset "
                             f"({type(dataset).__name__}) does not provide")
        out[n] = values[n] if n in values else getattr(dataset, n)
    return out


def build_loggers(cfg: DictConfig, output_dir: str) -> list:
    """The per-epoch loggers the :obj:`logger` block of the config switches
    on: :obj:`history.csv`, :obj:`tensorboard/` (and W&B's files) in the
    run folder. A logger asked for whose package is missing raises
    :class:`ImportError` naming it, before anything trains."""
    from kgsampler.train._loggers import CSVLogger, TensorBoardLogger, \
        WandbLogger
    lc = cfg.get('logger') or {}
    for key in ('csv', 'tensorboard', 'wandb', 'print_config'):
        v = lc.get(key, False)
        if not isinstance(v, bool):
            raise ValueError(f"kgsampler-train: 'logger.{key}' must be true "
                             f"or false (got {v!r})")
    loggers = []
    if lc.get('csv', False):
        loggers.append(CSVLogger(os.path.join(output_dir, 'history.csv')))
    if lc.get('tensorboard', False):
        loggers.append(TensorBoardLogger(os.path.join(output_dir,
                                                      'tensorboard')))
    if lc.get('wandb', False):
        loggers.append(WandbLogger(str(lc.get('wandb_project') or
                                       'kgsampler'), dir=output_dir))
    return loggers


def _world_size() -> int:
    from kgsampler.train._distributed import get_context
    return get_context().world_size


def _init_distributed(cfg: DictConfig):
    """Joins the process group that ``torchrun`` describes in the
    environment (``WORLD_SIZE`` > 1; ``docs/distributed.md``): gloo on the
    CPU, nccl with one GPU a rank (``device`` becomes ``cuda:LOCAL_RANK``).
    Returns the :class:`~kgsampler.train._distributed.DistributedContext`."""
    from kgsampler.train._distributed import init_from_env
    ctx = init_from_env(resolve_device('kgsampler-train', cfg.device))
    if ctx.world_size == 1:
        return ctx
    from hydra.types import RunMode
    try:
        mode = HydraConfig.get().mode
    except ValueError:  # not running under Hydra
        mode = None
    if mode == RunMode.MULTIRUN:
        raise ValueError(f"kgsampler-train: a sweep (-m) is not supported "
                         f"under torchrun (got world_size={ctx.world_size}"
                         f"); launch one torchrun per run")
    if bool(cfg.trainer.get('resume', False)):
        raise ValueError(f"kgsampler-train: trainer.resume=true is not "
                         f"supported under torchrun (got world_size="
                         f"{ctx.world_size}); run without resume")
    if resolve_device('kgsampler-train', cfg.device).type == 'cuda':
        cfg.device = f'cuda:{ctx.local_rank}'
    return ctx


def _shared_output_dir(ctx, output_dir: str) -> str:
    """Rank 0's run folder on every rank; another rank's own folder (from
    a time stamp a second later) is removed when it is empty."""
    if ctx.world_size == 1:
        return output_dir
    from kgsampler.train._distributed import broadcast_object
    main_dir = broadcast_object(os.path.abspath(output_dir))
    if os.path.abspath(output_dir) != main_dir:
        try:
            os.rmdir(output_dir)
        except OSError:  # not empty, or already gone
            pass
    return main_dir


def _rank_stream(cfg: DictConfig, ctx) -> None:
    """Under torchrun, gives each rank its own random streams (torch,
    numpy, random), seeded with :obj:`seed + rank`."""
    if ctx.world_size > 1:
        seed_everything(int(cfg.seed) + ctx.rank)


def _plain_config(cfg: DictConfig) -> Dict[str, Any]:
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # an interpolation that only resolves under Hydra
        return OmegaConf.to_container(cfg, resolve=False)


def run(cfg: DictConfig, output_dir: str) -> Dict[str, Any]:
    """Builds everything from :obj:`cfg`, trains, writes
    :obj:`metrics.json` into :obj:`output_dir` and returns its content.

    Every object is built (and so every argument checked) before the warm
    start runs; the sampler is built on the random-number stream it would
    see right after it, so results do not depend on that order."""
    _check_int('seed', cfg.seed, 0)
    _check_int('num_threads', cfg.num_threads, 0, none_ok=True)
    resolve_device('kgsampler-train', cfg.device)  # before anything is built
    _check_int('show_paths', cfg.show_paths, 0)
    ctx = _init_distributed(cfg)
    output_dir = _shared_output_dir(ctx, output_dir)
    _extend_sys_path(cfg.get('extra_sys_path'))
    loggers = build_loggers(cfg, output_dir)  # a missing package: now
    if not ctx.is_main:  # only rank 0 writes
        loggers = []
    if (cfg.get('logger') or {}).get('print_config', False):
        log.info('composed config:\n%s', OmegaConf.to_yaml(cfg).rstrip())
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    seed_everything(cfg.seed)
    dataset = instantiate(cfg.dataset)
    log.info('%s', dataset.summary())
    if cfg.show_paths > 0:
        _check_show_paths_users(cfg.show_paths_users, dataset.num_users)
    target = cfg.recommender.get('_target_')
    if not isinstance(target, str) or not target:
        raise ValueError(f"kgsampler-train: the recommender config needs a "
                         f"'_target_' (a class or callable, e.g. "
                         f"kgsampler.recommender.MF) (got {target!r})")
    # the config's keys through Hydra; the dataset's objects handed over
    # directly (Hydra would turn a dataclass such as train_pos into a config)
    model_args = recommender_args(target, dataset)  # imports the target
    model = instantiate(cfg.recommender, _partial_=True)(**model_args)
    before = _rng_state()
    seed_everything(cfg.seed)
    sampler = instantiate(cfg.sampler, dataset=dataset, scorer=model)
    after = _rng_state()
    checkpoint = os.path.join(output_dir, 'best.pt')
    state_path = os.path.join(output_dir, 'last.pt')
    # checks the trainer's arguments now, not after the warm start (building
    # a Trainer draws no random numbers)
    instantiate(cfg.trainer, model=model, sampler=sampler, dataset=dataset,
                device=cfg.device, checkpoint_path=checkpoint,
                state_path=state_path)
    resuming = bool(cfg.trainer.get('resume', False)) and \
        os.path.isfile(state_path)
    head = {
        'dataset': dataset.name,
        'sampler': _choices().get('sampler', type(sampler).__name__.lower()),
        'recommender': _choices().get('recommender',
                                      type(model).__name__.lower()),
        'recommender_class': f'{type(model).__module__}.'
                             f'{type(model).__qualname__}',
        'seed': int(cfg.seed),
        # the validation metric the epoch was chosen on (read by the report)
        'monitor': str(cfg.trainer.monitor),
        # processes that trained together (torchrun ranks; 1: one process)
        'world_size': ctx.world_size,
    }
    metrics_path = os.path.join(output_dir, 'metrics.json')
    progress: Dict[str, Any] = {}

    def write(status: str, **extra) -> Dict[str, Any]:
        out = {**head, 'status': status, **extra}
        if not ctx.is_main:
            return out
        bad = atomic_json_dump(out, metrics_path)
        if bad:  # null in the file, and said so
            out['non_finite'] = bad
            atomic_json_dump(out, metrics_path)
        return out

    def on_epoch_end(p: Dict[str, Any]) -> None:
        progress.update(p)
        write('running', best_epoch=p['best_epoch'], epochs_run=p['epoch'],
              epoch_seconds=[round(x, 4) for x in p['epoch_seconds']],
              valid=p['valid'], history=p['history'])

    from kgsampler.train.trainer import TrainingDiverged
    with _stop_on_signals():
        try:
            if not resuming:  # a run folder says from the start what it is
                write('running', best_epoch=0, epochs_run=0,
                      epoch_seconds=[], valid={}, history=[])
            if resuming:
                log.info('resuming from %s (no warm start)', state_path)
            else:
                _set_rng_state(before)
                _rank_stream(cfg, ctx)
                _pretrain(cfg, dataset, model)
            _set_rng_state(after)
            _rank_stream(cfg, ctx)
            trainer = instantiate(cfg.trainer, model=model, sampler=sampler,
                                  dataset=dataset, device=cfg.device,
                                  checkpoint_path=checkpoint,
                                  state_path=state_path, loggers=loggers)
            result = trainer.fit(on_epoch_end=on_epoch_end,
                                 config=_plain_config(cfg))
        except TrainingDiverged as e:
            write('diverged', error=str(e), diverged={
                'epoch': e.epoch, 'batch': e.batch,
                'component': e.component},
                best_epoch=e.best_epoch, epochs_run=e.epoch - 1,
                epoch_seconds=[round(x, 4) for x in e.epoch_seconds],
                valid=e.valid, history=e.history)
            log.error('%s', e)
            raise
        except KeyboardInterrupt as e:
            msg = (f'interrupted ({e.args[0] if e.args else "SIGINT"}); '
                   f'continue with trainer.resume=true and '
                   f'hydra.run.dir={output_dir}')
            write('interrupted', error=msg,
                  best_epoch=progress.get('best_epoch', 0),
                  epochs_run=progress.get('epoch', 0),
                  epoch_seconds=[round(x, 4) for x in
                                 progress.get('epoch_seconds', [])],
                  valid=progress.get('valid', {}),
                  history=progress.get('history', []))
            log.error('%s', msg)
            raise SystemExit(130 if not e.args or e.args[0] == 'SIGINT'
                             else 128 + int(signal.SIGTERM)) from None
    metrics = write(
        'completed',
        best_epoch=result.best_epoch,
        epochs_run=result.epochs_run,
        stopped_by=result.stopped_by,
        epoch_seconds=[round(s, 4) for s in result.epoch_seconds],
        valid=result.valid,
        test=result.test,
        sampler_stats=result.sampler_stats,
        # per epoch: seconds, loss, grad_magnitude, false_negative_rate,
        # valid metrics
        history=result.history,
        # test metrics per user group by number of training interactions
        test_by_sparsity=result.test_by_sparsity,
    )
    if ctx.is_main:
        log.info('wrote %s', metrics_path)
    if cfg.show_paths > 0 and ctx.is_main:
        print('\n'.join(explain(dataset, sampler, cfg.show_paths_users,
                                cfg.show_paths)))
    return metrics


class _stop_on_signals:
    """Turns SIGTERM (and SIGINT) into :class:`KeyboardInterrupt` while
    training, so that the run records ``"status": "interrupted"``."""
    def __enter__(self):
        self._old = {}

        def handler(signum, frame):
            raise KeyboardInterrupt(signal.Signals(signum).name)
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread
                pass
        return self

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False


@torch.no_grad()
def explain(dataset, sampler, users, num_paths: int):
    """Example exploring paths (KGPolicy's case study): for each user,
    :obj:`num_paths` walks from its first training positives, with entity and
    relation names where the dataset has them."""
    from kgsampler.sampler import format_paths
    if users is None:
        users = list(range(min(3, dataset.num_users)))
    users = torch.as_tensor(list(users), dtype=torch.long)
    deg = dataset.train_pos.degree()[users]
    if bool((deg == 0).any()):
        bad = users[deg == 0].tolist()
        raise ValueError(f"show_paths_users: users {bad} have no training "
                         f"positive to start a path from")
    u = users.repeat_interleave(num_paths)
    k = torch.arange(num_paths).repeat(users.numel()) % deg.repeat_interleave(
        num_paths)
    pos = dataset.train_pos.indices[dataset.train_pos.indptr[u] + k]
    device = sampler.train_pos.device
    out = sampler.sample(u.to(device), pos.to(device))
    if out.paths is None:
        return [f'{type(sampler).__name__} returns no exploring paths '
                f'(show_paths needs an explainable sampler such as KGPolicy)']
    return format_paths(dataset, u, out, n=u.numel())


def _choices() -> Dict[str, str]:
    try:
        return dict(HydraConfig.get().runtime.choices)
    except ValueError:  # not running under Hydra
        return {}


@hydra.main(config_path='conf', config_name='train', version_base='1.3')
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg, HydraConfig.get().runtime.output_dir)


#: Overrides a rank other than 0 of a torchrun run adds to its command
#: line: no ``.hydra/`` folder and no log file in the run folder (rank 0
#: writes them), only warnings and errors on the console.
_OTHER_RANK_OVERRIDES = ('hydra.output_subdir=null',
                         'hydra/job_logging=disabled',
                         'hydra/hydra_logging=disabled')


def main() -> None:
    """Entry point of ``kgsampler-train`` (also under ``torchrun``: see
    ``docs/distributed.md``)."""
    from kgsampler.train._distributed import env_world_size
    world = env_world_size()
    if world > 1 and os.environ.get('RANK', '0') != '0':
        sys.argv += [o for o in _OTHER_RANK_OVERRIDES if o not in sys.argv]
    try:
        _hydra_main()
    finally:
        if world > 1:
            import torch.distributed as dist
            if dist.is_available() and dist.is_initialized():
                dist.destroy_process_group()


if __name__ == '__main__':
    main()
