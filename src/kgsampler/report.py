"""``kgsampler-report``: tables from the ``metrics.json`` files of a sweep.

    kgsampler-report multirun/2026-11-26/12-00-00 [--select trainer.lr]
        [--baseline rns] [--out report] [--plots figures]

Every ``metrics.json`` below the given folders is grouped by dataset x sampler
x recommender (x the ``--select`` overrides, read from each run's
``.hydra/overrides.yaml``); the recommender is its config-group choice and its
class (``recommender_class``, written since that key exists; older files
without it group by the choice alone), so runs of two recommender classes are
never pooled, even under one choice name; the table shows both. With
``--select``, the setting with the best mean *validation* metric is kept per
dataset x sampler x recommender; the test split is never used to choose. Each
row gives mean, standard deviation and count over seeds and, against
``--baseline`` (the same dataset and recommender's run of that sampler), a
two-sided paired t-test over the seeds both have (the paper marks
p < 0.05) and the relative difference of the mean test monitor metric;
``--baseline-recommender apr=mf`` takes the baselines of one recommender
choice for another's rows (a sampler that changes the model),
``--time-baseline rns`` adds each row's median epoch time over that
sampler's, and ``--metrics`` narrows the test columns. The Markdown table
is printed and written with a CSV next to it; ``--plots`` draws the
per-epoch training dynamics and the per-sparsity-group test metric;
``--html PAGE`` writes one self-contained page with the tables
(and, with ``--plots``, the figures embedded).

The metrics and cut-offs K are those the runs recorded (a sweep with
``'trainer.ks=[10,50]'`` reports recall@10, recall@50, ...); the validation
metric shown and used by ``--select`` is each run's own ``trainer.monitor``
(``monitor`` in ``metrics.json``, else ``.hydra/config.yaml``, else its first
``ndcg@K``) unless ``--monitor`` names one. A metric that some run of a row
lacks (or recorded as ``null``) is shown as ``-``, never averaged over the
runs that have it. ``--plots`` needs matplotlib: without it the command
prints one line on stderr and exits with status 2 before any table is
printed or written.
"""
from __future__ import annotations

import argparse
import base64
import csv
import html
import io
import json
import math
import statistics
import sys
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from kgsampler.utils._io import atomic_write_bytes, atomic_write_text

#: Order of the metric families in the table (others follow by name).
FAMILIES = ('recall', 'ndcg', 'precision', 'hit', 'ndcg_kgat')


def metric_order(name: str) -> Tuple[int, str, float]:
    """Sort key of a metric name such as :obj:`"ndcg@20"`: its family (in
    :obj:`FAMILIES` order, then by name), then K."""
    family, _, k = name.partition('@')
    try:
        kk = float(k)
    except ValueError:
        kk = float('inf')
    rank = FAMILIES.index(family) if family in FAMILIES else len(FAMILIES)
    return rank, family, kk


def discover_metrics(runs: Sequence['Run'], split: str = 'test') -> List[str]:
    """Every metric any run recorded on :obj:`split` (numbers or
    :obj:`null`), in :func:`metric_order`."""
    names = {k for r in runs for k, v in r.metrics.get(split, {}).items()
             if v is None or (isinstance(v, (int, float))
                              and not isinstance(v, bool))}
    return sorted(names, key=metric_order)


def _config_monitor(run_dir: Path) -> Optional[str]:
    """:obj:`trainer.monitor` of the run's :obj:`.hydra/config.yaml`."""
    path = run_dir / '.hydra' / 'config.yaml'
    if not path.is_file():
        return None
    try:
        import yaml
        cfg = yaml.safe_load(path.read_text())
        monitor = cfg.get('trainer', {}).get('monitor')
    except Exception:  # an unreadable config: fall back to the metrics
        return None
    return monitor if isinstance(monitor, str) else None


