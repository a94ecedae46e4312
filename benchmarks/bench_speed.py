"""Speed table (issue 4, table 6): for each dataset and sampler, the MF
training-epoch wall time, the sampler's throughput (sampling only), the peak
memory, the full-ranking evaluation time and the KGPolicy/DNS epoch ratio;
KGPolicy also without the torch-scatter / torch-sparse fast paths
(``kgpolicy-noext``) and with the dense masked softmax over the padded
candidate rows instead of the scatter softmax (``kgpolicy-dense``, same
probabilities), and batch by batch (``kgpolicy-stepwise``, ``walk_ahead=1``:
each batch's walks drawn and its policy gradient accumulated on its own,
instead of 16 batches at a time; the same distribution), and with the
walk's and the policy gradient's element-wise chains compiled by
:func:`torch.compile` (``kgpolicy-compile``, ``kgpolicy-r64-compile``; the
compilation happens in the warm-up epoch, whose time the notes give as
``warm-up``).

    python benchmarks/bench_speed.py                       # ml-1m, amazon-book
    python benchmarks/bench_speed.py --datasets ml-1m --epochs 2
    python benchmarks/bench_speed.py --device cuda       # on a GPU

Every (dataset, sampler) runs in its own process (one thread unless
--threads), so that its peak resident memory (``ru_maxrss``) is its own:
"peak RSS" is the whole process (Python, torch, the dataset, the model, the
sampler's tables), "+train" the growth from the moment the dataset was
loaded. Epoch time: one warm-up epoch, then the minimum over --epochs
(evaluation excluded; KGPolicy from a fresh MF, co-training included).
Budget: --epochs timed epochs (default 1) per sampler and dataset.
With --device cuda, the timings synchronise the GPU and the notes give the
peak GPU memory (``torch.cuda.max_memory_allocated``).
"""
import argparse
import json
import resource
import subprocess
import sys
import time

import torch

from _common import dataset_dir, header

SAMPLERS = ['rns', 'pns', 'dns', 'adversarial', 'randomwalk', 'kgpolicy',
            'kgpolicy-noext', 'kgpolicy-dense', 'kgpolicy-stepwise',
            'kgpolicy-r64', 'kgpolicy-r1', 'kgpolicy-released',
            'kgpolicy-compile', 'kgpolicy-r64-compile']

#: KGPolicy's variants: the update schedules (a policy step every 64 batches,
#: the old default, or every batch, instead of every 8) and the released
#: code's rule and schedule (see benchmarks/kgpolicy_verdict.sh).
KGPOLICY = {
    'kgpolicy': {},
    'kgpolicy-noext': {'softmax_backend': 'pyg', 'aggr_backend': 'csr'},
    'kgpolicy-dense': {'softmax_backend': 'dense'},
    'kgpolicy-stepwise': {'walk_ahead': 1},
    'kgpolicy-r64': {'refresh_interval': 64},
    'kgpolicy-compile': {'compile': True},
    'kgpolicy-r64-compile': {'refresh_interval': 64, 'compile': True},
    'kgpolicy-r1': {'refresh_interval': 1},
    'kgpolicy-released': {'selection': 'recommender_max', 'pool_size': 32,
                          'n2': 64, 'num_random': 64, 'refresh_interval': 1,
                          'lr': 1e-4},
}


