"""``torch.utils.cpp_extension.load`` of CUDA sources in the check-ops child: a recording stand-in module.

Projects JIT-compile their own kernels at import (RWKV's ``load(name="wkv", sources=["wkv_op.cpp",
"wkv_cuda.cu"], extra_cuda_cflags=...)``). nvcc is on neither this machine nor an NPU, so the build is a
blocker on Ascend (an Ascend C custom op or a torch implementation replaces it): the load and each kernel
call are findings (rule ``cuda-extension``), and the kernels are opaque (``standins.py``: a call returns its
first tensor argument; kernels that write into an output argument leave it as allocated). A C++-only
extension still builds for real.
"""

import sys
from typing import Any, Callable, Iterable

from . import standins

CUDA_SOURCES = (".cu", ".cuh")


def is_cuda_build(sources: Iterable[str], kwargs: Any) -> bool:
    return any(str(s).endswith(CUDA_SOURCES) for s in sources) or bool(kwargs.get("extra_cuda_cflags"))


def _load(original: Callable[..., Any], recorder: standins.Recorder) -> Callable[..., Any]:
    def load(name: str, sources: Any, *args: Any, **kwargs: Any) -> Any:
        sources = [sources] if isinstance(sources, str) else list(sources)
        if not is_cuda_build(sources, kwargs):
            return original(name, sources, *args, **kwargs)
        recorder.note("torch.utils.cpp_extension", "load", standins.CUDA_EXTENSION)
        module = standins.StandInModule(name, standins.CUDA_EXTENSION, recorder)
        return sys.modules.setdefault(name, module)  # its kernels import as attributes

    return load


def install(recorder: standins.Recorder) -> None:
    from torch.utils import cpp_extension

    cpp_extension.load = _load(cpp_extension.load, recorder)