def run_monitor(metrics: Dict, run_dir: Path) -> Optional[str]:
    """The validation metric a run was selected on: :obj:`monitor` in its
    :obj:`metrics.json`, else :obj:`trainer.monitor` in its
    :obj:`.hydra/config.yaml`, else its first validation :obj:`ndcg@K`
    (smallest K), else its first validation metric (:obj:`None` when it
    has none)."""
    m = metrics.get('monitor')
    if isinstance(m, str) and m:
        return m
    m = _config_monitor(run_dir)
    if m:
        return m
    valid = sorted(metrics.get('valid', {}), key=metric_order)
    ndcg = [k for k in valid if k.startswith('ndcg@')]
    return (ndcg or valid or [None])[0]


@dataclass
class Run:
    """One run's :obj:`metrics.json` plus its Hydra overrides."""
    path: Path
    metrics: Dict
    overrides: Dict[str, str] = field(default_factory=dict)
    monitor: Optional[str] = None

    @property
    def key(self) -> Tuple[str, str, str, Optional[str]]:
        """dataset, sampler, recommender choice and class (:obj:`None` in
        files written before :obj:`recommender_class` existed)."""
        m = self.metrics
        return (m['dataset'], m['sampler'], m['recommender'],
                m.get('recommender_class'))


def load_runs(dirs: Sequence[Path],
              skipped: Optional[List[Tuple[Path, str]]] = None) -> List[Run]:
    """Reads every :obj:`metrics.json` below :obj:`dirs`.

    Only completed runs are returned: a file whose :obj:`status` (written
    since that key exists; older files count as completed) is
    :obj:`"running"`, :obj:`"interrupted"` or :obj:`"diverged"` is left
    out, with its path and reason appended to :obj:`skipped` (a warning
    when :obj:`skipped` is :obj:`None`). A file that is not valid JSON or
    lacks a required key raises :class:`ValueError`, unless
    :obj:`skipped` is given: it is then left out and listed there too.
    """
    runs = []

    def bad(path: Path, reason: str) -> None:
        if skipped is None:
            raise ValueError(f"kgsampler-report: {path} {reason}")
        skipped.append((path, reason))

    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise FileNotFoundError(f"kgsampler-report: no folder {d}")
        for path in sorted(d.rglob('metrics.json')):
            try:
                metrics = json.loads(path.read_text())
            except json.JSONDecodeError as e:
                bad(path, f'is not valid JSON ({e})')
                continue
            except (OSError, UnicodeDecodeError) as e:
                bad(path, f'cannot be read ({e})')
                continue
            if not isinstance(metrics, dict):
                bad(path, 'is not valid JSON (not an object)')
                continue
            status = metrics.get('status', 'completed')
            if status != 'completed':
                why = f'is not a completed run (status {status!r}'
                why += f": {metrics['error']})" if metrics.get('error') \
                    else ')'
                if skipped is None:
                    warnings.warn(f'kgsampler-report: {path} {why}; left '
                                  f'out', UserWarning, stacklevel=2)
                else:
                    skipped.append((path, why))
                continue
            missing = {'dataset', 'sampler', 'recommender', 'seed', 'valid',
                       'test'} - set(metrics)
            if missing:
                bad(path, f'lacks the keys {sorted(missing)}')
                continue
            over = {}
            ofile = path.parent / '.hydra' / 'overrides.yaml'
            if ofile.is_file():
                for line in ofile.read_text().splitlines():
                    item = line.strip().lstrip('-').strip()
                    if '=' in item:
                        k, v = item.split('=', 1)
                        over[k.lstrip('+~')] = v
            if not isinstance(metrics['valid'], dict) or \
                    not isinstance(metrics['test'], dict):
                bad(path, "has 'valid' or 'test' that is not an object")
                continue
            runs.append(Run(path, metrics, over,
                            run_monitor(metrics, path.parent)))
    return runs


def _num(v) -> float:
    """A metric as a float; :obj:`null` (a non-finite value in the file)
    and missing ones as NaN."""
    return float('nan') if v is None else float(v)


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> float:
    r"""Two-sided p-value of the paired t-test of :obj:`a` against
    :obj:`b`, :func:`scipy.stats.ttest_rel` (:obj:`nan` with fewer than two
    pairs; 0 or 1 when all differences are equal, where scipy gives
    :obj:`nan`)."""
    if len(a) != len(b):
        raise ValueError(f"paired_t_test: 'a' and 'b' must have the same "
                         f"length (got {len(a)} and {len(b)})")
    if len(a) < 2:
        return float('nan')
    diff = [x - y for x, y in zip(a, b)]
    if max(diff) == min(diff):  # zero variance: no t statistic
        return 1.0 if diff[0] == 0.0 else 0.0
    from scipy.stats import ttest_rel
    return float(ttest_rel(a, b).pvalue)


