"""Training loop and full-ranking evaluation."""
from kgsampler.train.evaluate import evaluate
from kgsampler.train.trainer import Trainer, TrainResult

__all__ = ['Trainer', 'TrainResult', 'evaluate']
