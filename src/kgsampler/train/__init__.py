"""Training loop, per-epoch loggers and full-ranking evaluation."""
from kgsampler.train._loggers import (CSVLogger, EpochLogger,
                                      TensorBoardLogger, WandbLogger)
from kgsampler.train.evaluate import evaluate
from kgsampler.train.trainer import Trainer, TrainingDiverged, TrainResult

__all__ = ['Trainer', 'TrainResult', 'TrainingDiverged', 'evaluate', 'EpochLogger', 'CSVLogger',
           'TensorBoardLogger', 'WandbLogger']
