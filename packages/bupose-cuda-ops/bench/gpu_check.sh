#!/usr/bin/env bash
# GPU check, ready for a session with a lent GPU (the library's device tool). From the repo root:
#
#     bash packages/bupose-cuda-ops/bench/gpu_check.sh          # writes under $OUT (or /tmp/bupose_gpu_check)
#
# 1. installs the bupose packages of this checkout into the machine's python3 (editable, no deps,
#    no network: the image already has torch, numpy, click, pluggy, opencv; pycocotools must be
#    carried as a wheel if `import pycocotools` fails) and builds bupose-cuda-ops' C++ and CUDA
#    extensions for Hopper (TORCH_CUDA_ARCH_LIST=9.0, MAX_JOBS=16);
# 2. runs the bupose-cuda-ops tests, CUDA included (equality with the reference, gradcheck, goldens);
# 3. runs gpu_check.py: CUDA kernels vs the C++ CPU kernels, forward throughput of every installed
#    head at batch 1/8/32 in fp32 / bf16 / fp16, and each head's whole pipeline (bupose bench's
#    measurement) on CUDA. Tables: $OUT/gpu_check.md; every figure: $OUT/gpu_check.json.
# About 8-10 minutes on an H200 (most of it the CUDA build); use the device tool's timeout_s=600.
set -uo pipefail
OUT=${OUT:-/tmp/bupose_gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
PY=${PYTHON:-python3}
status=0
echo "== machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
echo "== install (editable, no deps)"
pkgs=()
for p in packages/bupose-core packages/bupose-hrnet packages/bupose-dekr packages/bupose-logocap \
         packages/bupose-simplepose packages/bupose-resnet packages/bupose-swin; do
  [ -d "$p" ] && pkgs+=(-e "$p")
done
$PY -m pip install -q --no-build-isolation --no-deps "${pkgs[@]}" 2>&1 | tail -3
TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
  $PY -m pip install -q --no-build-isolation --no-deps -e packages/bupose-cuda-ops 2>&1 | tail -5
$PY - <<'PY' 2>&1 | tee "$OUT/build_status.txt"
from bupose.cuda_ops import build_status, cpp_available, cuda_available
print("build record:", build_status())
print("cpp:", cpp_available())
print("cuda:", cuda_available())
PY
echo "== bupose-cuda-ops tests (CUDA included)"
timeout 300 $PY -m pytest -q -x -p no:cacheprovider packages/bupose-cuda-ops/tests 2>&1 | tee "$OUT/cuda_tests.log" | tail -15
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
echo "== kernels, network and pipeline throughput"
timeout 300 $PY packages/bupose-cuda-ops/bench/gpu_check.py --out "$OUT" --quick "$@" 2>&1 | tee "$OUT/gpu_check.log" | tail -80
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
exit $status
