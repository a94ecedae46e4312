"""NFM and RippleNet beside MF, all with RNS and the same Trainer settings.

Two modes (one thread; results in benchmarks/results/nfm_ripplenet.md):

    # one training run, early stopping on validation NDCG@20; prints one JSON line
    python benchmarks/run_kg_baselines.py fit --dataset lastfm --model nfm --lr 1e-3 --seed 1

    # epoch time of each model relative to MF, measured in this one process
    python benchmarks/run_kg_baselines.py speed --dataset ml-1m --epochs 3

Model hyper-parameters are passed as --set key=value (e.g. --set reg=1e-4).
"""
import argparse
import ast
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'src'))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import dataset_dir, header  # noqa: E402

from kgsampler.data import KGRecDataset  # noqa: E402
from kgsampler.recommender.mf import MF  # noqa: E402
from kgsampler.recommender.nfm import NFM  # noqa: E402
from kgsampler.recommender.ripplenet import RippleNet  # noqa: E402
from kgsampler.sampler import RNS  # noqa: E402
from kgsampler.train.trainer import Trainer  # noqa: E402


def build(name, ds, **kw):
    if name == 'mf':
        return MF(ds.num_users, ds.num_items, **kw)
    if name == 'nfm':
        return NFM(ds, **kw)
    if name == 'ripplenet':
        return RippleNet(ds, **kw)
    raise SystemExit(f'unknown model {name!r}')


def parse_sets(items):
    out = {}
    for item in items or []:
        k, v = item.split('=', 1)
        try:
            out[k] = ast.literal_eval(v)
        except (ValueError, SyntaxError):
            out[k] = v
    return out


def fit(args):
    torch.manual_seed(args.seed)
    ds = KGRecDataset.from_kgat(str(dataset_dir(args.dataset)))
    kw = parse_sets(args.set)
    model = build(args.model, ds, **kw)
    trainer = Trainer(model, RNS(ds.train_pos), ds, lr=args.lr,
                      weight_decay=args.weight_decay, batch_size=1024,
                      max_epochs=args.max_epochs, patience=args.patience,
                      progress=False, track_dynamics=False,
                      time_budget=args.time_budget)
    t0 = time.perf_counter()
    res = trainer.fit()
    sec = res.epoch_seconds
    print(json.dumps({
        'dataset': args.dataset, 'model': args.model, 'lr': args.lr,
        'weight_decay': args.weight_decay, 'seed': args.seed, 'set': kw,
        'best_epoch': res.best_epoch, 'epochs_run': res.epochs_run,
        'stopped_by': res.stopped_by,
        'valid_ndcg@20': res.valid.get('ndcg@20'),
        'valid_recall@20': res.valid.get('recall@20'),
        'test_ndcg@20': res.test['ndcg@20'],
        'test_recall@20': res.test['recall@20'],
        'median_epoch_s': sorted(sec)[len(sec) // 2],
        'wall_s': time.perf_counter() - t0}), flush=True)


def speed(args):
    ds = KGRecDataset.from_kgat(str(dataset_dir(args.dataset)))
    models = {'mf': {}, 'nfm': parse_sets(args.nfm),
              'ripplenet': parse_sets(args.ripplenet)}
    trainers = {}
    for name, kw in models.items():
        torch.manual_seed(0)
        model = build(name, ds, **kw)
        trainers[name] = Trainer(model, RNS(ds.train_pos), ds, lr=1e-3,
                                 batch_size=1024, progress=False,
                                 track_dynamics=False)
    times = {n: [] for n in trainers}
    evals = {n: [] for n in trainers}
    for epoch in range(1, args.epochs + 1):  # interleaved: same load
        for name, tr in trainers.items():
            t0 = time.perf_counter()
            tr.train_epoch(epoch)
            times[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            tr.evaluate('valid')
            evals[name].append(time.perf_counter() - t0)
    mf = min(times['mf'])
    for name in trainers:
        print(f'{name:10s} epoch best {min(times[name]):8.2f} s  '
              f'(x{min(times[name]) / mf:6.2f} MF)  full-ranking valid '
              f'evaluation best {min(evals[name]):7.2f} s   '
              f'{trainers[name].model}')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    sub = p.add_subparsers(dest='mode', required=True)
    f = sub.add_parser('fit')
    f.add_argument('--dataset', required=True)
    f.add_argument('--model', required=True)
    f.add_argument('--lr', type=float, default=1e-3)
    f.add_argument('--weight-decay', type=float, default=0.0)
    f.add_argument('--seed', type=int, default=1)
    f.add_argument('--max-epochs', type=int, default=400)
    f.add_argument('--patience', type=int, default=20)
    f.add_argument('--time-budget', type=float, default=None)
    f.add_argument('--set', action='append')
    s = sub.add_parser('speed')
    s.add_argument('--dataset', required=True)
    s.add_argument('--epochs', type=int, default=3)
    s.add_argument('--nfm', action='append')
    s.add_argument('--ripplenet', action='append')
    args = p.parse_args()
    torch.set_num_threads(1)
    header(f'run_kg_baselines {" ".join(sys.argv[1:])}')
    fit(args) if args.mode == 'fit' else speed(args)


if __name__ == '__main__':
    main()
