import json
import math

import pytest

from kgsampler.report import build_rows, filter_runs, load_runs, \
    paired_t_test, report


@pytest.mark.parametrize('t', [0.3, 1.0, 2.5, 10.0])
def test_t_test_matches_closed_forms(t):
    # differences (t - 1, t + 1): mean t, standard error 1, so the t
    # statistic is t with df 1 (Cauchy): p = 1 - 2/pi atan|t|
    assert paired_t_test([t - 1, t + 1], [0.0, 0.0]) == pytest.approx(
        1 - 2 / math.pi * math.atan(t), abs=1e-10)


def test_paired_t_test():
    # differences 1, 2, 3: mean 2, sd 1, t = 2 sqrt(3), df 2
    t = 2 * math.sqrt(3)
    assert paired_t_test([2, 4, 6], [1, 2, 3]) == pytest.approx(
        1 - t / math.sqrt(t * t + 2))
    assert paired_t_test([1, 2], [1, 2]) == 1.0
    assert paired_t_test([2, 3], [1, 2]) == 0.0
    assert math.isnan(paired_t_test([1], [0]))
    with pytest.raises(ValueError, match=r"same length \(got 2 and 1\)"):
        paired_t_test([1, 2], [1])


def write_run(root, name, sampler, seed, valid, test, lr='0.001',
              recommender='mf', recommender_class=None,
              epoch_seconds=(0.5, 0.7)):
    d = root / name
    (d / '.hydra').mkdir(parents=True)
    (d / '.hydra' / 'overrides.yaml').write_text(
        f'- sampler={sampler}\n- trainer.lr={lr}\n- seed={seed}\n')
    extra = ({} if recommender_class is None else
             {'recommender_class': recommender_class})
    (d / 'metrics.json').write_text(json.dumps({
        'dataset': 'toy', 'sampler': sampler, 'recommender': recommender,
        **extra, 'seed': seed, 'best_epoch': 1, 'epochs_run': 2,
        'epoch_seconds': list(epoch_seconds),
        'history': [{'epoch': e, 'grad_magnitude': 0.5 / e,
                     'false_negative_rate': 0.01 * e} for e in (1, 2)],
        'test_by_sparsity': [{'group': g, 'min_interactions': g,
                              'max_interactions': g + 1, 'ndcg@20': test}
                             for g in (1, 2)],
        'valid': {'ndcg@20': valid},
        'sampler_stats': {'fallback_rate': 0.0,
                          'false_negative_rate': 0.01 * seed},
        'test': {m: test for m in ('recall@20', 'ndcg@20', 'precision@20',
                                   'hit@20', 'ndcg_kgat@20')}}))


@pytest.fixture
def sweep(tmp_path):
    r"""Two samplers x two learning rates x three seeds; lr 0.005 is better
    on validation for 'dns' only, and worse on test (must not matter)."""
    for i, seed in enumerate((1, 2, 3)):
        write_run(tmp_path, f'a{i}', 'rns', seed, 0.10, 0.20 + 0.01 * i)
        write_run(tmp_path, f'b{i}', 'rns', seed, 0.09, 0.30, lr='0.005')
        write_run(tmp_path, f'c{i}', 'dns', seed, 0.10, 0.25 + 0.02 * i)
        write_run(tmp_path, f'd{i}', 'dns', seed, 0.12, 0.10, lr='0.005')
    return tmp_path


def test_selection_on_validation_and_baseline(sweep):
    rows = build_rows(load_runs([sweep]), ['trainer.lr'], baseline='rns')
    by = {r.sampler: r for r in rows}
    assert by['rns'].setting == 'trainer.lr=0.001'
    assert by['dns'].setting == 'trainer.lr=0.005'
    assert len(by['dns'].runs) == 3
    # dns (lr 0.005) - rns (lr 0.001) by seed: -0.10, -0.11, -0.12
    t = 0.11 / (0.01 / math.sqrt(3))
    assert by['dns'].p_values['ndcg@20'] == pytest.approx(
        1 - t / math.sqrt(t * t + 2), rel=1e-6)
    assert 'ndcg@20' not in by['rns'].p_values
    assert build_rows(load_runs([sweep]), ['trainer.lr'], keep_all=True)[0] \
        .setting == 'trainer.lr=0.001'
    assert len(build_rows(load_runs([sweep]), ['trainer.lr'],
                          keep_all=True)) == 4


