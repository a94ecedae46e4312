"""Dense Adam against sparse embedding gradients with SparseAdam for MF
(benchmarks/results/sparse_adam.md).

Three measurements, each appending one JSON line per result to --out:

* ``--steps N``: one training step (MF loss, backward, optimiser step) on a
  batch of 1024 training pairs, ``dense`` (``MF(sparse=False)``, Adam on
  every embedding row every step) against ``sparse`` (``MF(sparse=True)``,
  SparseAdam on the batch's rows), the two interleaved step by step in one
  process; best and median of N.
* ``--timing N``: whole training epochs (RNS), interleaved the same way
  (dense epoch, sparse epoch, ...), after one warm-up epoch each.
* otherwise, quality: for each sampler and seed, MF trained with each arm
  (back to back in one process, one thread) for --max-epochs epochs (or
  until --budget seconds, or --patience evaluations without improvement),
  the epoch chosen on validation NDCG@20; its test NDCG@20 and recall@20,
  the mean training seconds per epoch, the epochs run, why it stopped and
  the validation curve.

    python benchmarks/bench_sparse.py --dataset amazon-book --steps 30
    python benchmarks/bench_sparse.py --dataset ml-1m --timing 3
    python benchmarks/bench_sparse.py --dataset ml-1m --max-epochs 20 \
        --eval-every 2
    python benchmarks/bench_sparse.py --report /tmp/sparse.jsonl

--report prints per (dataset, sampler, arm) the mean +- sd over seeds, the
paired t-test (scipy.stats.ttest_rel) of test NDCG@20 sparse vs dense, and
the dense/sparse time ratios. Run from the checkout with PYTHONPATH=src (or
an installed kgsampler of this version).
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

from _common import dataset_dir, header


def run_one(ds, dataset, sampler_name, arm, seed, args):
    from kgsampler import DNS, MF, RNS, Trainer
    torch.manual_seed(seed)
    model = MF(ds.num_users, ds.num_items, 64, reg=1e-2,
               sparse=(arm == 'sparse'))
    if sampler_name == 'rns':
        sampler = RNS(ds.train_pos)
    else:
        sampler = DNS(ds.train_pos, num_candidates=8)
    trainer = Trainer(model, sampler, ds, lr=args.lr, batch_size=1024,
                      max_epochs=args.max_epochs, patience=args.patience,
                      eval_every=args.eval_every, progress=False,
                      track_dynamics=False, time_budget=args.budget,
                      optimizer='auto')
    t0 = time.perf_counter()
    res = trainer.fit()
    wall = time.perf_counter() - t0
    curve = [(row['epoch'], row.get('valid_ndcg@20'))
             for row in res.history if 'valid_ndcg@20' in row]
    return {
        'dataset': dataset, 'sampler': sampler_name, 'arm': arm,
        'seed': seed, 'budget_s': args.budget, 'lr': args.lr,
        'optimizer': type(trainer.optimizer).__name__,
        'best_epoch': res.best_epoch, 'epochs_run': res.epochs_run,
        'stopped_by': res.stopped_by,
        's_per_epoch': statistics.mean(res.epoch_seconds),
        'valid_ndcg@20': res.valid['ndcg@20'],
        'test_ndcg@20': res.test['ndcg@20'],
        'test_recall@20': res.test['recall@20'],
        'wall_s': wall, 'valid_curve': curve,
    }


def timing(ds, dataset, args):
    """Training seconds per epoch of the two arms, measured interleaved in
    one process (dense epoch, sparse epoch, dense epoch, ...) so that a
    change of the machine's load hits both; the minimum and the median over
    --timing epochs per arm (after one warm-up epoch each)."""
    from kgsampler import MF, RNS, Trainer
    trainers = {}
    for arm in ('dense', 'sparse'):
        torch.manual_seed(0)
        model = MF(ds.num_users, ds.num_items, 64, sparse=(arm == 'sparse'))
        trainers[arm] = Trainer(model, RNS(ds.train_pos), ds, lr=args.lr,
                                batch_size=1024, progress=False,
                                track_dynamics=False)
    times = {arm: [] for arm in trainers}
    for e in range(args.timing + 1):
        for arm, t in trainers.items():
            t0 = time.perf_counter()
            t.train_epoch(e + 1)
            if e > 0:
                times[arm].append(time.perf_counter() - t0)
    row = {'dataset': dataset, 'mode': 'timing', 'epochs': args.timing,
           'load1': os.getloadavg()[0]}
    for arm, ts in times.items():
        row[f'{arm}_min_s'] = min(ts)
        row[f'{arm}_median_s'] = statistics.median(ts)
    row['ratio_min'] = row['dense_min_s'] / row['sparse_min_s']
    row['ratio_median'] = row['dense_median_s'] / row['sparse_median_s']
    return row


def step_timing(ds, dataset, args):
    """Seconds of one MF training step (loss, backward, optimiser step) on
    a batch of 1024 training pairs with uniform negatives, dense Adam
    against SparseAdam, interleaved; best and median of --steps steps."""
    from kgsampler import MF
    from kgsampler.train._optim import build_optimizer
    arms = {}
    for arm in ('dense', 'sparse'):
        torch.manual_seed(0)
        model = MF(ds.num_users, ds.num_items, 64, sparse=(arm == 'sparse'))
        arms[arm] = (model, build_optimizer(model, 'auto', lr=args.lr))
    g = torch.Generator().manual_seed(0)
    users_all = ds.train_pos.row_ids()
    items_all = ds.train_pos.indices
    times = {arm: [] for arm in arms}
    for k in range(args.steps + 3):
        idx = torch.randint(users_all.numel(), (1024, ), generator=g)
        neg = torch.randint(ds.num_items, (1024, 1), generator=g)
        for arm, (model, opt) in arms.items():
            t0 = time.perf_counter()
            loss = model.loss(users_all[idx], items_all[idx], neg)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if k >= 3:
                times[arm].append(time.perf_counter() - t0)
    row = {'dataset': dataset, 'mode': 'step', 'steps': args.steps,
           'load1': os.getloadavg()[0]}
    for arm, ts in times.items():
        row[f'{arm}_min_ms'] = 1e3 * min(ts)
        row[f'{arm}_median_ms'] = 1e3 * statistics.median(ts)
    row['ratio_min'] = row['dense_min_ms'] / row['sparse_min_ms']
    row['ratio_median'] = row['dense_median_ms'] / row['sparse_median_ms']
    return row


def report(path):
    from scipy.stats import ttest_rel
    rows = [json.loads(line) for line in open(path) if line.strip()]
    for r in rows:
        if r.get('mode') == 'timing':
            print(f"- {r['dataset']} epoch time (interleaved, {r['epochs']} "
                  f"epochs an arm, load {r['load1']:.1f}): dense min "
                  f"{r['dense_min_s']:.2f} s / median "
                  f"{r['dense_median_s']:.2f} s, sparse min "
                  f"{r['sparse_min_s']:.2f} s / median "
                  f"{r['sparse_median_s']:.2f} s: dense / sparse = "
                  f"{r['ratio_min']:.2f}x (min), {r['ratio_median']:.2f}x "
                  f"(median)")
        if r.get('mode') == 'step':
            print(f"- {r['dataset']} one step (interleaved, {r['steps']} "
                  f"steps an arm, load {r['load1']:.1f}): dense min "
                  f"{r['dense_min_ms']:.1f} ms / median "
                  f"{r['dense_median_ms']:.1f} ms, sparse min "
                  f"{r['sparse_min_ms']:.1f} ms / median "
                  f"{r['sparse_median_ms']:.1f} ms: dense / sparse = "
                  f"{r['ratio_min']:.2f}x (min), {r['ratio_median']:.2f}x "
                  f"(median)")
    rows = [r for r in rows if r.get('mode') not in ('timing', 'step')]
    print()
    groups = {}
    for r in rows:
        groups.setdefault((r['dataset'], r['sampler']), []).append(r)
    print('| dataset | sampler | arm | n | valid ndcg@20 | test ndcg@20 | '
          'test recall@20 | best epoch | epochs run | s/epoch | stopped by |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')

    def ms(xs, f='.4f'):
        sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
        return f'{statistics.mean(xs):{f}} ± {sd:{f}}'
    notes = []
    for (d, s), rs in groups.items():
        by = {}
        for arm in ('dense', 'sparse'):
            a = sorted((r for r in rs if r['arm'] == arm),
                       key=lambda r: r['seed'])
            by[arm] = a
            if not a:
                continue
            stop = ','.join(sorted({r['stopped_by'] for r in a}))
            print(f"| {d} | {s} | {arm} | {len(a)} | "
                  f"{ms([r['valid_ndcg@20'] for r in a])} | "
                  f"{ms([r['test_ndcg@20'] for r in a])} | "
                  f"{ms([r['test_recall@20'] for r in a])} | "
                  f"{ms([r['best_epoch'] for r in a], '.1f')} | "
                  f"{ms([r['epochs_run'] for r in a], '.1f')} | "
                  f"{ms([r['s_per_epoch'] for r in a], '.2f')} | {stop} |")
        seeds = sorted({r['seed'] for r in by['dense']}
                       & {r['seed'] for r in by['sparse']})
        if seeds:
            de = {r['seed']: r for r in by['dense']}
            sp = {r['seed']: r for r in by['sparse']}
            x = [sp[k]['test_ndcg@20'] for k in seeds]
            y = [de[k]['test_ndcg@20'] for k in seeds]
            ratio = [de[k]['s_per_epoch'] / sp[k]['s_per_epoch']
                     for k in seeds]
            p = ttest_rel(x, y).pvalue if len(seeds) > 1 else float('nan')
            diff = statistics.mean(a - b for a, b in zip(x, y))
            notes.append(f'- {d} / {s}: test NDCG@20 sparse - dense = '
                         f'{diff:+.4f} (paired t-test over seeds {seeds}: '
                         f'p = {p:.3g}); epoch time dense / sparse = '
                         f'{statistics.mean(ratio):.2f}x')
    print()
    print('\n'.join(notes))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--samplers', nargs='+', default=['rns'],
                   choices=['rns', 'dns'])
    p.add_argument('--seeds', nargs='+', type=int, default=[1, 2, 3])
    p.add_argument('--arms', nargs='+', default=['dense', 'sparse'],
                   choices=['dense', 'sparse'])
    p.add_argument('--budget', type=float, default=None,
                   help='wall-clock seconds per run (Trainer.time_budget; '
                        'default: none, --max-epochs decides)')
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--max-epochs', type=int, default=1000)
    p.add_argument('--patience', type=int, default=20)
    p.add_argument('--eval-every', type=int, default=1)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default='/tmp/sparse.jsonl')
    p.add_argument('--report', default=None, metavar='JSONL')
    p.add_argument('--timing', type=int, default=0, metavar='EPOCHS',
                   help='only time EPOCHS epochs an arm, interleaved')
    p.add_argument('--steps', type=int, default=0, metavar='STEPS',
                   help='only time STEPS training steps an arm, '
                        'interleaved')
    args = p.parse_args()
    if args.report:
        report(args.report)
        return
    torch.set_num_threads(args.threads)
    from kgsampler import KGRecDataset
    header(f'bench_sparse {args.dataset} budget {args.budget} s, '
           f'max_epochs {args.max_epochs}, eval_every {args.eval_every} '
           f'(load {os.getloadavg()[0]:.1f})')
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    if args.timing or args.steps:
        r = (timing if args.timing else step_timing)(ds, args.dataset, args)
        with open(args.out, 'a') as f:
            f.write(json.dumps(r) + '\n')
        print(json.dumps(r), flush=True)
        return
    for s in args.samplers:
        for seed in args.seeds:
            for arm in args.arms:
                r = run_one(ds, args.dataset, s, arm, seed, args)
                r['load1'] = os.getloadavg()[0]
                with open(args.out, 'a') as f:
                    f.write(json.dumps(r) + '\n')
                print(json.dumps({k: v for k, v in r.items()
                                  if k != 'valid_curve'}), flush=True)
                sys.stdout.flush()


if __name__ == '__main__':
    main()
