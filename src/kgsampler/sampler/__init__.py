"""Negative samplers."""
from kgsampler.sampler.base import EmbeddingScorer, Sampler, SamplerOutput, Scorer
from kgsampler.sampler.dns import DNS
from kgsampler.sampler.kgpolicy import (KGPolicy, KGPolicyOutput,
                                         KGPolicyRollout, format_paths)
from kgsampler.sampler.popularity import PNS
from kgsampler.sampler.uniform import RNS

__all__ = [
    'Sampler',
    'SamplerOutput',
    'Scorer',
    'EmbeddingScorer',
    'RNS',
    'PNS',
    'DNS',
    'KGPolicy',
    'KGPolicyOutput',
    'KGPolicyRollout',
    'format_paths',
]
