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
tier (finally the reference) takes over. ``ASCEND_TOOLS_KERNEL_<OP>=reference|npu|triton|sdpa|ascendc`` forces
a tier (still self-checked; refused → reference).

The self-check runs with autograd enabled even when the caller is under ``torch.no_grad()`` or
``torch.inference_mode()`` (it needs a backward), and ``check_inputs`` must not draw from the global RNG
(slice the real input instead): a self-check must not change the user's random stream.

Golden vectors (``ascend_tools/ops/golden/<op>_<case>.npz``, shipped in the package and written by
``tools/gen_golden_vectors.py``) hold inputs, outputs and input gradients of the reference computed in
float64; :func:`check_golden` runs any tier on them in a given dtype (``ascend-doctor selfcheck``, the tier
tests).
"""

import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch.autograd.graph import saved_tensors_hooks

from ..dispatch import dtype_name, own_ops
from .autocast import autocast_off

if TYPE_CHECKING:
    from importlib.abc import Traversable

log = logging.getLogger("ascend_tools")

TIERS = ("ascendc", "npu", "triton", "sdpa", "reference")  # preference order; "sdpa" = PyTorch's fused SDPA


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
    # device -> one line saying why ``available`` is False there (None: no reason given); for reports
    unavailable_reason: Optional[Callable[[torch.device], Optional[str]]] = None
    # dtype -> (rtol, atol) for the outputs alone, where they are held tighter than the gradients (a loss
    # reduced in fp32 from bf16 inputs); None: ``tolerance`` for both
    forward_tolerance: Optional[Callable[[torch.dtype], Tuple[float, float]]] = None


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
    # reentrant: a tier's forward may itself go through call() for another op during its self-check
    lock: Any = field(default_factory=threading.RLock)


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


def why_unavailable(tier: Tier, device: torch.device) -> Optional[str]:
    """``None`` when ``tier`` can run on ``device``, else a one-line reason (for reports)."""
    if _available(tier, device):
        return None
    if tier.unavailable_reason is not None:
        try:
            reason = tier.unavailable_reason(device)
        except Exception as exc:
            reason = f"availability probe raised {type(exc).__name__}: {exc}"
        if reason:
            return reason
    return f"not available on {getattr(device, 'type', device)}"


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


def self_check(
    tier: Tier, args: tuple, kwargs: dict, device: torch.device, dtype: torch.dtype
) -> CheckResult:
    """Compare ``tier`` with the reference once per (op, tier, device type, dtype); cached."""
    key = (tier.op, tier.name, device.type, str(dtype))
    found = _STATE.checks.get(key)
    if found is not None:
        return found
    with _STATE.lock:
        found = _STATE.checks.get(key)
        if found is None:
            found = _run_check_untraced(tier, args, kwargs, device, dtype)
            _STATE.checks[key] = found
            if not found.ok:
                log.warning(
                    "ascend_tools: %s tier %r refused for %s %s: %s; using the next tier",
                    tier.op,
                    tier.name,
                    device.type,
                    dtype_name(dtype),
                    found.reason,
                )
    return found


def _as_is(t: torch.Tensor) -> torch.Tensor:
    return t


_UNTRACED: List[Callable[..., CheckResult]] = []  # _run_check under torch._dynamo.disable, made once


def _run_check_untraced(
    tier: Tier, args: tuple, kwargs: dict, device: torch.device, dtype: torch.dtype
) -> CheckResult:
    """:func:`_run_check` as plain Python where ``torch.compile`` traces the op that asks for it (a graph break, once):
    traced, the check's backward met a graph dynamo had freed, and the tier was refused for the process. Dynamo is
    looked up, not imported (its import takes ~1.4 s): absent, nothing can be tracing this call."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is None:
        return _run_check(tier, args, kwargs, device, dtype)
    if not _UNTRACED:
        _UNTRACED.append(dynamo.disable(_run_check))
    return _UNTRACED[0](tier, args, kwargs, device, dtype)