@dataclass
class Row:
    """One line of the report."""
    dataset: str
    sampler: str
    recommender: str
    setting: str
    runs: List[Run]
    p_values: Dict[str, float] = field(default_factory=dict)
    recommender_class: Optional[str] = None
    monitor: Optional[str] = None
    #: the row it was tested against (``--baseline``), if any
    baseline_row: Optional['Row'] = None
    #: the row its epoch time is divided by (``--time-baseline``), if any
    time_row: Optional['Row'] = None

    def values(self, split: str, metric: str) -> List[float]:
        return [_num(r.metrics[split].get(metric)) for r in self.runs]


def _group_monitor(runs: Sequence[Run], monitor: Optional[str]) -> \
        Optional[str]:
    """:obj:`monitor`, else the one most of :obj:`runs` were selected on."""
    if monitor is not None:
        return monitor
    seen = [r.monitor for r in runs if r.monitor is not None]
    return max(seen, key=seen.count) if seen else None


def build_rows(runs: List[Run], select: Sequence[str] = (),
               monitor: Optional[str] = None,
               baseline: Optional[str] = None,
               keep_all: bool = False,
               time_baseline: Optional[str] = None,
               baseline_recommender: Optional[Dict[str, str]] = None
               ) -> List[Row]:
    """Groups runs, keeps the best :obj:`select` setting per group on the
    validation :obj:`monitor` (every setting with :obj:`keep_all`), and adds
    paired p-values against :obj:`baseline` (matched by seed) for every
    test metric the runs recorded.

    Args:
        monitor (str, optional): Validation metric for the selection; with
            :obj:`None`, the one the runs were trained with
            (:func:`run_monitor`, the most common in a group).
            (default: :obj:`None`)
        baseline (str, optional): Sampler every row is tested against, in
            the same dataset and recommender (choice and class).
            (default: :obj:`None`)
        time_baseline (str, optional): Sampler whose median epoch time
            each row's is divided by (:obj:`Row.time_row`), matched like
            :obj:`baseline`. (default: :obj:`None`)
        baseline_recommender (dict, optional): Recommender choice ->
            the choice whose baseline rows it is compared with, for a
            method that changes the recommender, e.g. :obj:`{"apr":
            "mf"}` (AdvIR trains APR, an MF with adversarial training).
            (default: :obj:`None`)
    """
    metrics = discover_metrics(runs)
    groups: Dict[Tuple, List[Run]] = defaultdict(list)
    for r in runs:
        # keys a run did not override are left out ('defaults': none was)
        setting = ','.join(f'{k}={r.overrides[k]}' for k in select
                           if k in r.overrides) or ('defaults' if select
                                                    else '-')
        groups[r.key + (setting, )].append(r)
    best: Dict[Tuple, Row] = {}
    for (ds, s, rec, rec_cls, setting), rs in groups.items():
        mon = _group_monitor(rs, monitor)
        score = _score(rs, mon)
        key = (ds, s, rec, rec_cls) + ((setting, ) if keep_all else ())
        if key not in best or score > best[key][0]:
            best[key] = (score, Row(ds, s, rec, setting, rs,
                                    recommender_class=rec_cls, monitor=mon))
    rows = [row for _, row in best.values()]
    rows.sort(key=lambda r: (r.dataset, r.recommender,
                             r.recommender_class or '', r.sampler, r.setting))
    mapped = dict(baseline_recommender or {})

    def references(sampler: str) -> Dict[Tuple, Row]:
        # with keep_all: the best setting of the reference sampler
        ref: Dict[Tuple, Tuple[float, Row]] = {}
        for r in rows:
            if r.sampler == sampler:
                k = (r.dataset, r.recommender, r.recommender_class)
                score = _score(r.runs, r.monitor)
                if k not in ref or score > ref[k][0]:
                    ref[k] = (score, r)
        return {k: v[1] for k, v in ref.items()}

    def lookup(ref: Dict[Tuple, Row], row: Row) -> Optional[Row]:
        if row.recommender in mapped:  # any class of the mapped choice
            found = [v for k, v in ref.items() if k[0] == row.dataset
                     and k[1] == mapped[row.recommender]]
            return found[0] if len(found) == 1 else None
        return ref.get((row.dataset, row.recommender, row.recommender_class))

    if time_baseline is not None:
        ref = references(time_baseline)
        for row in rows:
            row.time_row = lookup(ref, row)
    if baseline is not None:
        base = references(baseline)
        for row in rows:
            ref = lookup(base, row)
            if ref is None or ref is row:
                continue
            row.baseline_row = ref
            by_seed = {r.metrics['seed']: r for r in ref.runs}
            pairs = [(r, by_seed[r.metrics['seed']]) for r in row.runs
                     if r.metrics['seed'] in by_seed]
            for m in metrics:
                a = [_num(x.metrics['test'].get(m)) for x, _ in pairs]
                b = [_num(y.metrics['test'].get(m)) for _, y in pairs]
                if pairs and all(map(math.isfinite, a + b)):
                    row.p_values[m] = paired_t_test(a, b)
    return rows


