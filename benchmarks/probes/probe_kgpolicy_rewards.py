"""What KGPolicy's negatives look like and what they do to a warm-started MF,
per reward variant, next to DNS: a few co-training epochs on ml-1m from the
same RNS-pretrained MF (validation split only; the test split is not read).
Every KGPolicy variant starts from BASE below, the sampler's defaults when the
committed results (benchmarks/results/kgpolicy_probe*.txt) were measured.

    python benchmarks/probes/probe_kgpolicy_rewards.py [--dataset ml-1m] [--epochs 3]

For each variant it prints the validation ndcg@20 after each epoch and, over
the last 50,000 negatives: their mean training popularity (number of training
interactions of the item), the share of the single most frequent negative,
the entropy of the negative distribution (uniform = ln |I|) and the
false-negative rate (negatives that are validation positives).
"""
import argparse
import json
import math

import torch

import os as _os, sys as _sys  # noqa: E401
_sys.path.insert(0, _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), ".."))
from _common import dataset_dir, header
from kgsampler import DNS, MF, RNS, KGPolicy, KGRecDataset, Trainer

#: The settings the committed results were measured with (the sampler's
#: defaults then): user hops, a refresh every 16 batches, every walk in the
#: policy gradient. Every variant starts from these.
BASE = {'user_hops': True, 'refresh_interval': 16, 'pg_fraction': 1.0}

VARIANTS = [
    ('DNS-8', None),
    ('KGPolicy (paper reward: w_p=1, w_s=1)', {}),
    ('KGPolicy w_s=0', {'w_s': 0.0}),
    ('KGPolicy w_s=-1', {'w_s': -1.0}),
    ('KGPolicy centered, w_s=0', {'center_reward': True, 'w_s': 0.0}),
    ('KGPolicy centered, w_s=-1', {'center_reward': True, 'w_s': -1.0}),
    ('KGPolicy no user hops', {'user_hops': False}),
]


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--epochs', type=int, default=3)
    p.add_argument('--pretrain-lr', type=float, default=1e-3)
    p.add_argument('--lr', type=float, default=2e-4)
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--variants', default=None,
                   help='JSON list of KGPolicy kwargs to run instead')
    args = p.parse_args()
    torch.set_num_threads(1)
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    header(f'KGPolicy reward probe on {ds.name}: pretrain RNS (lr '
           f'{args.pretrain_lr}), then {args.epochs} epochs at lr {args.lr}')
    torch.manual_seed(args.seed)
    mf = MF(ds.num_users, ds.num_items)
    res = Trainer(mf, RNS(ds.train_pos), ds, lr=args.pretrain_lr,
                  patience=10, progress=False).fit()
    start = {k: v.clone() for k, v in mf.state_dict().items()}
    print(f'pretrained: best epoch {res.best_epoch}, valid ndcg@20 '
          f'{res.valid["ndcg@20"]:.4f}')
    deg = torch.bincount(ds.train_pos.indices, minlength=ds.num_items).float()
    valid = ds.valid_pos.to_dense()
    print(f'{"variant":40s} {"valid ndcg@20 by epoch":>28s} {"pop.":>7s} '
          f'{"top-1":>6s} {"entropy":>8s} {"false neg.":>10s}')
    # the walk before any policy update (warm-start MF, no training step)
    with torch.no_grad():
        for name, kw in (('KGPolicy untrained', {}),
                         ('KGPolicy untrained, no user hops',
                          {'user_hops': False})):
            torch.manual_seed(args.seed)
            sampler = KGPolicy.from_dataset(ds, scorer=mf, **{**BASE, **kw})
            idx = torch.randint(ds.train_pos.nnz, (50000, ))
            u = ds.train_pos.row_ids()[idx]
            n = sampler.sample(u, ds.train_pos.indices[idx]).neg_items[:, 0]
            freq = torch.bincount(n, minlength=ds.num_items).float() / 50000
            ent = -(freq[freq > 0] * freq[freq > 0].log()).sum()
            print(f'{name:40s} {"(no training)":>28s} {deg[n].mean():7.1f} '
                  f'{freq.max():6.3f} {ent:8.2f} '
                  f'{valid[u, n].float().mean():10.4f}')
    variants = VARIANTS if args.variants is None else [
        (json.dumps(kw), kw) for kw in json.loads(args.variants)]
    for name, kw in variants:
        torch.manual_seed(args.seed)
        mf.load_state_dict(start)
        sampler = (DNS(ds.train_pos, scorer=mf) if kw is None else
                   KGPolicy.from_dataset(ds, scorer=mf, **{**BASE, **kw}))
        trainer = Trainer(mf, sampler, ds, lr=args.lr, progress=False)
        seen_u, seen_n = [], []
        sample = sampler.sample

        def recording(users, pos_items, num_neg=1):
            out = sample(users, pos_items, num_neg)
            seen_u.append(users)
            seen_n.append(out.neg_items[:, 0])
            return out

        sampler.sample = recording
        vals = []
        for epoch in range(1, args.epochs + 1):
            trainer.train_epoch(epoch)
            vals.append(trainer.evaluate('valid')['ndcg@20'])
        u, n = torch.cat(seen_u)[-50000:], torch.cat(seen_n)[-50000:]
        freq = torch.bincount(n, minlength=ds.num_items).float()
        freq = freq / freq.sum()
        ent = -(freq[freq > 0] * freq[freq > 0].log()).sum()
        print(f'{name:40s} {" ".join(f"{v:.4f}" for v in vals):>28s} '
              f'{deg[n].mean():7.1f} {freq.max():6.3f} {ent:8.2f} '
              f'{valid[u, n].float().mean():10.4f}')
    print(f'(uniform: popularity {deg.mean():.1f}, entropy '
          f'{math.log(ds.num_items):.2f})')


if __name__ == '__main__':
    main()
