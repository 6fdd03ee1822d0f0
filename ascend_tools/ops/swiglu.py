"""SwiGLU, the gated MLP activation of Llama-family models, with tiers: reference, npu, triton.

``swiglu(gate, up) = silu(gate) * up`` where HF computes ``act_fn(gate_proj(x)) * up_proj(x)``:
``silu`` in the input dtype (PyTorch computes it in fp32 and rounds once), then the product, rounded
again. Every tier keeps those two roundings so that patched and unpatched models agree to rounding.

Memory (why the op exists): HF's autograd graph saves ``gate`` (for silu's backward) and both ``silu(gate)``
and ``up`` (for the product's backward): three ``tokens x intermediate`` tensors per layer. Every tier here
saves ``gate`` and ``up`` only and recomputes ``sigmoid(gate)`` in backward: one intermediate-sized tensor
less per layer (Llama-2-7B, 4k tokens, bf16: 11008 x 4096 x 2 B = 86 MiB per layer, 2.75 GiB over 32 layers).

Backward, as HF's autograd computes it (``s = sigmoid(g)``, ``silu = g * s`` rounded to the dtype):
``d_up = dy * silu`` (rounded), ``d_gate = round(dy * up) * s * (1 + g * (1 - s))`` (rounded; the second
factor is PyTorch's ``silu_backward``, in fp32).

Tiers (chosen and self-checked by :mod:`ascend_tools.ops.registry`):

- ``reference``: a ``torch.autograd.Function`` running the kernels HF's autograd runs (``silu``, ``mul``,
  ``silu_backward``), so forward and gradients are bit-identical to the unpatched model, with ``silu(gate)``
  recomputed in backward instead of saved (fp64 inputs: the golden vectors' ground truth).
- ``npu``: ``torch_npu.npu_swiglu(cat([gate, up], -1), dim=-1)`` (documented: ``swish(A) * B`` with A the
  first half along ``dim``; fp32/fp16/bf16, contiguous, Atlas A2). Its backward is torch_npu's. The
  concatenation costs one copy of both inputs; a model whose gate and up projections are one fused matmul
  (Phi-3's ``gate_up_proj``) can pass its output directly (:func:`swiglu_fused`).
- ``triton``: one elementwise kernel forward, one backward producing both gradients, fp32 arithmetic,
  the same two roundings. CUDA, triton-ascend, or the CPU under ``TRITON_INTERPRET=1``.

Tolerances (:data:`TOLERANCES`, against the fp64 reference, ``|a-b| / (1+|b|)``): fp32 1e-5 (two
roundings and a sigmoid, ~1e-7; a tier that drops a term is off by far more), fp16 2.5e-3 and bf16
2e-2 (two roundings of the output, three on ``d_gate``: 3u with u = 4.9e-4 / 3.9e-3, plus one ulp where
the interpreter truncates a cast). A tier that scales by 1.01 exceeds all of them.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import torch

from .. import backend
from . import registry
from .triton_available import interpreting, jit_kernels, triton_available
from .triton_available import unavailable_reason as triton_unavailable_reason

OP = "swiglu"
TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-6),
    torch.float16: (2e-3, 5e-4),
    torch.bfloat16: (1.6e-2, 4e-3),
}
CHECK_ELEMENTS = 4096  # elements of the real input the self-check uses (plus as many seeded random ones)


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    return TOLERANCES.get(dtype, TOLERANCES[torch.float32])


def _validate(gate: torch.Tensor, up: torch.Tensor) -> None:
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(
            f"swiglu: gate {tuple(gate.shape)} {gate.dtype} and up {tuple(up.shape)} {up.dtype} "
            "must have one shape and dtype"
        )


# --- reference ------------------------------------------------------------------------------------------


class _SwiGLUReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(gate, up)
        return torch.nn.functional.silu(gate) * up

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        gate, up = ctx.saved_tensors
        # the kernels HF's autograd runs (silu recomputed instead of saved): bit-identical gradients
        d_up = grad * torch.nn.functional.silu(gate) if ctx.needs_input_grad[1] else None
        d_gate = torch.ops.aten.silu_backward(grad * up, gate) if ctx.needs_input_grad[0] else None
        return d_gate, d_up


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    _validate(gate, up)
    return _SwiGLUReference.apply(gate, up)


# --- npu: torch_npu.npu_swiglu ------------------------------------------------------------------------------


def swiglu_npu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    _validate(gate, up)
    mod, err = backend.torch_npu_status()
    if mod is None:
        raise RuntimeError(err or "torch_npu is not importable")
    return mod.npu_swiglu(torch.cat([gate, up], dim=-1).contiguous(), dim=-1)


def swiglu_fused(gate_up: torch.Tensor) -> torch.Tensor:
    """``swiglu(*gate_up.chunk(2, -1))`` for a fused gate/up projection's output (Phi-3's ``gate_up_proj``)."""
    gate, up = gate_up.chunk(2, dim=-1)
    return swiglu(gate, up)


def _npu_unavailable(device: Any) -> Optional[str]:
    return backend.npu_op_unavailable(device, "npu_swiglu")


# --- triton -------------------------------------------------------------------------------------------------

# Plain functions, decorated with triton.jit on first use in a namespace holding tl and constexpr (see
# ops/rms_norm.py: the compiler resolves the annotation ``constexpr`` as a global of the kernel).
if TYPE_CHECKING:
    constexpr = Any
else:
    constexpr = "constexpr"
tl: Any = None  # triton.language, bound in the kernels' own namespace by _kernels()
BLOCK = 1024


def _swiglu_fwd(G, U, Y, n, BLOCK: constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    silu = (g / (1.0 + tl.exp(-g))).to(Y.dtype.element_ty).to(tl.float32)
    tl.store(Y + offs, (silu * u).to(Y.dtype.element_ty), mask=mask)


def _swiglu_bwd(DY, G, U, DG, DU, n, BLOCK: constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dy = tl.load(DY + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(G + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(U + offs, mask=mask, other=0.0).to(tl.float32)
    s = 1.0 / (1.0 + tl.exp(-g))
    silu = (g * s).to(G.dtype.element_ty).to(tl.float32)
    tl.store(DU + offs, (dy * silu).to(DU.dtype.element_ty), mask=mask)
    dyu = (dy * u).to(G.dtype.element_ty).to(tl.float32)
    tl.store(DG + offs, (dyu * (s * (1.0 + g * (1.0 - s)))).to(DG.dtype.element_ty), mask=mask)


_KERNELS: Dict[bool, Tuple[Any, Any]] = {}  # TRITON_INTERPRET -> (forward, backward) triton.JITFunction


def _kernels() -> Tuple[Any, Any]:
    key = interpreting()
    if key not in _KERNELS:
        fwd, bwd = jit_kernels(globals(), [_swiglu_fwd, _swiglu_bwd])
        _KERNELS[key] = (fwd, bwd)
    return _KERNELS[key]


def _grid(n: int) -> Tuple[int]:
    return ((n + BLOCK - 1) // BLOCK,)


class _SwiGLUTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
        fwd, _ = _kernels()
        g, u = gate.contiguous(), up.contiguous()
        y = torch.empty_like(g)
        if g.numel():
            fwd[_grid(g.numel())](g, u, y, g.numel(), BLOCK=BLOCK)
        ctx.save_for_backward(g, u)
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        _, bwd = _kernels()
        g, u = ctx.saved_tensors
        dy = grad.contiguous()
        dg, du = torch.empty_like(g), torch.empty_like(u)
        if g.numel():
            bwd[_grid(g.numel())](dy, g, u, dg, du, g.numel(), BLOCK=BLOCK)
        return dg, du


def swiglu_triton(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    _validate(gate, up)
    return _SwiGLUTriton.apply(gate, up)


# --- self-check inputs, golden cases, registration -----------------------------------------------------------


def check_inputs(gate: torch.Tensor, up: torch.Tensor) -> Tuple[tuple, dict]:
    """The first elements of the real input (non-finite zeroed) plus seeded random ones at the same scale,
    in the last dimension's layout; a private generator (the global RNG is untouched)."""

    def small(t: torch.Tensor) -> torch.Tensor:
        flat = torch.nan_to_num(t.detach().reshape(-1)[:CHECK_ELEMENTS], nan=0.0, posinf=0.0, neginf=0.0)
        scale = float(flat.float().abs().mean()) if flat.numel() else 1.0
        gen = torch.Generator().manual_seed(0)
        extra = torch.randn(CHECK_ELEMENTS, generator=gen) * 3 * (scale if scale > 0 else 1.0)
        return torch.cat([flat, extra.to(device=t.device, dtype=t.dtype)]).reshape(-1, 64)

    return (small(gate), small(up)), {}