def _score(runs: List[Run], monitor: Optional[str]) -> float:
    # a missing or non-finite validation metric never wins the selection
    if monitor is None:
        return float('-inf')
    vals = [_num(r.metrics['valid'].get(monitor)) for r in runs]
    vals = [v if math.isfinite(v) else float('-inf') for v in vals]
    return statistics.fmean(vals)


#: ``sampler_stats`` rates shown as columns (mean over the group's runs).
STATS = ('fallback_rate', 'false_negative_rate')


def _ms(xs: List[float]) -> Tuple[float, float]:
    return (statistics.fmean(xs),
            statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _cell(xs: List[float]) -> Optional[str]:
    """mean ± std, or :obj:`None` (shown as missing) when a value is
    missing or non-finite."""
    if not xs or not all(math.isfinite(x) for x in xs):
        return None
    m, sd = _ms(xs)
    return f'{m:.4f} ± {sd:.4f}'


def _epoch_seconds(row: Row) -> List[float]:
    return [s for r in row.runs for s in r.metrics.get('epoch_seconds', [])]


def _relative(row: Row, ref: Optional[Row]) -> str:
    """``+x.x%``: the row's mean test monitor metric against :obj:`ref`'s
    (the row's own monitor), or ``-``."""
    if ref is None or row.monitor is None:
        return '-'
    a, b = row.values('test', row.monitor), ref.values('test', row.monitor)
    if not a or not b or not all(map(math.isfinite, a + b)):
        return '-'
    mb = statistics.fmean(b)
    return f'{100 * (statistics.fmean(a) / mb - 1):+.1f}%' if mb else '-'


def to_table(rows: List[Row], metrics: Optional[Sequence[str]] = None
             ) -> Tuple[List[str], List[List[str]]]:
    """Header and cells of the report: the validation monitor of the rows
    (one column per distinct monitor) and every test metric the rows'
    runs recorded, as mean ± std (with the p-value against the baseline
    where there is one); a metric missing in any run of a row is
    :obj:`-`."""
    found = discover_metrics([r for row in rows for r in row.runs])
    if metrics:  # the named ones, in the order given
        unknown = [m for m in metrics if m not in found]
        if unknown:
            raise ValueError(f"kgsampler-report: no run recorded the test "
                             f"metrics {unknown} (got {found})")
    metrics = list(metrics) if metrics else found
    monitors = sorted({row.monitor for row in rows if row.monitor},
                      key=metric_order)
    base = next((row.baseline_row.sampler for row in rows
                 if row.baseline_row is not None), None)
    tref = next((row.time_row.sampler for row in rows
                 if row.time_row is not None), None)
    header = ['dataset', 'sampler', 'recommender', 'recommender class',
              'setting', 'n'] + [f'valid {m}' for m in monitors] + [
                  f'test {m}' for m in metrics] + (
                  [f'test vs {base}'] if base else []) + [
                  'epochs', 's/epoch'] + (
                  [f's/epoch / {tref}'] if tref else []) + [
                  k.replace('_', ' ') for k in STATS]
    cells = []
    for row in rows:
        line = [row.dataset, row.sampler, row.recommender,
                row.recommender_class or '-', row.setting or '-',
                str(len(row.runs))]
        line += [_cell(row.values('valid', m)) or '-' for m in monitors]
        for m in metrics:
            cell = _cell(row.values('test', m))
            if cell is None:
                line.append('-')
                continue
            p = row.p_values.get(m)
            if p is not None and not math.isnan(p):
                cell += f' (p={p:.3f}{"*" if p < 0.05 else ""})'
            line.append(cell)
        if base:  # relative difference of mean test monitor metric
            line.append(_relative(row, row.baseline_row))
        epochs = [_num(r.metrics.get('epochs_run')) for r in row.runs]
        epochs = [e for e in epochs if math.isfinite(e)]
        secs = _epoch_seconds(row)
        line.append(f'{statistics.fmean(epochs):.0f}' if epochs else '-')
        line.append(f'{statistics.median(secs):.2f}' if secs else '-')
        if tref:
            ref = _epoch_seconds(row.time_row) if row.time_row else []
            line.append(f'{statistics.median(secs) / statistics.median(ref):.2f}x'
                        if secs and ref and statistics.median(ref) > 0
                        else '-')
        for k in STATS:  # the sampler's own bookkeeping, mean over runs
            vals = [r.metrics.get('sampler_stats', {}).get(k)
                    for r in row.runs]
            vals = [v for v in vals if isinstance(v, (int, float))
                    and math.isfinite(v)]
            line.append(f'{100 * statistics.fmean(vals):.2f}%' if vals
                        else '-')
        cells.append(line)
    return header, cells


def markdown(header: List[str], cells: List[List[str]]) -> str:
    out = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    out += ['| ' + ' | '.join(c) + ' |' for c in cells]
    return '\n'.join(out)


def filter_runs(runs: List[Run], where: Sequence[str]) -> List[Run]:
    """Drops the runs that override a :obj:`KEY=VALUE` condition's key with
    another value (runs that leave the key at its default are kept)."""
    conds = []
    for w in where:
        key, sep, value = w.partition('=')
        if not sep or not key:
            raise SystemExit(f"kgsampler-report: --where needs KEY=VALUE "
                             f"(got {w!r})")
        conds.append((key, value))
    return [r for r in runs if all(r.overrides.get(k, v) == v
                                   for k, v in conds)]


def sparsity_metric(rows: Sequence[Row]) -> Optional[str]:
    """The test metric shown per user-sparsity group: the rows' most common
    monitor when the groups hold it, else the first :obj:`ndcg@K` (else the
    first metric) they hold; :obj:`None` if no run has groups."""
    held = {k for row in rows for r in row.runs
            for g in r.metrics.get('test_by_sparsity') or [] for k in g
            if '@' in k}
    if not held:
        return None
    mons = [row.monitor for row in rows if row.monitor in held]
    if mons:
        return max(mons, key=mons.count)
    held = sorted(held, key=metric_order)
    return next((k for k in held if k.startswith('ndcg@')), held[0])


def _sparsity(row: Row, metric: str) -> Tuple[List[str], List[List[float]]]:
    """A row's user-sparsity groups: their labels (``min-max`` training
    interactions) and, per group, :obj:`metric` of each run (groups that
    every run has; NaN where a run lacks the metric)."""
    gs = [r.metrics.get('test_by_sparsity') or [] for r in row.runs]
    n = min((len(g) for g in gs), default=0)
    labels = [f"{gs[0][i].get('min_interactions')}-"
              f"{gs[0][i].get('max_interactions')}" for i in range(n)]
    return labels, [[_num(g[i].get(metric)) for g in gs] for i in range(n)]


def sparsity_table(rows: List[Row], metric: Optional[str] = None) -> str:
    """Markdown table of test :obj:`metric` (default
    :func:`sparsity_metric`) per user-sparsity group (columns) for each row
    (sampler), mean ± std over its runs (:obj:`-` where a run lacks it);
    empty if no run has :obj:`test_by_sparsity`."""
    metric = metric or sparsity_metric(rows)
    if metric is None:
        return ''
    groups = None
    lines = []
    for row in rows:
        labels, values = _sparsity(row, metric)
        if not labels:
            continue
        groups = groups or labels
        cells = [_cell(v) or '-' for v in values[:len(groups)]]
        lines.append(f'| {row.sampler} ({row.recommender}) | '
                     f'{len(row.runs)} | ' + ' | '.join(cells) + ' |')
    if groups is None:
        return ''
    head = ('| sampler | n | ' + ' | '.join(groups) + ' |\n|' +
            '---|' * (len(groups) + 2))
    return head + '\n' + '\n'.join(lines)


def _require_matplotlib() -> None:
    """Exits with one line on stderr (status 2) when matplotlib is missing:
    ``--plots`` is checked before any table is printed or written."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("kgsampler-report: --plots needs matplotlib, which is not "
              "installed: pip install 'kgsampler[plot]' (or leave out "
              "--plots)", file=sys.stderr)
        raise SystemExit(2)


def plot(rows: List[Row], out_dir: Path) -> List[Path]:
    """Writes :obj:`dynamics.png` (per-epoch gradient magnitude and
    false-negative rate, mean over seeds, one line per sampler) and
    :obj:`sparsity.png` (the test :func:`sparsity_metric` per user-sparsity
    group, with the same
    numbers as a Markdown table in :obj:`sparsity_<dataset>.md`) for each
    dataset into :obj:`out_dir`; returns the files written. Needs
    :mod:`matplotlib` (the :obj:`plot` extra)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("kgsampler-report --plots needs matplotlib: "
                          "pip install 'kgsampler[plot]'") from e
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    def finish(fig, axes, name: str) -> None:
        for ax in axes:
            ax.legend(fontsize=8)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format='png', dpi=110)
        plt.close(fig)
        atomic_write_bytes(out_dir / name, buf.getvalue())
        written.append(out_dir / name)
    for ds in sorted({r.dataset for r in rows}):
        rs = [r for r in rows if r.dataset == ds]
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for row in rs:
            label = f'{row.sampler} ({row.recommender})'
            for ax, key in zip(axes, ('grad_magnitude',
                                      'false_negative_rate')):
                # epoch 0 is a sampler warm-up (no training losses)
                curves = [[h.get(key) for h in r.metrics.get('history', [])
                           if h.get('epoch', 1) >= 1] for r in row.runs]
                n = min((len(c) for c in curves), default=0)
                if n == 0 or any(v is None for c in curves for v in c[:n]):
                    continue
                mean = [statistics.fmean(c[i] for c in curves)
                        for i in range(n)]
                ax.plot(range(1, n + 1), mean, label=label)
        axes[0].set(title=f'{ds}: gradient magnitude 1 - sigmoid(f(u,i) - '
                    f'f(u,j))', xlabel='epoch')
        axes[1].set(title=f'{ds}: negatives that are validation positives',
                    xlabel='epoch')
        finish(fig, axes, f'dynamics_{ds}.png')

        metric = sparsity_metric(rs) or 'ndcg@20'
        fig, ax = plt.subplots(figsize=(6, 3.6))
        width = 0.8 / max(len(rs), 1)
        for k, row in enumerate(rs):
            ticks, values = _sparsity(row, metric)
            n = len(ticks)
            if n == 0:
                continue
            # a group some run lacks the metric in is drawn as missing (NaN)
            ax.bar([i + k * width for i in range(n)],
                   [statistics.fmean(v) for v in values], width,
                   label=row.sampler)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(n)], ticks)
        ax.set(title=f'{ds}: test {metric} by training interactions per user',
               xlabel='user group (training interactions)', ylabel=metric)
        finish(fig, [ax], f'sparsity_{ds}.png')
        table = sparsity_table(rs, metric)
        if table:
            path = out_dir / f'sparsity_{ds}.md'
            atomic_write_text(path, f'# {ds}: test {metric} per user group '
                              f'(training interactions), mean ± std over '
                              f'seeds\n\n{table}\n')
            written.append(path)
    return written


