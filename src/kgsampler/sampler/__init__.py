"""Negative samplers."""
from kgsampler.sampler.adversarial import Adversarial, AdversarialOutput
from kgsampler.sampler.advir import AdvIR
from kgsampler.sampler.ahns import AHNS
from kgsampler.sampler.base import (EmbeddingScorer, ModuleSamplerMixin,
                                    Sampler,
                                    SamplerOutput, Scorer)
from kgsampler.sampler.dens import DENS, DENSFactors
from kgsampler.sampler.dns import DNS
from kgsampler.sampler.hard_negative import DNSMN, SoftmaxNS
from kgsampler.sampler.mixgcf import MixGCF
from kgsampler.sampler._kgpolicy_explain import format_paths
from kgsampler.sampler.nmrn import NMRN
from kgsampler.sampler.kgpolicy import (KGPolicy, KGPolicyOutput,
                                         KGPolicyRollout)
from kgsampler.sampler.popularity import PNS
from kgsampler.sampler.random_walk import RandomWalk
from kgsampler.sampler.srns import SRNS
from kgsampler.sampler.uniform import RNS

__all__ = [
    'Sampler',
    'SamplerOutput',
    'Scorer',
    'EmbeddingScorer',
    'ModuleSamplerMixin',
    'RNS',
    'PNS',
    'DNS',
    'DNSMN',
    'SoftmaxNS',
    'AHNS',
    'SRNS',
    'MixGCF',
    'DENS',
    'DENSFactors',
    'Adversarial',
    'AdversarialOutput',
    'AdvIR',
    'NMRN',
    'RandomWalk',
    'KGPolicy',
    'KGPolicyOutput',
    'KGPolicyRollout',
    'format_paths',
]
