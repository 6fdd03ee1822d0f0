#!/bin/sh
# Make PyPI's torchvision wheel load beside the CPU torch of a venv (make_corpus_venv.sh,
# make_venv_diffusers.sh):  sh torchvision_cpu_stubs.sh VENV_DIR
set -e
VENV=${1:?usage: torchvision_cpu_stubs.sh VENV_DIR}

# PyPI's torchvision wheel is the CUDA build: its _C.so needs libcudart.so.13, libc10_cuda.so and
# libtorch_cuda.so, which a CPU torch lacks, and torchvision then fails at import ("operator
# torchvision::nms does not exist"). Stub libraries exporting the symbols _C.so asks of them (never
# called on CPU) let it load with its CPU kernels; a .pth line loads them at interpreter start.
SP=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
TV=$SP/torchvision
OUT=$SP/torchvision_cpu_stubs
T=$SP/torch/lib
mkdir -p "$OUT"
: > "$OUT/stubs.c"
for s in $(nm -D --undefined-only "$TV/_C.so" "$TV/image.so" | awk '{print $2}' | grep -v '^_ITM\|^__gmon\|^_ZTH' | sort -u); do
  case $s in *@libcudart*) echo "long ${s%@*}(void){return 0;}" >> "$OUT/stubs.c"; continue;; *@*) continue;; esac
  defined=0
  for l in "$T/libc10.so" "$T/libtorch_cpu.so" "$T/libtorch.so" "$T/libtorch_python.so"; do
    nm -D --defined-only "$l" | grep -q " $s\$" && defined=1 && break
  done
  [ $defined = 1 ] && continue
  case $s in *allocatorE) echo "char $s[64];" >> "$OUT/stubs.c";; _Z*) echo "long $s(void){return 0;}" >> "$OUT/stubs.c";; esac
done
sort -u -o "$OUT/stubs.c" "$OUT/stubs.c"
# _C.so asks for libcudart's symbols at version "libcudart.so.13"
echo 'libcudart.so.13 { global: *; };' > "$OUT/cudart.map"
gcc -shared -fPIC -o "$OUT/libcudart.so.13" -Wl,-soname,libcudart.so.13 -Wl,--version-script="$OUT/cudart.map" "$OUT/stubs.c"
for lib in libc10_cuda.so libtorch_cuda.so; do gcc -shared -fPIC -o "$OUT/$lib" -Wl,-soname,$lib "$OUT/stubs.c"; done
line="import ctypes"
for n in libcudart.so.13 libc10_cuda.so libtorch_cuda.so; do line="$line; ctypes.CDLL('$OUT/$n', mode=ctypes.RTLD_GLOBAL)"; done
echo "$line" > "$SP/torchvision_cpu_stubs.pth"
"$VENV/bin/python" -c "import torchvision; assert torchvision.extension._has_ops(); print('torchvision loads:', torchvision.__version__)"
