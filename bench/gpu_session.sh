#!/bin/bash
# What one lent CUDA GPU call runs (the device tool's machine: torch, transformers and triton installed, no
# network), from the repository root, each part under its own time limit, its output kept under $OUT:
#
#   1. the held-out drift suite with the clean and target runs on the GPU and the reference on the CPU
#      (HELDOUT_DEVICE=cuda, tests/precision/heldout_train.py): the cross-device comparison a port makes;
#   2. capture and shadow overhead per train step on the GPU (bench_precision.py --device cuda), and where the
#      capture's step goes there (precision_capture_profile.py: cProfile, aten calls and kernels per step);
#   3. the RMSNorm and RoPE Triton tiers against Liger-Kernel (gpu_patch_check.py; Liger from a carried wheel).
#
# Usage there: bash bench/gpu_session.sh   (carry .whl holding liger_kernel-*.whl for part 3's peer column)
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
OUT="${OUT:-/tmp/gpu-session}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
    nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
    python3 -c 'import sys, torch, transformers, triton; print(sys.version.split()[0], torch.__version__, transformers.__version__, triton.__version__)'
} 2>&1 | tee "$OUT/machine.txt"
python3 setup.py build_ext --inplace -q >"$OUT/build.log" 2>&1 || echo "C extensions not built: the pure-torch statistics run"
echo "== 1. held-out suite, GPU target vs CPU reference"
HELDOUT_DEVICE=cuda timeout "${HELDOUT_S:-300}" python3 tests/precision/test_heldout_suite.py 2>&1 | tee "$OUT/heldout_cuda.txt"
echo "== 2. capture and shadow overhead on the GPU"
timeout "${OVERHEAD_S:-150}" python3 bench/bench_precision.py --device cuda --repeat 2 --steps 10 --warmup 3 \
    --no-compare --kinds ours-op,ours-mix,shadow 2>&1 | tee "$OUT/bench_precision_cuda.txt"
timeout "${PROFILE_S:-60}" python3 bench/precision_capture_profile.py --device cuda --steps 5 2>&1 \
    | tee "$OUT/capture_profile_cuda.txt"
echo "== 3. RMSNorm and RoPE tiers"
timeout "${PATCH_S:-150}" python3 bench/gpu_patch_check.py --ops rms_norm,rope 2>&1 | tee "$OUT/gpu_patch_check.txt"
