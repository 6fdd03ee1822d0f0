#!/bin/bash
# What one lent CUDA GPU call runs (the device tool's machine: torch, transformers and triton installed, no
# network), from the repository root, each part under its own time limit, its output kept under $OUT:
#
#   1. the held-out drift suite with the clean and target runs on the GPU and the reference on the CPU
#      (HELDOUT_DEVICE=cuda, tests/precision/heldout_train.py): the cross-device comparison a port makes; then a
#      clean bf16 Llama step with sdpa attention (CUDA's flash kernel) against the fp32 CPU reference (flash_for_cpu);
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
echo "== 1b. a clean run with Hugging Face's default attention (sdpa): CUDA's fused kernels against the CPU's"
W=$(mktemp -d)
for role in ref clean; do
    HELDOUT_DEVICE=cuda HELDOUT_ATTN=sdpa timeout 120 python3 -m ascend_tools.cli dump -o "$W/$role" --mode tensor \
        --steps 0 -- python3 tests/precision/heldout_train.py llama-adamw-eps "$role" >"$OUT/sdpa_$role.log" 2>&1
done
for mode in "" --stats-only; do
    COLUMNS=160 timeout 120 python3 -m ascend_tools.cli compare $mode "$W/clean" "$W/ref" 2>&1 | head -40 \
        | tee -a "$OUT/sdpa_clean.txt"
done
echo "== 2. capture and shadow overhead on the GPU"
timeout "${OVERHEAD_S:-150}" python3 bench/bench_precision.py --device cuda --repeat 2 --steps 10 --warmup 3 \
    --no-compare --kinds ours-op,ours-mix,shadow 2>&1 | tee "$OUT/bench_precision_cuda.txt"
timeout "${PROFILE_S:-60}" python3 bench/precision_capture_profile.py --device cuda --steps 5 2>&1 \
    | tee "$OUT/capture_profile_cuda.txt"
echo "== 3. RMSNorm and RoPE tiers"
timeout "${PATCH_S:-150}" python3 bench/gpu_patch_check.py --ops rms_norm,rope 2>&1 | tee "$OUT/gpu_patch_check.txt"
