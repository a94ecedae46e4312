"""CKE against MF with RNS: quality (full ranking, Trainer) and epoch time.

    python benchmarks/run_cke.py --dataset lastfm --model cke --lr 1e-3 5e-3 \
        --weight-decay 0 1e-5 --kg-weight 0.1 1
    python benchmarks/run_cke.py --dataset lastfm --model mf --seeds 1 2 3
    python benchmarks/run_cke.py --dataset ml-1m --model cke --time-budget 900
    python benchmarks/run_cke.py --dataset ml-1m --timing 3

Quality mode trains every combination of the given settings (--lr,
--weight-decay, --reg, --kg-weight) for every seed, one after the other in
this process, with RNS (batch 1024, patience 20, model selection on
validation ndcg@20, test evaluated once on the selected epoch), and prints
one line per run: the validation ndcg@20 the setting is chosen by, the test
recall@20/ndcg@20 of the same run, epochs, why it stopped and the mean
training seconds per epoch (evaluation excluded). Settings are chosen on
validation only; test is reported, never looked at for a choice.

Timing mode (--timing E) alternates MF and CKE (default settings) with RNS
for E epochs each, twice, in this process, and prints the ratio of CKE's
median epoch time to MF's (RecBole 1.2.1 reports 9.32 s / 1.73 s = 5.4 for
its CKE / BPR on ml-1m). Projection mode (--projection) times TransR's
projection forward + backward of 3,189 rows over 60 relations (a lastfm KG
batch), d = k = 64: its own path, PyG's HeteroLinear forward on the same
weight, and a gathered matrix per row with torch.bmm, interleaved, best of 5.
One thread unless --threads.
"""
import argparse
import itertools
import json
import statistics
import sys
import time

import torch

from _common import dataset_dir, header


def build(name: str, ds, args, reg, kg_weight):
    if name == 'mf':
        from kgsampler.recommender.mf import MF
        return MF(ds.num_users, ds.num_items,
                  **({} if reg is None else {'reg': reg}))
    from kgsampler.recommender.cke import CKE
    kw = {} if reg is None else {'reg': reg}
    if kg_weight is not None:
        kw['kg_weight'] = kg_weight
    if args.kg_batch_ratio is not None:
        kw['kg_batch_ratio'] = args.kg_batch_ratio
    return CKE(ds, **kw)


def train(name, ds, args, seed, lr, wd, reg, kg_weight, max_epochs,
          time_budget=None, eval_every=1):
    from kgsampler import Trainer
    from kgsampler.sampler import RNS
    torch.manual_seed(seed)
    model = build(name, ds, args, reg, kg_weight)
    trainer = Trainer(model, RNS(ds.train_pos), ds, lr=lr, weight_decay=wd,
                      batch_size=1024, max_epochs=max_epochs,
                      patience=args.patience, eval_every=eval_every,
                      progress=False, track_dynamics=False,
                      time_budget=time_budget)
    return model, trainer.fit()


