"""The packaged leaderboard recipe (``+experiment=leaderboard`` over the
entries of ``conf/leaderboard/``) and its report."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from test_cli import CONF, EXE, TINY, compose, needs_exe

ENTRIES = sorted(p.stem for p in (CONF / 'leaderboard').glob('*.yaml'))
#: entry-name prefix -> (sampler class, recommender class)
EXPECTED = {
    'rns': ('RNS', 'MF'), 'pns': ('PNS', 'MF'), 'dns': ('DNS', 'MF'),
    'dns_mn': ('DNSMN', 'MF'), 'softmax': ('SoftmaxNS', 'MF'),
    'ahns': ('AHNS', 'MF'), 'srns': ('SRNS', 'MF'),
    'randomwalk': ('RandomWalk', 'MF'), 'adversarial': ('Adversarial', 'MF'),
    'advir': ('AdvIR', 'APR'), 'nmrn': ('NMRN', 'MF'), 'dens': ('DENS', 'MF'),
    'kgpolicy': ('KGPolicy', 'MF'), 'mixgcf': ('MixGCF', 'MF'),
}


def test_every_sampler_has_an_entry():
    from kgsampler import sampler
    names = {c for c, _ in EXPECTED.values()}
    # every public sampler class but the base classes is on the board
    public = {n for n in sampler.__all__ if isinstance(
        getattr(sampler, n), type) and issubclass(getattr(sampler, n),
                                                  sampler.Sampler)}
    assert public - {'Sampler'} == names
    assert {e.split('-')[0] for e in ENTRIES} == set(EXPECTED)


@pytest.mark.parametrize('entry', ENTRIES)
def test_entry_composes_with_the_recipe(entry):
    cfg = compose(['+experiment=leaderboard', f'+leaderboard={entry}'])
    cls, rec = EXPECTED[entry.split('-')[0]]
    assert cfg.sampler._target_.split('.')[-2:] == [cls, 'from_dataset']
    assert cfg.recommender._target_.rsplit('.', 1)[-1] == rec
    # the protocol: every entry co-trains from the cached RNS warm start
    assert cfg.pretrain.epochs > 0 and cfg.pretrain.cache
    assert cfg.trainer.patience == 10 and cfg.num_threads == 1
    assert cfg.dataset._target_.endswith('from_kgat')
    # the knob in the entry's name is the value it sets
    knob = entry.split('-', 1)[1] if '-' in entry else ''
    for prefix, key in [('m', 'top_m' if cls == 'DNSMN' else
                         'num_candidates'), ('rho', 'rho'), ('b', 'beta'),
                        ('t', 'temperature' if cls == 'SRNS' else 'steps'),
                        ('margin', 'margin'), ('w', 'warmup'),
                        ('a', 'alpha')]:
        if knob.startswith(prefix) and knob[len(prefix):][:1].isdigit():
            assert float(cfg.sampler[key]) == float(knob[len(prefix):])
            break
    else:
        if knob.startswith('eps'):
            assert cfg.recommender.epsilon == float(knob[3:])
        else:
            assert knob in ('', '8'), entry  # rns, kgpolicy, dns-8
    if cls == 'DNS':
        assert cfg.sampler.num_candidates == 8


@needs_exe
def test_recipe_sweep_and_report(tmp_path):
    """Three entries x one seed on the tiny synthetic set, then the
    leaderboard report: knob chosen on validation, DNS-8 as the baseline,
    RNS's epoch time, APR (AdvIR) compared with MF's rows."""
    sweep = tmp_path / 'sweep'
    proc = subprocess.run(
        [EXE, '-m', '+experiment=leaderboard', 'dataset=synthetic',
         '+leaderboard=rns,dns-8,advir-eps0.05,pns-a0.5,pns-a1', 'seed=1,2',
         *TINY, 'pretrain.epochs=2', 'trainer.max_epochs=2',
         f'pretrain.cache_dir={tmp_path}/cache', f'hydra.sweep.dir={sweep}'],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in sweep.glob('*/metrics.json')]
    assert len(runs) == 10
    assert {r['sampler'] for r in runs} == {'rns', 'dns', 'advir', 'pns'}
    assert {r['recommender'] for r in runs if r['sampler'] == 'advir'} == \
        {'apr'}
    proc = subprocess.run(
        [sys.executable, '-m', 'kgsampler.report', str(sweep), '--select',
         'leaderboard', '--baseline', 'dns', '--time-baseline', 'rns',
         '--baseline-recommender', 'apr=mf', '--metrics', 'ndcg@20',
         'recall@20', '--out', str(tmp_path / 'board')],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('| synth')]
    assert len(lines) == 4  # one PNS row: the alpha chosen on validation
    header = proc.stdout.splitlines()[0]
    assert 'test vs dns' in header and 's/epoch / rns' in header
    advir = next(ln for ln in lines if '| advir | apr |' in ln)
    assert '(p=' in advir  # tested against MF's DNS-8 rows
    assert '| rns | mf |' in next(ln for ln in lines if '| rns |' in ln)
    assert (tmp_path / 'board.md').is_file()


def test_docs_tables_are_generated_from_the_results():
    """docs/leaderboard.md's tables equal what
    benchmarks/leaderboard_summary.py makes of benchmarks/results/."""
    script = Path(__file__).resolve().parents[1] / 'benchmarks' / \
        'leaderboard_summary.py'
    proc = subprocess.run([sys.executable, str(script), '--check'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, 'run python benchmarks/leaderboard_summary.py'
