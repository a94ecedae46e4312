#!/usr/bin/env bash
# The KGPolicy paper's Table 3 on this package: MF with RNS, DNS-8 and KGPolicy against the KG-based
# recommenders NFM, CKE, RippleNet and KGAT (each with RNS and DNS-8), early stopping on validation
# (patience 10), test reported; every run capped at trainer.time_budget seconds. One optimiser
# setting per dataset for every recommender (lastfm: lr 5e-3, weight decay 1e-5; ml-1m: lr 1e-3,
# MF's validation choices); MF + KGPolicy starts from the RNS warm start of the verdict
# (_kgpolicy_settings.sh). One thread a run.
# Usage: SEEDS=1,2,3 BUDGET=900 bash benchmarks/table3.sh lastfm|ml-1m|amazon-book
# Then: kgsampler-report multirun/table3/$name/* --baseline rns
set -euo pipefail
name=$1
source "$(dirname "$0")/_kgpolicy_settings.sh"
export KGSAMPLER_CACHE=multirun/table3/cache
out=${OUT:-multirun/table3/$name}
budget=${BUDGET:-900}
case $name in
  lastfm) opt="trainer.lr=5e-3 trainer.weight_decay=1e-5" ;;
  *) opt="trainer.lr=1e-3" ;;
esac
common="dataset=kgat dataset.path=../shared/datasets/$name seed=$seeds num_threads=1 trainer.progress=false \
  trainer.patience=10 trainer.time_budget=$budget"
$TRAIN -m +experiment=table3 $common $opt hydra.sweep.dir=$out/recommenders
$TRAIN -m $common sampler=kgpolicy $data hydra.sweep.dir=$out/kgpolicy
