"""KGPolicy speed on ml-1m: sampler throughput and co-training epoch time
against MF+RNS and MF+DNS epochs measured in the same run (interleaved, one
epoch of each in turn, so that machine noise hits all alike).

    python benchmarks/bench_kgpolicy.py --threads 1            # defaults
    python benchmarks/bench_kgpolicy.py --threads 1 --no-extensions
    python benchmarks/bench_kgpolicy.py --threads 1 --refresh-interval 16 \\
        --pg-fraction 1 0.25
    python benchmarks/bench_kgpolicy.py --threads 1 --refresh-interval 64 \\
        --compile both      # eager and torch.compile'd kernels, interleaved

Prints the thread count, whether torch-scatter / torch-sparse are installed
(and used), the sampler throughput (negatives/s, sampling only), the epoch
time of MF+RNS, MF+DNS and MF+KGPolicy (the minimum over --epochs) for the
default config and for each refresh interval (default 4, 16, 64), and the
ratio KGPolicy/DNS. The project's target is a KGPolicy epoch at most 2x an
MF+DNS epoch (batch 1024, T=2, defaults). --no-extensions forces the pure
PyTorch/PyG back ends (softmax 'pyg', aggregation 'csr').
"""
import argparse
import os
import platform
import time

import torch

from kgsampler.data import KGRecDataset
from kgsampler.recommender import MF
from kgsampler.sampler import DNS, RNS, KGPolicy
from kgsampler.sampler import _kgpolicy_graph as kg_graph
from kgsampler.train import Trainer
from kgsampler.utils import _softmax

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.normpath(
    os.path.join(HERE, '..', '..', 'shared', 'datasets', 'ml-1m'))


