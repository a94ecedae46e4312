"""Summarises a Hydra multirun: mean and std over seeds of every metrics.json
below DIR, grouped by dataset x sampler x recommender (x any override named
with --by), with learning-rate selection on validation.

    python benchmarks/summarize.py multirun/2026-11-26/12-00-00 [--select trainer.lr]

With --select KEY [KEY ...], runs are grouped by the KEYs as well; for each dataset x sampler
x recommender the KEY value with the best mean *validation* ndcg@20 is kept
and its *test* metrics are reported (the test split is never used to choose).
"""
import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

METRICS = ['recall@20', 'ndcg@20', 'precision@20', 'hit@20', 'ndcg_kgat@20']


def load(root: Path, select):
    runs = []
    for path in sorted(root.rglob('metrics.json')):
        m = json.loads(path.read_text())
        m['_dir'] = path.parent
        m['_select'] = None
        if select:
            over = yaml.safe_load(
                (path.parent / '.hydra' / 'overrides.yaml').read_text())
            kv = dict(o.split('=', 1) for o in over if '=' in o)
            m['_select'] = ','.join(kv.get(k, 'default') for k in select)
        runs.append(m)
    return runs


def mean_std(xs):
    return (statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('dirs', nargs='+', type=Path)
    p.add_argument('--all', action='store_true',
                   help='print every --select value, not only the chosen')
    p.add_argument('--select', nargs='*', default=None,
                   help='overrides (e.g. trainer.lr) chosen on validation')
    args = p.parse_args()
    runs = [r for d in args.dirs for r in load(d, args.select)]
    groups = defaultdict(list)
    for r in runs:
        groups[(r['dataset'], r['sampler'], r['recommender'],
                r['_select'])].append(r)
    best = {}
    for (ds, s, rec, sel), rs in groups.items():
        v = statistics.fmean(r['valid']['ndcg@20'] for r in rs)
        key = (ds, s, rec) + ((sel, ) if args.all else ())
        if key not in best or v > best[key][0]:
            best[key] = (v, sel, rs)
    cols = ['dataset', 'sampler', 'rec.'] + (
        [','.join(args.select)] if args.select else []) + ['n', 'valid ndcg@20'] + [
            f'test {m}' for m in METRICS] + ['epochs', 's/epoch']
    print('| ' + ' | '.join(cols) + ' |')
    print('|' + '---|' * len(cols))
    for (ds, s, rec, *_), (_, sel, rs) in sorted(best.items()):
        row = [ds, s, rec] + ([sel] if args.select else []) + [str(len(rs))]
        mv, sv = mean_std([r['valid']['ndcg@20'] for r in rs])
        row.append(f'{mv:.4f} ± {sv:.4f}')
        for m in METRICS:
            mt, st = mean_std([r['test'][m] for r in rs])
            row.append(f'{mt:.4f} ± {st:.4f}')
        row.append(f'{statistics.fmean(r["epochs_run"] for r in rs):.0f}')
        secs = [s for r in rs for s in r['epoch_seconds']]
        row.append(f'{statistics.median(secs):.2f}')
        print('| ' + ' | '.join(row) + ' |')


if __name__ == '__main__':
    main()