def test_command_writes_markdown_and_csv(sweep, tmp_path, capsys):
    table = report([str(sweep), '--select', 'trainer.lr', '--baseline', 'rns',
                  '--out', str(tmp_path / 'out' / 'rep')])
    # files without recommender_class (older runs): grouped by the choice
    assert '| toy | dns | mf | - | trainer.lr=0.005 | 3 |' in table
    assert '0.2100 ± 0.0100' in table  # rns test, lr 0.001
    assert (tmp_path / 'out' / 'rep.csv').read_text().count('\n') == 3
    assert 'paired t-test against rns' in (tmp_path / 'out' /
                                           'rep.md').read_text()
    assert table in capsys.readouterr().out
    # the sampler's bookkeeping: mean false-negative rate over seeds 1..3
    assert '| 0.00% | 2.00% |' in table


def test_time_baseline_and_relative_difference(sweep, tmp_path):
    for i, seed in enumerate((1, 2, 3)):  # slower: median 1.5 s vs 0.6 s
        write_run(sweep, f'e{i}', 'srns', seed, 0.11, 0.24,
                  epoch_seconds=(1.5, 1.5, 0.1))
    rows = build_rows(load_runs([sweep]), ['trainer.lr'], baseline='dns',
                      time_baseline='rns')
    by = {r.sampler: r for r in rows}
    assert by['srns'].time_row is by['rns'] and by['rns'].time_row is by['rns']
    assert by['srns'].baseline_row is by['dns']
    assert by['dns'].baseline_row is None
    table = report([str(sweep), '--select', 'trainer.lr', '--baseline', 'dns',
                    '--time-baseline', 'rns', '--metrics', 'ndcg@20',
                    '--out', str(tmp_path / 'rep')])
    header = table.splitlines()[0]
    assert 'test vs dns' in header and 's/epoch / rns' in header
    assert 'test recall@20' not in header and 'test ndcg@20' in header
    # srns 0.24 against dns (lr 0.005) 0.10: +140%; 1.5 s / 0.6 s = 2.5x
    srns = next(line for line in table.splitlines() if '| srns |' in line)
    assert '| +140.0% |' in srns and '| 2.50x |' in srns
    rns = next(line for line in table.splitlines() if '| rns |' in line)
    assert '| 1.00x |' in rns


def test_baseline_recommender_maps_a_method_that_changes_the_model(sweep):
    for i, seed in enumerate((1, 2, 3)):  # AdvIR trains APR, not MF
        write_run(sweep, f'f{i}', 'advir', seed, 0.11, 0.26 + 0.02 * i,
                  recommender='apr')
    rows = build_rows(load_runs([sweep]), ['trainer.lr'], baseline='rns')
    advir = next(r for r in rows if r.sampler == 'advir')
    assert advir.baseline_row is None and not advir.p_values
    rows = build_rows(load_runs([sweep]), ['trainer.lr'], baseline='rns',
                      time_baseline='rns',
                      baseline_recommender={'apr': 'mf'})
    advir = next(r for r in rows if r.sampler == 'advir')
    assert advir.baseline_row.sampler == 'rns'
    assert advir.baseline_row.recommender == 'mf'
    assert advir.time_row is advir.baseline_row
    # advir - rns (lr 0.001) by seed: +0.06, +0.07, +0.08
    t = 0.07 / (0.01 / math.sqrt(3))
    assert advir.p_values['ndcg@20'] == pytest.approx(
        1 - t / math.sqrt(t * t + 2), rel=1e-6)


