#!/usr/bin/env bash
# KGPolicy ablations (the paper's Tables 4 and 5, and the pruned size n2) as Hydra multiruns on
# one core, 3 seeds, from the cached RNS warm start. Usage, from the repository root after
# `make install`:
#   bash benchmarks/ablations.sh lastfm      # ~5 min here (2026-11-26 code)
#   bash benchmarks/ablations.sh ml-1m       # ~45 min here (SEEDS=1 for one seed: ~15 min)
# then, e.g.:
#   kgsampler-report multirun/ablation/lastfm/steps --select sampler.steps --all
#   kgsampler-report multirun/ablation/lastfm/reward --select sampler.w_p sampler.w_s --all
#   kgsampler-report multirun/ablation/lastfm/n2 --select sampler.n2 --all
# Settings: those of benchmarks/quality_sweeps.sh part 2 (warm start at the RNS baseline's best
# settings, co-training lr chosen on validation), walks through KG entities only
# (sampler.user_hops=false, better on validation on both datasets). T=2, w_p=w_s=1, n2=16 is
# the shared reference point: it runs once, in the steps sweep.
set -euo pipefail
name=${1:?usage: ablations.sh lastfm|ml-1m}
out=multirun/ablation/$name
source "$(dirname "$0")/_kgpolicy_settings.sh"
common="dataset=kgat dataset.path=../shared/datasets/$name $data sampler.user_hops=false
  trainer.patience=10 trainer.max_epochs=400 seed=$seeds"
$TRAIN -m +experiment=kgpolicy_steps $common hydra.sweep.dir=$out/steps
$TRAIN -m +experiment=kgpolicy_reward $common sampler.w_s=0,-1 hydra.sweep.dir=$out/reward
$TRAIN -m +experiment=kgpolicy_reward $common sampler.w_p=0 sampler.w_s=1 \
  hydra.sweep.dir=$out/reward_s_only
$TRAIN -m +experiment=kgpolicy_n2 $common sampler.n2=4,8,32,64 hydra.sweep.dir=$out/n2
