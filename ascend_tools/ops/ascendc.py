"""The ``ascendc`` tier: loads the compiled AscendC kernels (``kernels/ascendc/``) and wraps them.

``kernels/build.sh`` (run by ``Dockerfile.cann`` where CANN is installed) builds
``libascend_tools_kernels.so``, which registers ``torch.ops.ascend_tools.rms_norm`` and
``torch.ops.ascend_tools.rope`` for the NPU (PrivateUse1). This module finds that library, loads it
once with :func:`torch.ops.load_library` — only when torch_npu is usable (``backend.detect().name ==
"npu"``) — and hands out Python callables with the same signature as each op's reference:

- ``rms_norm(x, weight, eps=1e-6, offset=0.0, casting="llama")``: forward by the kernel (which also
  returns the fp32 ``rstd``); backward here, from ``(x, weight, rstd)`` with the reference formulas
  (:func:`rms_norm_backward`).
- ``rope(x, cos, sin, unsqueeze_dim=1)``: HF ``apply_rotary_pos_emb`` for one tensor, rotate_half
  convention, ``x`` ``[B, N, S, D]`` (``unsqueeze_dim=1``) or ``[B, S, N, D]`` (``unsqueeze_dim=2``),
  ``cos``/``sin`` ``[B or 1, S, D]``; forward and the gradient wrt ``x`` by the kernel, gradients wrt
  ``cos``/``sin`` (rarely needed) here.

Inputs the kernels do not cover (another device, dtype or layout, weight dtype != x dtype) go to the
``fallback`` given to :func:`get` (the op's reference). Where the library is found: the path in
``ASCEND_TOOLS_KERNELS_LIB`` (only that one when set), else in the package directory, where
``kernels/build.sh`` puts it. :func:`available` and :func:`why_not` answer ``selfcheck``/``status``; the
registry still self-checks the tier against the reference before first use.
"""

import logging
import os
import threading
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from ascend_tools import backend

log = logging.getLogger("ascend_tools")

ENV_LIB = "ASCEND_TOOLS_KERNELS_LIB"
LIB_NAME = "libascend_tools_kernels.so"
NAMESPACE = "ascend_tools"
OPS = ("rms_norm", "rope")
CASTING = {"llama": 0, "gemma": 1}
ROPE_LAYOUTS = {1: 0, 2: 1}  # unsqueeze_dim -> kernel layout (0: x [B, N, S, D], 1: x [B, S, N, D])
KERNEL_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The device type the kernels run on, and the kernel entry points: module attributes so tests can run
# the wrappers on the CPU against a double of the documented kernel semantics.
_DEVICE_TYPE = "npu"
_KERNELS: Dict[str, Callable[..., Any]] = {}


class _LoadState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False
        self.path: Optional[str] = None
        self.error: Optional[str] = None  # why nothing is loaded; None once loaded


_STATE = _LoadState()


def candidate_paths() -> List[str]:
    """Where the library is looked for, in order (``ASCEND_TOOLS_KERNELS_LIB`` alone when set)."""
    env = os.environ.get(ENV_LIB, "").strip()
    if env:
        return [os.path.abspath(os.path.expanduser(env))]
    return [os.path.join(_PACKAGE_DIR, LIB_NAME)]


def find_library() -> Tuple[Optional[str], str]:
    """``(path, "")`` of the first existing candidate, else ``(None, reason)``."""
    paths = candidate_paths()
    for path in paths:
        if os.path.isfile(path):
            return path, ""
    if os.environ.get(ENV_LIB, "").strip():
        return None, f"{ENV_LIB}={paths[0]}: no such file"
    return None, (
        f"{LIB_NAME} not built (looked in {', '.join(paths)}); build it with kernels/build.sh "
        "where CANN is installed (Dockerfile.cann does)"
    )


def load_library(path: str) -> Optional[str]:
    """Load ``path`` with :func:`torch.ops.load_library`; ``None`` on success, else the reason."""
    try:
        torch.ops.load_library(path)
    except Exception as exc:  # a broken or foreign .so must not break the caller
        first = str(exc).splitlines()[0] if str(exc) else ""
        return f"loading {path} failed: {type(exc).__name__}: {first}"
    missing = [op for op in OPS if not _has_op(op)]
    if missing:
        return f"{path} loaded but does not register torch.ops.{NAMESPACE}.{'/'.join(missing)}"
    return None


def _has_op(op: str) -> bool:
    try:
        return hasattr(getattr(torch.ops, NAMESPACE), op)
    except Exception:
        return False


def _npu_reason() -> Optional[str]:
    info = backend.detect()
    if info.name == "npu":
        return None
    detail = info.torch_npu_error or info.note or "no NPU visible"
    return f"no usable NPU (backend is {info.name}: {detail})"