@pytest.mark.parametrize('args,match', [
    (['--baseline-recommender', 'apr'], r"expected REC=BASE \(got 'apr'\)"),
    (['--baseline-recommender', '=mf'], r"expected REC=BASE \(got '=mf'\)"),
    (['--metrics', 'ndcg@10'], r"no run recorded the test metrics "
                               r"\['ndcg@10'\]"),
])
def test_bad_arguments(sweep, args, match, capsys):
    with pytest.raises(SystemExit) as e:
        report([str(sweep)] + args)
    assert e.value.code == 2
    assert __import__('re').search(match, capsys.readouterr().err)


def test_setting_names_only_overridden_keys(sweep):
    rows = build_rows(load_runs([sweep]), ['trainer.lr', 'sampler.n2'],
                      keep_all=True)
    assert {r.setting for r in rows} == {'trainer.lr=0.001',
                                         'trainer.lr=0.005'}
    rows = build_rows(load_runs([sweep]), ['sampler.n2'])
    assert {r.setting for r in rows} == {'defaults'}


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no folder"):
        load_runs([tmp_path / 'missing'])
    (tmp_path / 'metrics.json').write_text('{"dataset": "x"}')
    with pytest.raises(ValueError, match=r"lacks the keys"):
        load_runs([tmp_path])
    (tmp_path / 'metrics.json').write_text('{oops')
    with pytest.raises(ValueError, match=r"is not valid JSON"):
        load_runs([tmp_path])
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(SystemExit, match=r"no metrics.json below"):
        report([str(empty)])


def test_plots(sweep, tmp_path):
    pytest.importorskip('matplotlib', reason='the plot extra is not installed')
    report([str(sweep), '--select', 'trainer.lr', '--out',
            str(tmp_path / 'rep'), '--plots', str(tmp_path / 'fig')])
    for name in ('dynamics_toy.png', 'sparsity_toy.png'):
        data = (tmp_path / 'fig' / name).read_bytes()
        assert data[:8] == b'\x89PNG\r\n\x1a\n' and len(data) > 5000
    # the sparsity numbers as a table: rns (lr 0.001, chosen on validation)
    # has test 0.20 / 0.21 / 0.22 over seeds in both groups
    table = (tmp_path / 'fig' / 'sparsity_toy.md').read_text()
    assert '| sampler | n | 1-2 | 2-3 |' in table
    assert '| rns (mf) | 3 | 0.2100 ± 0.0100 | 0.2100 ± 0.0100 |' in table


def test_where_keeps_matching_and_unset_runs(sweep, tmp_path):
    # one more run that does not set trainer.lr at all
    d = tmp_path / 'e0'
    write_run(tmp_path, 'e0', 'pns', 1, 0.05, 0.05)
    (d / '.hydra' / 'overrides.yaml').write_text('- sampler=pns\n- seed=1\n')
    runs = filter_runs(load_runs([sweep]), ['trainer.lr=0.005'])
    assert {(r.metrics['sampler'], r.overrides.get('trainer.lr'))
            for r in runs} == {('rns', '0.005'), ('dns', '0.005'),
                               ('pns', None)}
    assert len(runs) == 7
    table = report([str(sweep), '--where', 'trainer.lr=0.005', '--out',
                    str(tmp_path / 'w')])
    assert '0.3000 ± 0.0000' in table  # rns at lr 0.005 only
    with pytest.raises(SystemExit, match='KEY=VALUE'):
        report([str(sweep), '--where', 'trainer.lr'])


