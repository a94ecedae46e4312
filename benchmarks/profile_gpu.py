"""Where a KGPolicy co-training epoch spends its time on a GPU: the host-device
synchronisations (``torch.cuda.set_sync_debug_mode``), counted per source
line over one epoch, and the operators with the most self CPU and CUDA time
(``torch.profiler``) over the next epoch, per batch.

    python benchmarks/profile_gpu.py --dataset ml-1m       # needs CUDA
"""
import argparse
import collections
import time
import warnings

import torch

from _common import dataset_dir, header


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--sampler', default='kgpolicy',
                   choices=['kgpolicy', 'dns'])
    p.add_argument('--device', default='cuda',
                   help="'cuda' (default); 'cpu' runs the operator table only")
    args = p.parse_args()
    from kgsampler import DNS, MF, KGPolicy, KGRecDataset, Trainer
    device = torch.device(args.device)
    cuda = device.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    header(f'profile of a {args.sampler} epoch on {args.dataset} '
           f'({args.device})')
    torch.manual_seed(0)
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    model = MF(ds.num_users, ds.num_items, 64)
    sampler = (KGPolicy.from_dataset(ds) if args.sampler == 'kgpolicy'
               else DNS(ds.train_pos, num_candidates=8))
    trainer = Trainer(model, sampler, ds, batch_size=1024, progress=False,
                      track_dynamics=False, device=device)
    trainer.train_epoch(1)  # warm-up
    sync()
    batches = -(-ds.train_pos.nnz // 1024)
    # 1. synchronisations, counted per source line that triggered them
    counts = collections.Counter()
    if cuda:
        torch.cuda.set_sync_debug_mode('warn')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        t0 = time.perf_counter()
        trainer.train_epoch(2)
        sync()
        dt = time.perf_counter() - t0
    if cuda:
        torch.cuda.set_sync_debug_mode(0)
    for w in caught:
        if 'synchroniz' in str(w.message):
            counts[f'{w.filename.split("site-packages/")[-1]}:{w.lineno}'] += 1
    print(f'epoch with sync debug: {dt:.2f} s, {batches} batches, '
          f'{sum(counts.values())} synchronisations '
          f'({sum(counts.values()) / batches:.1f} per batch)')
    for where, n in counts.most_common(40):
        print(f'{n / batches:8.2f} per batch  {where}')
    # 2. operators
    acts = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if cuda else [])
    with torch.profiler.profile(activities=acts) as prof:
        trainer.train_epoch(3)
        sync()
    table = prof.key_averages()
    print(table.table(sort_by='self_cpu_time_total', row_limit=25,
                      max_name_column_width=48))
    ops = sum(e.count for e in table if e.key.startswith('aten::'))
    print(f'aten operators per batch: {ops / batches:.0f}')
    if cuda:
        print(table.table(sort_by='self_device_time_total', row_limit=12,
                          max_name_column_width=48))
        launches = sum(e.count for e in table if e.key.startswith('cuda')
                       and 'Launch' in e.key)
        print(f'kernel launches per batch: {launches / batches:.0f}')


if __name__ == '__main__':
    main()
