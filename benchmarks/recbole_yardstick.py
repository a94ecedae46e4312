"""RecBole 1.2.1's default BPR (or LightGCN, KGAT) on this package's own split: the yardstick of our defaults.

Writes the train / validation / test pairs of ``KGRecDataset.from_kgat(PATH)`` (the package's
validation carve-out, ``valid_ratio`` 0.1, seed 2020) as RecBole benchmark atomic files
(``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter``) in a temporary folder, trains
RecBole's ``BPR`` with its default hyper-parameters (embedding 64, Adam lr 1e-3, batch 2048, one
uniform negative, up to 300 epochs, early stopping after 10 evaluations without gain) and
evaluates full ranking with RecBole's own ``Recall@20`` / ``NDCG@20``; the only settings changed
are the metrics (``Recall``, ``NDCG``, ``MRR`` at 10 and 20, validation on ``NDCG@20`` instead of ``MRR@10``
unless ``--valid-metric MRR@10``),
one thread, the CPU, and an optional wall-clock budget (``--budget`` seconds: training stops at
the first validation after it, the best validation checkpoint is tested).

``--model LightGCN`` trains RecBole's LightGCN (its defaults: 2 layers, reg 1e-5) instead.
``--model KGAT`` trains RecBole's KGAT instead, with its defaults (layers [64], bi-interaction,
message dropout 0.1, reg 1e-5, Adam lr 1e-3, batch 2048, alternating with its TransR KG loss), on the
same split plus the dataset's item KG, written as ``NAME.kg`` (the triples of ``kg_final.txt``) and
``NAME.link`` (item ``i`` is entity ``i``, as in the KGAT format, for every item with an
interaction). Prints one line::

    recbole MODEL  DATASET  epochs E (best B)  valid ndcg@20 V  test recall@20 R  ndcg@20 N  s/epoch S

RecBole's KGAT imports DGL only to build its initial, row-normalised adjacency (``init_graph``:
one edge subgraph per relation). DGL has no build for recent torch versions, so when ``import dgl``
fails, ``_dgl_shim`` stands in for the four calls used there (``graph``, ``edata``,
``filter_edges``, ``edge_subgraph`` and a SciPy ``adjacency_matrix``, rows = the edges' heads);
the model, its attention update, losses and trainer are RecBole's own.

RecBole is not a dependency of kgsampler: run it from a virtualenv that has both, e.g.::

    python -m venv /tmp/rbvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/rbvenv/lib/python3.11/site-packages/kg.pth
    /tmp/rbvenv/bin/pip install recbole==1.2.1
    OMP_NUM_THREADS=1 PYTHONPATH=src /tmp/rbvenv/bin/python benchmarks/recbole_yardstick.py \\
        ../shared/datasets/lastfm [--budget 3600]
"""
import argparse
import importlib
import os
import sys
import tempfile
import time


def _dgl_shim():
    """A stand-in ``dgl`` module with the graph calls RecBole 1.2.1's KGAT.init_graph makes."""
    import types
    import numpy as np
    import scipy.sparse as sp

    class Graph:
        def __init__(self, src, dst, num_nodes=None):
            self.src, self.dst = src.long(), dst.long()
            self.num_nodes = (int(max(self.src.max(), self.dst.max())) + 1
                              if num_nodes is None else num_nodes)
            self.edata = {}

        def filter_edges(self, predicate):
            mask = predicate(types.SimpleNamespace(data=self.edata))
            return mask.nonzero().view(-1)

        def adjacency_matrix(self, transpose=False, scipy_fmt='coo'):
            assert scipy_fmt == 'coo'
            row, col = (self.dst, self.src) if transpose else (self.src, self.dst)
            return sp.coo_matrix((np.ones(row.numel()), (row.numpy(), col.numpy())),
                                 shape=(self.num_nodes, self.num_nodes))

    def edge_subgraph(g, eids, preserve_nodes=True):
        assert preserve_nodes
        sub = Graph(g.src[eids], g.dst[eids], g.num_nodes)
        sub.edata = {k: v[eids] for k, v in g.edata.items()}
        return sub

    mod = types.ModuleType('dgl')
    mod.graph = lambda edges: Graph(*edges)
    mod.edge_subgraph = edge_subgraph
    return mod


