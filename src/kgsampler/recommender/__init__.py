"""Recommenders trained with kgsampler's samplers."""
from kgsampler.recommender.base import Recommender
from kgsampler.recommender.transr import TransR
from kgsampler.recommender.cke import CKE
from kgsampler.recommender.kgat import KGAT
from kgsampler.recommender.lightgcn import LightGCN
from kgsampler.recommender.mf import MF

__all__ = ['Recommender', 'MF', 'LightGCN', 'CKE', 'TransR', 'KGAT']