@pytest.mark.parametrize('names', [('mf', 'lightgcn'), ('mf', 'mf')])
def test_two_recommender_classes_are_never_pooled(tmp_path, names):
    r"""rns on one dataset with MF and with LightGCN (seeds 1, 2): two rows,
    also when both runs carry the same choice name; each row's baseline is
    its own recommender's."""
    classes = ('kgsampler.recommender.mf.MF',
               'kgsampler.recommender.lightgcn.LightGCN')
    for seed in (1, 2):
        for k, (name, cls) in enumerate(zip(names, classes)):
            write_run(tmp_path, f'r{k}{seed}', 'rns', seed, 0.1 + k / 10,
                      0.2 + k / 10 + seed / 100, recommender=name,
                      recommender_class=cls)
            write_run(tmp_path, f'd{k}{seed}', 'dns', seed, 0.1 + k / 10,
                      0.25 + k / 10 + seed / 50, recommender=name,
                      recommender_class=cls)
    rows = build_rows(load_runs([tmp_path]), baseline='rns')
    assert len(rows) == 4
    assert {(r.sampler, r.recommender_class) for r in rows} == {
        (s, c) for s in ('rns', 'dns') for c in classes}
    assert all(len(r.runs) == 2 for r in rows)
    for r in rows:  # no run of the other class in a row
        assert {x.metrics['recommender_class'] for x in r.runs} == \
            {r.recommender_class}
    # dns - rns by seed, within a class: 0.06, 0.07; t = 0.065 / (sd /
    # sqrt 2) = 13, df = 1: p = 1 - 2/pi atan(13)
    for r in rows:
        if r.sampler == 'dns':
            assert r.p_values['ndcg@20'] == pytest.approx(
                1 - 2 / math.pi * math.atan(13), rel=1e-6)
    table = report([str(tmp_path), '--out', str(tmp_path / 'rep')])
    assert f'| toy | rns | {names[0]} | {classes[0]} | - | 2 |' in table
    assert f'| toy | rns | {names[1]} | {classes[1]} | - | 2 |' in table


def test_plots_skip_the_sampler_warm_up_row(sweep, tmp_path, monkeypatch):
    """A history that starts with the sampler's warm-up (epoch 0, no
    training losses) still draws its dynamics curves."""
    pytest.importorskip('matplotlib', reason='the plot extra is not installed')
    import json
    from matplotlib.axes import Axes
    for path in sweep.rglob('metrics.json'):
        m = json.loads(path.read_text())
        m['history'].insert(0, {'epoch': 0, 'sampler_num_updates': 2})
        path.write_text(json.dumps(m))
    labels = []
    real = Axes.plot
    monkeypatch.setattr(Axes, 'plot', lambda self, *a, **k: (
        labels.append(k.get('label')), real(self, *a, **k))[1])
    report([str(sweep), '--select', 'trainer.lr', '--out',
            str(tmp_path / 'rep'), '--plots', str(tmp_path / 'fig')])
    assert labels.count('rns (mf)') == 2  # gradient magnitude and FN rate


def write_ks_run(root, name, sampler, seed, lr, valid, test, monitor=None,
                 config_monitor=None):
    r"""A run of ``'trainer.ks=[10,50]'``: metrics at K = 10 and 50 only;
    the monitor in metrics.json (:obj:`monitor`) or only in the run's
    ``.hydra/config.yaml`` (:obj:`config_monitor`)."""
    d = root / name
    (d / '.hydra').mkdir(parents=True)
    (d / '.hydra' / 'overrides.yaml').write_text(
        f"- sampler={sampler}\n- trainer.lr={lr}\n- 'trainer.ks=[10,50]'\n")
    if config_monitor is not None:
        (d / '.hydra' / 'config.yaml').write_text(
            f'seed: {seed}\ntrainer:\n  ks: [10, 50]\n  monitor: '
            f'{config_monitor}\n')
    m = {'dataset': 'toy', 'sampler': sampler, 'recommender': 'mf',
         'seed': seed, 'epochs_run': 3, 'valid': valid, 'test': test,
         'test_by_sparsity': [{'group': 1, 'min_interactions': 1,
                               'max_interactions': 4, **test}]}
    if monitor is not None:
        m['monitor'] = monitor
    (d / 'metrics.json').write_text(json.dumps(m))