def _ensure_loaded() -> Optional[str]:
    """Load the library once per process; ``None`` when loaded, else why not (cached)."""
    if _STATE.done:
        return _STATE.error
    with _STATE.lock:
        if not _STATE.done:
            path, missing = find_library()
            npu = _npu_reason()
            if npu is not None:
                _STATE.error = npu + (f"; and {missing}" if path is None else "")
            elif path is None:
                _STATE.error = missing
            else:
                _STATE.error = load_library(path)
                _STATE.path = path
                if _STATE.error is None:
                    for op in OPS:
                        if op not in _KERNELS:
                            _KERNELS[op] = getattr(getattr(torch.ops, NAMESPACE), op)
                else:
                    log.warning("ascend_tools: ascendc kernels unavailable: %s", _STATE.error)
            _STATE.done = True
    return _STATE.error


def reset() -> None:
    """Forget the load attempt (tests; after building the library in this process)."""
    with _STATE.lock:
        _STATE.done, _STATE.path, _STATE.error = False, None, None
        _KERNELS.clear()


def library_path() -> Optional[str]:
    """The library this process loaded, ``None`` when none is loaded."""
    return _STATE.path if _ensure_loaded() is None else None


def why_not(op: str) -> str:
    """Why ``op`` has no ascendc kernel here; ``""`` when it has one."""
    if op not in OPS:
        return f"no AscendC kernel for op {op!r} (kernels exist for {', '.join(OPS)})"
    error = _ensure_loaded()
    if error is not None:
        return error
    return "" if op in _KERNELS else f"torch.ops.{NAMESPACE}.{op} is not registered"


def available(op: str, device: Optional[torch.device] = None) -> bool:
    """True when ``op``'s kernel is loaded (and ``device``, when given, is the kernels' device type).
    Fits :class:`ascend_tools.ops.registry.Tier` ``available``."""
    if device is not None and torch.device(device).type != _DEVICE_TYPE:
        return False
    return why_not(op) == ""


def get(op: str, fallback: Optional[Callable[..., Any]] = None) -> Optional[Callable[..., Any]]:
    """The autograd-capable callable for ``op`` (same signature as its reference), ``None`` when the
    kernel is unavailable. Inputs the kernel does not cover go to ``fallback``; without one they raise
    ``ValueError`` naming what is unsupported."""
    if why_not(op) != "":
        return None
    return _make_wrapper(op, fallback)


def _make_wrapper(op: str, fallback: Optional[Callable[..., Any]]) -> Callable[..., Any]:
    if op == "rms_norm":

        def rms_norm(
            x: torch.Tensor,
            weight: torch.Tensor,
            eps: float = 1e-6,
            offset: float = 0.0,
            casting: str = "llama",
        ) -> torch.Tensor:
            why = rms_norm_unsupported(x, weight, casting)
            if why:
                return _fallback(op, fallback, why, x, weight, eps=eps, offset=offset, casting=casting)
            return _RmsNormFn.apply(x, weight, float(eps), float(offset), CASTING[casting])

        return rms_norm

    def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1) -> torch.Tensor:
        why = rope_unsupported(x, cos, sin, unsqueeze_dim)
        if why:
            return _fallback(op, fallback, why, x, cos, sin, unsqueeze_dim=unsqueeze_dim)
        return _RopeFn.apply(x, cos, sin, ROPE_LAYOUTS[unsqueeze_dim])

    return rope


def _fallback(op: str, fallback: Optional[Callable[..., Any]], why: str, *args: Any, **kwargs: Any) -> Any:
    if fallback is None:
        raise ValueError(f"ascendc {op}: {why}")
    return fallback(*args, **kwargs)


def rms_norm_unsupported(x: torch.Tensor, weight: torch.Tensor, casting: str) -> str:
    """Why the RMSNorm kernel cannot take these inputs; ``""`` when it can."""
    if casting not in CASTING:
        return f"casting must be one of {', '.join(CASTING)}, got {casting!r}"
    if x.device.type != _DEVICE_TYPE or weight.device != x.device:
        return f"x and weight must be on one {_DEVICE_TYPE} device, got {x.device} and {weight.device}"
    if x.dtype not in KERNEL_DTYPES:
        return f"dtype {x.dtype} is not float32/float16/bfloat16"
    if weight.dtype != x.dtype:
        return f"weight dtype {weight.dtype} differs from x dtype {x.dtype}"
    if x.dim() < 1 or weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        return f"weight {tuple(weight.shape)} does not match the last dim of x {tuple(x.shape)}"
    if x.numel() == 0:
        return "empty input"
    return ""


