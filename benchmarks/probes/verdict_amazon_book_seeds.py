"""The amazon-book KGPolicy verdict over seeds 1-3: seed 1's rows from the report it wrote at
commit 36231af (``benchmarks/results/kgpolicy_verdict_amazon-book.md``, run at commit 14821a6;
its run folders were lost with a machine reset) and seeds 2-3 from the runs of
``SEEDS=2|3 EXTRA='hydra.sweep.subdir=s${seed}_${hydra.job.num}' bash benchmarks/kgpolicy_verdict.sh
amazon-book``, paired by seed (scipy's ``ttest_rel`` against DNS-8).

    python benchmarks/probes/verdict_amazon_book_seeds.py [multirun/verdict/amazon-book]
"""
import statistics
import sys
from pathlib import Path

from scipy.stats import ttest_rel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kgpolicy_verdict import load as load_groups  # noqa: E402

# variant -> (valid NDCG@20, test NDCG@20, test recall@20) of seed 1
SEED1 = {'rns': (0.0753, 0.0520, 0.1022), 'dns-8': (0.0788, 0.0558, 0.1090),
         'dns-16': (0.0813, 0.0578, 0.1124), 'dns-32': (0.0840, 0.0600, 0.1164),
         'text': (0.0505, 0.0407, 0.0774), 'released_rule': (0.0659, 0.0510, 0.1012)}
ORDER = ('rns', 'dns-8', 'dns-16', 'dns-32', 'text', 'released_rule')


def load(folder: Path):
    """variant -> seed -> (valid NDCG@20, test NDCG@20, test recall@20) of the completed runs,
    read by ``kgpolicy_verdict.load`` (DNS named by its ``num_candidates``)."""
    runs = {}
    for (sweep, setting), ms_ in load_groups(folder).items():
        name = sweep + ('-' + setting.split('=')[1] if sweep == 'dns' else '')
        for m in ms_:
            runs.setdefault(name, {})[m['seed']] = (
                m['valid']['ndcg@20'], m['test']['ndcg@20'], m['test']['recall@20'])
    return runs


def ms(xs):
    if len(xs) == 1:
        return f'{xs[0]:.4f}'
    return f'{statistics.fmean(xs):.4f} ± {statistics.stdev(xs):.4f}'


def main():
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else 'multirun/verdict/amazon-book')
    runs = load(folder)
    per_variant = {v: {1: SEED1[v], **runs.get(v, {})} for v in ORDER}
    ref = {s: x[1] for s, x in per_variant['dns-8'].items()}
    print('| row | seed 1 | seed 2 | seed 3 | n | valid NDCG@20 | test NDCG@20 | vs DNS-8 | p '
          '| test recall@20 |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for v in ORDER:
        per = per_variant[v]
        seeds = sorted(per)
        test = [per[s][1] for s in seeds]
        base = [ref[s] for s in seeds]
        rel = p = '-'
        if v != 'dns-8':
            rel = f'{statistics.fmean(test) / statistics.fmean(base) - 1:+.1%}'
            if len(seeds) > 1:
                p = f'{ttest_rel(test, base).pvalue:.3f}'
        cells = ' | '.join(f'{per[s][1]:.4f}' if s in per else '-' for s in (1, 2, 3))
        print(f'| {v} | {cells} | {len(seeds)} | {ms([per[s][0] for s in seeds])} | '
              f'{ms(test)} | {rel} | {p} | {ms([per[s][2] for s in seeds])} |')


if __name__ == '__main__':
    main()
