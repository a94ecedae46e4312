#!/usr/bin/env bash
# The sampler leaderboard as one command: every entry of conf/leaderboard/ (each sampler at each
# value of its main knob's stated grid) x 3 seeds on one dataset and recommender, through the
# packaged recipe conf/experiment/leaderboard.yaml, then kgsampler-report choosing each sampler's
# knob on mean validation NDCG@20 and comparing with DNS-8 (paired t-test by seed) and RNS's epoch
# time. One thread a run; JOBS=2 runs two at once (hydra-joblib-launcher, the sweep extra).
# Usage: bash benchmarks/leaderboard.sh lastfm|ml-1m|amazon-book mf|lightgcn
#        bash benchmarks/leaderboard.sh all      (the 6 dataset x recommender leaderboards in turn)
#        (SEEDS=1,2,3 JOBS=1 OUT=multirun/leaderboard-cli/<dataset>-<recommender>; ENTRIES=a,b,...
#        runs only those entries; EXTRA='key=value ...' adds overrides, e.g. trainer.time_budget=180)
#        REPORT_ONLY=1 rewrites the reports from the runs in $OUT (subfolders included) without
#        training; it keeps the first report's "Report written" line, and its Command line is
#        rebuilt from the variables given to the rewrite.
#        SCRATCH=1: the literature's protocol instead of the warm start: every run trains from the
#        recommender's random initialisation (pretrain=none) at the RNS baseline's learning rate,
#        patience 20, up to 300 epochs, a 600 s training cap a run; lastfm and ml-1m only. Its
#        results go to leaderboard_<dataset>-scratch-<recommender>.md.
# The report: $OUT/report.md (every setting) and $OUT/leaderboard.md (the chosen ones).
set -euo pipefail
name=$1
if [ "$name" = all ]; then
  sets="lastfm ml-1m amazon-book"
  [ "${SCRATCH:-0}" = 1 ] && sets="lastfm ml-1m"  # no from-scratch budget for amazon-book
  for d in $sets; do for r in mf lightgcn; do
    OUT= bash "$0" "$d" "$r"
  done; done
  exit 0
fi
rec=${2:-mf}
TRAIN=${TRAIN:-.venv/bin/kgsampler-train}
REPORT=${REPORT:-.venv/bin/kgsampler-report}
seeds=${SEEDS:-1,2,3}
jobs=${JOBS:-1}
export KGSAMPLER_CACHE=${KGSAMPLER_CACHE:-multirun/leaderboard-cli/cache}
export OMP_NUM_THREADS=1
# Per dataset: the warm start at the RNS baseline's settings chosen on validation, co-training at a
# smaller learning rate (MF: benchmarks/_kgpolicy_settings.sh; LightGCN on lastfm: lr 5e-3 chosen
# for LightGCN + RNS in benchmarks/results/lightgcn_lastfm.md).
case $name in
  lastfm) data="pretrain.lr=5e-3 pretrain.weight_decay=1e-5 trainer.lr=1e-3 trainer.weight_decay=1e-5" ;;
  ml-1m) data="pretrain.lr=1e-3 trainer.lr=2e-4" ;;
  amazon-book)  # a stated budget: a 30-epoch warm start, 10 co-training epochs, evaluated every 5
    data="pretrain.epochs=30 pretrain.lr=1e-3 trainer.lr=2e-4 trainer.max_epochs=10 trainer.eval_every=5" ;;
  *) echo "leaderboard.sh: unknown dataset '$name' (lastfm, ml-1m or amazon-book)" >&2; exit 2 ;;
esac
case $rec in
  mf) entries='glob(*,exclude=[mixgcf*])' ;;
  lightgcn) entries='glob(*,exclude=[advir*])'
    # LightGCN + RNS on lastfm: lr 5e-3 without weight decay chosen on validation
    [ "$name" = lastfm ] && data="pretrain.lr=5e-3 trainer.lr=1e-3" ;;
  *) echo "leaderboard.sh: unknown recommender '$rec' (mf or lightgcn)" >&2; exit 2 ;;
