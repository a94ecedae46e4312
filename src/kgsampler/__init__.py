"""kgsampler: plug-and-play negative samplers for recommender systems.

Typical use inside your own training loop::

    from kgsampler import KGRecDataset, DNS
    ds = KGRecDataset.from_kgat('path/to/ml-1m')
    sampler = DNS(ds.train_pos, scorer=my_model, num_candidates=8)
    neg = sampler.sample(users, pos_items, num_neg=1).neg_items  # [B, 1]
"""
from kgsampler.data import (KGRecDataset, UserItemCSR, build_hetero_data,
                            make_synthetic)
from kgsampler.recommender import MF, Recommender
from kgsampler.sampler import (DNS, PNS, RNS, EmbeddingScorer, Sampler,
                               SamplerOutput, Scorer)
from kgsampler.train import Trainer, TrainResult, evaluate

__version__ = '0.1.0'

__all__ = [
    'KGRecDataset',
    'UserItemCSR',
    'build_hetero_data',
    'make_synthetic',
    'Sampler',
    'SamplerOutput',
    'Scorer',
    'EmbeddingScorer',
    'RNS',
    'PNS',
    'DNS',
    'Recommender',
    'MF',
    'Trainer',
    'TrainResult',
    'evaluate',
    '__version__',
]
