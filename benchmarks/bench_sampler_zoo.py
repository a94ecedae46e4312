"""Every sampler's throughput and training-epoch cost beside RNS and DNS-8,
in one process (one thread by default), on ml-1m (or another KGAT folder).

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_sampler_zoo.py [--dataset ml-1m]

Part 1, negatives/s: ``sample()`` on the same 100 batches of 1,024 training
pairs (the positive filter included), the recommender an untrained MF
(LightGCN for MixGCF, whose ``sample()`` mixes its per-layer embeddings);
learnable samplers are not updated here. Part 2, seconds per training epoch
(sampling, the sampler's own update, the recommender's step; evaluation
excluded) with MF, and for MixGCF with LightGCN beside LightGCN + RNS / DNS-8,
best of ``--repeat`` epochs after one warm-up epoch; the ratio column divides
by RNS's epoch with the same recommender, measured in this run. Settings: the
leaderboard's entries (conf/leaderboard/), the knob at the first grid value.
"""
import argparse
import warnings

import torch

from _common import dataset_dir, header, timeit
from kgsampler import KGRecDataset, Trainer
from kgsampler.recommender import MF, LightGCN
from kgsampler.sampler import (AHNS, DENS, DNS, DNSMN, NMRN, PNS, RNS, SRNS,
                               Adversarial, AdvIR, KGPolicy, MixGCF,
                               RandomWalk, SoftmaxNS)

#: (name, class, arguments, recommender): the leaderboard's settings
SAMPLERS = [
    ('RNS', RNS, {}, 'mf'),
    ('PNS alpha=0.5', PNS, {'alpha': 0.5}, 'mf'),
    ('DNS-8', DNS, {'num_candidates': 8}, 'mf'),
    ('DNS(M,N) M=5 N=200', DNSMN, {'num_candidates': 200, 'top_m': 5}, 'mf'),
    ('Softmax(rho,N) rho=0.1 N=200', SoftmaxNS,
     {'num_candidates': 200, 'rho': 0.1}, 'mf'),
    ('AHNS N=32', AHNS, {'num_candidates': 32, 'beta': 0.1}, 'mf'),
    ('SRNS', SRNS, {'memory_size': 8, 'num_refresh': 64, 'pool_size': 1000,
                    'warmup': 10, 'temperature': 1.0}, 'mf'),
    ('RandomWalk T=1', RandomWalk, {'steps': 1}, 'mf'),
    ('Adversarial M=4', Adversarial, {'num_candidates': 4}, 'mf'),
    ('AdvIR M=4 (with MF)', AdvIR, {'num_candidates': 4}, 'mf'),
    ('NMRN M=4', NMRN, {'num_candidates': 4}, 'mf'),
    ('DENS N=8', DENS, {'num_candidates': 8, 'warmup': 20}, 'mf'),
    ('KGPolicy', KGPolicy, {}, 'mf'),
    ('RNS', RNS, {}, 'lightgcn'),
    ('DNS-8', DNS, {'num_candidates': 8}, 'lightgcn'),
    ('MixGCF M=16', MixGCF, {'num_candidates': 16}, 'lightgcn'),
]


def model_for(ds, rec: str):
    if rec == 'mf':
        return MF(ds.num_users, ds.num_items, 64)
    return LightGCN(ds.num_users, ds.num_items, ds.train_pos, 64)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--batches', type=int, default=100)
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--skip-epochs', action='store_true',
                   help='part 1 only')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    header(f'every sampler on {ds.name}: negatives/s at batch '
           f'{args.batch_size} and s/epoch ({ds.train_pos.nnz:,} training '
           f'pairs)')
    users_all, items_all = ds.train_pos.row_ids(), ds.train_pos.indices
    idx = torch.randint(users_all.numel(), (args.batches, args.batch_size))
    batches = [(users_all[i], items_all[i]) for i in idx]
    print(f'{"sampler":30s} {"recommender":>11s} {"negatives/s":>13s} '
          f'{"vs DNS-8":>9s}')
    rates = {}
    # sample() without update() is what part 1 measures: the learnable
    # samplers' reminder to call update() is silenced here
    warnings.filterwarnings('ignore', message='.*without update',
                            category=RuntimeWarning)
    for name, cls, kw, rec in SAMPLERS:
        torch.manual_seed(0)
        model = model_for(ds, rec)
        sampler = cls.from_dataset(ds, scorer=model, **kw)

        def run():
            with torch.no_grad():
                for u, i in batches:
                    sampler.sample(u, i)
        rate = args.batches * args.batch_size / timeit(run, repeat=3)
        rates[name, rec] = rate
        ref = rates.get(('DNS-8', rec))
        print(f'{name:30s} {rec:>11s} {rate:13,.0f} '
              f'{f"{rate / ref:.2f}x" if ref else "":>9s}', flush=True)
    if args.skip_epochs:
        return
    print(f'\ntraining epoch, batch {args.batch_size}, evaluation and '
          f'per-epoch diagnostics excluded; best of {args.repeat} after one '
          f'warm-up epoch')
    print(f'{"sampler":30s} {"recommender":>11s} {"s/epoch":>9s} '
          f'{"/ RNS":>7s} {"/ DNS-8":>8s}')
    secs = {}
    for name, cls, kw, rec in SAMPLERS:
        torch.manual_seed(0)
        model = model_for(ds, rec)
        sampler = cls.from_dataset(ds, scorer=model, **kw)
        trainer = Trainer(model, sampler, ds, batch_size=args.batch_size,
                          progress=False, track_dynamics=False)
        epoch = iter(range(1, 100))
        sec = timeit(lambda: trainer.train_epoch(next(epoch)),
                     repeat=args.repeat, warmup=1)
        secs[name, rec] = sec
        rns, dns = secs.get(('RNS', rec)), secs.get(('DNS-8', rec))
        print(f'{name:30s} {rec:>11s} {sec:9.2f} '
              f'{f"{sec / rns:.2f}x" if rns else "":>7s} '
              f'{f"{sec / dns:.2f}x" if dns else "":>8s}', flush=True)


if __name__ == '__main__':
    main()