@pytest.fixture
def ks_sweep(tmp_path):
    r"""Runs with ``trainer.ks=[10,50]`` and ``trainer.monitor=ndcg@50``
    (read from config.yaml or metrics.json): rns at two learning rates,
    where validation ndcg@10 prefers lr 0.001 and ndcg@50 (the monitor)
    prefers lr 0.005; dns, whose seed-2 run has test recall@50 missing
    (null in the file)::

        rns lr=0.001  valid ndcg@10 0.30  ndcg@50 0.10  test 0.1
        rns lr=0.005  valid ndcg@10 0.20  ndcg@50 0.20  test 0.2
        dns lr=0.001  valid ndcg@10 0.10  ndcg@50 0.30  test 0.3 (+ seed)
    """
    for seed in (1, 2):
        def t(v):
            return {f'{m}@{k}': v for m in ('recall', 'ndcg')
                    for k in (10, 50)}
        write_ks_run(tmp_path / 'sweep', f'a{seed}', 'rns', seed, '0.001',
                     {'ndcg@10': 0.3, 'ndcg@50': 0.1}, t(0.1),
                     config_monitor='ndcg@50')
        write_ks_run(tmp_path / 'sweep', f'b{seed}', 'rns', seed, '0.005',
                     {'ndcg@10': 0.2, 'ndcg@50': 0.2}, t(0.2),
                     monitor='ndcg@50')
        test = t(0.3 + seed / 100)
        if seed == 2:
            test['recall@50'] = None
        write_ks_run(tmp_path / 'sweep', f'c{seed}', 'dns', seed, '0.001',
                     {'ndcg@10': 0.1, 'ndcg@50': 0.3}, test,
                     monitor='ndcg@50')
    return tmp_path / 'sweep'


def test_metrics_and_monitor_discovered_from_the_runs(ks_sweep, tmp_path):
    runs = load_runs([ks_sweep])
    assert {r.monitor for r in runs} == {'ndcg@50'}  # config.yaml or json
    rows = build_rows(runs, ['trainer.lr'], baseline='rns')
    by = {r.sampler: r for r in rows}
    assert by['rns'].setting == 'trainer.lr=0.005'  # chosen on ndcg@50
    # --monitor overrides the runs' own
    assert build_rows(runs, ['trainer.lr'], monitor='ndcg@10')[1] \
        .setting == 'trainer.lr=0.001'
    assert set(by['dns'].p_values) == {'recall@10', 'ndcg@10', 'ndcg@50'}
    table = report([str(ks_sweep), '--select', 'trainer.lr', '--baseline',
                    'rns', '--out', str(tmp_path / 'rep')])
    header = table.splitlines()[0]
    assert ('| n | valid ndcg@50 | test recall@10 | test recall@50 | '
            'test ndcg@10 | test ndcg@50 | test vs rns | epochs |') in header
    assert '@20' not in table
    dns = next(ln for ln in table.splitlines() if '| dns |' in ln)
    cells = [c.strip() for c in dns.strip('|').split('|')]
    # n, valid ndcg@50, recall@10, recall@50 (missing in seed 2), ndcg@10
    assert cells[5:9] == ['2', '0.3000 ± 0.0000', cells[7], '-']
    assert cells[7].startswith('0.3150 ± 0.0071 (p=')
    csv_text = (tmp_path / 'rep.csv').read_text()
    assert 'test recall@50' in csv_text


def test_missing_and_null_metrics_never_crash(tmp_path):
    r"""Every run lacks something: a null (non-finite) validation metric,
    a test metric only one run has; the table shows them as missing."""
    write_ks_run(tmp_path, 'a', 'rns', 1, '0.001', {'ndcg@10': None},
                 {'ndcg@10': None},
                 monitor='ndcg@10')
    write_ks_run(tmp_path, 'b', 'rns', 2, '0.001', {'ndcg@10': 0.2},
                 {'ndcg@10': 0.1, 'hit@10': 0.5}, monitor='ndcg@10')
    table = report([str(tmp_path), '--baseline', 'rns', '--out',
                    str(tmp_path / 'rep')])
    assert '| valid ndcg@10 | test ndcg@10 | test hit@10 |' in table
    row = table.splitlines()[2]
    assert '| 2 | - | - | - | 3 |' in row


