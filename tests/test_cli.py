"""Runs of ``kgsampler-train``.

Most call :func:`kgsampler.cli.run` in-process on a config that Hydra
composes from this working tree's ``conf/`` (fixture ``train`` of
``conftest.py``), so they test ``src/``. The ones that need a process (a ``-m`` sweep, the packaged
``+experiment`` recipe with ``kgsampler-report``, ``--help``) run the
*installed* command from a temporary directory, so they also check that the
configs ship inside the package."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXE = shutil.which('kgsampler-train') or str(
    Path(sys.executable).parent / 'kgsampler-train')
needs_exe = pytest.mark.skipif(
    not os.path.exists(EXE),
    reason='kgsampler-train is not installed (pip install . first)')

TINY = ['dataset.num_users=200', 'dataset.num_items=150', 'num_threads=1',
        'trainer.max_epochs=2', 'trainer.progress=false']
CONF = Path(__file__).resolve().parents[1] / 'conf'


def compose(overrides):
    """``conf/train.yaml`` of this working tree composed with
    :obj:`overrides` (no Hydra run, no output folder)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    with initialize_config_dir(config_dir=str(CONF), version_base='1.3'):
        return hydra_compose('train', overrides=list(overrides))


def run(args, cwd):
    proc = subprocess.run([EXE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, 'KGSAMPLER_CACHE':
                               str(Path(cwd) / 'cache')})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.parametrize('sampler', ['rns', 'dns', 'randomwalk', 'adversarial'])
def test_train_writes_metrics(tmp_path, train, sampler):
    train([f'sampler={sampler}', *TINY, 'seed=3'], tmp_path / 'run')
    metrics = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert list(metrics) == ['dataset', 'sampler', 'recommender',
                             'recommender_class', 'seed', 'monitor',
                             'world_size', 'status',
                             'best_epoch', 'epochs_run', 'stopped_by',
                             'epoch_seconds', 'valid', 'test',
                             'sampler_stats', 'history', 'test_by_sparsity']
    assert metrics['status'] == 'completed'
    assert metrics['monitor'] == 'ndcg@20' and metrics['world_size'] == 1
    assert (tmp_path / 'run' / 'last.pt').is_file()  # the resume state
    assert metrics['dataset'] == 'synthetic'
    assert metrics['sampler'] == sampler and metrics['recommender'] == 'mf'
    assert metrics['recommender_class'] == 'kgsampler.recommender.mf.MF'
    assert metrics['seed'] == 3 and metrics['epochs_run'] == 2
    assert len(metrics['epoch_seconds']) == 2
    for key in ('recall@20', 'ndcg@20', 'precision@20', 'hit@20'):
        assert 0.0 <= metrics['test'][key] <= 1.0
        assert key in metrics['valid']
    assert (tmp_path / 'run' / 'best.pt').is_file()
    assert [h['epoch'] for h in metrics['history']] == [1, 2]
    for h in metrics['history']:
        assert 0.0 < h['grad_magnitude'] < 1.0
        assert 0.0 <= h['false_negative_rate'] <= 1.0
        assert 'valid_ndcg@20' in h


@needs_exe
def test_multirun_sweep(tmp_path):
    run(['-m', 'sampler=rns,pns', *TINY, 'trainer.max_epochs=1',
         f'hydra.sweep.dir={tmp_path}/sweep'], cwd=tmp_path)
    found = sorted((tmp_path / 'sweep').glob('*/metrics.json'))
    assert len(found) == 2
    assert {json.loads(p.read_text())['sampler'] for p in found} == \
        {'rns', 'pns'}


def test_kgat_folder_and_bad_path(tmp_path, train):
    data = tmp_path / 'tiny'
    data.mkdir()
    (data / 'train.txt').write_text('0 0 1 2\n1 1 2 3\n2 0 3 4\n')
    (data / 'test.txt').write_text('0 3\n1 4\n2 1\n')
    (data / 'kg_final.txt').write_text('0 0 5\n1 0 5\n2 1 6\n3 1 6\n4 0 5\n')
    train(['dataset=kgat', f'dataset.path={data}', 'trainer.max_epochs=1',
           'trainer.progress=false'], tmp_path / 'run')
    metrics = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert metrics['dataset'] == 'tiny'
    with pytest.raises(Exception) as e:
        train(['dataset=kgat', f'dataset.path={tmp_path}/no'],
              tmp_path / 'run2')
    assert f"folder '{tmp_path}/no' not found" in str(e.value)