def rope_unsupported(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int) -> str:
    """Why the RoPE kernel cannot take these inputs; ``""`` when it can."""
    if unsqueeze_dim not in ROPE_LAYOUTS:
        return f"unsqueeze_dim must be 1 ([B, N, S, D]) or 2 ([B, S, N, D]), got {unsqueeze_dim}"
    if x.device.type != _DEVICE_TYPE or cos.device != x.device or sin.device != x.device:
        return f"x, cos and sin must be on one {_DEVICE_TYPE} device"
    if x.dtype not in KERNEL_DTYPES or cos.dtype != x.dtype or sin.dtype != x.dtype:
        return (
            f"x, cos, sin must share one of float32/float16/bfloat16, got {x.dtype}, {cos.dtype}, {sin.dtype}"
        )
    if x.dim() != 4 or cos.dim() != 3 or cos.shape != sin.shape:
        return f"x must be 4-D and cos/sin [B or 1, S, D], got {tuple(x.shape)}, {tuple(cos.shape)}, {tuple(sin.shape)}"
    batch, seq, dim = x.shape[0], x.shape[1 + (unsqueeze_dim == 1)], x.shape[3]
    if dim % 2 or cos.shape[1] != seq or cos.shape[2] != dim or cos.shape[0] not in (1, batch):
        return f"cos/sin {tuple(cos.shape)} do not broadcast to x {tuple(x.shape)} at unsqueeze_dim={unsqueeze_dim}"
    if x.numel() == 0:
        return "empty input"
    return ""


def rms_norm_backward(
    dy: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    rstd: torch.Tensor,
    offset: float,
    casting: int,
    need_weight_grad: bool = True,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Gradients of the reference RMSNorm wrt ``x`` and ``weight`` from the saved fp32 ``rstd``.

    ``x_hat = float(x) * rstd``; llama (``casting=0``): ``y = (weight + offset) * T(x_hat)`` so
    ``d x_hat = float(dy * (weight + offset))`` (product in ``T`` as autograd does) and
    ``d weight = sum(dy * T(x_hat))``; gemma (``1``): ``y = T(x_hat * (offset + float(weight)))`` so
    ``d x_hat = float(dy) * (offset + float(weight))``, ``d weight = sum(float(dy) * x_hat)``. Then
    ``dx = rstd * (d x_hat - x_hat * mean(d x_hat * x_hat))``.
    """
    r = rstd.unsqueeze(-1).float()
    x_hat = x.float() * r
    if casting == CASTING["llama"]:
        gamma = weight + offset if offset else weight
        d_hat = (dy * gamma).float()
        dw = (dy.float() * x_hat.to(x.dtype).float()) if need_weight_grad else None
    else:
        d_hat = dy.float() * (weight.float() + offset)
        dw = (dy.float() * x_hat) if need_weight_grad else None
    dx = r * (d_hat - x_hat * (d_hat * x_hat).mean(-1, keepdim=True))
    if dw is not None:
        dw = dw.reshape(-1, dw.shape[-1]).sum(0).to(weight.dtype)
    return dx.to(x.dtype), dw


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _reduce_to_cos(t: torch.Tensor, cos_shape: torch.Size, layout: int) -> torch.Tensor:
    """Sum ``t`` (x's shape) over the dims ``cos`` ``[Bc, S, D]`` was broadcast along."""
    heads_dim = 1 if layout == 0 else 2
    out = t.sum(heads_dim)  # [B, S, D]
    if cos_shape[0] == 1 and out.shape[0] != 1:
        out = out.sum(0, keepdim=True)
    return out


class _RmsNormFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        eps: float,
        offset: float,
        casting: int,
    ) -> torch.Tensor:
        y, rstd = _KERNELS["rms_norm"](x, weight, eps, offset, casting)
        ctx.save_for_backward(x, weight, rstd)
        ctx.offset, ctx.casting = offset, casting
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, weight, rstd = ctx.saved_tensors
        dx, dw = rms_norm_backward(
            dy, x, weight, rstd, ctx.offset, ctx.casting, need_weight_grad=ctx.needs_input_grad[1]
        )
        return (dx if ctx.needs_input_grad[0] else None), dw, None, None, None


class _RopeFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        layout: int,
    ) -> torch.Tensor:
        y = _KERNELS["rope"](x, cos, sin, layout, False)
        trig_grad = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(cos, sin, x if trig_grad else None)
        ctx.layout = layout
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        cos, sin, x = ctx.saved_tensors
        dx = (
            _KERNELS["rope"](dy.contiguous(), cos, sin, ctx.layout, True) if ctx.needs_input_grad[0] else None
        )
        dcos = dsin = None
        if x is not None:
            if ctx.needs_input_grad[1]:
                dcos = _reduce_to_cos(dy * x, cos.shape, ctx.layout).to(cos.dtype)
            if ctx.needs_input_grad[2]:
                dsin = _reduce_to_cos(dy * rotate_half(x), sin.shape, ctx.layout).to(sin.dtype)
        return dx, dcos, dsin, None
