"""Sampler throughput (negatives per second at batch 1024, positive filter
included) and MF training-epoch time per sampler, on ml-1m (or another KGAT
folder).

    python benchmarks/bench_samplers.py [--dataset ml-1m] [--threads 1]
"""
import argparse

import torch

from _common import dataset_dir, header, timeit
from kgsampler import DNS, MF, PNS, RNS, KGRecDataset, Trainer


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--batches', type=int, default=200)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    header(f'sampler throughput on {ds.name}, batch {args.batch_size}')
    users_all, items_all = ds.train_pos.row_ids(), ds.train_pos.indices
    idx = torch.randint(users_all.numel(),
                        (args.batches, args.batch_size))
    batches = [(users_all[i], items_all[i]) for i in idx]
    model = MF(ds.num_users, ds.num_items, 64)
    model.requires_grad_(False)
    configs = [
        ('RNS (auto filter: dense)', RNS(ds.train_pos)),
        ('RNS (bitmap filter)', RNS(ds.train_pos, membership='bitmap')),
        ('RNS (searchsorted filter)', RNS(ds.train_pos, membership='search')),
        ('PNS alpha=1', PNS(ds.train_pos)),
        ('DNS-8', DNS(ds.train_pos, scorer=model, num_candidates=8)),
        ('DNS-32', DNS(ds.train_pos, scorer=model, num_candidates=32)),
        ('DNS-32 (bitmap filter)',
         DNS(ds.train_pos, scorer=model, num_candidates=32,
             membership='bitmap')),
        ('DNS-32 (searchsorted filter)',
         DNS(ds.train_pos, scorer=model, num_candidates=32,
             membership='search')),
    ]
    print(f'{"sampler":32s} {"negatives/s":>14s}')
    for name, sampler in configs:
        def run():
            for u, i in batches:
                sampler.sample(u, i)
        sec = timeit(run, repeat=3)
        print(f'{name:32s} {args.batches * args.batch_size / sec:14,.0f}')

    print(f'\nMF training epoch ({ds.train_pos.nnz:,} interactions, batch '
          f'{args.batch_size}, evaluation and per-epoch diagnostics '
          f'excluded; best of 3 epochs)')
    print(f'{"sampler":32s} {"s/epoch":>10s}')
    for name, make in [('RNS', lambda: RNS(ds.train_pos)),
                       ('PNS', lambda: PNS(ds.train_pos)),
                       ('DNS-8', lambda: DNS(ds.train_pos, num_candidates=8)),
                       ('DNS-32', lambda: DNS(ds.train_pos,
                                              num_candidates=32))]:
        mf = MF(ds.num_users, ds.num_items, 64)
        trainer = Trainer(mf, make(), ds, batch_size=args.batch_size,
                          progress=False, track_dynamics=False)
        sec = timeit(lambda: trainer.train_epoch(1), repeat=3, warmup=0)
        print(f'{name:32s} {sec:10.2f}')


if __name__ == '__main__':
    main()