def write_split(path: str, out: str, name: str, valid_ratio: float, seed: int,
                kg: bool = False) -> dict:
    from kgsampler import KGRecDataset
    ds = KGRecDataset.from_kgat(path, valid_ratio=valid_ratio, seed=seed)
    folder = os.path.join(out, name)
    os.makedirs(folder, exist_ok=True)
    for split, csr in (('train', ds.train_pos), ('valid', ds.valid_pos),
                       ('test', ds.test_pos)):
        users = csr.row_ids().tolist()
        items = csr.indices.tolist()
        with open(os.path.join(folder, f'{name}.{split}.inter'), 'w') as f:
            f.write('user_id:token\titem_id:token\n')
            f.writelines(f'{u}\t{i}\n' for u, i in zip(users, items))
    if kg:
        with open(os.path.join(folder, f'{name}.kg'), 'w') as f:
            f.write('head_id:token\trelation_id:token\ttail_id:token\n')
            f.writelines(f'{h}\t{r}\t{t}\n' for h, r, t in ds.kg.tolist())
        with open(os.path.join(folder, f'{name}.link'), 'w') as f:
            f.write('item_id:token\tentity_id:token\n')
            # only items that occur in an interaction file: RecBole has no item token for the
            # others, which stay plain KG entities
            seen = sorted(set().union(*(set(c.indices.tolist()) for c in
                                        (ds.train_pos, ds.valid_pos, ds.test_pos))))
            f.writelines(f'{i}\t{i}\n' for i in seen)
    return {'train': ds.train_pos.nnz, 'valid': ds.valid_pos.nnz,
            'test': ds.test_pos.nnz, 'users': ds.num_users, 'items': ds.num_items}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('path', help='a KGAT-format dataset folder')
    p.add_argument('--model', default='BPR', choices=('BPR', 'LightGCN', 'KGAT'),
                   help='the RecBole model, at its default hyper-parameters (default BPR)')
    p.add_argument('--budget', type=float, default=None,
                   help='wall-clock seconds of training (default: none, RecBole stops early)')
    p.add_argument('--batch-size', type=int, default=None,
                   help="RecBole's train_batch_size (default: RecBole's, 2048)")
    p.add_argument('--max-epochs', type=int, default=None,
                   help="RecBole's epochs (default: RecBole's, 300)")
    p.add_argument('--valid-ratio', type=float, default=0.1)
    p.add_argument('--split-seed', type=int, default=2020)
    p.add_argument('--seed', type=int, default=2020, help="RecBole's seed (default 2020)")
    p.add_argument('--valid-metric', default='NDCG@20',
                   help="validation metric of early stopping and model selection (default "
                        "NDCG@20; RecBole's own default is MRR@10)")
    args = p.parse_args(argv)

    import numpy as np
    import torch
    torch.set_num_threads(1)
    # RecBole 1.2.1 sets aliases that NumPy 2 removed (np.float = np.float_, ...): restore them.
    for old, new in (('float_', np.float64), ('complex_', np.complex128),
                     ('unicode_', np.str_)):
        if not hasattr(np, old):
            setattr(np, old, new)
    # RecBole 1.2.1's LightGCN fills its adjacency with dok_matrix._update, which SciPy >= 1.13
    # removed; the same dict update on the matrix's storage.
    import scipy.sparse as sp
    if not hasattr(sp.dok_matrix, '_update') and hasattr(sp.dok_matrix((1, 1)), '_dict'):
        sp.dok_matrix._update = lambda self, d: self._dict.update(d)
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    import recbole.trainer.trainer as rb_trainer
    from recbole.utils import get_model, get_trainer, init_logger, init_seed

    if args.model == 'KGAT':
        try:
            importlib.import_module('dgl')
        except Exception:  # absent, or no C++ library for this torch
            for key in [k for k in sys.modules if k == 'dgl' or k.startswith('dgl.')]:
                del sys.modules[key]
            sys.modules['dgl'] = _dgl_shim()
            print('dgl unavailable: using the stand-in for KGAT.init_graph', file=sys.stderr)
    sys.argv = sys.argv[:1]  # RecBole's Config also parses the command line
    name = os.path.basename(os.path.normpath(args.path))
    tmp = tempfile.mkdtemp(prefix='recbole-yardstick-')
    kg = args.model == 'KGAT'
    sizes = write_split(args.path, tmp, name, args.valid_ratio, args.split_seed, kg=kg)
    load_col = {'inter': ['user_id', 'item_id']}
    if kg:
        load_col.update(kg=['head_id', 'relation_id', 'tail_id'],
                        link=['item_id', 'entity_id'])
    os.chdir(tmp)  # RecBole writes its log_tensorboard/ and saved/ into the working directory
    config = Config(model=args.model, dataset=name, config_dict={
        'data_path': tmp, 'benchmark_filename': ['train', 'valid', 'test'],
        'load_col': load_col,
        'metrics': ['Recall', 'NDCG', 'MRR'], 'topk': [10, 20],
        'valid_metric': args.valid_metric,
        'use_gpu': False, 'device': 'cpu', 'seed': args.seed, 'show_progress': False,
        'checkpoint_dir': os.path.join(tmp, 'saved'), 'save_dataset': False,
        'save_dataloaders': False, 'worker': 0,
        **({'train_batch_size': args.batch_size} if args.batch_size else {}),
        **({'epochs': args.max_epochs} if args.max_epochs else {})})
    init_seed(config['seed'], config['reproducibility'])
    init_logger(config)  # RecBole's per-epoch log, on stderr and in the temporary folder
    torch.set_num_threads(1)
    dataset = create_dataset(config)
    print(dataset, file=sys.stderr)  # RecBole's own counts (users, items; entities, triples)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = get_model(config['model'])(config, train_data._dataset).to(config['device'])
    trainer = get_trainer(config['MODEL_TYPE'], config['model'])(config, model)

    # The budget: RecBole's fit() has no wall-clock cap, so its early-stopping rule is wrapped to
    # also stop at the first validation after the budget.
    start = time.perf_counter()
    epochs = [0]
    original = rb_trainer.early_stopping

    def early_stopping(*a, **kw):
        best, step, stop, update = original(*a, **kw)
        epochs[0] += 1
        if args.budget is not None and time.perf_counter() - start > args.budget:
            stop = True
        return best, step, stop, update

    rb_trainer.early_stopping = early_stopping
    # Training time alone (without validation), comparable with the package's per-epoch seconds.
    train_seconds = []
    train_epoch = trainer._train_epoch

    def timed_train_epoch(*a, **kw):
        t0 = time.perf_counter()
        out = train_epoch(*a, **kw)
        train_seconds.append(time.perf_counter() - t0)
        return out

    trainer._train_epoch = timed_train_epoch
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    seconds = time.perf_counter() - start
    # torch >= 2.6 loads weights only by default; RecBole's checkpoint also holds its config.
    state = torch.load(trainer.saved_model_file, map_location='cpu', weights_only=False)
    model.load_state_dict(state['state_dict'])
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    best_epoch = state['epoch'] + 1
    print(f"recbole {args.model}  {name}  ({sizes['users']} users, {sizes['items']} items, "
          f"train {sizes['train']}, valid {sizes['valid']}, test {sizes['test']})  "
          f"epochs {epochs[0]} (best {best_epoch})  valid {args.valid_metric.lower()} {best_valid:.4f}  "
          f"test recall@20 {test['recall@20']:.4f}  ndcg@20 {test['ndcg@20']:.4f}  "
          f"s/epoch {seconds / max(epochs[0], 1):.2f} (training and validation), "
          f"{sum(train_seconds) / max(len(train_seconds), 1):.2f} (training only)"
          + (f"  budget {args.budget:.0f} s" if args.budget is not None else ''))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
