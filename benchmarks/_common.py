"""Shared helpers of the benchmark scripts (not part of the package)."""
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
#: ``../shared/datasets``, or the folder named by ``KGSAMPLER_DATASETS``.
DATASETS = Path(os.environ.get('KGSAMPLER_DATASETS',
                               ROOT.parent / 'shared' / 'datasets'))


def dataset_dir(name: str) -> Path:
    path = DATASETS / name
    if not (path / 'train.txt').is_file():
        raise SystemExit(f'{path} not found: the benchmarks read the shared '
                         f'datasets from ../shared/datasets/{name} (or '
                         f'$KGSAMPLER_DATASETS/{name})')
    return path


def header(title: str) -> None:
    try:
        commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                                cwd=ROOT, capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = '?'
    try:
        import torch_scatter  # noqa: F401
        scatter = 'yes'
    except ImportError:
        scatter = 'no'
    try:
        import torch_sparse  # noqa: F401
        sparse = 'yes'
    except ImportError:
        sparse = 'no'
    print(f'# {title}')
    print(f'# {time.strftime("%Y-%m-%d %H:%M")} commit {commit} | '
          f'{platform.processor() or platform.machine()} '
          f'{os.cpu_count()} cores | torch {torch.__version__} | '
          f'threads {torch.get_num_threads()} | torch-scatter {scatter} | '
          f'torch-sparse {sparse}')


def timeit(fn, repeat: int = 5, warmup: int = 1) -> float:
    """Best wall time of :obj:`repeat` calls, in seconds."""
    for _ in range(warmup):
        fn()
    best = float('inf')
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best
