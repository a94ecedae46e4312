"""RecBole 1.2.1's default BPR on this package's own split: the yardstick of the MF defaults.

Writes the train / validation / test pairs of ``KGRecDataset.from_kgat(PATH)`` (the package's
validation carve-out, ``valid_ratio`` 0.1, seed 2020) as RecBole benchmark atomic files
(``NAME.train.inter``, ``NAME.valid.inter``, ``NAME.test.inter``) in a temporary folder, trains
RecBole's ``BPR`` with its default hyper-parameters (embedding 64, Adam lr 1e-3, batch 2048, one
uniform negative, up to 300 epochs, early stopping after 10 evaluations without gain) and
evaluates full ranking with RecBole's own ``Recall@20`` / ``NDCG@20``; the only settings changed
are the metrics (``Recall``, ``NDCG``, ``MRR`` at 10 and 20, validation on ``NDCG@20`` instead of ``MRR@10``
unless ``--valid-metric MRR@10``),
one thread, the CPU, and an optional wall-clock budget (``--budget`` seconds: training stops at
the first validation after it, the best validation checkpoint is tested). Prints one line::

    recbole BPR  DATASET  epochs E (best B)  valid ndcg@20 V  test recall@20 R  ndcg@20 N  s/epoch S

RecBole is not a dependency of kgsampler: run it from a virtualenv that has both, e.g.::

    python -m venv /tmp/rbvenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/rbvenv/lib/python3.11/site-packages/kg.pth
    /tmp/rbvenv/bin/pip install recbole==1.2.1
    OMP_NUM_THREADS=1 PYTHONPATH=src /tmp/rbvenv/bin/python benchmarks/recbole_yardstick.py \\
        ../shared/datasets/lastfm [--budget 3600]
"""
import argparse
import os
import sys
import tempfile
import time


def write_split(path: str, out: str, name: str, valid_ratio: float, seed: int) -> dict:
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
    return {'train': ds.train_pos.nnz, 'valid': ds.valid_pos.nnz,
            'test': ds.test_pos.nnz, 'users': ds.num_users, 'items': ds.num_items}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('path', help='a KGAT-format dataset folder')
    p.add_argument('--budget', type=float, default=None,
                   help='wall-clock seconds of training (default: none, RecBole stops early)')
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
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    import recbole.trainer.trainer as rb_trainer
    from recbole.utils import init_logger, init_seed

    sys.argv = sys.argv[:1]  # RecBole's Config also parses the command line
    name = os.path.basename(os.path.normpath(args.path))
    tmp = tempfile.mkdtemp(prefix='recbole-yardstick-')
    sizes = write_split(args.path, tmp, name, args.valid_ratio, args.split_seed)
    os.chdir(tmp)  # RecBole writes its log_tensorboard/ and saved/ into the working directory
    config = Config(model='BPR', dataset=name, config_dict={
        'data_path': tmp, 'benchmark_filename': ['train', 'valid', 'test'],
        'load_col': {'inter': ['user_id', 'item_id']},
        'metrics': ['Recall', 'NDCG', 'MRR'], 'topk': [10, 20],
        'valid_metric': args.valid_metric,
        'use_gpu': False, 'device': 'cpu', 'seed': args.seed, 'show_progress': False,
        'checkpoint_dir': os.path.join(tmp, 'saved'), 'save_dataset': False,
        'save_dataloaders': False, 'worker': 0})
    init_seed(config['seed'], config['reproducibility'])
    init_logger(config)  # RecBole's per-epoch log, on stderr and in the temporary folder
    torch.set_num_threads(1)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    model = BPR(config, train_data.dataset).to(config['device'])
    trainer = rb_trainer.Trainer(config, model)

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
    best_valid, _ = trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    seconds = time.perf_counter() - start
    # torch >= 2.6 loads weights only by default; RecBole's checkpoint also holds its config.
    state = torch.load(trainer.saved_model_file, map_location='cpu', weights_only=False)
    model.load_state_dict(state['state_dict'])
    test = trainer.evaluate(test_data, load_best_model=False, show_progress=False)
    best_epoch = state['epoch'] + 1
    print(f"recbole BPR  {name}  ({sizes['users']} users, {sizes['items']} items, "
          f"train {sizes['train']}, valid {sizes['valid']}, test {sizes['test']})  "
          f"epochs {epochs[0]} (best {best_epoch})  valid {args.valid_metric.lower()} {best_valid:.4f}  "
          f"test recall@20 {test['recall@20']:.4f}  ndcg@20 {test['ndcg@20']:.4f}  "
          f"s/epoch {seconds / max(epochs[0], 1):.2f} (training and validation)"
          + (f"  budget {args.budget:.0f} s" if args.budget is not None else ''))
    sys.stdout.flush()


if __name__ == '__main__':
    main()
