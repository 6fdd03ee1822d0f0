"""Which implementation (tier) of a fused op runs, and the self-check that earns it the right to.

Every op (``rms_norm``, ``rope``, ``attention``, ...) has a ``reference`` tier (pure PyTorch, the ground
truth, works everywhere) and optional faster tiers: ``npu`` (torch_npu fused ops), ``triton`` (CUDA or
triton-ascend), ``ascendc`` (a compiled AscendC kernel). An op module registers its tiers at import:

    register(Tier("rms_norm", "triton", forward=rms_norm_triton, available=triton_available,
                  check_inputs=make_rms_inputs, tolerance=tolerances))

``call(op, *args, **kwargs)`` runs the best available tier for the inputs' device and dtype. The first
time a non-reference tier runs for an (op, device type, dtype), it is **self-checked**: run on a small
input built like the real one (``check_inputs``) against the reference, forward and backward; a tier that
drifts past tolerance, or raises, is refused for the rest of the process, with one log line, and the next
tier (finally the reference) takes over. ``ASCEND_TOOLS_KERNEL_<OP>=reference|npu|triton|ascendc`` forces
a tier (still self-checked; refused → reference).
"""
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

log = logging.getLogger("ascend_tools")

TIERS = ("ascendc", "npu", "triton", "reference")  # preference order where several are available


@dataclass
class Tier:
    op: str
    name: str  # one of TIERS
    forward: Callable[..., Any]  # same signature as the op's reference; autograd-capable
    available: Callable[[torch.device], bool] = lambda device: True
    # (args, kwargs) -> small (args, kwargs) of the same kind (device, dtype, layout) for the self-check
    check_inputs: Optional[Callable[..., Tuple[tuple, dict]]] = None
    # dtype -> (rtol, atol) for the self-check against the reference
    tolerance: Callable[[torch.dtype], Tuple[float, float]] = lambda dtype: (1e-2, 1e-2)


@dataclass
class CheckResult:
    op: str
    tier: str
    device: str
    dtype: str
    ok: bool
    max_err_forward: Optional[float] = None
    max_err_backward: Optional[float] = None
    reason: str = ""


@dataclass
class _State:
    tiers: Dict[str, Dict[str, Tier]] = field(default_factory=dict)  # op -> tier name -> Tier
    checks: Dict[Tuple[str, str, str, str], CheckResult] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATE = _State()


def register(tier: Tier) -> None:
    _STATE.tiers.setdefault(tier.op, {})[tier.name] = tier


def unregister(op: str, name: str) -> None:
    _STATE.tiers.get(op, {}).pop(name, None)
    for key in [k for k in _STATE.checks if k[0] == op and k[1] == name]:
        del _STATE.checks[key]


def tiers(op: str) -> Dict[str, Tier]:
    return dict(_STATE.tiers.get(op, {}))


def forced(op: str) -> Optional[str]:
    value = os.environ.get("ASCEND_TOOLS_KERNEL_" + op.upper(), "").strip().lower()
    return value or None


def candidates(op: str, device: torch.device) -> List[Tier]:
    """Tiers to try for ``op`` on ``device``, best first, the reference last."""
    known = _STATE.tiers.get(op, {})
    want = forced(op)
    order = [want] if want in known else [t for t in TIERS if t in known]
    out = [known[name] for name in order if name != "reference" and _available(known[name], device)]
    if "reference" in known:
        out.append(known["reference"])
    return out


def _available(tier: Tier, device: torch.device) -> bool:
    try:
        return bool(tier.available(device))
    except Exception:  # an availability probe must never break the caller
        return False


