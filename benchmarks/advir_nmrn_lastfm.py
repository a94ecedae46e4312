"""MF + AdvIR / NMRN vs RNS, DNS-8, Adversarial on lastfm (leaderboard protocol)."""
import json, sys, time
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'benchmarks')); sys.path.insert(0, str(ROOT / 'src'))
import torch
import leaderboard_lastfm as lb
from _common import dataset_dir
from kgsampler.data import KGRecDataset
from kgsampler.recommender import MF, APR
from kgsampler.sampler import RNS, DNS, Adversarial, AdvIR, NMRN
from kgsampler.train import Trainer

ROWS = [  # (name, recommender class, sampler class, sampler kwargs)
    ('RNS', MF, RNS, {}),
    ('DNS-8', MF, DNS, {'num_candidates': 8}),
    ('Adversarial', MF, Adversarial, {'num_candidates': 4}),
    ('AdvIR (APR + AdvIR)', APR, AdvIR, {'num_candidates': 4}),
    ('NMRN', MF, NMRN, {'num_candidates': 4}),
    ('APR + RNS', APR, RNS, {}),
]
# second pass, grid stated before it ran (defaults above: epsilon 0.5, margin 1.0)
ROWS += [(f'AdvIR (APR + AdvIR) epsilon={e}', APR, AdvIR, {'num_candidates': 4}, {'epsilon': e})
         for e in (0.05, 0.1)]
ROWS += [(f'NMRN margin={m}', MF, NMRN, {'num_candidates': 4, 'margin': m}) for m in (0.5, 2.0)]
ROWS = [r if len(r) == 5 else r + ({},) for r in ROWS]
out = ROOT / 'multirun' / 'advir_nmrn' / 'lastfm.jsonl'
out.parent.mkdir(parents=True, exist_ok=True)
done = {(r['name'], r['seed']) for r in map(json.loads, out.read_text().splitlines())} if out.is_file() else set()
torch.set_num_threads(1)
ds = KGRecDataset.from_kgat(str(dataset_dir('lastfm')))
for seed in [int(s) for s in sys.argv[1:]] or [1, 2, 3]:
    state = lb.warm_start(ds, seed)
    for name, rec, cls, kw, rec_kw in ROWS:
        if (name, seed) in done:
            continue
        lb.seed_all(seed)
        model = rec(ds.num_users, ds.num_items, embedding_dim=64, reg=1e-2, **rec_kw)
        model.load_state_dict(state)
        sampler = cls.from_dataset(ds, scorer=model, **kw) if cls is not RNS else cls.from_dataset(ds)
        t0 = time.perf_counter()
        res = Trainer(model, sampler, ds, lr=1e-3, **lb.TRAIN).fit()
        h = res.history
        row = {'name': name, 'seed': seed, 'best_epoch': res.best_epoch, 'epochs_run': res.epochs_run,
               'valid': res.valid, 'test': res.test, 'epoch_seconds': res.epoch_seconds,
               'false_negative_rate': res.sampler_stats.get('false_negative_rate'),
               'sampler_reward_first_last': [h[0].get('sampler_reward'), h[-1].get('sampler_reward')],
               'sampler_gain_first_last': [h[0].get('sampler_gain'), h[-1].get('sampler_gain')],
               'wall_s': time.perf_counter() - t0}
        with out.open('a') as f:
            f.write(json.dumps(row) + '\n')
        print(f'{name} seed {seed}: valid {res.valid["ndcg@20"]:.4f} test {res.test["ndcg@20"]:.4f} '
              f'best epoch {res.best_epoch} gain {row["sampler_gain_first_last"]} ({row["wall_s"]:.0f}s)', flush=True)
