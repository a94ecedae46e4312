"""Recommenders trained with kgsampler's samplers."""
from kgsampler.recommender.base import Recommender
from kgsampler.recommender.transr import TransR
from kgsampler.recommender.cke import CKE
from kgsampler.recommender.kgat import KGAT
from kgsampler.recommender.lightgcn import LightGCN
from kgsampler.recommender.mf import MF
from kgsampler.recommender.apr import APR
from kgsampler.recommender.nfm import NFM
from kgsampler.recommender.ripplenet import RippleNet

__all__ = ['Recommender', 'MF', 'APR', 'LightGCN', 'CKE', 'TransR', 'KGAT',
           'NFM', 'RippleNet']