def test_plots_without_matplotlib_exit_before_the_table(sweep, tmp_path,
                                                         capsys,
                                                         monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, 'matplotlib', None)  # ImportError
    with pytest.raises(SystemExit) as e:
        report([str(sweep), '--out', str(tmp_path / 'rep'), '--plots',
                str(tmp_path / 'fig')])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ''
    assert err.count('\n') == 1 and 'needs matplotlib' in err
    assert not (tmp_path / 'rep.md').exists()
    assert not (tmp_path / 'fig').exists()


def _html_rows(page):
    from html.parser import HTMLParser

    class Rows(HTMLParser):
        def __init__(self):
            super().__init__()
            self.rows, self.cell = [], None

        def handle_starttag(self, tag, attrs):
            if tag == 'tr':
                self.rows.append([])
            elif tag in ('td', 'th'):
                self.cell = ''

        def handle_data(self, data):
            if self.cell is not None:
                self.cell += data

        def handle_endtag(self, tag):
            if tag in ('td', 'th'):
                self.rows[-1].append(self.cell)
                self.cell = None
    p = Rows()
    p.feed(page)
    return p.rows


@pytest.mark.parametrize('plots', [False, True])
def test_html_page(sweep, tmp_path, plots):
    if plots:
        pytest.importorskip('matplotlib',
                            reason='the plot extra is not installed')
    page = tmp_path / 'page' / 'report.html'
    page.parent.mkdir()
    argv = [str(sweep), '--select', 'trainer.lr', '--baseline', 'rns',
            '--out', str(tmp_path / 'rep'), '--html', str(page)]
    if plots:
        argv += ['--plots', str(tmp_path / 'fig')]
    table = report(argv)
    text = page.read_text()
    rows = _html_rows(text)
    md = [[c.strip() for c in ln.strip().strip('|').split(' | ')]
          for ln in table.splitlines() if not ln.startswith('|---')]
    assert rows[:len(md)] == md  # the report table, cell for cell
    # the sparsity table follows: header and the two samplers
    assert rows[len(md)] == ['sampler', 'n', '1-2', '2-3']
    assert len(rows) == len(md) + 3
    # self-contained: nothing fetched from elsewhere
    assert 'http' not in text and '<script' not in text
    assert text.count('src="data:image/png;base64,') == (2 if plots else 0)
    assert not list(page.parent.glob('.*tmp*'))  # written atomically


CHROMIUM = '/usr/bin/chromium'


def test_html_page_in_headless_chromium(sweep, tmp_path):
    import os
    import subprocess
    if not os.path.exists(CHROMIUM):
        pytest.skip(f'{CHROMIUM} not found: the HTML page is not opened in '
                    f'a browser (test_html_page checks its content)')
    page = tmp_path / 'report.html'
    argv = [str(sweep), '--baseline', 'rns', '--out', str(tmp_path / 'rep'),
            '--html', str(page)]
    try:
        import matplotlib  # noqa: F401
        argv += ['--plots', str(tmp_path / 'fig')]
    except ImportError:
        pass
    report(argv)
    proc = subprocess.run(
        [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu',
         f'--user-data-dir={tmp_path / "profile"}', '--enable-logging=stderr',
         '--v=0', '--virtual-time-budget=2000', '--dump-dom',
         page.as_uri()], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    rows = _html_rows(dom)
    assert rows[0][:3] == ['dataset', 'sampler', 'recommender']
    assert {r[1] for r in rows[1:3]} == {'rns', 'dns'}
    console = [ln for ln in proc.stderr.splitlines() if 'CONSOLE' in ln
               or 'Uncaught' in ln or 'Failed to load' in ln]
    assert console == []