def _run_check(
    tier: Tier, args: tuple, kwargs: dict, device: torch.device, dtype: torch.dtype
) -> CheckResult:
    result = CheckResult(tier.op, tier.name, device.type, dtype_name(dtype), ok=False)
    reference = _STATE.tiers.get(tier.op, {}).get("reference")
    if reference is None:
        result.reason = "no reference tier to check against"
        return result
    try:
        # autograd on even under no_grad()/inference_mode(): the check needs a backward; the check's own
        # saved tensors kept as they are (the innermost pair of saved-tensor hooks is the one applied): under
        # non-reentrant activation checkpointing, whose hooks would otherwise take them for the user's, the check's
        # backward set off a recomputation in the middle of the forward; and autocast off (the tiers are compared
        # in the inputs' dtype: under a bf16 autocast, both ran their matmuls in bf16 and a float32 tier was refused);
        # and unseen by capture and shadow (its ops are the package's, not the user's model's)
        with (
            torch.inference_mode(False),
            torch.enable_grad(),
            saved_tensors_hooks(_as_is, _as_is),
            autocast_off(device.type),
            own_ops(),
        ):
            c_args, c_kwargs = tier.check_inputs(*args, **kwargs) if tier.check_inputs else (args, kwargs)
            fwd, bwd = compare_tiers(tier.forward, reference.forward, c_args, c_kwargs)
    except Exception as exc:  # a tier that raises is refused, never propagated
        result.reason = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return result
    return _judge(result, tier, dtype, fwd, bwd)


def _judge(result: CheckResult, tier: Tier, dtype: torch.dtype, fwd: float, bwd: float) -> CheckResult:
    """Fill ``result`` from the forward and backward errors against the tier's limits for ``dtype``."""
    bwd_limit = sum(tier.tolerance(dtype))
    fwd_limit = sum(tier.forward_tolerance(dtype)) if tier.forward_tolerance else bwd_limit
    result.max_err_forward, result.max_err_backward = fwd, bwd
    result.ok = fwd <= fwd_limit and bwd <= bwd_limit
    if not result.ok:
        result.reason = (
            f"max error forward {fwd:.3g} (limit {fwd_limit:.3g}), backward {bwd:.3g} (limit {bwd_limit:.3g})"
        )
    return result


def _leaves(args: tuple, kwargs: dict) -> List[torch.Tensor]:
    return [
        v for v in list(args) + list(kwargs.values()) if isinstance(v, torch.Tensor) and v.is_floating_point()
    ]


