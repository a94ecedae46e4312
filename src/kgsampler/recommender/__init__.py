"""Recommenders trained with kgsampler's samplers."""
from kgsampler.recommender.base import Recommender
from kgsampler.recommender.lightgcn import LightGCN
from kgsampler.recommender.mf import MF

__all__ = ['Recommender', 'MF', 'LightGCN']
