"""One-off probe: seconds a training batch of LightGCN + RNS on amazon-book
at batch 1,024 and 4,096 (one thread; median of 6 batches after 2 warm-up
ones), and the epoch that implies. It chose batch 4,096 for the amazon-book
LightGCN leaderboard (docs/leaderboard.md).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/probes/lightgcn_amazon_book_batch.py
"""
import statistics
import time

import torch

from kgsampler import RNS, KGRecDataset, LightGCN

torch.set_num_threads(1)
ds = KGRecDataset.from_kgat('../shared/datasets/amazon-book')
csr = ds.train_pos
users_all, items_all = csr.row_ids(), csr.indices
for bs in (1024, 4096):
    torch.manual_seed(0)
    model, sampler = LightGCN.from_dataset(ds), RNS.from_dataset(ds)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    times = []
    for _ in range(8):
        idx = torch.randint(0, csr.nnz, (bs, ))
        users, pos = users_all[idx], items_all[idx]
        t0 = time.perf_counter()
        loss = model.loss(users, pos, sampler.sample(users, pos, 1).neg_items)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    s = statistics.median(times[2:])
    print(f'batch {bs}: {s:.3f} s a batch -> {s * csr.nnz / bs:.0f} s an epoch')