def rss_mb() -> float:
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def worker(args) -> None:
    from kgsampler import (DNS, MF, PNS, RNS, Adversarial, KGPolicy,
                           KGRecDataset, RandomWalk, Trainer)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    base = current_rss_mb()
    model = MF(ds.num_users, ds.num_items, 64)
    name = args.sampler
    if name == 'rns':
        sampler = RNS(ds.train_pos)
    elif name == 'pns':
        sampler = PNS(ds.train_pos)
    elif name == 'dns':
        sampler = DNS(ds.train_pos, num_candidates=8)
    elif name == 'adversarial':
        sampler = Adversarial(ds.train_pos)
    elif name == 'randomwalk':
        sampler = RandomWalk.from_dataset(ds)
    else:
        sampler = KGPolicy.from_dataset(ds, **KGPOLICY[name])
    trainer = Trainer(model, sampler, ds, batch_size=1024, progress=False,
                      track_dynamics=False, device=device)
    t0 = time.perf_counter()
    trainer.train_epoch(1)  # warm-up (KGPolicy: first representations)
    sync(device)
    warm = time.perf_counter() - t0
    times = []
    for e in range(args.epochs):
        sync(device)
        t0 = time.perf_counter()
        trainer.train_epoch(2 + e)
        sync(device)
        times.append(time.perf_counter() - t0)
    # throughput: sampling only, 50 batches of 1024 training pairs
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(ds.train_pos.nnz, (50, 1024), generator=g)
    idx = idx.to(device)
    users_all = ds.train_pos.row_ids().to(device)
    items_all = ds.train_pos.indices.to(device)
    with torch.no_grad():
        sync(device)
        t0 = time.perf_counter()
        for i in idx:
            sampler.sample(users_all[i], items_all[i])
        sync(device)
        tput = idx.numel() / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    trainer.evaluate('test')
    sync(device)
    ev = time.perf_counter() - t0
    extra = {}
    if isinstance(sampler, KGPolicy):
        extra = {'softmax': sampler.softmax_backend,
                 'aggregation': sampler.encoder.aggr_backend,
                 'walk_ahead': sampler.walk_ahead,
                 'refresh_interval': sampler.refresh_interval,
                 'selection': sampler.selection,
                 'compile': bool(sampler._kernels and
                                 sampler._kernels.compiled),
                 'warm': warm}
    if device.type == 'cuda':
        extra['gpu_mb'] = torch.cuda.max_memory_allocated(device) / 2**20
    print(json.dumps({'epoch': min(times), 'throughput': tput,
                      'peak_rss': rss_mb(), 'train_rss': rss_mb() - base,
                      'evaluate': ev, **extra}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--datasets', nargs='+', default=['ml-1m', 'amazon-book'])
    p.add_argument('--samplers', nargs='+', default=SAMPLERS,
                   choices=SAMPLERS)
    p.add_argument('--epochs', type=int, default=1)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--device', default='cpu',
                   help="'cpu' (default) or 'cuda'")
    p.add_argument('--worker', nargs=2, metavar=('DATASET', 'SAMPLER'),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.dataset, args.sampler = args.worker
        return worker(args)
    torch.set_num_threads(args.threads)
    header(f'speed per sampler (MF, batch 1024, {args.epochs} timed '
           f'epoch(s) after one warm-up, {args.threads} thread(s), '
           f'device {args.device})')
    if args.device.startswith('cuda'):
        print(f'# GPU: {torch.cuda.get_device_name(args.device)}')
    print(f'{"dataset":12s} {"sampler":18s} {"s/epoch":>8s} '
          f'{"x DNS":>6s} {"negatives/s":>12s} {"peak RSS":>9s} '
          f'{"+train":>8s} {"eval s":>7s}  notes')
    for d in args.datasets:
        rows = {}
        for s in args.samplers:
            out = subprocess.run(
                [sys.executable, __file__, '--worker', d, s, '--epochs',
                 str(args.epochs), '--threads', str(args.threads),
                 '--device', args.device],
                capture_output=True, text=True)
            if out.returncode != 0:
                print(f'{d:12s} {s:16s} failed: '
                      f'{out.stderr.strip().splitlines()[-1:]}')
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rows[s] = r
            ratio = (f'{r["epoch"] / rows["dns"]["epoch"]:6.2f}'
                     if 'dns' in rows else f'{"-":>6s}')
            notes = (f'softmax={r["softmax"]}, aggregation='
                     f'{r["aggregation"]}, walk_ahead={r["walk_ahead"]}, '
                     f'refresh_interval={r["refresh_interval"]}, '
                     f'selection={r["selection"]}'
                     if 'softmax' in r else '')
            if r.get('compile'):
                notes += f', compiled, warm-up {r["warm"]:.1f}s'
            if 'gpu_mb' in r:
                notes = f'peak GPU {r["gpu_mb"]:.0f}MB ' + notes
            print(f'{d:12s} {s:18s} {r["epoch"]:8.2f} {ratio} '
                  f'{r["throughput"]:12,.0f} {r["peak_rss"]:7.0f}MB '
                  f'{r["train_rss"]:6.0f}MB {r["evaluate"]:7.2f}  {notes}',
                  flush=True)


if __name__ == '__main__':
    main()
