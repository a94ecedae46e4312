"""Cost curve (issue 16): how the cost of training and evaluation grows from
10^5 to 10^7 training interactions, for RNS, DNS-8 and KGPolicy with MF
(batch 1024, one thread).

    python benchmarks/bench_cost_curve.py                  # 1e5 ... 1e7
    python benchmarks/bench_cost_curve.py --sizes 1e5 3e5 --samplers rns
    python benchmarks/bench_cost_curve.py --plot-only      # redraw the figure

**Data.** :func:`kgsampler.data.make_large_synthetic` (``N`` = the size):
:func:`kgsampler.make_synthetic` builds dense ``users x items`` boolean
matrices (``match``, ``near``, ``exposed``, ``chosen``, and one
``rand(U, I)`` draw), so its memory is O(U * I): at 10^7 interactions
(333K users x 267K items) each such matrix alone is 89 GB. It cannot make
these sizes, and it cannot be made sparse without changing its outputs for
existing seeds (its random stream draws U * I numbers).
``make_large_synthetic`` is sparse (O(interactions) memory) with the same
item and KG structure (items with one or two genres, one or two creators
and an era; creators with a main genre; Zipf popularities) and users who
like three creators: 75% of a user's draws are items of a liked creator,
25% popular items. Users, items, creators and genres all scale with the
size (``U = N / 30``, ``I = 0.8 U``, ``C = I / 10``, ``G = max(20, I / 100)``,
10 eras); the KG has about 3.5 triples per item. The per-user split holds
out 20% for test, then :class:`KGRecDataset` moves 10% of train to valid.

**Timing.** Every (size, sampler) runs in a fresh process (one thread).
Epoch time is *extrapolated*: after --warmup batches, --batches batches
(RNS/DNS) or --kgp-batches (KGPolicy, a multiple of its 8-batch policy
update) are timed and scaled by batches-per-epoch, plus the measured
:meth:`on_epoch_start` (KGPolicy redraws its neighbour tables there).
The batches run exactly as :meth:`Trainer.train_epoch` runs them (the
sampler's lookahead, the recommender's Adam step, the sampler's update).
Negatives/s: 50 batches of 1024 sampled without training (as in
bench_speed.py). Full-ranking evaluation time is *extrapolated* too: the
test split of a fixed random sample of --eval-users users (train and valid
masked, batches of --eval-batch users) is timed and scaled by
test-users / sample. Peak RSS is the process's ``VmHWM`` after training
(before the evaluation) and at the end (with the evaluation).
"""
import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from _common import ROOT, header

SAMPLERS = ['rns', 'dns', 'kgpolicy']
SIZES = ['1e5', '3e5', '1e6', '3e6', '1e7']
RESULTS = ROOT / 'benchmarks' / 'results'
FIGURE = ROOT / 'docs' / 'figures' / 'cost_curve.png'


# --------------------------------------------------------------- worker
def vm_hwm_mb() -> float:
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmHWM:'):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _nbytes(*ts) -> int:
    return sum(t.numel() * t.element_size() for t in ts if t is not None)


def run_batches(trainer, epoch: int, num_batches: int, perm) -> int:
    """The first :obj:`num_batches` batches of an epoch, as
    :meth:`Trainer.train_epoch` runs them (lookahead, recommender step,
    sampler update). Returns the batches run."""
    from kgsampler.train.trainer import _COMPONENTS, _NEVER
    trainer.model.train()
    sampler, bs = trainer.sampler, trainer.batch_size
    users_all, items_all = trainer._train_users, trainer.train_pos.indices
    trainer._first_bad = torch.full((len(_COMPONENTS), ), _NEVER,
                                    dtype=torch.long)
    sums, b, start = {}, 0, 0
    total_batches = math.ceil(perm.numel() / bs)
    num_batches = min(num_batches, total_batches)
    while b < num_batches:
        k = max(1, min(int(sampler.lookahead), num_batches - b))
        chunk = perm[start:start + k * bs]
        users, pos = users_all[chunk], items_all[chunk]
        out_all = sampler.sample(users, pos, 1)
        offset = 0
        for j in range(k):
            n = min(bs, chunk.numel() - offset)
            out = out_all if k == 1 else out_all.narrow(offset, n)
            trainer._train_batch(users.narrow(0, offset, n),
                                 pos.narrow(0, offset, n), out, sums,
                                 b + j + 1)
            offset += n
        b, start = b + k, start + offset
    return b