def golden_cases() -> List[Tuple[str, Dict[str, Any]]]:
    """fp64 gate/up at scales 1 and 8 (sigmoid saturates; silu ~ identity for large positive, ~0 for large
    negative), an odd size (masked tail of a block)."""
    gen = torch.Generator().manual_seed(16)
    cases = []
    for name, shape, scale in (("s1_3x37", (3, 37), 1.0), ("s8_2x4x96", (2, 4, 96), 8.0)):
        gate = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
        up = torch.randn(shape, generator=gen, dtype=torch.float64)
        cases.append((name, {"gate": gate, "up": up}))
    return cases


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` with HF's roundings, run by the best self-checked tier for the inputs."""
    return registry.call(OP, gate, up)


def _register() -> None:
    common: Dict[str, Any] = {"check_inputs": check_inputs, "tolerance": tolerance}
    registry.register(registry.Tier(OP, "reference", forward=swiglu_reference, **common))
    registry.register(
        registry.Tier(
            OP,
            "npu",
            forward=swiglu_npu,
            unavailable_reason=_npu_unavailable,
            available=lambda device: _npu_unavailable(device) is None,
            **common,
        )
    )
    registry.register(
        registry.Tier(
            OP,
            "triton",
            forward=swiglu_triton,
            available=triton_available,
            unavailable_reason=triton_unavailable_reason,
            **common,
        )
    )


_register()
