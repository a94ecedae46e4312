# Sourced by ablations.sh and investigate.sh: the per-dataset settings of the KGPolicy runs
# (warm start at the RNS baseline's best settings, co-training lr chosen on validation with
# seed 1; see benchmarks/quality_sweeps.sh part 2). Expects $name; sets $TRAIN, $seeds,
# KGSAMPLER_CACHE, $data (warm start + co-training) and $scratch (no warm start).
TRAIN=${TRAIN:-.venv/bin/kgsampler-train}
seeds=${SEEDS:-1,2,3}
export KGSAMPLER_CACHE=${KGSAMPLER_CACHE:-multirun/ablation/cache}
case $name in
  lastfm) data="pretrain.lr=5e-3 pretrain.weight_decay=1e-5 trainer.lr=1e-3 trainer.weight_decay=1e-5"
          scratch="trainer.lr=1e-3 trainer.weight_decay=1e-5" ;;
  ml-1m) data="pretrain.lr=1e-3 trainer.lr=2e-4"
         scratch="trainer.lr=1e-3" ;;
  amazon-book)  # a stated budget, one seed: a 30-epoch warm start, 10 co-training epochs
         seeds=${SEEDS:-1}
         data="pretrain.epochs=30 pretrain.lr=1e-3 trainer.lr=2e-4 trainer.max_epochs=10 trainer.eval_every=5"
         scratch="trainer.lr=1e-3 trainer.max_epochs=30 trainer.eval_every=5" ;;
  *) echo "unknown dataset $name" >&2; exit 2 ;;
esac
