"""kgsampler: plug-and-play negative samplers for recommender systems.

Typical use inside your own training loop::

    from kgsampler import KGRecDataset, DNS, KGPolicy
    ds = KGRecDataset.from_kgat('path/to/ml-1m')
    sampler = DNS(ds.train_pos, scorer=my_model, num_candidates=8)
    # or: sampler = KGPolicy.from_dataset(ds, scorer=my_model)
    neg = sampler.sample(users, pos_items, num_neg=1).neg_items  # [B, 1]
"""
from kgsampler.data import (KGRecDataset, UserItemCSR, build_hetero_data,
                            make_large_synthetic, make_synthetic)
from kgsampler.recommender import APR
from kgsampler.recommender import (CKE, KGAT, MF, NFM, LightGCN, Recommender,
                                   RippleNet, TransR)
from kgsampler.sampler import NMRN, AdvIR
from kgsampler.sampler import DENS
from kgsampler.sampler import MixGCF
from kgsampler.recommender.base import LayerEmbeddings
from kgsampler.sampler import (AHNS, DNS, DNSMN, PNS, RNS, SRNS, Adversarial,
                               EmbeddingScorer, KGPolicy, RandomWalk, Sampler,
                               SamplerOutput, Scorer, SoftmaxNS, format_paths)
from kgsampler.train import Trainer, TrainResult, evaluate

__version__ = '0.1.0'

__all__ = [
    'KGRecDataset',
    'UserItemCSR',
    'build_hetero_data',
    'make_synthetic',
    'make_large_synthetic',
    'Sampler',
    'SamplerOutput',
    'Scorer',
    'EmbeddingScorer',
    'RNS',
    'PNS',
    'DNS',
    'DNSMN',
    'SoftmaxNS',
    'AHNS',
    'SRNS',
    'DENS',
    'MixGCF',
    'Adversarial',
    'AdvIR',
    'NMRN',
    'RandomWalk',
    'KGPolicy',
    'format_paths',
    'Recommender',
    'LayerEmbeddings',
    'MF',
    'APR',
    'LightGCN',
    'CKE',
    'TransR',
    'KGAT',
    'NFM',
    'RippleNet',
    'Trainer',
    'TrainResult',
    'evaluate',
    '__version__',
]
