"""Size and write time of the per-epoch resume state (last.pt) on a real
dataset, against the epoch time: what checkpoint_every=1 costs.

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/reliability_state_size.py \
        /work/shared/datasets/lastfm dns
"""
import os
import sys
import tempfile
import time

import torch

from kgsampler.data import KGRecDataset
from kgsampler.recommender.mf import MF
from kgsampler.sampler import DNS, RNS, KGPolicy
from kgsampler.train.trainer import Trainer

torch.set_num_threads(1)
path, name = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
ds = KGRecDataset.from_kgat(path)
model = MF(ds.num_users, ds.num_items, embedding_dim=64)
sampler = {'rns': lambda: RNS(ds.train_pos),
           'dns': lambda: DNS(ds.train_pos, scorer=model),
           'kgpolicy': lambda: KGPolicy.from_dataset(ds, scorer=model)}[name]()
with tempfile.TemporaryDirectory() as d:
    state = os.path.join(d, 'last.pt')
    t = Trainer(model, sampler, ds, max_epochs=1, progress=False,
                state_path=state, eval_batch_size=2048)
    res = t.fit()
    size = os.path.getsize(state)
    st = torch.load(state, weights_only=True)['loop']
    t0 = time.perf_counter()
    t._save_state(st)
    write = time.perf_counter() - t0
    t0 = time.perf_counter()
    torch.load(state, weights_only=True)
    read = time.perf_counter() - t0
print(f'{os.path.basename(path)} {name}: last.pt {size / 2**20:.1f} MiB, '
      f'write {write:.2f} s, load {read:.2f} s, epoch {res.epoch_seconds[0]:.1f} s')
