"""Parallel sweeps through Hydra's joblib launcher (``pip install
'kgsampler[sweep]'``): ``kgsampler-train -m hydra/launcher=joblib
hydra.launcher.n_jobs=2 ...`` runs each job in its own worker process with
one torch thread and writes exactly the numbers of the sequential sweep.

The console script runs on the checkout's ``src/`` (``PYTHONPATH``) and
``conf/`` (``--config-path``), so the code under test is this working
tree's; the launcher is found through Hydra's plugin discovery
(``hydra_plugins`` in site-packages)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    'hydra_plugins.hydra_joblib_launcher',
    reason="hydra-joblib-launcher is not installed (pip install "
           "'kgsampler[sweep]' or pip install hydra-joblib-launcher)")

ROOT = Path(__file__).resolve().parents[1]
EXE = shutil.which('kgsampler-train') or str(
    Path(sys.executable).parent / 'kgsampler-train')
#: The console script where it is installed, else the module (same entry).
CMD = [EXE] if os.path.exists(EXE) else [sys.executable, '-m',
                                         'kgsampler.cli']

PROBE = '''"""MF that records, when built, its process and torch threads."""
import json
import os

import torch

from kgsampler.recommender.mf import MF


class ProbeMF(MF):
    def __init__(self, num_users, num_items, **kwargs):
        super().__init__(num_users, num_items, **kwargs)
        with open(os.environ['KGSAMPLER_PROBE'], 'a') as f:
            f.write(json.dumps({'pid': os.getpid(), 'ppid': os.getppid(),
                                'threads': torch.get_num_threads(),
                                'omp': os.environ.get('OMP_NUM_THREADS')})
                    + '\\n')
'''


@pytest.fixture
def sweep(tmp_path):
    r"""Runs a 2-job sweep, ``sampler=rns,dns`` on the built-in synthetic
    data cut to 100 users x 80 items, 2 epochs, MF (recording its process
    and threads), with the given launcher overrides::

        sweep/0  sampler=rns   -> metrics.json
        sweep/1  sampler=dns   -> metrics.json

    Returns a function ``launcher_overrides -> (metrics by job, probes,
    the command's output)``."""
    (tmp_path / 'probe_mod.py').write_text(PROBE)

    def go(name, *launcher):
        probe = tmp_path / f'{name}.probe'
        env = {**os.environ, 'PYTHONPATH': str(ROOT / 'src'),
               'KGSAMPLER_PROBE': str(probe),
               'KGSAMPLER_CACHE': str(tmp_path / 'cache')}
        env.pop('OMP_NUM_THREADS', None)  # what a user's shell has
        proc = subprocess.run(
            [*CMD, '--config-path', str(ROOT / 'conf'), '-m', *launcher,
             'sampler=rns,dns', 'dataset.num_users=100',
             'dataset.num_items=80', 'trainer.max_epochs=2',
             'trainer.progress=false', 'num_threads=1',
             'recommender._target_=probe_mod.ProbeMF',
             f'extra_sys_path=[{tmp_path}]',
             f'hydra.sweep.dir={tmp_path / name}'],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = [json.loads((tmp_path / name / str(i) / 'metrics.json')
                              .read_text()) for i in range(2)]
        probes = [json.loads(line) for line in
                  probe.read_text().splitlines()]
        return metrics, probes, proc.stdout + proc.stderr
    return go


def numbers(m):
    """A run's numbers: everything but the timings."""
    out = {k: v for k, v in m.items() if k != 'epoch_seconds'}
    out['history'] = [{k: v for k, v in h.items() if k != 'seconds'}
                      for h in m['history']]
    return out


def test_joblib_sweep_equals_the_sequential_sweep(sweep):
    seq, seq_probes, _ = sweep('basic')
    par, par_probes, out = sweep('joblib', 'hydra/launcher=joblib',
                                 'hydra.launcher.n_jobs=2')
    assert 'Joblib.Parallel(n_jobs=2,backend=loky' in out
    assert [m['sampler'] for m in par] == ['rns', 'dns']
    assert all(m['status'] == 'completed' for m in seq + par)
    for s, p in zip(seq, par):
        assert numbers(p) == numbers(s)
    assert seq[0]['test'] != seq[1]['test']  # two different jobs
    # the basic launcher runs the jobs one after the other in the command's
    # process (a child of this one); joblib in worker processes of the
    # command, each with one torch thread (and loky's OMP_NUM_THREADS =
    # cores // n_jobs for the libraries below torch)
    assert len({p['pid'] for p in seq_probes}) == 1
    assert {p['ppid'] for p in seq_probes} == {os.getpid()}
    assert os.getpid() not in {p['ppid'] for p in par_probes}
    assert len({p['ppid'] for p in par_probes}) == 1
    assert [p['threads'] for p in seq_probes + par_probes] == [1] * 4
    from joblib import cpu_count
    assert {p['omp'] for p in par_probes} == {str(max(cpu_count() // 2, 1))}
