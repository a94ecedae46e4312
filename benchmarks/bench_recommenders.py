"""Recommender speed: LightGCN's propagation per adjacency format, and the
training-epoch time of MF and LightGCN with RNS, measured in one run.

    python benchmarks/bench_recommenders.py                  # ml-1m, 2 epochs
    python benchmarks/bench_recommenders.py --dataset lastfm --epochs 3
    python benchmarks/bench_recommenders.py --skip-propagation --recommenders mf,kgat

Part 1 times one full-graph propagation of PyG's
``torch_geometric.nn.models.LightGCN`` (64 dimensions, 3 layers) forward and
backward (a loss on 3,072 rows, as a batch of 1,024 (user, positive,
negative) triples), and forward alone without gradients, with the graph
given as: PyG's ``edge_index`` (normalised by ``gcn_norm`` in every layer of
every call, gather/scatter message passing), ``edge_index`` with
precomputed normalised weights, the precomputed normalised adjacency as a
``torch.sparse_csr`` tensor differentiated by ``torch.sparse.mm``'s own
backward, and the same CSR with the symmetric backward of
``kgsampler.LightGCN`` (its default and only path). Best of --repeat.

Part 2 trains each recommender of --recommenders, built from its packaged
``conf/recommender/<name>.yaml`` defaults as the CLI builds it, with RNS,
batch 1024 (--batch-size), --epochs epochs each (the trainer's ``train_epoch``, auxiliary
phase included, evaluation excluded; dynamics tracking off, as in
bench_speed.py), then one full-ranking evaluation of the test split, and
prints the ratio of its mean epoch time to MF's beside RecBole 1.2.1's
published ratio to its BPR on ml-1m. One thread unless --threads; run it
from the checkout's root (it reads ``conf/``).
"""
import argparse
import time
import warnings

import torch

from _common import dataset_dir, header


def propagation(ds, repeat: int):
    from torch_geometric.nn.conv.gcn_conv import gcn_norm
    from torch_geometric.nn.models import LightGCN as PyGLightGCN

    from kgsampler import LightGCN
    U, I = ds.num_users, ds.num_items
    N = U + I
    r, c = ds.train_pos.row_ids(), ds.train_pos.indices + U
    ei = torch.cat([torch.stack([r, c]), torch.stack([c, r])], 1)
    ei_n, w = gcn_norm(ei, None, N, add_self_loops=False)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)
        csr = torch.sparse_coo_tensor(ei_n, w, (N, N)).coalesce() \
            .to_sparse_csr()
    ours = LightGCN.from_dataset(ds, embedding_dim=64, num_layers=3)
    variants = [
        ('edge_index (PyG default)', PyGLightGCN(N, 64, 3), (ei, )),
        ('edge_index + edge_weight', PyGLightGCN(N, 64, 3, normalize=False),
         (ei_n, w)),
        ('sparse_csr, torch.sparse.mm backward',
         PyGLightGCN(N, 64, 3, normalize=False), (csr, )),
        ('sparse_csr, symmetric backward (kgsampler)', ours.gnn,
         (ours.adj_t, )),
    ]
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(N, (3072, ), generator=g)
    ref = None
    print(f'{"adjacency":44s} {"fwd+bwd ms":>10s} {"fwd ms":>8s} '
          f'{"max |diff|":>10s}')
    for name, model, args in variants:
        model.load_state_dict(ours.gnn.state_dict())

        def step():
            model.embedding.weight.grad = None
            model.get_embedding(*args)[rows].pow(2).sum().backward()

        def forward():
            with torch.no_grad():
                return model.get_embedding(*args)
        out = forward()
        ref = out if ref is None else ref
        diff = (out - ref).abs().max().item()
        best = {}
        for key, fn in (('step', step), ('forward', forward)):
            fn()  # warm-up
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            best[key] = min(times) * 1e3
        print(f'{name:44s} {best["step"]:10.1f} {best["forward"]:8.1f} '
              f'{diff:10.1e}', flush=True)


# RecBole 1.2.1's published epoch times on ml-1m (seconds) and their ratio to
# its BPR (1.73 s), from its benchmark page; ours are measured here, on a CPU.
RECBOLE = {'mf': 1.73, 'lightgcn': 4.10, 'cke': 9.32, 'kgat': 9.39,
           'ripplenet': 81.82}


def build(name: str, ds):
    """The recommender of ``conf/recommender/<name>.yaml`` with its packaged
    defaults, given the dataset arguments its constructor names (as the
    CLI does)."""
    import yaml
    from hydra.utils import instantiate

    from kgsampler.cli import recommender_args
    with open(f'conf/recommender/{name}.yaml') as f:
        cfg = yaml.safe_load(f)
    return instantiate(cfg, _partial_=True)(
        **recommender_args(cfg["_target_"], ds))


def epochs(ds, num_epochs: int, names, batch_size: int = 1024):
    from kgsampler import RNS, Trainer
    print(f'\n{"recommender":12s} {"epoch s (each)":>24s} {"mean s":>8s} '
          f'{"eval s":>7s} {"/ MF":>6s} {"RecBole / BPR":>14s}')
    means = {}
    for name in names:
        torch.manual_seed(0)
        model = build(name, ds)
        trainer = Trainer(model, RNS(ds.train_pos), ds, batch_size=batch_size,
                          progress=False, track_dynamics=False)
        times = []
        for e in range(num_epochs):
            t0 = time.perf_counter()
            trainer.train_epoch(1 + e)
            times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        trainer.evaluate('test')
        ev = time.perf_counter() - t0
        means[name] = sum(times) / len(times)
        each = ' '.join(f'{t:.2f}' for t in times[:3]) + (
            ' ..' if len(times) > 3 else '')
        ratio = means[name] / means['mf'] if 'mf' in means else float('nan')
        rb = (f'{RECBOLE[name] / RECBOLE["mf"]:.1f}x' if name in RECBOLE
              else '-')
        print(f'{name:12s} {each:>24s} {means[name]:8.2f} {ev:7.2f} '
              f'{ratio:5.1f}x {rb:>14s}', flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--dataset', default='ml-1m')
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--recommenders', default='mf,lightgcn,cke,nfm,'
                   'ripplenet,kgat', help='comma-separated config names '
                   '(mf first: the ratios are to it)')
    p.add_argument('--skip-propagation', action='store_true')
    p.add_argument('--batch-size', type=int, default=1024,
                   help='training batch of part 2 (default 1024; RecBole trains at 2048)')
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from kgsampler import KGRecDataset
    ds = KGRecDataset.from_kgat(dataset_dir(args.dataset))
    header(f'recommender speed on {args.dataset} ({ds.num_users} users, '
           f'{ds.num_items} items, {ds.train_pos.nnz} training pairs), '
           f'{args.threads} thread(s), CPU')
    if not args.skip_propagation:
        propagation(ds, args.repeat)
    epochs(ds, args.epochs, args.recommenders.split(','), args.batch_size)


if __name__ == '__main__':
    main()
