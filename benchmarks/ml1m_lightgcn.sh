#!/usr/bin/env bash
# ml-1m with PyG's LightGCN, under a stated budget: the KGPolicy verdict's rows (KGPolicy as the
# paper's text describes it, the released selection rule, DNS-8, DNS-32 = the released rule on a
# uniform pool of 32, RNS) and a partial sampler leaderboard (RNS, DNS-8, KGPolicy, MixGCF M = 16),
# 3 seeds, from one RNS warm start per seed, early stopping on validation NDCG@20.
# Budget (a full LightGCN board on ml-1m does not fit a session on 2 cores): the warm start at most
# 60 epochs (lr 5e-3, LightGCN + RNS's lastfm choice), co-training (lr 1e-3) at most 300 s a run.
# Two runs at a time, one thread each; a run whose metrics.json exists is skipped, so a second call
# only rewrites the reports:
#   bash benchmarks/ml1m_lightgcn.sh
# Writes benchmarks/results/kgpolicy_verdict_ml-1m-lightgcn.md and leaderboard_ml-1m-lightgcn.md.
# LONG=1 instead: DNS-8 and MixGCF again from the same warm starts with a 900 s cap (the 300 s cap
# stopped both while they still improved), into $OUT-long and benchmarks/results/ml1m_lightgcn_long.md.
set -uo pipefail
TRAIN=${TRAIN:-.venv/bin/kgsampler-train}
REPORT=${REPORT:-.venv/bin/kgsampler-report}
PY=${PY:-.venv/bin/python}
OUT=${OUT:-multirun/ml1m-lgcn}
export KGSAMPLER_CACHE=${KGSAMPLER_CACHE:-$OUT/cache} OMP_NUM_THREADS=1
budget=300
# (beside $OUT, not in it: the verdict table reads every run under $OUT)
[ -n "${LONG:-}" ] && budget=900 OUT=$OUT-long
common="+experiment=leaderboard dataset.path=../shared/datasets/ml-1m recommender=lightgcn \
 pretrain.lr=5e-3 pretrain.epochs=60 trainer.lr=1e-3 trainer.time_budget=$budget trainer.track_test=true"
released="sampler.selection=recommender_max sampler.pool_size=32 sampler.n2=64 sampler.num_random=64"
job() { # folder name seed overrides...
  local f=$1 n=$2 s=$3; shift 3
  local d=$OUT/$f/${n}_s$s
  [ -f "$d/metrics.json" ] && return 0
  echo "$(date +%T) start $f/$n s$s"
  $TRAIN $common seed=$s "$@" hydra.run.dir=$d > "$OUT/logs/$f-$n-s$s.log" 2>&1
  echo "$(date +%T) end $f/$n s$s rc=$?"
}
rns() { job rns rns "$1" +leaderboard=rns; }
dns8() { job dns n8 "$1" +leaderboard=dns-8 sampler.num_candidates=8; }
dns32() { job dns n32 "$1" +leaderboard=dns-8 sampler.num_candidates=32; }
text() { job text r8 "$1" +leaderboard=kgpolicy sampler.refresh_interval=8 trainer.sampler_warmup=0; }
rel() { job released_rule r8w100 "$1" +leaderboard=kgpolicy $released sampler.refresh_interval=8 \
  trainer.sampler_warmup=100; }
mix() { job mixgcf m16 "$1" +leaderboard=mixgcf-m16; }
mkdir -p "$OUT/logs"
if [ -n "${LONG:-}" ]; then
  ( dns8 1; mix 1; dns8 3 ) &
  ( mix 2; dns8 2; mix 3 ) &
  wait
  args=(--select leaderboard --baseline dns --metrics ndcg@20 recall@20)
  {
    echo "# ml-1m, LightGCN: DNS-8 and MixGCF (M = 16) with co-training capped at 900 s a run (3 seeds, the warm starts of"
    echo "# benchmarks/ml1m_lightgcn.sh, its other settings); report written $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)."
    echo "# Command: \`LONG=1 bash benchmarks/ml1m_lightgcn.sh\`. stopped_by per run: $(cat "$OUT"/*/*/metrics.json | grep -o '"stopped_by": "[a-z_]*"' | cut -d'"' -f4 | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
    echo
    $REPORT "$OUT" "${args[@]}" --out "$OUT/report"
  } > benchmarks/results/ml1m_lightgcn_long.md.tmp && mv benchmarks/results/ml1m_lightgcn_long.md.tmp benchmarks/results/ml1m_lightgcn_long.md
  exit 0
