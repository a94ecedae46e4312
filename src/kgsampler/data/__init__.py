r"""Datasets of :mod:`kgsampler`: interactions plus a knowledge graph, their
readers and graph views."""
from kgsampler.data.csr import UserItemCSR
from kgsampler.data.kgat import (KGATFiles, read_interactions, read_kg,
                                 read_kgat, read_name_list)
from kgsampler.data.split import PerUserSplit, split_per_user
from kgsampler.data.graph import (HomogeneousKG, build_hetero_data,
                                  to_homogeneous_kg)
from kgsampler.data.dataset import KGRecDataset
from kgsampler.data.synthetic import make_large_synthetic, make_synthetic
from kgsampler.data.datasets import (AmazonBook, KGATDataset, LastFM,
                                     MovieLens1M, Yelp2018)
from kgsampler.data.recbole import read_recbole

__all__ = [
    'UserItemCSR',
    'KGRecDataset',
    'KGATFiles',
    'read_kgat',
    'read_interactions',
    'read_kg',
    'read_name_list',
    'PerUserSplit',
    'split_per_user',
    'build_hetero_data',
    'HomogeneousKG',
    'to_homogeneous_kg',
    'make_synthetic',
    'make_large_synthetic',
    'KGATDataset',
    'AmazonBook',
    'LastFM',
    'Yelp2018',
    'MovieLens1M',
    'read_recbole',
]