def throughput(dataset, sampler, args, repeats=20):
    torch.manual_seed(0)
    sampler.set_scorer(MF(dataset.num_users, dataset.num_items))
    users_all = dataset.train_pos.row_ids()
    items_all = dataset.train_pos.indices
    idx = torch.randperm(users_all.numel())[:args.batch_size]
    users, pos = users_all[idx], items_all[idx]
    sampler.sample(users, pos, 1)  # warm-up, computes representations
    t0 = time.perf_counter()
    for _ in range(repeats):
        sampler.sample(users, pos, 1)
    dt = time.perf_counter() - t0
    return repeats * args.batch_size / dt


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', default=DEFAULT_DATA)
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--steps', type=int, default=2)
    p.add_argument('--epochs', type=int, default=2,
                   help='epochs timed per sampler (the minimum is reported)')
    p.add_argument('--refresh-interval', type=int, nargs='+',
                   default=[4, 16, 64],
                   help='KGPolicy refresh intervals to time besides the '
                   'default config')
    p.add_argument('--pg-fraction', type=float, nargs='+', default=[None],
                   help="KGPolicy pg_fraction values (default: the "
                   "sampler's default)")
    p.add_argument('--softmax-backend', default='auto')
    p.add_argument('--aggr-backend', default='auto')
    p.add_argument('--no-extensions', action='store_true',
                   help="force the pure PyTorch/PyG back ends (softmax "
                   "'pyg', aggregation 'csr')")
    p.add_argument('--compile', choices=['off', 'on', 'both'], default='off',
                   help="KGPolicy's compile option: off (default), on, or "
                   "both (each KGPolicy config eager and compiled; the "
                   "compilation falls in the throughput warm-up and the "
                   "first epoch)")
    p.add_argument('--threads', type=int, default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_extensions:
        args.softmax_backend, args.aggr_backend = 'pyg', 'csr'

    dataset = KGRecDataset.from_kgat(args.data)
    print(f'dataset: {dataset}')
    print(f'torch {torch.__version__}, threads={torch.get_num_threads()}, '
          f'{platform.processor() or platform.machine()}')
    print(f'torch-scatter installed: {_softmax.HAS_TORCH_SCATTER}, '
          f'torch-sparse installed: {kg_graph.HAS_TORCH_SPARSE}, '
          f'--no-extensions: {args.no_extensions}')

    configs = [('RNS', lambda: RNS(dataset.train_pos)),
               ('DNS', lambda: DNS(dataset.train_pos))]
    kgp = []
    compiles = {'off': [False], 'on': [True], 'both': [False, True]}[
        args.compile]
    for f, k, c in [(f, k, c) for f in args.pg_fraction
                    for k in [None] + list(args.refresh_interval)
                    for c in compiles]:
        kw = dict(steps=args.steps, softmax_backend=args.softmax_backend,
                  aggr_backend=args.aggr_backend)
        if k is not None:
            kw['refresh_interval'] = k
        if f is not None:
            kw['pg_fraction'] = f
        if c:
            kw['compile'] = True
        name = 'KGPolicy(' + ('default' if k is None and f is None and
                              not c else
                              ', '.join(f'{a}={b}' for a, b in kw.items()
                                        if a in ('refresh_interval',
                                                 'pg_fraction',
                                                 'compile'))) + ')'
        kgp.append(name)
        configs.append((name, lambda kw=kw: KGPolicy.from_dataset(
            dataset, **kw)))

    trainers, tput, extra = {}, {}, {}
    for name, make in configs:
        torch.manual_seed(0)
        t0 = time.perf_counter()
        sampler = make()
        build = time.perf_counter() - t0
        if isinstance(sampler, KGPolicy):
            t0 = time.perf_counter()
            tput[name] = throughput(dataset, sampler, args)
            build = (build, time.perf_counter() - t0)
            sampler.reset_stats()
            extra[name] = (build, sampler)
        torch.manual_seed(0)
        model = MF(dataset.num_users, dataset.num_items)
        trainers[name] = Trainer(model, sampler, dataset,
                                 batch_size=args.batch_size, progress=False,
                                 track_dynamics=False)
    times = {name: [] for name, _ in configs}
    for e in range(1, args.epochs + 1):  # interleaved
        for name, _ in configs:
            t0 = time.perf_counter()
            trainers[name].train_epoch(e)
            times[name].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in times.items()}
    print(f'MF+RNS epoch: {best["RNS"]:.2f} s')
    print(f'MF+DNS epoch: {best["DNS"]:.2f} s')
    for name in kgp:
        build, s = extra[name]
        st = s.summary_stats()
        compiled = s._kernels is not None and s._kernels.compiled
        print(f'{name}: softmax={s.softmax_backend}, aggregation='
              f'{s.encoder.aggr_backend}, refresh_interval='
              f'{s.refresh_interval}, pg_fraction={s.pg_fraction}, '
              f'compiled={compiled}; build {build[0]:.2f} s, throughput '
              f'probe (with the first compilation) {build[1]:.1f} s, '
              f'sampler throughput {tput[name]:,.0f} '
              f'negatives/s, epoch {best[name]:.2f} s (all: '
              f'{", ".join(f"{t:.2f}" for t in times[name])}), '
              f'KGPolicy/DNS = {best[name] / best["DNS"]:.2f}, '
              f'KGPolicy/RNS = {best[name] / best["RNS"]:.2f}; fallback_rate '
              f'{st["fallback_rate"]:.4f}, random_pick_rate '
              f'{st["random_pick_rate"]:.3f}, updates/epoch '
              f'{st["num_updates"] / args.epochs:.0f}')

    encoder_times(dataset)


def encoder_times(dataset, repeats: int = 3):
    """Forward + backward of the 2-layer SAGEConv encoder over the whole
    collaborative KG, per aggregation back end (best of :obj:`repeats`)."""
    edge_index, _, _ = kg_graph.collaborative_graph(dataset)
    num_nodes = dataset.num_users + dataset.num_entities
    backends = ['csr', 'scatter'] + (['torch_sparse']
                                     if kg_graph.HAS_TORCH_SPARSE else [])
    outs = {}
    for backend in backends:
        torch.manual_seed(0)
        enc = kg_graph.GraphEncoder(num_nodes, edge_index,
                                        aggr_backend=backend)
        best = float('inf')
        for _ in range(repeats + 1):  # first call warms up
            t0 = time.perf_counter()
            h = enc()
            h.pow(2).sum().backward()
            best = min(best, time.perf_counter() - t0)
        outs[backend] = h.detach()
        print(f'encoder forward+backward ({num_nodes:,} nodes, '
              f'{edge_index.size(1):,} edges), aggregation {backend}: '
              f'{1000 * best:.0f} ms')
    ref = outs['csr']
    print('max |difference| to csr: ' + ', '.join(
        f'{k} {float((v - ref).abs().max()):.1e}' for k, v in outs.items()
        if k != 'csr'))


if __name__ == '__main__':
    main()
