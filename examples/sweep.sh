#!/usr/bin/env bash
# Compare samplers on a KGAT folder with a Hydra multirun (3 seeds each); every run
# writes metrics.json under multirun/<date>/<time>/<job>/.
#   bash examples/sweep.sh ../shared/datasets/lastfm
set -euo pipefail
data=${1:-../shared/datasets/lastfm}
kgsampler-train -m dataset=kgat dataset.path="$data" sampler=rns,pns,dns seed=1,2,3 \
  num_threads=1 trainer.progress=false
