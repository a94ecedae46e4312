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
              recommender='mf', recommender_class=None):
    d = root / name
    (d / '.hydra').mkdir(parents=True)
    (d / '.hydra' / 'overrides.yaml').write_text(
        f'- sampler={sampler}\n- trainer.lr={lr}\n- seed={seed}\n')
    extra = ({} if recommender_class is None else
             {'recommender_class': recommender_class})
    (d / 'metrics.json').write_text(json.dumps({
        'dataset': 'toy', 'sampler': sampler, 'recommender': recommender,
        **extra, 'seed': seed, 'best_epoch': 1, 'epochs_run': 2,
        'epoch_seconds': [0.5, 0.7],
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