fi
# two workers; each seed's warm start is computed by the first run of that seed (rns) and cached
( rns 1; rns 3; text 1; rel 1; text 3; rel 3; dns32 1; mix 3 ) &
( rns 2; dns8 2; dns8 1; text 2; rel 2; mix 1; mix 2; dns8 3; dns32 2; dns32 3 ) &
wait
commit="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src conf || echo ' plus uncommitted changes')"
res=benchmarks/results
{
  echo "# KGPolicy verdict, ml-1m, recommender PyG LightGCN (3 layers), under a stated budget; report written $(date -u +%Y-%m-%d) at commit $commit, $(getconf _NPROCESSORS_ONLN) cores, one thread a run (two runs shared the machine)."
  echo "# Command: \`bash benchmarks/ml1m_lightgcn.sh\` (the table: \`python benchmarks/kgpolicy_verdict.py $OUT\`). Budget: an RNS warm start of at most 60 epochs (lr 5e-3) per seed, co-training at lr 1e-3 for at most 300 s (trainer.time_budget), patience 10; p: paired t-test of test NDCG@20 against DNS-8 by seed (* p < 0.05); variants as in kgpolicy_verdict_lastfm-lightgcn.md (no released schedule, no DNS-16); the mixgcf row is MixGCF M = 16; the last column (best test epoch) is the released protocol, never used to choose."
  echo
  $PY benchmarks/kgpolicy_verdict.py "$OUT"
} > $res/kgpolicy_verdict_ml-1m-lightgcn.md.tmp && mv $res/kgpolicy_verdict_ml-1m-lightgcn.md.tmp $res/kgpolicy_verdict_ml-1m-lightgcn.md
args=(--select leaderboard --baseline dns --time-baseline rns --metrics ndcg@20 recall@20)
board=("$OUT/rns" "$OUT"/dns/n8_s* "$OUT/text" "$OUT/mixgcf")
$REPORT "${board[@]}" "${args[@]}" --out "$OUT/leaderboard" > /dev/null
$REPORT "${board[@]}" "${args[@]}" --all --out "$OUT/report" > /dev/null
{
  echo "# Sampler leaderboard: ml-1m, lightgcn"
  echo
  echo "Report written $(date -u +%Y-%m-%d) at commit $commit, $(getconf _NPROCESSORS_ONLN) cores, one thread a run."
  echo "Command: \`bash benchmarks/ml1m_lightgcn.sh\` (a partial board: RNS, DNS-8, KGPolicy and MixGCF M = 16, the"
  echo "knob chosen on lastfm's validation);"
  echo "settings: pretrain.lr=5e-3 pretrain.epochs=60 trainer.lr=1e-3 trainer.time_budget=300 (co-training capped at 300 s a run)."
  echo "Test once at the epoch selected on validation NDCG@20. 'false negative rate': share of negatives that are validation positives."
  echo
  echo "## Chosen settings"
  echo
  cat "$OUT/leaderboard.md"
  echo
  echo "## Every setting"
  echo
  cat "$OUT/report.md"
} > $res/leaderboard_ml-1m-lightgcn.md.tmp && mv $res/leaderboard_ml-1m-lightgcn.md.tmp $res/leaderboard_ml-1m-lightgcn.md
echo "wrote $res/kgpolicy_verdict_ml-1m-lightgcn.md and $res/leaderboard_ml-1m-lightgcn.md"