def report(argv: Optional[Sequence[str]] = None) -> str:
    """Runs ``kgsampler-report`` with :obj:`argv`; returns the Markdown
    table."""
    p = argparse.ArgumentParser(prog='kgsampler-report',
                                description=__doc__.split('\n\n')[0])
    p.add_argument('dirs', nargs='+', type=Path,
                   help='folders holding metrics.json files (searched '
                   'recursively)')
    p.add_argument('--select', nargs='*', default=[],
                   help='overrides (e.g. trainer.lr) chosen on validation')
    p.add_argument('--monitor', default=None,
                   help='validation metric shown and used by --select '
                   '(default: each run\'s trainer.monitor)')
    p.add_argument('--all', action='store_true',
                   help='list every --select setting, not only the chosen')
    p.add_argument('--baseline', default=None,
                   help='sampler to test against (paired t-test by seed)')
    p.add_argument('--metrics', nargs='*', default=[], metavar='METRIC',
                   help='test metrics shown, e.g. ndcg@20 recall@20 '
                   '(default: every one the runs recorded)')
    p.add_argument('--time-baseline', default=None, metavar='SAMPLER',
                   help="add each row's median epoch time over this "
                   "sampler's (same dataset and recommender), e.g. rns")
    p.add_argument('--baseline-recommender', nargs='*', default=[],
                   metavar='REC=BASE',
                   help='compare rows of recommender choice REC with the '
                   'baselines of BASE, e.g. apr=mf (AdvIR trains APR)')
    p.add_argument('--plots', type=Path, default=None,
                   help='write dynamics_<dataset>.png and '
                   'sparsity_<dataset>.png (and .md) into this folder')
    p.add_argument('--where', nargs='*', default=[], metavar='KEY=VALUE',
                   help='drop runs that override KEY with another value '
                   '(runs that do not set KEY are kept), e.g. '
                   'sampler.steps=2')
    p.add_argument('--out', type=Path, default=None,
                   help='write OUT.md and OUT.csv (default: report.md/.csv '
                   'in the first folder)')
    p.add_argument('--html', type=Path, default=None, metavar='PAGE',
                   help='also write one self-contained HTML page with the '
                   'tables (and the figures of --plots, embedded)')
    args = p.parse_args(argv)
    if args.plots is not None:  # before anything is printed or written
        _require_matplotlib()
    skipped: List[Tuple[Path, str]] = []
    runs = load_runs(args.dirs, skipped)
    if not runs:
        raise SystemExit(f'kgsampler-report: no metrics.json below '
                         f'{", ".join(map(str, args.dirs))} holds a '
                         f'completed run'
                         + (f' ({len(skipped)} left out: ' + '; '.join(
                             f'{p} {why}' for p, why in skipped) + ')'
                            if skipped else ''))
    runs = filter_runs(runs, args.where)
    mapped = {}
    for item in args.baseline_recommender:
        rec, sep, ref = item.partition('=')
        if not sep or not rec or not ref:
            p.error(f"argument --baseline-recommender: expected REC=BASE "
                    f"(got {item!r})")
        mapped[rec] = ref
    rows = build_rows(runs, args.select, args.monitor, args.baseline,
                      args.all, args.time_baseline, mapped)
    try:
        header, cells = to_table(rows, args.metrics)
    except ValueError as e:
        p.error(str(e))
    table = markdown(header, cells)
    out = args.out if args.out is not None else args.dirs[0] / 'report'
    out.parent.mkdir(parents=True, exist_ok=True)
    flagged = [r for r in runs if r.metrics.get('non_finite')]
    note = (f'{len(runs)} runs; test metrics mean ± std over seeds'
            + (f'; p: paired t-test against {args.baseline} (* p < 0.05)'
               if args.baseline else '')
            + (f'; test vs {args.baseline}: relative difference of mean test '
               f'{args.monitor or "trainer.monitor"}' if args.baseline else '')
            + ('; baselines of ' + ', '.join(f'{k} from {v}'
                                             for k, v in mapped.items())
               if mapped else '')
            + (f'; s/epoch / {args.time_baseline}: median epoch seconds over '
               f'that sampler\'s (runs in separate processes: noisy)'
               if args.time_baseline else '')
            + (f'; {", ".join(args.select)} chosen on validation '
               f'{args.monitor or "trainer.monitor"}'
               if args.select and not args.all else ''))
    if skipped:
        note += (f'\n\nLeft out: {len(skipped)} metrics.json files that are '
                 f'not completed runs or cannot be read:\n' + '\n'.join(
                     f'- {p} {why}' for p, why in skipped))
    if flagged:
        note += (f'\n\nFlagged: {len(flagged)} runs hold non-finite values '
                 f'(written as null):\n' + '\n'.join(
                     f"- {r.path}: {', '.join(r.metrics['non_finite'][:5])}"
                     for r in flagged))
    atomic_write_text(f'{out}.md', table + '\n\n' + note + '\n')
    buf = io.StringIO(newline='')
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(cells)
    atomic_write_text(f'{out}.csv', buf.getvalue())
    print(table)
    print(note)
    figures: List[Path] = []
    if args.plots is not None:
        figures = plot(rows, args.plots)
        for path in figures:
            print(f'wrote {path}')
    if args.html is not None:
        atomic_write_text(args.html, html_page(header, cells, note, rows,
                                               figures))
        print(f'wrote {args.html}')
    return table


