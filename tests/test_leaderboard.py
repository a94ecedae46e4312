"""The packaged leaderboard recipe (``+experiment=leaderboard`` over the
entries of ``conf/leaderboard/``) and its report."""
import json
import os
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


ROOT = Path(__file__).resolve().parents[1]
#: stands in for kgsampler-report: writes a one-row table to <--out>.md
STUB_REPORT = '''#!/bin/sh
all="$*"
while [ $# -gt 0 ]; do
  if [ "$1" = --out ]; then mkdir -p "$(dirname "$2")"; echo "| stub | $all |" > "$2.md"; fi
  shift
done
'''


def _script(tmp_path, *args, **env):
    """Runs benchmarks/leaderboard.sh with ``echo`` as kgsampler-train (so
    its command line is printed, nothing trains) and a stub report."""
    report = tmp_path / 'report.sh'
    report.write_text(STUB_REPORT)
    report.chmod(0o755)
    full = {k: v for k, v in os.environ.items()  # hermetic: the script's knobs
            if k not in ('SCRATCH', 'REPORT_ONLY', 'SEEDS', 'ENTRIES', 'EXTRA',
                         'JOBS')}
    full.update(TRAIN='echo', REPORT=str(report),
                OUT=str(tmp_path / 'out'), RESULTS=str(tmp_path / 'res.md'),
                KGSAMPLER_CACHE=str(tmp_path / 'cache'))
    full.update(env)
    return subprocess.run(['bash', 'benchmarks/leaderboard.sh', *args],
                          cwd=ROOT, env=full, capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize('dataset,rec,settings', [
    ('lastfm', 'mf', 'trainer.lr=5e-3 trainer.weight_decay=1e-5'),
    ('lastfm', 'lightgcn', 'trainer.lr=5e-3 trainer.patience'),
    ('ml-1m', 'mf', 'trainer.lr=1e-3'),
    ('ml-1m', 'lightgcn', 'trainer.lr=5e-3'),
])
def test_leaderboard_script_from_scratch(tmp_path, dataset, rec, settings):
    """SCRATCH=1 trains without a warm start at the RNS learning rate, and
    its report says so and compares the chosen settings with RNS too."""
    proc = _script(tmp_path, dataset, rec, SCRATCH='1')
    assert proc.returncode == 0, proc.stderr
    train = next((ln for ln in proc.stdout.splitlines()
                  if '+experiment=leaderboard' in ln), None)
    assert train is not None, proc.stdout
    assert f'pretrain=none {settings}' in train
    assert 'trainer.time_budget=600' in train
    assert 'pretrain.lr' not in train.split('pretrain=none', 1)[1]
    assert (rec == 'lightgcn') == ('recommender=lightgcn' in train)
    res = (tmp_path / 'res.md').read_text()
    assert f'SCRATCH=1 SEEDS=1,2,3 bash benchmarks/leaderboard.sh {dataset}' \
        in res
    assert '## Chosen settings against RNS' in res
    rns = res.split('## Chosen settings against RNS', 1)[1].split('##')[0]
    assert '--baseline rns' in rns


def test_leaderboard_script_warm_start_and_errors(tmp_path):
    proc = _script(tmp_path, 'lastfm', 'mf')
    assert proc.returncode == 0, proc.stderr
    assert 'pretrain.lr=5e-3' in proc.stdout
    assert 'pretrain=none' not in proc.stdout
    proc = _script(tmp_path, 'amazon-book', 'mf', SCRATCH='1')
    assert proc.returncode == 2
    assert "SCRATCH=1 has no stated budget for 'amazon-book'" in proc.stderr
    proc = _script(tmp_path, 'yelp', 'mf')
    assert proc.returncode == 2 and "unknown dataset 'yelp'" in proc.stderr


def test_leaderboard_script_report_only(tmp_path):
    """REPORT_ONLY=1 trains nothing and keeps the first report's line (the
    commit the runs were made at)."""
    (tmp_path / 'res.md').write_text(
        '# Sampler leaderboard\n\nReport written 2026-01-01 at commit abc.\n')
    proc = _script(tmp_path, 'lastfm', 'mf', REPORT_ONLY='1')
    assert proc.returncode == 0, proc.stderr
    assert '+experiment=leaderboard' not in proc.stdout
    res = (tmp_path / 'res.md').read_text()
    assert 'Report written 2026-01-01 at commit abc. Rewritten' in res
    assert 'REPORT_ONLY=1' in res
    proc = _script(tmp_path, 'lastfm', 'mf', REPORT_ONLY='1')  # again
    res = (tmp_path / 'res.md').read_text()
    assert proc.returncode == 0 and res.count('Rewritten') == 1
    assert 'Report written 2026-01-01 at commit abc. Rewritten' in res


@pytest.mark.parametrize('report', ['fails', 'writes no RNS table'])
def test_leaderboard_script_failed_report_keeps_results(tmp_path, report):
    """A report step that fails (or leaves a table out, so that the
    results file breaks off while it is written) stops the script: the old
    results file stays as it was and no half-written .tmp is left."""
    (tmp_path / 'res.md').write_text('old\n')
    stub = tmp_path / 'broken.sh'
    stub.write_text('#!/bin/sh\nexit 1\n' if report == 'fails' else
                    STUB_REPORT.replace('if [ "$1" = --out ]',
                                        'if [ "$1" = --out ] && '
                                        '[ "${2##*/}" != leaderboard-rns ]'))
    stub.chmod(0o755)
    proc = _script(tmp_path, 'lastfm', 'mf', REPORT=str(stub))
    assert proc.returncode != 0
    assert 'wrote' not in proc.stdout
    assert (tmp_path / 'res.md').read_text() == 'old\n'
    assert not (tmp_path / 'res.md.tmp').exists()