def worker(args) -> None:
    from kgsampler import DNS, MF, RNS, KGPolicy, Trainer
    from kgsampler.data import make_large_synthetic
    from kgsampler.data.csr import UserItemCSR
    from kgsampler.train.evaluate import evaluate
    torch.set_num_threads(1)
    torch.manual_seed(0)
    size = int(float(args.size))
    t0 = time.perf_counter()
    ds = make_large_synthetic(size)
    t_data = time.perf_counter() - t0
    rss_data = vm_hwm_mb()
    model = MF(ds.num_users, ds.num_items, 64)
    t0 = time.perf_counter()
    if args.sampler == 'rns':
        sampler = RNS(ds.train_pos)
    elif args.sampler == 'dns':
        sampler = DNS(ds.train_pos, num_candidates=8)
    else:
        sampler = KGPolicy.from_dataset(ds)
    t_build = time.perf_counter() - t0
    trainer = Trainer(model, sampler, ds, batch_size=1024, progress=False,
                      track_dynamics=False)
    n_train = ds.train_pos.nnz
    per_epoch = math.ceil(n_train / 1024)
    timed = args.kgp_batches if args.sampler == 'kgpolicy' else args.batches
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(n_train, generator=g)
    run_batches(trainer, 1, args.warmup, perm)  # warm-up
    t0 = time.perf_counter()
    sampler.on_epoch_start(2)  # KGPolicy: redraws its neighbour tables
    t_start = time.perf_counter() - t0
    perm = perm.roll(-args.warmup * 1024)
    t0 = time.perf_counter()
    done = run_batches(trainer, 2, timed, perm)
    t_batches = time.perf_counter() - t0
    epoch = t_start + t_batches * per_epoch / done
    # negatives/s: sampling only
    idx = torch.randint(n_train, (50, 1024), generator=g)
    users_all = ds.train_pos.row_ids()
    items_all = ds.train_pos.indices
    with torch.no_grad():
        t0 = time.perf_counter()
        for i in idx:
            sampler.sample(users_all[i], items_all[i])
        tput = idx.numel() / (time.perf_counter() - t0)
    rss_train = vm_hwm_mb()
    # full-ranking evaluation on a fixed user sample, scaled to all users
    test = ds.test_pos
    test_users = torch.nonzero(test.degree() > 0).view(-1)
    gs = torch.Generator().manual_seed(1)
    pick = test_users[torch.randperm(test_users.numel(), generator=gs)
                      [:args.eval_users]]
    keep = torch.zeros(ds.num_users, dtype=torch.bool)
    keep[pick] = True
    rows = test.row_ids()
    sel = keep[rows]
    gt = UserItemCSR.from_pairs(rows[sel], test.indices[sel], ds.num_users,
                                ds.num_items)
    model.eval()
    t0 = time.perf_counter()
    evaluate(model.full_scores, gt, [ds.train_pos, ds.valid_pos], ks=(20, ),
             batch_size=args.eval_batch)
    t_eval_sample = time.perf_counter() - t0
    t_eval = t_eval_sample * test_users.numel() / pick.numel()
    mem = sampler.is_pos
    extra = {}
    if isinstance(sampler, KGPolicy):
        p1, p2 = sampler._pruned if sampler._pruned is not None else (None,
                                                                      None)
        extra = {
            'kgp_tables': _nbytes(sampler._nbr1, sampler._nbr2),
            'kgp_pruned': _nbytes(p1, p2),
            'kgp_params': sum(_nbytes(p) for p in sampler.parameters()),
            'kgp_nodes': int(sampler.num_nodes),
            'kgp_edges': int(sampler.edge_index.size(1)),
        }
    print(json.dumps({
        'size': args.size, 'sampler': args.sampler,
        'users': ds.num_users, 'items': ds.num_items,
        'entities': ds.num_entities, 'triples': int(ds.kg.size(0))
        if hasattr(ds, 'kg') else None,
        'train': n_train, 'batches_per_epoch': per_epoch,
        'timed_batches': done, 'batch_s': t_batches / done,
        'epoch_start_s': t_start, 'epoch_s': epoch,
        'negatives_per_s': tput, 'eval_s': t_eval,
        'eval_sample_s': t_eval_sample, 'eval_users': int(pick.numel()),
        'test_users': int(test_users.numel()),
        'eval_score_bytes': args.eval_batch * ds.num_items * 4,
        'data_s': t_data, 'build_s': t_build,
        'rss_data_mb': rss_data, 'rss_train_mb': rss_train,
        'rss_peak_mb': vm_hwm_mb(),
        'membership': mem.method, 'membership_bytes': mem.nbytes,
        **extra}))


# ----------------------------------------------------------------- main
def load_rows(path: Path):
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.startswith('{'):
                rows.append(json.loads(line))
    return rows


