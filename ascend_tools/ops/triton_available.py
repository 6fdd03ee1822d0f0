"""Is Triton usable for a device? One small probe shared by the op modules' ``triton`` tiers.

Triton stays an optional dependency: nothing here imports it at module import time, and every answer
is ``False`` (with a reason) when it is missing or broken.

- ``cuda``: Triton importable and ``torch.cuda.is_available()``.
- ``npu``: Triton importable *with the triton-ascend backend* (the ``ascend``/``npu``/``cann`` entry in
  ``triton.backends.backends``); stock Triton cannot compile for an NPU.
- ``cpu``: only under the Triton interpreter, ``TRITON_INTERPRET=1`` (the kernels run in numpy; slow,
  for tests). Triton decides interpreter or compiler when a kernel is *decorated*, so op modules build
  their kernels lazily and keyed by :func:`interpreting`.
"""

import functools
import os
import types
from types import ModuleType
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

ASCEND_BACKEND_NAMES = ("ascend", "npu", "cann")


@functools.cache
def triton_status() -> Tuple[Optional[ModuleType], Optional[str]]:
    """``(triton module, None)`` when it imports, else ``(None, reason)``."""
    try:
        import triton
        import triton.language  # a broken install fails here, not at "import triton"
    except ModuleNotFoundError as exc:
        if exc.name == "triton":
            return None, "triton is not installed (pip install triton; on Ascend: triton-ascend)"
        return None, f"ModuleNotFoundError: {exc}"
    except Exception as exc:  # broken install: missing libraries, ABI mismatch, ...
        return None, f"{type(exc).__name__}: {exc}"
    return triton, None


def interpreting() -> bool:
    """``TRITON_INTERPRET=1``: kernels run in Triton's interpreter on CPU tensors."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in ("1", "true", "yes", "on")


def _has_ascend_backend(triton: ModuleType) -> bool:
    try:
        from triton.backends import backends
    except Exception:
        return False
    return any(name in backends for name in ASCEND_BACKEND_NAMES)


def device_type(device: Any) -> str:
    """``"cpu"``, ``"cuda"``, ``"npu"``... of a torch.device, a string, or anything with ``.type``
    (``torch.device("npu")`` itself only parses once torch_npu is imported)."""
    kind = getattr(device, "type", None)
    return str(kind) if kind is not None else str(device).split(":")[0]


def unavailable_reason(device: Any) -> Optional[str]:
    """``None`` when Triton kernels can run on ``device``, else one line saying why not."""
    kind = device_type(device)
    triton, err = triton_status()
    if triton is None:
        return err
    if kind == "cpu":
        return None if interpreting() else "cpu needs the Triton interpreter (TRITON_INTERPRET=1)"
    if interpreting():
        return f"TRITON_INTERPRET=1 runs kernels on the CPU only, not on {kind}"
    if kind == "cuda":
        try:
            return None if torch.cuda.is_available() else "torch.cuda.is_available() is False"
        except Exception as exc:
            return f"CUDA probe failed: {type(exc).__name__}: {exc}"
    if kind == "npu":
        return (
            None if _has_ascend_backend(triton) else "triton is installed without the triton-ascend backend"
        )
    return f"no Triton backend for device type {kind!r}"


def triton_available(device: Any) -> bool:
    """Can Triton kernels run on ``device``? (see :func:`unavailable_reason`)."""
    return unavailable_reason(device) is None


def jit_kernels(
    module_globals: Dict[str, Any],
    kernels: Sequence[Callable[..., Any]],
    helpers: Sequence[Callable[..., Any]] = (),
) -> List[Any]:
    """``triton.jit`` copies of ``kernels`` (plain functions of an op module) in a copy of the module's
    namespace that holds ``tl``, ``triton``, ``constexpr`` (= ``tl.constexpr``: the compiler resolves the
    annotation as a global) and the jitted ``helpers`` under their own names. Done on first use so triton
    stays optional; call it again when TRITON_INTERPRET changes (Triton fixes interpreter vs compiler at
    decoration time)."""
    import triton
    import triton.language as tl

    namespace = dict(module_globals, tl=tl, triton=triton, constexpr=tl.constexpr)

    def jit(fn: Callable[..., Any]) -> Any:
        copy = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__)
        copy.__module__, copy.__qualname__ = fn.__module__, fn.__qualname__
        copy.__annotations__ = dict(fn.__annotations__)
        return triton.jit(copy)

    for helper in helpers:
        namespace[helper.__name__] = jit(helper)
    return [jit(fn) for fn in kernels]