@pytest.mark.parametrize('override,match', [
    ('sampler.steps=0', "KGPolicy: 'steps' must be an int >= 1 (got 0)"),
    ('trainer.monitor=ndcg@10', "Trainer: 'monitor' must be one of"),
    ('show_paths_users=[9999]', "'show_paths_users' must hold user ids in "
     "[0, 200) (got [9999])"),
    ('show_paths_users=5', "'show_paths_users' must be a list of user ids"),
    ('seed=abc', "'seed' must be an int >= 0 (got 'abc')"),
    ('num_threads=-2', "'num_threads' must be an int >= 0 or null"),
    ('device=gpu', "kgsampler-train: 'device' must be 'cpu', 'cuda', "
     "'cuda:N' or 'auto' (got 'gpu')"),
])
def test_bad_overrides_fail_before_the_warm_start(tmp_path, train, caplog,
                                                  capsys, override, match):
    with pytest.raises(Exception) as e:
        train([*TINY, 'pretrain.epochs=200', 'pretrain.cache=false',
               'show_paths=1', override], tmp_path / 'run')
    assert match in str(e.value)
    assert 'pretraining the recommender' not in caplog.text + \
        capsys.readouterr().out


def test_kgpolicy_pretrain_cache_and_paths(tmp_path, train, caplog, capsys):
    args = [*TINY, 'trainer.max_epochs=1', 'pretrain.epochs=2', 'show_paths=2',
            'show_paths_users=[0,1]']
    train(args, tmp_path / 'a')
    out = capsys.readouterr().out
    assert 'pretraining the recommender with RNS' in caplog.text + out
    cached = list((tmp_path / 'cache').glob('pretrain-*.pt'))
    assert len(cached) == 1
    lines = [ln for ln in out.splitlines() if ln.startswith('user ')]
    assert len(lines) == 4 and all('=> negative' in ln for ln in lines)
    metrics = json.loads((tmp_path / 'a' / 'metrics.json').read_text())
    assert metrics['sampler'] == 'kgpolicy'
    assert 0.0 <= metrics['sampler_stats']['fallback_rate'] <= 1.0
    # the second run reuses the cached warm start
    caplog.clear()
    train(args, tmp_path / 'b')
    assert 'loaded cached pretrained recommender' in caplog.text + \
        capsys.readouterr().out


@needs_exe
def test_experiment_recipe_and_report(tmp_path):
    """The packaged `+experiment=samplers` recipe sweeps samplers x seeds
    (narrowed here on the command line) and kgsampler-report reads it."""
    run(['-m', '+experiment=samplers', 'sampler=rns,dns', 'seed=1',
         *TINY, 'trainer.max_epochs=1', f'hydra.sweep.dir={tmp_path}/sweep'],
        cwd=tmp_path)
    found = sorted((tmp_path / 'sweep').glob('*/metrics.json'))
    assert len(found) == 2
    report = shutil.which('kgsampler-report') or str(
        Path(sys.executable).parent / 'kgsampler-report')
    proc = subprocess.run([report, str(tmp_path / 'sweep'), '--baseline',
                           'rns'], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert '| synthetic | dns | mf |' in proc.stdout
    assert (tmp_path / 'sweep' / 'report.csv').is_file()


@needs_exe
def test_help_says_what_the_tool_does(tmp_path):
    proc = subprocess.run([EXE, '--help'], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith('kgsampler-train: trains a recommender with a '
                          'negative sampler')
    for group in ('recommender: apr, cke, kgat, lightgcn, mf, nfm, ripplenet',
                  'sampler: adversarial, advir, ahns, dens, dns', 'dataset: amazon-book'):
        assert group in out
    assert 'kgsampler-report' in out and 'docs/usage.md' in out


@pytest.mark.parametrize('recipe,path,expect', [
    ('lastfm', '../shared/datasets/lastfm',
     {'trainer.lr': 5e-3, 'trainer.weight_decay': 1e-5, 'recommender.reg': 1e-2}),
    ('ml-1m', '../shared/datasets/ml-1m',
     {'trainer.lr': 1e-3, 'trainer.weight_decay': 0.0, 'recommender.reg': 1e-2}),
    ('amazon-book', '../shared/datasets/amazon-book',
     {'trainer.lr': 1e-3, 'trainer.weight_decay': 0.0, 'recommender.reg': 1e-3}),
])
def test_dataset_recipes_compose(recipe, path, expect):
    """Each per-dataset recipe of ``conf/experiment/`` composes, reads the
    shared KGAT folder it names and sets the values chosen on validation
    (``benchmarks/results/recbole_yardstick.md``)."""
    from omegaconf import OmegaConf
    cfg = compose([f'+experiment={recipe}', 'sampler=rns'])
    assert cfg.dataset._target_ == 'kgsampler.data.KGRecDataset.from_kgat'
    assert cfg.dataset.path == path
    for key, value in expect.items():
        assert OmegaConf.select(cfg, key) == pytest.approx(value), key