def slope(rows, sampler, key, xkey='train'):
    import numpy as np
    pts = [(r[xkey], r[key]) for r in rows if r['sampler'] == sampler]
    if len(pts) < 2:
        return float('nan')
    x, y = np.log10([p[0] for p in pts]), np.log10([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])


def plot(rows, path: Path) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    panels = [('epoch_s', 'epoch time (s, extrapolated)'),
              ('eval_s', 'full-ranking eval (s, extrapolated)'),
              ('rss_peak_mb', 'peak RSS (MB)')]
    for ax, (key, title) in zip(axes, panels):
        for s, m in zip(SAMPLERS, 'osD'):
            pts = sorted((r['train'], r[key]) for r in rows
                         if r['sampler'] == s)
            if not pts:
                continue
            ax.loglog(*zip(*pts), marker=m,
                      label=f'{s} (slope {slope(rows, s, key):.2f})')
        ax.set_title(title, fontsize=9)
        ax.set_xlabel('training interactions', fontsize=8)
        ax.grid(True, which='both', alpha=0.3)
        ax.legend(fontsize=7)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)


def table(rows) -> None:
    print(f'{"size":>5s} {"sampler":9s} {"users":>7s} {"items":>7s} '
          f'{"train":>9s} {"s/batch":>8s} {"s/epoch*":>9s} '
          f'{"neg/s":>9s} {"eval s*":>8s} {"RSS train":>9s} '
          f'{"RSS peak":>9s} {"filter":>15s} {"KGP tables":>11s}')
    for r in rows:
        kgp = (f'{(r["kgp_tables"] + r["kgp_pruned"]) / 2**20:9.0f}MB'
               if 'kgp_tables' in r else f'{"-":>11s}')
        print(f'{r["size"]:>5s} {r["sampler"]:9s} {r["users"]:7d} '
              f'{r["items"]:7d} {r["train"]:9d} {r["batch_s"]:8.4f} '
              f'{r["epoch_s"]:9.1f} {r["negatives_per_s"]:9,.0f} '
              f'{r["eval_s"]:8.1f} {r["rss_train_mb"]:7.0f}MB '
              f'{r["rss_peak_mb"]:7.0f}MB {r["membership"]:>6s} '
              f'{r["membership_bytes"] / 2**20:6.0f}MB {kgp}')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--sizes', nargs='+', default=SIZES)
    p.add_argument('--samplers', nargs='+', default=SAMPLERS,
                   choices=SAMPLERS)
    p.add_argument('--warmup', type=int, default=16)
    p.add_argument('--batches', type=int, default=200)
    p.add_argument('--kgp-batches', type=int, default=96)
    p.add_argument('--eval-users', type=int, default=2048)
    p.add_argument('--eval-batch', type=int, default=1024)
    p.add_argument('--results', default=str(RESULTS / 'cost_curve.txt'),
                   help='with --plot-only: the saved output to read')
    p.add_argument('--figure', default=str(FIGURE),
                   help='where the figure is written')
    p.add_argument('--plot-only', action='store_true')
    p.add_argument('--worker', nargs=2, metavar=('SIZE', 'SAMPLER'),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.size, args.sampler = args.worker
        return worker(args)
    path = Path(args.results)
    if args.plot_only:
        rows = load_rows(path)
    else:
        torch.set_num_threads(1)
        header('cost curve (MF, batch 1024, 1 thread; epoch and evaluation '
               'times extrapolated, see the docstring)')
        print(f'# load average at start: {os.getloadavg()}', flush=True)
        rows = []
        for size in args.sizes:
            for s in args.samplers:
                t0 = time.perf_counter()
                out = subprocess.run(
                    [sys.executable, __file__, '--worker', size, s,
                     '--warmup', str(args.warmup), '--batches',
                     str(args.batches), '--kgp-batches',
                     str(args.kgp_batches), '--eval-users',
                     str(args.eval_users), '--eval-batch',
                     str(args.eval_batch)], capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if out.returncode != 0:
                    print(f'# {size} {s} failed (rc {out.returncode}): '
                          f'{out.stderr.strip().splitlines()[-1:]}',
                          flush=True)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                r['wall_s'] = wall
                r['load'] = os.getloadavg()[0]
                rows.append(r)
                print(json.dumps(r), flush=True)
        print(f'# load average at end: {os.getloadavg()}')
    table(rows)
    for key in ('epoch_s', 'eval_s', 'rss_peak_mb', 'batch_s'):
        print(f'# log-log slope of {key} vs training interactions: ' +
              ', '.join(f'{s} {slope(rows, s, key):.2f}' for s in SAMPLERS
                        if any(r['sampler'] == s for r in rows)))
    plot(rows, Path(args.figure))


if __name__ == '__main__':
    main()
