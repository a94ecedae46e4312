"""What each sampler's negatives look like at KGPolicy's warm start: how
popular they are, how hard (the recommender's score against the positive's)
and how often they are validation positives (false negatives), for RNS, PNS,
DNS-8 and KGPolicy before and after epochs of co-training.

    python benchmarks/probes/probe_negatives.py --dataset ml-1m
    python benchmarks/probes/probe_negatives.py --dataset lastfm --epochs 3

The warm start is the one the ablation scripts use (MF trained with RNS,
``benchmarks/_kgpolicy_settings.sh``'s learning rates, seed --seed), loaded
from their cache (``multirun/ablation/cache``, or $KGSAMPLER_CACHE) or
trained and cached first. Every sampler is probed on the same --batches
batches of 1024 training pairs (one negative each). KGPolicy is then
co-trained with the warm-started MF at the ablations' co-training learning
rate, and probed after each epoch (with the MF of that epoch; the other rows
keep the warm start's).

Columns: ``log-pop`` is the mean log(1 + training degree) of the negatives;
``hardness`` the mean sigmoid(f(u, j) - f(u, i)) (the BPR gradient's
weight for the pair); ``false neg`` the share that are validation positives
of their user; ``random`` (KGPolicy) the share of negatives that came from
the random items rather than the KG.
"""
import argparse
import os

import torch

import os as _os, sys as _sys  # noqa: E401
_sys.path.insert(0, _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), ".."))
from _common import ROOT, dataset_dir, header

# benchmarks/_kgpolicy_settings.sh, as Hydra overrides
SETTINGS = {
    'ml-1m': ['pretrain.lr=1e-3', 'trainer.lr=2e-4'],
    'lastfm': ['pretrain.lr=5e-3', 'pretrain.weight_decay=1e-5',
               'trainer.lr=1e-3', 'trainer.weight_decay=1e-5'],
}


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='ml-1m', choices=sorted(SETTINGS))
    p.add_argument('--seed', type=int, default=1)
    p.add_argument('--batches', type=int, default=20)
    p.add_argument('--epochs', type=int, default=2)
    args = p.parse_args()
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from kgsampler import DNS, PNS, RNS, KGPolicy, KGRecDataset
    from kgsampler.cli import _pretrain, seed_everything
    torch.set_num_threads(1)
    os.chdir(ROOT)  # the cache and the dataset paths are relative to it
    os.environ.setdefault('KGSAMPLER_CACHE', 'multirun/ablation/cache')
    path = dataset_dir(args.dataset)
    with initialize_config_dir(config_dir=str(ROOT / 'conf'),
                               version_base=None):
        cfg = compose('train', overrides=[
            'dataset=kgat', f'dataset.path=../shared/datasets/{args.dataset}',
            'sampler=kgpolicy', 'num_threads=1', 'trainer.progress=false',
            'trainer.patience=10', 'trainer.max_epochs=400',
            f'seed={args.seed}'] + SETTINGS[args.dataset])
    header(f'negatives at the warm start, {args.dataset}, seed {args.seed}, '
           f'{args.batches} batches of 1024')
    seed_everything(args.seed)
    ds = KGRecDataset.from_kgat(path)
    model = instantiate(cfg.recommender, num_users=ds.num_users,
                        num_items=ds.num_items)
    _pretrain(cfg, ds, model)
    logpop = (torch.bincount(ds.train_pos.indices, minlength=ds.num_items)
              .float() + 1).log()
    valid = ds.valid_pos.to_dense()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(ds.train_pos.nnz, (args.batches, 1024), generator=g)
    users_all, items_all = ds.train_pos.row_ids(), ds.train_pos.indices
    print(f'items {ds.num_items}: mean log-pop {logpop.mean():.3f} over '
          f'items, {logpop[items_all].mean():.3f} over training '
          f'interactions')
    print(f'{"sampler":32s} {"log-pop":>8s} {"hardness":>9s} '
          f'{"false neg":>10s} {"random":>7s}')

    @torch.no_grad()
    def probe(label, sampler):
        pop, hard, fn = [], [], []
        for i in idx:
            u, pos = users_all[i], items_all[i]
            out = sampler.sample(u, pos, 1)
            n = out.neg_items[:, 0]
            pop.append(logpop[n].mean())
            fn.append(valid[u, n].float().mean())
            d = model.score(u, n.view(-1, 1)) - model.score(u, pos.view(-1, 1))
            hard.append(torch.sigmoid(d).mean())
        r = ''
        if isinstance(sampler, KGPolicy):
            st = sampler.summary_stats()
            r = f'{100 * st["random_pick_rate"]:6.1f}%'
            sampler.reset_stats()
        print(f'{label:32s} {torch.stack(pop).mean():8.3f} '
              f'{torch.stack(hard).mean():9.4f} '
              f'{100 * torch.stack(fn).mean():9.2f}% {r:>7s}', flush=True)

    probe('RNS', RNS(ds.train_pos))
    probe('PNS', PNS(ds.train_pos))
    probe('DNS-8', DNS(ds.train_pos, scorer=model, num_candidates=8))
    seed_everything(args.seed)
    sampler = instantiate(cfg.sampler, dataset=ds, scorer=model)
    probe('KGPolicy, untrained', sampler)
    trainer = instantiate(cfg.trainer, model=model, sampler=sampler,
                          dataset=ds, device='cpu', track_dynamics=False)
    for epoch in range(1, args.epochs + 1):
        trainer.train_epoch(epoch)
        sampler.reset_stats()
        probe(f'KGPolicy, co-trained {epoch} epoch(s)', sampler)
    print(f'# command: python benchmarks/probes/probe_negatives.py --dataset '
          f'{args.dataset} --seed {args.seed} --batches {args.batches} '
          f'--epochs {args.epochs}')


if __name__ == '__main__':
    main()
