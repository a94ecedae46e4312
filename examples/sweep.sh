#!/usr/bin/env bash
# Compare samplers on a KGAT folder with a Hydra multirun (3 seeds each); every run
# writes metrics.json under multirun/<date>/<time>/<job>/.
#   bash examples/sweep.sh ../shared/datasets/lastfm        # one job after the other
#   bash examples/sweep.sh ../shared/datasets/lastfm 2      # 2 jobs at a time (joblib launcher,
#                                                          # pip install 'kgsampler[sweep]')
# Each job uses one torch thread (num_threads=1): keep N_JOBS at most the number of free cores.
# Extra arguments are passed on, e.g. `bash examples/sweep.sh DATA 2 trainer.time_budget=600`.
set -euo pipefail
data=${1:-../shared/datasets/lastfm}
n_jobs=${2:-1}
shift $(( $# < 2 ? $# : 2 ))
launcher=()
if [ "$n_jobs" -gt 1 ]; then
  launcher=(hydra/launcher=joblib "hydra.launcher.n_jobs=$n_jobs")
fi
kgsampler-train -m ${launcher[@]+"${launcher[@]}"} dataset=kgat dataset.path="$data" sampler=rns,pns,dns \
  seed=1,2,3 num_threads=1 trainer.progress=false "$@"
