"""Full-ranking evaluation time over every test user of amazon-book (train
and validation positives masked, recall/precision/hit/NDCG@20).

    python benchmarks/bench_evaluate.py [--dataset amazon-book] [--threads 2]
"""
import argparse
import time

import torch

from _common import dataset_dir, header
from kgsampler import MF, KGRecDataset, evaluate


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--dataset', default='amazon-book')
    p.add_argument('--threads', type=int, default=torch.get_num_threads())
    p.add_argument('--batch-size', type=int, default=4096)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    load = time.perf_counter() - t0
    header(f'full-ranking evaluation on {ds.name}')
    print(f'dataset load: {load:.2f} s ({ds.num_users:,} users, '
          f'{ds.num_items:,} items)')
    model = MF(ds.num_users, ds.num_items, 64).eval()
    for kgat in (False, True):
        t0 = time.perf_counter()
        res = evaluate(model.full_scores, ds.test_pos,
                       [ds.train_pos, ds.valid_pos], ks=[20],
                       batch_size=args.batch_size, kgat_ndcg=kgat)
        sec = time.perf_counter() - t0
        print(f'evaluate(kgat_ndcg={kgat}): {res["num_users"]:,} users in '
              f'{sec:.2f} s ({res["num_users"] / sec:,.0f} users/s)')


if __name__ == '__main__':
    main()