esac
suffix=""
if [ "${SCRATCH:-0}" = 1 ]; then
  # From scratch at the learning rate (and MF weight decay) chosen on validation for RNS: lastfm
  # conf/experiment/lastfm.yaml (MF) and benchmarks/results/lightgcn_lastfm.md (LightGCN); ml-1m
  # the warm starts' (MF 1e-3; LightGCN 5e-3, as in benchmarks/ml1m_lightgcn.sh).
  case $name in
    lastfm) if [ "$rec" = mf ]; then data="trainer.lr=5e-3 trainer.weight_decay=1e-5"
            else data="trainer.lr=5e-3"; fi ;;
    ml-1m) if [ "$rec" = mf ]; then data="trainer.lr=1e-3"; else data="trainer.lr=5e-3"; fi ;;
    *) echo "leaderboard.sh: SCRATCH=1 has no stated budget for '$name' (lastfm or ml-1m)" >&2; exit 2 ;;
  esac
  data="pretrain=none $data trainer.patience=20 trainer.max_epochs=300 trainer.time_budget=600"
  suffix=-scratch
fi
entries=${ENTRIES:-$entries}  # e.g. ENTRIES=rns,dns-8 for a part of the board
out=${OUT:-multirun/leaderboard-cli/$name$suffix-$rec}
launcher=""
[ "$jobs" -gt 1 ] && launcher="hydra/launcher=joblib hydra.launcher.n_jobs=$jobs"
# MF is the default recommender: not named, so that an entry may replace it (AdvIR: APR)
recarg=""
[ "$rec" != mf ] && recarg="recommender=$rec"
# REPORT_ONLY=1: no training, only the reports rewritten from the runs already in $out
if [ "${REPORT_ONLY:-0}" != 1 ]; then
  $TRAIN -m +experiment=leaderboard dataset.path=../shared/datasets/$name $recarg \
    "+leaderboard=$entries" seed=$seeds $data $launcher hydra.sweep.dir=$out ${EXTRA:-}
fi
common=(--select leaderboard --baseline-recommender apr=mf --metrics ndcg@20 recall@20)
args=("${common[@]}" --baseline dns --time-baseline rns)
$REPORT "$out" "${args[@]}" --all --out "$out/report" > /dev/null
$REPORT "$out" "${args[@]}" --out "$out/leaderboard" > /dev/null
# the same choice against RNS (how much each sampler gains over uniform negatives)
$REPORT "$out" "${common[@]}" --baseline rns --out "$out/leaderboard-rns" > /dev/null
# benchmarks/results/leaderboard_<dataset>-<recommender>.md: the chosen settings, then every one
results=${RESULTS:-benchmarks/results/leaderboard_$name$suffix-$rec.md}
trap 'rm -f "$results.tmp"' EXIT  # a report that failed leaves nothing behind
today=$(date -u +%Y-%m-%d) commit=$(git rev-parse --short HEAD)
written="Report written $today at commit $commit$(git diff --quiet HEAD -- src conf || echo ' plus uncommitted changes'), $(getconf _NPROCESSORS_ONLN) cores, one thread a run."
if [ "${REPORT_ONLY:-0}" = 1 ]; then  # the runs are the earlier report's: keep its line
  first=$(grep -m1 '^Report written' "$results" 2>/dev/null || echo "Report of earlier runs (commit not recorded).")
  first=${first%% Rewritten *}  # once, however often rewritten
  written="$first Rewritten $today at commit $commit without training (REPORT_ONLY=1)."
fi
{
  echo "# Sampler leaderboard: $name, $rec"
  echo
  echo "$written"
  echo "Command: \`${ENTRIES:+ENTRIES=$ENTRIES }${EXTRA:+EXTRA='$EXTRA' }${suffix:+SCRATCH=1 }SEEDS=$seeds bash benchmarks/leaderboard.sh $name $rec\`;"
  echo "settings: $data${EXTRA:+, then EXTRA (which overrides them): $EXTRA}. Each sampler's knob (conf/leaderboard/) chosen on mean validation NDCG@20;"
  echo "test once at the selected epoch. 'false negative rate': share of negatives that are validation positives."
  echo
  echo "## Chosen settings"
  echo
  cat "$out/leaderboard.md"
  echo
  echo "## Chosen settings against RNS"
  echo
  cat "$out/leaderboard-rns.md"
  echo
  echo "## Every setting"
  echo
  cat "$out/report.md"
} > "$results.tmp"
mv "$results.tmp" "$results"
echo "wrote $results"
