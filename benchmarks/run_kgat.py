"""KGAT with RNS under a wall-clock budget, beside MF+RNS epoch times measured
in the same process (for the KGAT/MF epoch-time ratio).

    python benchmarks/run_kgat.py --dataset ml-1m --budget 900 --seed 2020
    python benchmarks/run_kgat.py --dataset lastfm --budget 600 --seed 2020

The dataset is ``KGRecDataset.from_kgat(../shared/datasets/<name>)`` (10% of
each user's training items carved out as validation, seed 2020); the model
is chosen on validation NDCG@20 by the Trainer's early stopping, and the test
split is evaluated once, on that model. One thread unless --threads.
Dynamics tracking is off for both models (it adds a no-grad propagation per
batch for KGAT). Prints one JSON line per phase; --out writes the summary.
"""
import argparse
import json
import logging
import time

import torch

from _common import dataset_dir, header


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--budget', type=float, default=900.0)
    p.add_argument('--seed', type=int, default=2020)
    p.add_argument('--lr', type=float, default=1e-3)
    p.add_argument('--batch-size', type=int, default=1024)
    p.add_argument('--patience', type=int, default=20)
    p.add_argument('--mf-epochs', type=int, default=3)
    p.add_argument('--mess-dropout', type=float, default=0.1)
    p.add_argument('--reg', type=float, default=1e-5)
    p.add_argument('--aggregator', default='bi')
    p.add_argument('--layers', default='64,32,16',
                   help="KGAT's layer sizes, comma-separated (default the released 64,32,16; "
                        "RecBole's default is 64)")
    p.add_argument('--kg-steps', type=int, default=None)
    p.add_argument('--kg-batch-size', type=int, default=2048)
    p.add_argument('--max-epochs', type=int, default=200)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--out', default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format='%(asctime)s %(message)s')
    header(f'KGAT + RNS on {args.dataset}, budget {args.budget:.0f} s')
    print(vars(args))

    from kgsampler import MF, RNS, KGRecDataset, Trainer
    from kgsampler.recommender.kgat import KGAT
    ds = KGRecDataset.from_kgat(str(dataset_dir(args.dataset)))
    common = dict(lr=args.lr, batch_size=args.batch_size, progress=False,
                  track_dynamics=False)

    torch.manual_seed(args.seed)
    mf = MF(ds.num_users, ds.num_items)
    mf_trainer = Trainer(mf, RNS(ds.train_pos), ds, **common)
    mf_secs = []
    for epoch in range(1, args.mf_epochs + 1):
        t0 = time.perf_counter()
        mf_trainer.train_epoch(epoch)
        mf_secs.append(time.perf_counter() - t0)
    print(json.dumps({'mf_epoch_seconds': mf_secs}), flush=True)

    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    layers = [int(x) for x in args.layers.split(',')]
    model = KGAT(ds, layer_sizes=layers, mess_dropout=args.mess_dropout, reg=args.reg,
                 aggregator=args.aggregator, kg_steps=args.kg_steps,
                 kg_batch_size=args.kg_batch_size)
    build = time.perf_counter() - t0
    print(model)
    trainer = Trainer(model, RNS(ds.train_pos), ds, patience=args.patience,
                      time_budget=args.budget, max_epochs=args.max_epochs,
                      **common)
    t0 = time.perf_counter()
    res = trainer.fit()
    wall = time.perf_counter() - t0
    kg_secs = res.epoch_seconds
    mf_mean = sum(mf_secs) / len(mf_secs)
    kg_mean = sum(kg_secs) / len(kg_secs)
    summary = {
        'dataset': args.dataset, 'seed': args.seed, 'args': vars(args),
        'build_seconds': build, 'fit_wall_seconds': wall,
        'stopped_by': res.stopped_by, 'epochs_run': res.epochs_run,
        'best_epoch': res.best_epoch,
        'kgat_epoch_seconds_mean': kg_mean,
        'mf_epoch_seconds_mean': mf_mean, 'ratio_kgat_mf': kg_mean / mf_mean,
        'valid': res.valid, 'test': res.test,
        'valid_ndcg_curve': [h.get('valid_ndcg@20') for h in res.history],
        'loss_curve': [h.get('loss') for h in res.history],
        'kgat_epoch_seconds': kg_secs, 'mf_epoch_seconds': mf_secs,
    }
    print(json.dumps(summary), flush=True)
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(summary, f, indent=1)


if __name__ == '__main__':
    main()
