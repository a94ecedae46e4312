"""Which arguments ``kgsampler-train`` hands a recommender, LightGCN from the
command line (in-process, fixture ``train`` of ``conftest.py``), and a user's
own recommender from ``--config-dir`` (the installed console script: what it
puts on :data:`sys.path` needs a process of its own)."""
import json
import os
import subprocess
import textwrap

import pytest

from kgsampler.cli import recommender_args
from kgsampler.data import make_synthetic
from test_cli import EXE, TINY

needs_exe = pytest.mark.skipif(
    not os.path.exists(EXE),
    reason='kgsampler-train is not installed (pip install . first)')


@pytest.fixture(scope='module')
def ds():
    return make_synthetic(num_users=30, num_items=20, num_genres=3,
                          num_creators=4, num_eras=2)


def _kwargs_only(**kwargs):
    pass


def _sizes_and_kwargs(num_entities, num_relations, dim=8, **kwargs):
    pass


def _nothing(dim=8):
    pass


@pytest.mark.parametrize('target,expected', [
    ('kgsampler.recommender.MF', ['num_users', 'num_items']),
    ('kgsampler.recommender.LightGCN',
     ['num_users', 'num_items', 'train_pos']),
    ('kgsampler.recommender.LightGCN.from_dataset', ['dataset']),
    ('test_cli_recommender._kwargs_only', ['num_users', 'num_items']),
    ('test_cli_recommender._sizes_and_kwargs',
     ['num_entities', 'num_relations']),
    ('test_cli_recommender._nothing', []),
])
def test_passes_what_the_signature_names(ds, target, expected):
    out = recommender_args(target, ds)
    assert list(out) == expected
    values = {'num_users': 30, 'num_items': 20,
              'num_entities': ds.num_entities,
              'num_relations': ds.num_relations, 'dataset': ds,
              'train_pos': ds.train_pos}
    for k, v in out.items():
        assert v is values[k] or v == values[k]


@pytest.mark.parametrize('target,match', [
    ('nosuchpkg.Model', r"cannot import recommender._target_='nosuchpkg."
     r"Model' .*installed, on PYTHONPATH, or in a folder listed in "
     r"extra_sys_path"),
    ('kgsampler.recommender.NoSuch', r"cannot import recommender._target_="
     r"'kgsampler.recommender.NoSuch'"),
])
def test_unimportable_target(ds, target, match):
    with pytest.raises(ValueError, match=match):
        recommender_args(target, ds)


def test_asks_for_what_the_dataset_lacks():
    class Bare:
        train_pos = None
    with pytest.raises(ValueError, match=r"asks for 'num_entities', which "
                       r"the dataset \(Bare\) does not provide"):
        recommender_args('test_cli_recommender._sizes_and_kwargs', Bare())


def run(args, cwd, env=None):
    proc = subprocess.run([EXE, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, 'KGSAMPLER_CACHE':
                               str(cwd / 'cache'), **(env or {})})
    return proc


@pytest.mark.parametrize('sampler', ['dns', 'kgpolicy'])
def test_lightgcn_from_the_command_line(tmp_path, train, sampler):
    train(['recommender=lightgcn', f'sampler={sampler}', *TINY,
           'trainer.max_epochs=1', 'pretrain.epochs=1',
           'recommender.num_layers=2'], tmp_path / 'run')
    metrics = json.loads((tmp_path / 'run' / 'metrics.json').read_text())
    assert metrics['recommender'] == 'lightgcn'
    assert metrics['recommender_class'] == \
        'kgsampler.recommender.lightgcn.LightGCN'
    assert metrics['sampler'] == sampler and metrics['epochs_run'] == 1
    assert 0.0 <= metrics['test']['ndcg@20'] <= 1.0


MODULE = '''
    """A user's recommender: MF built from the dataset object alone, with
    only score() (the loss and full ranking are the contract's defaults)."""
    import torch

    from kgsampler import Recommender


    class TinyMF(Recommender):
        def __init__(self, dataset, train_pos, dim=4):
            super().__init__()
            assert train_pos is dataset.train_pos
            self.num_users, self.num_items = dataset.num_users, \\
                dataset.num_items
            self.user = torch.nn.Embedding(self.num_users, dim)
            self.item = torch.nn.Embedding(self.num_items, dim)

        def score(self, users, items):
            return (self.item(items) @ self.user(users).unsqueeze(-1)) \\
                .squeeze(-1)
'''


@pytest.fixture
def user_project(tmp_path):
    r"""``tmp_path`` holds the user's package and config folder::

        mypkg/__init__.py           TinyMF(dataset, train_pos, dim=4)
        conf/recommender/mymodel.yaml   _target_: mypkg.TinyMF, dim: 3
    """
    (tmp_path / 'mypkg').mkdir()
    (tmp_path / 'mypkg' / '__init__.py').write_text(textwrap.dedent(MODULE))
    (tmp_path / 'conf' / 'recommender').mkdir(parents=True)
    (tmp_path / 'conf' / 'recommender' / 'mymodel.yaml').write_text(
        '_target_: mypkg.TinyMF\ndim: 3\n')
    return tmp_path


@needs_exe
@pytest.mark.parametrize('how', ['extra_sys_path', 'PYTHONPATH'])
def test_own_recommender_from_config_dir(user_project, how):
    args = ['--config-dir', str(user_project / 'conf'),
            'recommender=mymodel', 'sampler=dns', *TINY,
            'trainer.max_epochs=1', f'hydra.run.dir={user_project}/run']
    if how == 'extra_sys_path':
        proc = run([*args, 'extra_sys_path=[.]'], cwd=user_project)
    else:
        proc = run(args, cwd=user_project / 'conf',
                   env={'PYTHONPATH': str(user_project)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((user_project / 'run' / 'metrics.json').read_text())
    assert metrics['recommender'] == 'mymodel'
    assert metrics['recommender_class'] == 'mypkg.TinyMF'
    assert 0.0 <= metrics['test']['ndcg@20'] <= 1.0


@needs_exe
def test_own_recommender_not_importable(user_project):
    r"""The console script does not search the current directory."""
    proc = run(['--config-dir', str(user_project / 'conf'),
                'recommender=mymodel', *TINY,
                f'hydra.run.dir={user_project}/run'], cwd=user_project)
    assert proc.returncode != 0
    assert "cannot import recommender._target_='mypkg.TinyMF'" in proc.stderr
    assert 'extra_sys_path' in proc.stderr
    proc = run(['--config-dir', str(user_project / 'conf'),
                'recommender=mymodel', *TINY, 'extra_sys_path=[nowhere]',
                f'hydra.run.dir={user_project}/run'], cwd=user_project)
    assert proc.returncode != 0
    assert "'extra_sys_path' names 'nowhere', which is not a folder" in \
        proc.stderr
