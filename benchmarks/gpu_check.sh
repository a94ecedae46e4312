#!/usr/bin/env bash
# GPU check of the CUDA path, as one short script: the test suite (its CUDA-parametrised tests run
# where a GPU is present), the main job on the GPU, and the speed table on the GPU (ml-1m,
# amazon-book). Needs kgsampler installed with its test extra, a CUDA build of torch, and the
# datasets in ../shared/datasets (or $KGSAMPLER_DATASETS).
#
#   bash benchmarks/gpu_check.sh [OUTDIR]
# writes OUTDIR/{pytest_gpu.log, main_job_gpu.log, main_job_metrics.json, bench_speed_gpu.txt}
set -uo pipefail
out=${1:-gpu_check}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
nvidia-smi -L
$py -c "import torch, torch_geometric as g; print('torch', torch.__version__, '| torch-geometric', g.__version__, '|', torch.cuda.get_device_name())"
# pytest-xdist where installed (the suite has no shared state between tests)
xdist=$($py -c "import xdist" 2>/dev/null && echo "-n 4")
timeout 180 $py -m pytest -q -p no:cacheprovider $xdist tests 2>&1 | tee "$out/pytest_gpu.log"
run=$(mktemp -d)
timeout 90 kgsampler-train device=cuda "hydra.run.dir=$run" 2>&1 | tee "$out/main_job_gpu.log"
cp "$run/metrics.json" "$out/main_job_metrics.json"
timeout 240 $py benchmarks/bench_speed.py --datasets ml-1m amazon-book --samplers rns dns kgpolicy \
    --device cuda --threads 4 2>&1 | tee "$out/bench_speed_gpu.txt"