def projection():
    from kgsampler.recommender.transr import TransR
    torch.manual_seed(0)
    n, R, d = 3189, 60, 64
    model = TransR(100, R, d)
    W = model.proj.weight
    x = torch.randn(n, d, requires_grad=True)
    r = torch.randint(R, (n, ))
    fns = {'TransR.project_embeddings': lambda: model.project_embeddings(x, r),
           'HeteroLinear.forward': lambda: model.proj(x, r),
           'gather + bmm': lambda: torch.bmm(x.unsqueeze(1),
                                             W[r]).squeeze(1)}
    best = {k: float('inf') for k in fns}
    for _ in range(5):
        for k, f in fns.items():
            t = time.perf_counter()
            for _ in range(5):
                f().sum().backward()
            best[k] = min(best[k], (time.perf_counter() - t) / 5)
    for k, v in best.items():
        print(f'{k}: {v * 1e3:.1f} ms')


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='lastfm')
    p.add_argument('--model', default='cke', choices=['cke', 'mf'])
    p.add_argument('--lr', type=float, nargs='+', default=[1e-3])
    p.add_argument('--weight-decay', type=float, nargs='+', default=[0.0])
    p.add_argument('--reg', type=float, nargs='+', default=[None])
    p.add_argument('--kg-weight', type=float, nargs='+', default=[None])
    p.add_argument('--kg-batch-ratio', type=float, default=None)
    p.add_argument('--seeds', type=int, nargs='+', default=[1])
    p.add_argument('--max-epochs', type=int, default=400)
    p.add_argument('--patience', type=int, default=20)
    p.add_argument('--time-budget', type=float, default=None)
    p.add_argument('--timing', type=int, default=0, metavar='E')
    p.add_argument('--projection', action='store_true')
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--json', default=None, help='append one JSON line a run')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.projection:
        return projection()

    from kgsampler.data import KGRecDataset
    ds = KGRecDataset.from_kgat(str(dataset_dir(args.dataset)))
    header(f'CKE vs MF, RNS, {args.dataset}: {" ".join(sys.argv[1:])}')
    s = ds.statistics()
    print(f'# {s["num_users"]} users, {s["num_items"]} items, '
          f'{s["num_entities"]} entities, {s["num_relations"]} relations, '
          f'{s["num_train"]} train / {s["num_valid"]} valid / '
          f'{s["num_test"]} test pairs, {s["num_triples"]} triples')

    if args.timing:
        times = {'mf': [], 'cke': []}
        for rep in range(2):
            for name in ('mf', 'cke'):
                _, res = train(name, ds, args, rep + 1, 1e-3, 0.0, None,
                               None, args.timing, eval_every=args.timing)
                times[name] += res.epoch_seconds
                print(f'{name} rep {rep + 1}: epoch s ' + ' '.join(
                    f'{t:.3f}' for t in res.epoch_seconds), flush=True)
        mf, cke = (statistics.median(times[k]) for k in ('mf', 'cke'))
        print(f'median epoch: MF {mf:.3f} s, CKE {cke:.3f} s, '
              f'CKE/MF = {cke / mf:.2f} (RecBole 1.2.1 on ml-1m: '
              f'9.32/1.73 = 5.39)')
        return

    print('| model | lr | wd | reg | kg_weight | seed | valid ndcg@20 | '
          'test recall@20 | test ndcg@20 | best ep | epochs | stopped | '
          's/epoch |')
    print('|---|---|---|---|---|---|---|---|---|---|---|---|---|')
    for lr, wd, reg, kgw, seed in itertools.product(
            args.lr, args.weight_decay, args.reg, args.kg_weight,
            args.seeds):
        t0 = time.perf_counter()
        model, res = train(args.model, ds, args, seed, lr, wd, reg, kgw,
                           args.max_epochs, args.time_budget)
        sec = statistics.mean(res.epoch_seconds)
        row = dict(dataset=args.dataset, model=args.model, lr=lr, wd=wd,
                   reg=getattr(model, 'reg', reg),
                   kg_weight=getattr(model, 'kg_weight', None), seed=seed,
                   valid_ndcg=res.valid['ndcg@20'],
                   test_recall=res.test['recall@20'],
                   test_ndcg=res.test['ndcg@20'], best_epoch=res.best_epoch,
                   epochs=res.epochs_run, stopped_by=res.stopped_by,
                   sec_per_epoch=sec, wall=time.perf_counter() - t0)
        print(f'| {args.model} | {lr:g} | {wd:g} | {row["reg"]:g} | '
              f'{row["kg_weight"] if row["kg_weight"] is not None else "-"} '
              f'| {seed} | {row["valid_ndcg"]:.4f} | '
              f'{row["test_recall"]:.4f} | {row["test_ndcg"]:.4f} | '
              f'{res.best_epoch} | {res.epochs_run} | {res.stopped_by} | '
              f'{sec:.3f} |', flush=True)
        if args.json:
            with open(args.json, 'a') as f:
                f.write(json.dumps(row) + '\n')


if __name__ == '__main__':
    main()