def _clone_inputs(args: tuple, kwargs: dict) -> Tuple[tuple, dict]:
    def clone(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            return v.detach().clone().requires_grad_(True)
        return v

    return tuple(clone(a) for a in args), {k: clone(v) for k, v in kwargs.items()}


def compare_tiers(
    candidate: Callable[..., Any], reference: Callable[..., Any], args: tuple, kwargs: dict
) -> Tuple[float, float]:
    """Max error of ``candidate`` against ``reference``, forward and on input gradients, the reference
    computed in float64 (:func:`max_rel_error`: relative to the output's scale)."""
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


def max_rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b| / (s + |b|)`` with ``s = max(1, rms(b))``: relative where ``|b|`` is large, absolute
    near zero, and scale-aware for tensors well above unit scale (a gradient scaled by an rstd of 100,
    where cancellation leaves small elements whose absolute error is that of their large neighbours).
    NaN or Inf where they differ gives ``inf``."""
    a64, b64 = a.detach().double().cpu(), b.detach().double().cpu()
    if not a64.numel():
        return 0.0
    if a64.shape != b64.shape:
        raise ValueError(f"shapes differ: {tuple(a64.shape)} vs {tuple(b64.shape)}")
    finite = torch.isfinite(b64)
    if not torch.equal(torch.isfinite(a64), finite) or not torch.equal(a64[~finite], b64[~finite]):
        return float("inf")
    a64, b64 = a64[finite], b64[finite]
    if not b64.numel():
        return 0.0
    scale = max(1.0, float(b64.pow(2).mean().sqrt()))
    return float(((a64 - b64).abs() / (scale + b64.abs())).max())


_rel_max = max_rel_error


def status() -> List[CheckResult]:
    """Every self-check run so far in this process."""
    return list(_STATE.checks.values())


# --- golden vectors -------------------------------------------------------------------------------------
# One case = keyword arguments of the op's reference (float64 tensors, other tensors, plain values) and
# what the reference makes of them in float64: outputs, and input gradients for a fixed upstream
# gradient. Stored as .npz without pickle: ``input.<name>``, ``param.<name>``, ``output.<i>``,
# ``grad_output.<i>``, ``grad.<name>``.


def golden_dir() -> "Traversable":
    """``ascend_tools/ops/golden``, the golden vectors shipped in the package."""
    return resources.files(__package__) / "golden"


@dataclass
class GoldenCase:
    op: str
    name: str
    tensors: Dict[str, torch.Tensor]  # keyword tensor inputs (float64 where floating point)
    params: Dict[str, Any]  # keyword plain values (eps, casting, ...)
    outputs: List[torch.Tensor] = field(default_factory=list)
    grad_outputs: List[torch.Tensor] = field(default_factory=list)
    grads: Dict[str, torch.Tensor] = field(default_factory=dict)  # d(sum(out * grad_out)) / d input


def _outputs(out: Any) -> List[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def on_low_precision_grid(t: torch.Tensor) -> torch.Tensor:
    """``t`` (float64) rounded to values that bfloat16 and float16 both hold exactly (8 significant
    bits; keep magnitudes within fp16's range), so casting a golden input to any tested dtype is lossless
    and a tier's error against the golden output is its own arithmetic, not the rounding of its inputs
    (which a badly conditioned gradient would amplify past any fair tolerance)."""
    return t.to(torch.bfloat16).to(torch.float64)


def make_golden(op: str, name: str, kwargs: Dict[str, Any], seed: int = 0) -> GoldenCase:
    """Run ``op``'s reference on ``kwargs`` in float64: outputs and input gradients for a seeded
    upstream gradient. Floating inputs and the upstream gradients are put :func:`on_low_precision_grid`
    first. ``None`` values are left out (the reference's default applies)."""
    reference = _STATE.tiers.get(op, {}).get("reference")
    if reference is None:
        raise LookupError(f"no reference tier registered for op {op!r}")
    tensors = {k: v.detach().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    params = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor) and v is not None}
    case = GoldenCase(
        op,
        name,
        {k: on_low_precision_grid(v.double()) if v.is_floating_point() else v for k, v in tensors.items()},
        params,
    )
    with torch.inference_mode(False), torch.enable_grad():
        leaves = {
            k: v.clone().requires_grad_(True) if v.is_floating_point() else v for k, v in case.tensors.items()
        }
        outs = [o for o in _outputs(reference.forward(**leaves, **params))]
        gen = torch.Generator().manual_seed(seed)
        grads_out = [
            on_low_precision_grid(torch.randn(o.shape, dtype=torch.float64, generator=gen)) for o in outs
        ]
        pairs = [(o, g) for o, g in zip(outs, grads_out) if o.requires_grad]
        if pairs:
            torch.autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
    case.outputs = [o.detach() for o in outs]
    case.grad_outputs = grads_out
    case.grads = {
        k: v.grad.detach() for k, v in leaves.items() if isinstance(v, torch.Tensor) and v.grad is not None
    }
    return case


def golden_to_arrays(case: GoldenCase) -> Dict[str, np.ndarray]:
    arrays: Dict[str, np.ndarray] = {}
    for k, v in case.tensors.items():
        arrays["input." + k] = v.cpu().numpy()
    for k, v in case.params.items():
        if not isinstance(v, (bool, int, float, str)):
            raise TypeError(
                f"golden case {case.op}/{case.name}: parameter {k!r} has type "
                f"{type(v).__name__}; only bool, int, float and str can be stored"
            )
        arrays["param." + k] = np.array(v)
    for i, (o, g) in enumerate(zip(case.outputs, case.grad_outputs)):
        arrays[f"output.{i}"] = o.cpu().numpy()
        arrays[f"grad_output.{i}"] = g.cpu().numpy()
    for k, v in case.grads.items():
        arrays["grad." + k] = v.cpu().numpy()
    return arrays


def golden_from_arrays(op: str, name: str, arrays: Any) -> GoldenCase:
    case = GoldenCase(op, name, {}, {})
    outputs: Dict[int, torch.Tensor] = {}
    grad_outputs: Dict[int, torch.Tensor] = {}
    for key in arrays.files if hasattr(arrays, "files") else arrays:
        kind, _, rest = key.partition(".")
        value = arrays[key]
        if kind == "param":
            case.params[rest] = value.item()
        elif kind == "input":
            case.tensors[rest] = torch.from_numpy(np.array(value))
        elif kind == "grad":
            case.grads[rest] = torch.from_numpy(np.array(value))
        elif kind == "output":
            outputs[int(rest)] = torch.from_numpy(np.array(value))
        elif kind == "grad_output":
            grad_outputs[int(rest)] = torch.from_numpy(np.array(value))
    case.outputs = [outputs[i] for i in sorted(outputs)]
    case.grad_outputs = [grad_outputs[i] for i in sorted(grad_outputs)]
    return case


def golden_path(op: str, name: str) -> "Traversable":
    return golden_dir() / f"{op}_{name}.npz"


def load_golden(file: "Traversable", op: str) -> GoldenCase:
    """Read one golden file (no pickle). ``op`` is the op name; the case name is the rest of the file name."""
    stem = file.name[: -len(".npz")]
    name = stem[len(op) + 1 :] if stem.startswith(op + "_") else stem
    with file.open("rb") as f, np.load(f, allow_pickle=False) as arrays:
        return golden_from_arrays(op, name, arrays)


def golden_files(op: str) -> List["Traversable"]:
    """The golden files of ``op`` in :func:`golden_dir`, by name."""
    directory = golden_dir()
    found = directory.iterdir() if directory.is_dir() else ()
    return sorted(
        (f for f in found if f.name.startswith(op + "_") and f.name.endswith(".npz")), key=lambda f: f.name
    )


def load_goldens(op: str) -> List[GoldenCase]:
    """Every golden case of ``op``; FileNotFoundError when the package ships none (an incomplete install:
    the cases are never made up on the spot, that would check a tier against today's reference)."""
    files = golden_files(op)
    if not files:
        raise FileNotFoundError(
            f"no golden vectors for {op} in {golden_dir()}: this copy of ascend_tools is incomplete"
        )
    return [load_golden(f, op) for f in files]


def check_golden(tier: Tier, case: GoldenCase, dtype: torch.dtype, device: Any = "cpu") -> CheckResult:
    """Run ``tier`` on ``case``'s inputs cast to ``dtype`` on ``device`` and compare outputs and input
    gradients with the float64 golden ones (:func:`max_rel_error`), against the tier's
    tolerance for ``dtype``. Never raises: an exception is a failed check with the reason."""
    device = torch.device(device)
    result = CheckResult(case.op, tier.name, device.type, dtype_name(dtype), ok=False)
    try:
        with torch.inference_mode(False), torch.enable_grad():
            leaves = {
                k: (
                    v.to(device=device, dtype=dtype).requires_grad_(True)
                    if v.is_floating_point()
                    else v.to(device)
                )
                for k, v in case.tensors.items()
            }
            outs = _outputs(tier.forward(**leaves, **case.params))
            if len(outs) != len(case.outputs):
                raise ValueError(f"{len(outs)} outputs, golden has {len(case.outputs)}")
            fwd = max((_rel_max(o, g) for o, g in zip(outs, case.outputs)), default=0.0)
            pairs = [(o, g) for o, g in zip(outs, case.grad_outputs) if o.requires_grad]
            if pairs:
                torch.autograd.backward(
                    [o for o, _ in pairs], [g.to(device=device, dtype=o.dtype) for o, g in pairs]
                )
            bwd = 0.0
            for k, want in case.grads.items():
                got = leaves[k].grad
                if got is None:
                    raise ValueError(f"no gradient for input {k!r}")
                bwd = max(bwd, _rel_max(got, want))
    except Exception as exc:
        result.reason = f"raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return result
    return _judge(result, tier, dtype, fwd, bwd)
