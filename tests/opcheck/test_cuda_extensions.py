"""cpp_extension.load of CUDA sources in the check-ops child (opcheck/cuda_extensions.py)."""

import sys

import torch

from ascend_tools.opcheck import cuda_extensions, standins


def test_a_cuda_build_is_a_recorded_stand_in_and_a_cpu_build_is_real():
    """RWKV-v4 loads cuda/wkv_cuda.cu at import with extra_cuda_cflags: no nvcc here or on an NPU, so the
    load and the kernel calls are findings at the user's lines, the kernels opaque; a .cpp-only build is
    passed to torch's own load."""
    recorder = standins.Recorder()
    built = []
    load = cuda_extensions._load(
        lambda name, sources, **kw: built.append((name, sources)) or "real", recorder
    )
    finder = standins.StandInFinder(recorder)
    sys.meta_path.append(finder)
    try:
        wkv = load("wkv_test", ["wkv_op.cpp", "wkv_cuda.cu"], extra_cuda_cflags=["-O3"])
        y = torch.empty(2, 3)
        assert wkv.forward(1, 2, 3, y) is y
        assert load("cpu_only", "op.cpp") == "real" and built == [("cpu_only", ["op.cpp"])]
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.startswith("wkv_test")]:
            del sys.modules[name]
    uses = {(u.module, u.what, u.package.rule, u.site[0]) for u in recorder.uses}
    assert ("torch.utils.cpp_extension", "load", "cuda-extension", __file__) in uses
    assert ("wkv_test", "forward", "cuda-extension", __file__) in uses
