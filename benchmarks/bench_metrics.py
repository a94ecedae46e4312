"""Full-ranking evaluation with kgsampler's own metrics against PyG's
``torch_geometric.metrics`` (LinkPredRecall / Precision / HitRatio / NDCG)
on the same masked top-K lists: the same numbers? which is faster?

    OMP_NUM_THREADS=1 python benchmarks/bench_metrics.py \
        [--dataset ml-1m] [--ks 20] [--repeats 5]

A randomly initialised MF (64 dimensions, seed 0) ranks every item for
every test user; training and validation positives are masked. Both paths
share the scoring, masking and top-K; ``metrics only`` times what differs
(our cumulative sums against PyG's ``LinkPredMetricCollection.update`` on
the precomputed top-K lists). One thread; median of ``--repeats``.
"""
import argparse
import math
import statistics
import time

import torch

from _common import dataset_dir, header
from kgsampler import MF, KGRecDataset, evaluate
from torch_geometric.metrics import (LinkPredHitRatio, LinkPredMetricCollection,
                                     LinkPredNDCG, LinkPredPrecision,
                                     LinkPredRecall)

CLASSES = {'recall': LinkPredRecall, 'precision': LinkPredPrecision,
           'hit': LinkPredHitRatio, 'ndcg': LinkPredNDCG}


def top_lists(score_fn, gt, exclude, max_k, batch_size):
    """Per batch: the masked top-K items and the ground truth (COO, rows
    relative to the batch) of the users with a ground-truth item."""
    users = (gt.degree() > 0).nonzero().view(-1)
    out = []
    for start in range(0, users.numel(), batch_size):
        u = users[start:start + batch_size]
        scores = score_fn(u).float()
        for csr in exclude:
            r, c = csr.gather_rows(u)
            scores[r, c] = -math.inf
        top = scores.topk(max_k, dim=-1).indices
        r, c = gt.gather_rows(u)
        out.append((u, top, torch.stack([r, c])))
    return out


def pyg_metrics(batches, ks):
    coll = LinkPredMetricCollection({f'{m}@{k}': cls(k) for m, cls in
                                     CLASSES.items() for k in ks})
    for _, top, label in batches:
        coll.update(top, label)
    return {k: float(v) for k, v in coll.compute().items()}


def ours_metrics(batches, gt, ks, num_items):
    """The metric part of :func:`kgsampler.train.evaluate` on the same
    lists (what differs between the two paths)."""
    max_k = max(ks)
    disc = 1.0 / torch.log2(torch.arange(max_k, dtype=torch.float) + 2.0)
    ideal = torch.cumsum(disc, 0)
    deg = gt.degree()
    sums = {f'{m}@{k}': 0.0 for m in CLASSES for k in ks}
    n = 0
    for u, top, label in batches:
        hit_mat = torch.zeros(u.numel(), num_items, dtype=torch.bool)
        hit_mat[label[0], label[1]] = True
        hits = hit_mat.gather(1, top).float()
        cum, dcg = hits.cumsum(1), (hits * disc).cumsum(1)
        n_gt = deg[u].float()
        for k in ks:
            h = cum[:, k - 1]
            sums[f'recall@{k}'] += float((h / n_gt).sum())
            sums[f'precision@{k}'] += float((h / k).sum())
            sums[f'hit@{k}'] += float((h > 0).float().sum())
            idcg = ideal[n_gt.clamp(max=k).long() - 1]
            sums[f'ndcg@{k}'] += float((dcg[:, k - 1] / idcg).sum())
        n += u.numel()
    return {k: v / n for k, v in sums.items()}


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--ks', type=int, nargs='+', default=[20])
    p.add_argument('--repeats', type=int, default=5)
    p.add_argument('--batch-size', type=int, default=4096)
    p.add_argument('--threads', type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    header(f'kgsampler vs PyG LinkPred metrics on {ds.name}')
    model = MF(ds.num_users, ds.num_items, 64).eval()
    gt, exclude, ks = ds.test_pos, [ds.train_pos, ds.valid_pos], args.ks
    print(f'{ds.num_users:,} users, {ds.num_items:,} items, ks={ks}, '
          f'{args.threads} thread(s), median of {args.repeats}')
    with torch.no_grad():
        t_ours, ours = timed(lambda: evaluate(
            model.full_scores, gt, exclude, ks=ks,
            batch_size=args.batch_size), args.repeats)
        t_lists, batches = timed(lambda: top_lists(
            model.full_scores, gt, exclude, max(ks), args.batch_size),
            args.repeats)
        t_pyg_m, theirs = timed(lambda: pyg_metrics(batches, ks),
                                args.repeats)
        t_ours_m, ours_m = timed(lambda: ours_metrics(
            batches, gt, ks, ds.num_items), args.repeats)
    diff = max(abs(ours[k] - v) for k, v in theirs.items())
    diff_m = max(abs(ours_m[k] - v) for k, v in theirs.items())
    print(f'users evaluated: {ours["num_users"]:,}')
    for k in sorted(theirs):
        print(f'  {k:>14}: ours {ours[k]:.6f}  PyG {theirs[k]:.6f}')
    print(f'largest difference evaluate() vs PyG: {diff:.2e} '
          f'(metric part alone: {diff_m:.2e})')
    print(f'evaluate() end to end (ours):             {t_ours:.3f} s')
    print(f'scoring + masking + top-K (shared):       {t_lists:.3f} s')
    print(f'  + PyG LinkPredMetricCollection.update:  {t_pyg_m:.3f} s '
          f'(end to end {t_lists + t_pyg_m:.3f} s)')
    print(f'  + our metric part:                      {t_ours_m:.3f} s '
          f'(end to end {t_lists + t_ours_m:.3f} s)')
    print(f'metric part, PyG / ours: {t_pyg_m / t_ours_m:.2f}x')


if __name__ == '__main__':
    main()
