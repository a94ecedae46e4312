#!/usr/bin/env bash
# GPU check of the CUDA path, as one short script: the speed table on the GPU (ml-1m,
# amazon-book; KGPolicy walking 16 batches ahead and batch by batch), the CUDA-parametrised
# tests, a profile of a KGPolicy epoch and the main job on the GPU. Needs kgsampler installed
# with its test extra, a CUDA build of torch, and the datasets in ../shared/datasets (or
# $KGSAMPLER_DATASETS).
#
#   bash benchmarks/gpu_check.sh [OUTDIR]
# writes OUTDIR/{bench_speed_gpu.txt, pytest_gpu.log, profile_gpu_kgpolicy.txt, main_job_gpu.log,
# main_job_metrics.json}
set -uo pipefail
out=${1:-gpu_check}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi -L
$py -c "import torch, torch_geometric as g; print('torch', torch.__version__, '| torch-geometric', g.__version__, '|', torch.cuda.get_device_name())"
timeout 240 $py benchmarks/bench_speed.py --datasets ml-1m amazon-book \
    --samplers dns kgpolicy kgpolicy-stepwise --epochs 2 --device cuda --threads 4 \
    2>&1 | tee "$out/bench_speed_gpu.txt"
timeout 90 $py -m pytest -q -p no:cacheprovider -k "device or cuda or narrow or lookahead or walk" \
    tests 2>&1 | tee "$out/pytest_gpu.log"
(cd benchmarks && timeout 60 $py profile_gpu.py --dataset ml-1m --sampler kgpolicy) 2>&1 \
    | tee "$out/profile_gpu_kgpolicy.txt"
run=$(mktemp -d)
timeout 90 kgsampler-train device=cuda "hydra.run.dir=$run" 2>&1 | tee "$out/main_job_gpu.log"
cp "$run/metrics.json" "$out/main_job_metrics.json"
