"""DENS vs RNS and DNS-8 on lastfm, trained from scratch with the conf/experiment/lastfm.yaml recipe.
usage: OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/dens_lastfm.py REC SEED [SEED ...]   (REC: mf | lightgcn)"""
import json, os, random, sys, time
from pathlib import Path
import numpy as np, torch
from kgsampler.data import KGRecDataset
from kgsampler import MF, LightGCN, RNS, DNS, DENS, Trainer

torch.set_num_threads(1)
rec, seeds = sys.argv[1], [int(s) for s in sys.argv[2:]]
ds = KGRecDataset.from_kgat('../shared/datasets/lastfm')
log = Path('multirun/dens') / f'lastfm_{rec}.jsonl'  # one JSON line a run; runs already there are skipped
log.parent.mkdir(parents=True, exist_ok=True)
done = {(r['name'], r['seed']) for r in map(json.loads, log.read_text().splitlines())} if log.is_file() else set()
GRID = [('RNS', RNS, {}), ('DNS-8', DNS, {'num_candidates': 8}),
        ('DENS w=100', DENS, {'num_candidates': 8, 'warmup': 100}),
        ('DENS w=20', DENS, {'num_candidates': 8, 'warmup': 20})]
ONLY = os.environ.get('ONLY', '').split(',') if os.environ.get('ONLY') else None
for seed in seeds:
    for name, cls, kw in GRID:
        if (name, seed) in done or (ONLY and name not in ONLY):
            continue
        random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)
        model = (MF(ds.num_users, ds.num_items, embedding_dim=64, reg=1e-2) if rec == 'mf' else
                 LightGCN.from_dataset(ds, embedding_dim=64, num_layers=3, reg=1e-4))
        sampler = cls.from_dataset(ds, scorer=model, **kw)
        t0 = time.perf_counter()
        res = Trainer(model, sampler, ds, lr=5e-3, weight_decay=1e-5, batch_size=1024, max_epochs=200,
                      patience=20, progress=False, time_budget=int(os.environ.get('BUDGET', 400))).fit()
        diag = {k: v for k, v in res.history[min(res.best_epoch, len(res.history)) - 1].items() if k.startswith('sampler_')}
        first = {k: v for k, v in res.history[0].items() if k.startswith('sampler_')}
        row = dict(name=name, seed=seed, rec=rec, best_epoch=res.best_epoch, epochs_run=res.epochs_run,
                   stopped_by=res.stopped_by, valid=res.valid, test=res.test,
                   median_epoch_s=float(np.median(res.epoch_seconds)),
                   fnr=res.sampler_stats.get('false_negative_rate'), diag_best=diag, diag_first=first,
                   wall_s=time.perf_counter() - t0)
        with log.open('a') as f:
            f.write(json.dumps(row) + '\n')
        print(name, seed, f"valid {res.valid['ndcg@20']:.4f} test ndcg {res.test['ndcg@20']:.4f} "
              f"recall {res.test['recall@20']:.4f} best {res.best_epoch}/{res.epochs_run} {row['wall_s']:.0f}s", flush=True)
