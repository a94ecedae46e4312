#!/usr/bin/env bash
# KGPolicy: the knobs the ablations do not cover (policy learning rate, reward baseline decay,
# random items competing in the pruning, the capped prediction reward, a per-user reward baseline,
# a penalty for proposing training positives, no warm start), one at a time from the defaults, with
# the settings of benchmarks/ablations.sh.
# Usage: bash benchmarks/probes/investigate.sh lastfm|ml-1m (SEEDS=1,2,3 by default), then
#   kgsampler-report multirun/investigate/DATASET --select sampler.lr sampler.baseline_decay \
#     sampler.prune_random sampler.cap_reward sampler.user_baseline sampler.positive_penalty pretrain --all
set -euo pipefail
name=${1:?usage: investigate.sh lastfm|ml-1m}
out=multirun/investigate/$name
source "$(dirname "$0")/../_kgpolicy_settings.sh"
common="dataset=kgat dataset.path=../shared/datasets/$name sampler=kgpolicy num_threads=1
  trainer.progress=false trainer.patience=10 trainer.max_epochs=400 seed=$seeds"
$TRAIN -m $common $data sampler.lr=1e-4,1e-2 hydra.sweep.dir=$out/lr
$TRAIN -m $common $data sampler.baseline_decay=0.5,0.99 hydra.sweep.dir=$out/baseline
$TRAIN -m $common $data sampler.prune_random=true hydra.sweep.dir=$out/prune_random
$TRAIN -m $common $data sampler.cap_reward=true hydra.sweep.dir=$out/cap_reward
$TRAIN -m $common $data sampler.user_baseline=true hydra.sweep.dir=$out/user_baseline
$TRAIN -m $common $data sampler.positive_penalty=1.0,5.0 hydra.sweep.dir=$out/positive_penalty
# no warm start: KGPolicy co-trains a fresh MF at the from-scratch baseline's learning rate
$TRAIN -m $common pretrain=none $scratch trainer.patience=20 hydra.sweep.dir=$out/no_warm_start