def _device_and_dtype(args: tuple, kwargs: dict) -> Tuple[torch.device, torch.dtype]:
    for value in list(args) + list(kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device, value.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def select(op: str, args: tuple, kwargs: dict) -> Tier:
    """The tier that will run ``op`` for these inputs (self-checking it on first use)."""
    device, dtype = _device_and_dtype(args, kwargs)
    for tier in candidates(op, device):
        if tier.name == "reference" or self_check(tier, args, kwargs, device, dtype).ok:
            return tier
    raise LookupError(f"no tier registered for op {op!r}")


def call(op: str, *args: Any, **kwargs: Any) -> Any:
    return select(op, args, kwargs).forward(*args, **kwargs)


def self_check(tier: Tier, args: tuple, kwargs: dict, device: torch.device, dtype: torch.dtype) -> CheckResult:
    """Compare ``tier`` with the reference once per (op, tier, device type, dtype); cached."""
    key = (tier.op, tier.name, device.type, str(dtype))
    found = _STATE.checks.get(key)
    if found is not None:
        return found
    with _STATE.lock:
        found = _STATE.checks.get(key)
        if found is None:
            found = _run_check(tier, args, kwargs, device, dtype)
            _STATE.checks[key] = found
            if not found.ok:
                log.warning("ascend_tools: %s tier %r refused for %s %s: %s; using the next tier",
                            tier.op, tier.name, device.type, str(dtype).replace("torch.", ""), found.reason)
    return found


def _run_check(tier: Tier, args: tuple, kwargs: dict, device: torch.device, dtype: torch.dtype) -> CheckResult:
    result = CheckResult(tier.op, tier.name, device.type, str(dtype).replace("torch.", ""), ok=False)
    reference = _STATE.tiers.get(tier.op, {}).get("reference")
    if reference is None:
        result.reason = "no reference tier to check against"
        return result
    try:
        c_args, c_kwargs = tier.check_inputs(*args, **kwargs) if tier.check_inputs else (args, kwargs)
        fwd, bwd = compare_tiers(tier.forward, reference.forward, c_args, c_kwargs)
    except Exception as exc:  # a tier that raises is refused, never propagated
        result.reason = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return result
    rtol, atol = tier.tolerance(dtype)
    result.max_err_forward, result.max_err_backward = fwd, bwd
    limit = atol + rtol
    result.ok = fwd <= limit and bwd <= limit
    if not result.ok:
        result.reason = f"max error forward {fwd:.3g}, backward {bwd:.3g} > {limit:.3g}"
    return result


def _leaves(args: tuple, kwargs: dict) -> List[torch.Tensor]:
    return [v for v in list(args) + list(kwargs.values()) if isinstance(v, torch.Tensor) and v.is_floating_point()]


def _clone_inputs(args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
    def clone(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.detach().clone().requires_grad_(True)
        return v

    return tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()}


def compare_tiers(candidate: Callable[..., Any], reference: Callable[..., Any], args: tuple, kwargs: dict
                  ) -> Tuple[float, float]:
    """Max abs error of ``candidate`` against ``reference``, forward and on input gradients, the
    reference computed in float64 (error relative to the output's scale: |a-b| / (1 + |b|))."""
    c_args, c_kwargs = _clone_inputs(args, kwargs)
    r_args, r_kwargs = _clone_inputs(*_to_double(args, kwargs))
    out_c = _first(candidate(*c_args, **c_kwargs))
    out_r = _first(reference(*r_args, **r_kwargs))
    fwd = _rel_max(out_c, out_r)
    grad = torch.randn(out_r.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    out_c.backward(grad.to(out_c.dtype).to(out_c.device))
    out_r.backward(grad.to(out_r.device))
    bwd = 0.0
    for a, b in zip(_leaves(c_args, c_kwargs), _leaves(r_args, r_kwargs)):
        if a.grad is not None and b.grad is not None:
            bwd = max(bwd, _rel_max(a.grad, b.grad))
    return fwd, bwd


def _to_double(args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
    def wide(v: Any) -> Any:
        return v.detach().double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v

    return tuple(wide(a) for a in args), {k: wide(v) for k, v in kwargs.items()}


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def _rel_max(a: torch.Tensor, b: torch.Tensor) -> float:
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    return float(((a64 - b64).abs() / (1.0 + b64.abs())).max()) if a64.numel() else 0.0


def status() -> List[CheckResult]:
    """Every self-check run so far in this process."""
    return list(_STATE.checks.values())
