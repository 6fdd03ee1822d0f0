#!/usr/bin/env bash
# Build the AscendC kernels and their PyTorch bindings into ascend_tools/libascend_tools_kernels.so, where
# ascend_tools/ops/ascendc.py looks for them (the CMake tree is kernels/build/cmake).
#
#   kernels/build.sh            # needs the CANN toolkit (sourced here if set_env.sh is found) and
#                               # torch + torch_npu installed for python3
# Environment:
#   ASCEND_TOOLS_SOC_VERSION    chip to compile for (default Ascend910B1; `npu-smi info` -> Ascend<Chip Name>)
#   ASCEND_TOOLS_SET_ENV        path of CANN's set_env.sh (default: the usual install locations)
#   PYTHON                      interpreter whose torch/torch_npu to build against (default python3)
# Exits 2 with one line on stderr when CANN (or cmake, torch, torch_npu) is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

die() {
    echo "kernels/build.sh: $*" >&2
    exit 2
}

if [ -z "${ASCEND_HOME_PATH:-}" ]; then
    for candidate in "${ASCEND_TOOLS_SET_ENV:-}" \
        "${ASCEND_TOOLKIT_HOME:+$ASCEND_TOOLKIT_HOME/../set_env.sh}" \
        /usr/local/Ascend/ascend-toolkit/set_env.sh \
        "${HOME:-/root}/Ascend/ascend-toolkit/set_env.sh"; do
        if [ -n "$candidate" ] && [ -f "$candidate" ]; then
            set +u
            # shellcheck disable=SC1090
            source "$candidate"
            set -u
            break
        fi
    done
fi
if [ -z "${ASCEND_HOME_PATH:-}" ] || [ ! -d "${ASCEND_HOME_PATH}" ]; then
    die "CANN toolkit not found (ASCEND_HOME_PATH is unset and no set_env.sh under /usr/local/Ascend/ascend-toolkit); the AscendC kernels can only be built where CANN is installed, e.g. in Dockerfile.cann"
fi
found_cmake_dir=""
for sub in compiler/tikcpp/ascendc_kernel_cmake tools/tikcpp/ascendc_kernel_cmake ascendc_devkit/tikcpp/samples/cmake; do
    if [ -d "${ASCEND_HOME_PATH}/${sub}" ]; then found_cmake_dir="${ASCEND_HOME_PATH}/${sub}"; fi
done
[ -n "$found_cmake_dir" ] || die "CANN at ${ASCEND_HOME_PATH} has no ascendc_kernel_cmake (install the toolkit with the AscendC compiler)"
command -v cmake >/dev/null 2>&1 || die "cmake not found (need cmake >= 3.16)"
"$python" -c "import torch" >/dev/null 2>&1 || die "$python cannot import torch"
"$python" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch_npu') is None)" \
    || die "torch_npu is not installed for $python"

soc="${ASCEND_TOOLS_SOC_VERSION:-Ascend910B1}"
build_dir="${here}/build/cmake"
mkdir -p "$build_dir"
echo "kernels/build.sh: CANN ${ASCEND_HOME_PATH}, SOC_VERSION ${soc}, python $(command -v "$python")"
cmake -S "$here" -B "$build_dir" \
    -DCMAKE_BUILD_TYPE=Release \
    -DSOC_VERSION="$soc" \
    -DASCEND_CANN_PACKAGE_PATH="$ASCEND_HOME_PATH" \
    -DPython3_EXECUTABLE="$(command -v "$python")"
cmake --build "$build_dir" -j "$(nproc 2>/dev/null || echo 4)"
lib="$(dirname "$here")/ascend_tools/libascend_tools_kernels.so"
cp "$build_dir/lib/libascend_tools_kernels.so" "$lib"
echo "kernels/build.sh: built $lib"
