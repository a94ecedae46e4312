#!/usr/bin/env bash
# KGPolicy: the knobs the ablations do not cover (policy learning rate, reward baseline decay,
# random items competing in the pruning, no warm start), one at a time from the defaults, with
# the settings of benchmarks/ablations.sh. Usage: bash benchmarks/investigate.sh lastfm|ml-1m
# (SEEDS=1,2,3 by default), then
#   kgsampler-report multirun/investigate/DATASET --select sampler.lr sampler.baseline_decay \
#     sampler.prune_random pretrain --all
set -euo pipefail
TRAIN=${TRAIN:-.venv/bin/kgsampler-train}
name=${1:?usage: investigate.sh lastfm|ml-1m}
seeds=${SEEDS:-1,2,3}
out=multirun/investigate/$name
export KGSAMPLER_CACHE=${KGSAMPLER_CACHE:-multirun/ablation/cache}
case $name in
  lastfm) data="pretrain.lr=5e-3 pretrain.weight_decay=1e-5 trainer.lr=1e-3 trainer.weight_decay=1e-5" ;;
  ml-1m) data="pretrain.lr=1e-3 trainer.lr=2e-4" ;;
  *) echo "unknown dataset $name" >&2; exit 2 ;;
esac
common="dataset=kgat dataset.path=../shared/datasets/$name sampler=kgpolicy num_threads=1
  trainer.progress=false trainer.patience=10 trainer.max_epochs=400 seed=$seeds"
$TRAIN -m $common $data sampler.lr=1e-4,1e-2 hydra.sweep.dir=$out/lr
$TRAIN -m $common $data sampler.baseline_decay=0.5,0.99 hydra.sweep.dir=$out/baseline
$TRAIN -m $common $data sampler.prune_random=true hydra.sweep.dir=$out/prune_random
# no warm start: KGPolicy co-trains a fresh MF at the from-scratch baseline's learning rate
case $name in
  lastfm) scratch="trainer.lr=1e-3 trainer.weight_decay=1e-5" ;;
  ml-1m) scratch="trainer.lr=1e-3" ;;
esac
$TRAIN -m $common pretrain=none $scratch trainer.patience=20 hydra.sweep.dir=$out/no_warm_start
