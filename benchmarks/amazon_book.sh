#!/usr/bin/env bash
# amazon-book under a fixed epoch budget (one seed; an MF epoch alone takes ~16 s here, dense Adam
# over 95K embeddings): RNS and DNS-8 from scratch for 30 epochs; DNS-8 and KGPolicy co-trained for
# 10 epochs from the 30-epoch RNS warm start (cached); evaluated every 5 epochs, the best of those
# on validation reported. About 35 min on one core. Then:
#   kgsampler-report multirun/amazon --baseline rns
set -euo pipefail
TRAIN=${TRAIN:-.venv/bin/kgsampler-train}
export KGSAMPLER_CACHE=${KGSAMPLER_CACHE:-multirun/amazon/cache}
common="dataset=kgat dataset.path=../shared/datasets/amazon-book seed=1 num_threads=1
  trainer.progress=false trainer.eval_every=5 trainer.patience=2"
$TRAIN -m $common sampler=kgpolicy,dns pretrain=rns pretrain.epochs=30 pretrain.lr=1e-3 \
  trainer.lr=2e-4 trainer.max_epochs=10 hydra.sweep.dir=multirun/amazon/warm
$TRAIN -m $common sampler=rns,dns trainer.max_epochs=30 hydra.sweep.dir=multirun/amazon/scratch