def _html_table(header: Sequence[str], cells: Sequence[Sequence[str]]
                ) -> str:
    esc = html.escape
    out = ['<table>', '<thead><tr>' + ''.join(
        f'<th>{esc(h)}</th>' for h in header) + '</tr></thead>', '<tbody>']
    out += ['<tr>' + ''.join(f'<td>{esc(c)}</td>' for c in row) + '</tr>'
            for row in cells]
    return '\n'.join(out + ['</tbody>', '</table>'])


def _md_cells(table: str) -> Tuple[List[str], List[List[str]]]:
    lines = [ln.strip().strip('|').split(' | ') for ln in
             table.strip().splitlines()]
    return [c.strip() for c in lines[0]], [[c.strip() for c in ln]
                                           for ln in lines[2:]]


def html_page(header: Sequence[str], cells: Sequence[Sequence[str]],
              note: str, rows: Sequence[Row] = (),
              figures: Sequence[Path] = ()) -> str:
    """One self-contained HTML page (no external file, script or style
    sheet): the report table, the note, per dataset the user-sparsity table
    and the PNG :obj:`figures` embedded as data URIs."""
    esc = html.escape
    body = ['<h1>kgsampler report</h1>', _html_table(header, cells),
            '<pre class="note">' + esc(note) + '</pre>']
    for ds in sorted({r.dataset for r in rows}):
        rs = [r for r in rows if r.dataset == ds]
        metric = sparsity_metric(rs)
        table = sparsity_table(rs, metric) if metric else ''
        pngs = [f for f in figures if f.suffix == '.png'
                and f.stem.endswith(f'_{ds}')]
        if not table and not pngs:
            continue
        body.append(f'<h2>{esc(ds)}</h2>')
        if table:
            body.append(f'<h3>test {esc(metric)} per user group (training '
                        f'interactions), mean ± std over seeds</h3>')
            body.append(_html_table(*_md_cells(table)))
        for f in pngs:
            data = base64.b64encode(f.read_bytes()).decode('ascii')
            body.append(f'<figure><img alt="{esc(f.stem)}" src="data:image/'
                        f'png;base64,{data}"><figcaption>{esc(f.name)}'
                        f'</figcaption></figure>')
    style = ('body{font-family:sans-serif;margin:1.5em}'
             'table{border-collapse:collapse;margin:1em 0;font-size:90%}'
             'th,td{border:1px solid #bbb;padding:2px 6px;text-align:left}'
             'th{background:#eee}img{max-width:100%}')
    return ('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">'
            '\n<title>kgsampler report</title>\n<style>' + style +
            '</style>\n</head>\n<body>\n' + '\n'.join(body) +
            '\n</body>\n</html>\n')


def main(argv: Optional[Sequence[str]] = None) -> None:
    """Entry point of the ``kgsampler-report`` console script."""
    report(argv)


if __name__ == '__main__':
    main()
