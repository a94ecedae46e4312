"""A DNS-style hybrid of KGPolicy (not part of the package): each negative is
the candidate the recommender scores highest among KGPolicy's negative and
--uniform uniform non-positive items; KGPolicy itself is updated on its own
walks as usual. Trained from KGPolicy's warm start with the ablations'
protocol (the settings of ``benchmarks/_kgpolicy_settings.sh``, validation
early stopping), next to DNS with --uniform + 1 uniform candidates, so that
both pick among the same number of items.

    python benchmarks/probes/probe_hybrid.py --dataset ml-1m --seeds 1 2 3

The warm start is loaded from the ablations' cache (``multirun/ablation/
cache``, or $KGSAMPLER_CACHE) or trained and cached first. Prints validation
and test NDCG@20 / recall@20 per run and the mean and std over seeds.
"""
import argparse
import os
import statistics
from dataclasses import dataclass
from typing import Optional

import torch

import os as _os, sys as _sys  # noqa: E401
_sys.path.insert(0, _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), ".."))
from _common import ROOT, dataset_dir, header
from probe_negatives import SETTINGS


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='ml-1m', choices=sorted(SETTINGS))
    p.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3])
    p.add_argument('--uniform', type=int, default=8)
    p.add_argument('--samplers', nargs='+', default=['hybrid', 'dns'],
                   choices=['hybrid', 'dns'])
    args = p.parse_args()
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from kgsampler import DNS, KGRecDataset
    from kgsampler.cli import _pretrain, seed_everything
    from kgsampler.sampler import KGPolicy, Sampler, SamplerOutput

    @dataclass
    class HybridOutput(SamplerOutput):
        inner: Optional[SamplerOutput] = None

    class Hybrid(Sampler):
        """Highest-scored of KGPolicy's negative and `k` uniform items."""
        learnable = True
        requires_scorer = True

        def __init__(self, policy: KGPolicy, k: int, monitor_pos):
            super().__init__(policy.train_pos, monitor_pos=monitor_pos)
            self.policy, self.k = policy, k

        def reset_stats(self):
            super().reset_stats()
            self.picks, self.total = 0, 0

        def set_scorer(self, scorer):
            super().set_scorer(scorer)
            self.policy.set_scorer(scorer)

        def on_epoch_start(self, epoch):
            self.policy.on_epoch_start(epoch)

        @torch.no_grad()
        def _sample(self, users, pos_items, num_neg):
            inner = self.policy.sample(users, pos_items, num_neg)
            u = users.view(-1, 1, 1).expand(-1, num_neg, self.k)
            cand = torch.cat([inner.neg_items.unsqueeze(-1),
                              self.uniform_negatives(u)], -1)
            score = self.scorer.score(
                users, cand.view(users.numel(), -1)).view(cand.shape)
            best = score.argmax(-1, keepdim=True)
            neg = cand.gather(-1, best).squeeze(-1)
            self.picks += int((best == 0).sum())
            self.total += best.numel()
            return HybridOutput(neg_items=neg, inner=inner)

        def update(self, users, pos_items, output):
            return self.policy.update(users, pos_items, output.inner)

        def summary_stats(self):
            out = super().summary_stats()
            out['policy_pick_rate'] = self.picks / max(self.total, 1)
            return out

    torch.set_num_threads(1)
    os.chdir(ROOT)
    os.environ.setdefault('KGSAMPLER_CACHE', 'multirun/ablation/cache')
    path = dataset_dir(args.dataset)
    header(f'DNS-style hybrid of KGPolicy on {args.dataset}: the best-scored '
           f'of its negative and {args.uniform} uniform items')
    ds = KGRecDataset.from_kgat(path)
    rows = {}
    for name in args.samplers:
        for seed in args.seeds:
            with initialize_config_dir(config_dir=str(ROOT / 'conf'),
                                       version_base=None):
                cfg = compose('train', overrides=[
                    'dataset=kgat',
                    f'dataset.path=../shared/datasets/{args.dataset}',
                    'sampler=kgpolicy', 'num_threads=1',
                    'trainer.progress=false', 'trainer.patience=10',
                    'trainer.max_epochs=400', f'seed={seed}']
                    + SETTINGS[args.dataset])
            seed_everything(seed)
            model = instantiate(cfg.recommender, num_users=ds.num_users,
                                num_items=ds.num_items)
            _pretrain(cfg, ds, model)
            seed_everything(seed)
            if name == 'hybrid':
                sampler = Hybrid(instantiate(cfg.sampler, dataset=ds,
                                             scorer=model), args.uniform,
                                 ds.valid_pos)
            else:
                sampler = DNS.from_dataset(ds, num_candidates=args.uniform
                                           + 1)
            trainer = instantiate(cfg.trainer, model=model, sampler=sampler,
                                  dataset=ds, device='cpu')
            res = trainer.fit()
            st = res.sampler_stats
            pick = (f', KGPolicy\'s negative picked {100 * st["policy_pick_rate"]:.1f}%'
                    if 'policy_pick_rate' in st else '')
            print(f'{name:7s} seed {seed}: best epoch {res.best_epoch:3d} '
                  f'valid ndcg@20 {res.valid["ndcg@20"]:.4f} test ndcg@20 '
                  f'{res.test["ndcg@20"]:.4f} recall@20 '
                  f'{res.test["recall@20"]:.4f}, false negatives '
                  f'{100 * st["false_negative_rate"]:.2f}%{pick}', flush=True)
            rows.setdefault(name, []).append(
                (res.valid['ndcg@20'], res.test['ndcg@20'],
                 res.test['recall@20']))
    for name, r in rows.items():
        cols = list(zip(*r))
        sd = (lambda c: statistics.stdev(c) if len(c) > 1 else 0.0)
        print(f'{name:7s} mean over {len(r)} seeds: valid ndcg@20 '
              f'{statistics.mean(cols[0]):.4f}, test ndcg@20 '
              f'{statistics.mean(cols[1]):.4f} ± {sd(cols[1]):.4f}, '
              f'recall@20 {statistics.mean(cols[2]):.4f} ± '
              f'{sd(cols[2]):.4f}')
    print(f'# command: python benchmarks/probes/probe_hybrid.py --dataset '
          f'{args.dataset} --seeds {" ".join(map(str, args.seeds))} '
          f'--uniform {args.uniform} --samplers {" ".join(args.samplers)}')


if __name__ == '__main__':
    main()
