"""The KGPolicy verdict table from the runs of ``benchmarks/kgpolicy_verdict.sh``.

    python benchmarks/kgpolicy_verdict.py multirun/verdict/lastfm [--out FILE]

One row per variant (a sweep folder, and within it each setting of the swept keys), 3 seeds:
validation and test NDCG@20 (mean ± std over seeds), the paired t-test of test NDCG@20 against
DNS-8 (matched by seed), the epoch selected on validation, and what the policy did before it
(`updates_before_best_epoch`, attention entropy of each hop relative to its maximum, the
personalisation score: 1 = the logits ignore the user). The last column reports the released
protocol apart: the best *test* NDCG@20 over the epochs (`trainer.track_test`), which no choice
here uses. Rows marked `<-` are the setting chosen on validation within their sweep folder.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

from kgsampler.report import paired_t_test

KEYS = ('sampler.refresh_interval', 'trainer.sampler_warmup',
        'sampler.num_candidates', 'sampler.lr', 'trainer.lr')


def load(folder: Path):
    groups = defaultdict(list)
    for path in sorted(folder.rglob('metrics.json')):
        m = json.loads(path.read_text())
        if m.get('status', 'completed') != 'completed':  # running, interrupted, diverged
            print(f'skipped ({m.get("status")}): {path}', file=sys.stderr)
            continue
        over = {}
        ofile = path.parent / '.hydra' / 'overrides.yaml'
        for line in ofile.read_text().splitlines() if ofile.is_file() else []:
            item = line.strip().lstrip('-').strip()
            if '=' in item:
                k, v = item.split('=', 1)
                over[k] = v
        sweep = path.relative_to(folder).parts[0]
        setting = ' '.join(f'{k.split(".")[-1]}={over[k]}' for k in KEYS
                           if k in over and k != 'trainer.lr'
                           or (k == 'trainer.lr' and sweep ==
                               'released_schedule'))
        groups[(sweep, setting)].append(m)
    return groups


def ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return '-'
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f'{statistics.fmean(xs):.4f} ± {sd:.4f}'


def mean(xs, fmt='{:.2f}'):
    xs = [x for x in xs if x is not None]
    return fmt.format(statistics.fmean(xs)) if xs else '-'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('folder', type=Path)
    p.add_argument('--out', type=Path, default=None)
    args = p.parse_args()
    groups = load(args.folder)
    ref = {m['seed']: m['test']['ndcg@20'] for (sw, st), ms_ in groups.items()
           if sw == 'dns' and st == 'num_candidates=8' for m in ms_}
    chosen = {}
    for (sw, st), runs in groups.items():
        v = statistics.fmean(r['valid']['ndcg@20'] for r in runs)
        if sw not in chosen or v > chosen[sw][0]:
            chosen[sw] = (v, st)
    head = ('| variant | setting | n | valid ndcg@20 | test ndcg@20 | p vs DNS-8 | '
            'test recall@20 | best epoch | policy updates before it | '
            'entropy hop 1 / hop 2 (of max) | personalisation hop 1 / hop 2 | '
            'false negatives | s/epoch | best-test-epoch ndcg@20 (released protocol) |')
    lines = [head, '|' + '---|' * (head.count('|') - 1)]
    for (sw, st) in sorted(groups):
        runs = groups[(sw, st)]
        seeds = [r['seed'] for r in runs]
        test = [r['test']['ndcg@20'] for r in runs]
        pv = '-'
        if sw != 'dns' or st != 'num_candidates=8':
            pairs = [(t, ref[s]) for t, s in zip(test, seeds) if s in ref]
            if len(pairs) >= 2:
                pval = paired_t_test([a for a, _ in pairs],
                                     [b for _, b in pairs])
                pv = f'{pval:.3f}' + ('*' if pval < 0.05 else '')
        st_ = [r.get('sampler_stats', {}) for r in runs]
        ent = (mean([s.get('best_epoch_entropy_hop1') for s in st_], '{:.2f}')
               + ' / ' + mean([s.get('best_epoch_entropy_hop2') for s in st_],
                              '{:.2f}'))
        per = (mean([s.get('best_epoch_personalisation_hop1') for s in st_],
                    '{:.2f}') + ' / ' +
               mean([s.get('best_epoch_personalisation_hop2') for s in st_],
                    '{:.2f}'))
        upd = mean([s.get('updates_before_best_epoch') for s in st_], '{:.0f}')
        fn = mean([s.get('false_negative_rate') for s in st_], '{:.2%}')
        best_test = [max((h['test_ndcg@20'] for h in r['history']
                          if 'test_ndcg@20' in h), default=None) for r in runs]
        secs = [statistics.median(r['epoch_seconds']) for r in runs]
        mark = ' <-' if chosen[sw][1] == st and len(
            [k for k in groups if k[0] == sw]) > 1 else ''
        lines.append(
            f'| {sw}{mark} | {st or "-"} | {len(runs)} | '
            f'{ms([r["valid"]["ndcg@20"] for r in runs])} | {ms(test)} | {pv} | '
            f'{ms([r["test"]["recall@20"] for r in runs])} | '
            f'{mean([r["best_epoch"] for r in runs], "{:.1f}")} | {upd} | {ent} | '
            f'{per} | {fn} | {mean(secs)} | {ms(best_test)} |')
    # test NDCG@20 of every run by seed, for pairing with runs kept elsewhere
    all_seeds = sorted({r['seed'] for runs in groups.values() for r in runs})
    lines += ['', 'Test NDCG@20 by seed:', '',
              '| variant | setting | ' + ' | '.join(f'seed {s}' for s in all_seeds) + ' |',
              '|---|---|' + '---|' * len(all_seeds)]
    for (sw, st) in sorted(groups):
        by_seed = {r['seed']: r['test']['ndcg@20'] for r in groups[(sw, st)]}
        lines.append(f'| {sw} | {st or "-"} | ' + ' | '.join(
            f'{by_seed[s]:.4f}' if s in by_seed else '-' for s in all_seeds) + ' |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + '\n')


if __name__ == '__main__':
    main()
