"""Rotary position embedding (RoPE), Hugging Face's ``rotate_half`` convention, with tiers.

``apply_rotary_pos_emb(q, k, cos, sin, position_ids=None, unsqueeze_dim=1)`` has the signature and the
numerics of ``transformers.models.llama.modeling_llama.apply_rotary_pos_emb`` (4.x keeps an unused
``position_ids``; 5.x dropped it, so an ``int`` in that slot is taken as ``unsqueeze_dim``). The tier is
chosen (and self-checked) by ``registry.select("rope", (q, cos, sin), ...)`` and runs on q and k (the triton
tier: both in one launch); every tier computes

    out = x * cos' + rotate_half(x) * sin'      cos' = cos.unsqueeze(unsqueeze_dim), same for sin
    rotate_half(x) = cat(-x[..., D//2:], x[..., :D//2])

Tiers:

- ``reference``: exactly HF's expression, in the same dtype (bit-identical forward and input gradient).
  Autograd-correct and memory-lean: it saves only cos/sin (views the caller already holds); the input
  gradient is ``g * cos' + rotate_half^T(g * sin')`` with ``rotate_half^T(z) = cat(z[..., D//2:],
  -z[..., :D//2])``. ``x`` is saved only when cos or sin themselves require a gradient.
- ``npu``: ``torch_npu.npu_rotary_mul(x, cos', sin')`` (``rotary_mode='half'``). HF's shapes map onto the
  layouts the op documents without a copy: q/k ``[B, N, S, D]`` with cos' ``[B|1, 1, S, D]`` is BNSD with
  B1SD/11SD; ``unsqueeze_dim=2`` (``[B, S, N, D]``, cos' ``[B|1, S, 1, D]``) is BSND with BS1D/1S1D.
  Another broadcast of cos' is materialized to x's shape (BNSD with BNSD). Shapes outside the documented
  envelope (x not 4-D, D odd or >= 896, a batch/head dim >= 1000, B*N > 1024 when cos/sin need a
  gradient, dtypes other than fp16/bf16/fp32) run the reference math inside the tier, so the tier never
  raises mid-training. Limits it cannot see without a device sync, documented instead: cos/sin must lie
  in [-1, 1] (rope scalings with ``attention_scaling > 1``, e.g. yarn/longrope, leave it: do not use
  this tier there), and on Atlas training series (jit_compile=True) the doc allows D = 128 and 11SD-style
  cos only (the self-check refuses the tier there if the op rejects the shape).
- ``triton``: one kernel for forward and backward (fp32 math inside, one rounding), cos/sin read through
  broadcast strides (no copy), q and k rotated in one launch (the first programs take q's rows, the rest
  k's: two launches per layer instead of four, Liger-Kernel's count). Available where ``triton_available``
  says so.
- ``ascendc``: ``ascend_tools.ops.ascendc.get("rope")`` (a callable with the reference's signature) when
  that module and the built library exist; unavailable otherwise.
"""

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ascend_tools import backend
from ascend_tools.ops import registry
from ascend_tools.ops.triton_available import interpreting, jit_kernels, triton_available, unavailable_reason

OP = "rope"
NPU_MAX_HEAD_DIM = 896  # npu_rotary_mul: "D < 896, and a multiple of 2"
NPU_MAX_BN = 1000  # "B, N < 1000"
NPU_MAX_BN_GRAD = 1024  # "B*N <= 1024 when cos/sin gradients are computed"
NPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


# ----------------------------------------------------------------------------------------------- helpers
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """HF's ``rotate_half``: ``cat(-x2, x1)`` over the last dim."""
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2 :]
    return torch.cat((-x2, x1), dim=-1)


def rotate_half_transpose(z: torch.Tensor) -> torch.Tensor:
    """The adjoint of :func:`rotate_half`: ``cat(z2, -z1)`` (z1 = first D//2 entries)."""
    half = z.shape[-1] // 2
    z1 = z[..., :half]
    z2 = z[..., half:]
    return torch.cat((z2, -z1), dim=-1)


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    return grad if grad.shape == shape else grad.sum_to_size(shape)


# ------------------------------------------------------------------------------------------- reference
class _RopeReference(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        need_x = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(cos, sin, x if need_x else None)
        ctx.x_meta = (x.shape, x.dtype)
        return (x * cos) + (rotate_half(x) * sin)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        cos, sin, x = ctx.saved_tensors
        x_shape, x_dtype = ctx.x_meta
        gx = gcos = gsin = None
        if ctx.needs_input_grad[0]:
            # each product rounded to x's dtype first, as autograd does through HF's expression
            a = _sum_to(grad * cos, x_shape).to(x_dtype)
            b = _sum_to(rotate_half_transpose(grad * sin), x_shape).to(x_dtype)
            gx = a + b
        if ctx.needs_input_grad[1]:
            gcos = _sum_to(grad * x, cos.shape).to(cos.dtype)
        if ctx.needs_input_grad[2]:
            gsin = _sum_to(grad * rotate_half(x), sin.shape).to(sin.dtype)
        return gx, gcos, gsin


def rope_reference(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> torch.Tensor:
    """``x * cos' + rotate_half(x) * sin'`` (cos' = ``cos.unsqueeze(unsqueeze_dim)``), HF numerics."""
    return _RopeReference.apply(x, cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim))


# ------------------------------------------------------------------------------------------------- npu
def _npu_layout(x_shape: Tuple[int, ...], r_shape: Tuple[int, ...]) -> Optional[str]:
    """Which documented (x layout, r1/r2 layout) pair ``r_shape`` matches for 4-D ``x``, else None.

    npu_rotary_mul (half mode, jit_compile=False): x BNSD -> r 11SD, B1SD, BNSD; x BSND -> 1S1D, BS1D,
    BSND; x SBND -> S11D, SB1D, SBND. ``B, N < 1000`` for the layout taken."""
    d = x_shape[3]
    if len(r_shape) != 4 or r_shape[3] != d:
        return None
    layouts = (  # name, allowed r patterns ("x" = x's size, "1" = broadcast), positions of B and N
        ("BNSD", ("11x", "x1x", "xxx"), (0, 1)),
        ("BSND", ("1x1", "xx1", "xxx"), (0, 2)),
        ("SBND", ("x11", "xx1", "xxx"), (1, 2)),
    )
    for name, patterns, (ib, in_) in layouts:
        for pattern in patterns:
            fits = all(
                (r_shape[i] == x_shape[i]) if p == "x" else (r_shape[i] == 1) for i, p in enumerate(pattern)
            )
            if fits and x_shape[ib] < NPU_MAX_BN and x_shape[in_] < NPU_MAX_BN:
                return name
    return None


def _npu_args(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> Optional[Tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(x, r1, r2) ready for npu_rotary_mul, or None when the shape is outside the documented envelope."""
    if x.dim() != 4 or cos.dim() > 4 or sin.dim() > 4:
        return None
    d = x.shape[-1]
    if d % 2 or d >= NPU_MAX_HEAD_DIM:
        return None
    dtype = torch.result_type(x, cos)
    if torch.result_type(x, sin) != dtype or dtype not in NPU_DTYPES:
        return None
    if not (_broadcasts_to(cos.shape, x.shape) and _broadcasts_to(sin.shape, x.shape)):
        return None  # incompatible, or cos/sin would broadcast x itself: not the op's contract
    r1, r2 = (
        cos.reshape((1,) * (4 - cos.dim()) + tuple(cos.shape)),
        sin.reshape((1,) * (4 - sin.dim()) + tuple(sin.shape)),
    )
    if r1.shape != r2.shape or _npu_layout(tuple(x.shape), tuple(r1.shape)) is None:
        if any(s >= NPU_MAX_BN for s in x.shape[:3]):
            return None
        r1, r2 = r1.expand(x.shape), r2.expand(x.shape)  # materialized below: BNSD with BNSD
    if (cos.requires_grad or sin.requires_grad) and max(
        x.shape[0] * x.shape[1], x.shape[0] * x.shape[2]
    ) > NPU_MAX_BN_GRAD:
        return None
    return x.to(dtype).contiguous(), r1.to(dtype).contiguous(), r2.to(dtype).contiguous()


def rope_npu(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1) -> torch.Tensor:
    """``torch_npu.npu_rotary_mul(x, cos', sin')`` where the doc allows the shapes, else the reference."""
    cos_u, sin_u = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    args = _npu_args(x, cos_u, sin_u)
    torch_npu = backend.torch_npu_status()[0]
    if args is None or torch_npu is None:
        return _RopeReference.apply(x, cos_u, sin_u)
    return torch_npu.npu_rotary_mul(*args, rotary_mode="half")


def _npu_unavailable_reason(device: Any) -> Optional[str]:
    return backend.npu_op_unavailable(device, "npu_rotary_mul")


def _npu_available(device: torch.device) -> bool:
    return _npu_unavailable_reason(device) is None


# ---------------------------------------------------------------------------------------------- triton
# Plain functions, decorated with triton.jit on first use in a namespace holding tl and constexpr (see
# triton_available.jit_kernels: the compiler resolves the annotation ``constexpr`` as a global).
if TYPE_CHECKING:
    constexpr = Any
else:
    constexpr = "constexpr"
tl: Any = None  # triton.language, bound in the kernels' own namespace by _kernel()


def _rope_rows(
    x_ptr, c_ptr, s_ptr, o_ptr, block, n_rows, d1, d2, cs0, cs1, cs2, cs3, ss0, ss1, ss2, ss3,
    HALF: constexpr, BLOCK_H: constexpr, BLOCK_M: constexpr, BACKWARD: constexpr,
):  # fmt: skip
    # x/o: contiguous [n_rows, 2*HALF], row r = ((i0 * d1) + i1) * d2 + i2; cos/sin via strides
    rows = block * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_H)
    mask = (rows < n_rows)[:, None] & (cols[None, :] < HALF)
    i2 = rows % d2
    i1 = (rows // d2) % d1
    i0 = rows // (d2 * d1)
    x_off = rows[:, None].to(tl.int64) * (2 * HALF) + cols[None, :]
    c_off1 = (i0.to(tl.int64) * cs0 + i1.to(tl.int64) * cs1 + i2.to(tl.int64) * cs2)[:, None] + cols[
        None, :
    ] * cs3
    s_off1 = (i0.to(tl.int64) * ss0 + i1.to(tl.int64) * ss1 + i2.to(tl.int64) * ss2)[:, None] + cols[
        None, :
    ] * ss3
    x1 = tl.load(x_ptr + x_off, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + x_off + HALF, mask=mask, other=0.0).to(tl.float32)
    c1 = tl.load(c_ptr + c_off1, mask=mask, other=0.0).to(tl.float32)
    c2 = tl.load(c_ptr + c_off1 + HALF * cs3, mask=mask, other=0.0).to(tl.float32)
    s1 = tl.load(s_ptr + s_off1, mask=mask, other=0.0).to(tl.float32)
    s2 = tl.load(s_ptr + s_off1 + HALF * ss3, mask=mask, other=0.0).to(tl.float32)
    if BACKWARD:  # g*cos + rotate_half^T(g*sin): [g1 c1 + g2 s2, g2 c2 - g1 s1]
        o1 = x1 * c1 + x2 * s2
        o2 = x2 * c2 - x1 * s1
    else:  # x*cos + rotate_half(x)*sin: [x1 c1 - x2 s1, x2 c2 + x1 s2]
        o1 = x1 * c1 - x2 * s1
        o2 = x2 * c2 + x1 * s2
    tl.store(o_ptr + x_off, o1.to(o_ptr.dtype.element_ty), mask=mask)
    tl.store(o_ptr + x_off + HALF, o2.to(o_ptr.dtype.element_ty), mask=mask)


def _rope_qk_kernel(
    q_ptr, qc_ptr, qs_ptr, qo_ptr, q_rows, q_d1, q_d2, qcs0, qcs1, qcs2, qcs3, qss0, qss1, qss2, qss3,
    k_ptr, kc_ptr, ks_ptr, ko_ptr, k_rows, k_d1, k_d2, kcs0, kcs1, kcs2, kcs3, kss0, kss1, kss2, kss3,
    q_blocks, HALF: constexpr, BLOCK_H: constexpr, BLOCK_M: constexpr, BACKWARD: constexpr,
):  # fmt: skip
    # one launch for q and k (as Liger-Kernel's): programs [0, q_blocks) take q's rows, the rest k's
    pid = tl.program_id(0)
    if pid < q_blocks:
        _rope_rows(
            q_ptr, qc_ptr, qs_ptr, qo_ptr, pid, q_rows, q_d1, q_d2, qcs0, qcs1, qcs2, qcs3, qss0, qss1, qss2, qss3,
            HALF, BLOCK_H, BLOCK_M, BACKWARD,
        )  # fmt: skip
    else:
        _rope_rows(
            k_ptr, kc_ptr, ks_ptr, ko_ptr, pid - q_blocks, k_rows, k_d1, k_d2,
            kcs0, kcs1, kcs2, kcs3, kss0, kss1, kss2, kss3, HALF, BLOCK_H, BLOCK_M, BACKWARD,
        )  # fmt: skip


_KERNELS: Dict[bool, Any] = {}


def _kernel() -> Any:  # a triton.JITFunction (triton is untyped and optional)
    key = interpreting()
    if key not in _KERNELS:
        (_KERNELS[key],) = jit_kernels(globals(), [_rope_qk_kernel], helpers=[_rope_rows])
    return _KERNELS[key]


Dense = Tuple[List[int], torch.Tensor, torch.Tensor, torch.Tensor]  # perm, x, cos, sin


def _dense(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> Dense:
    """``x`` as 4-D and dense with the head dim last (HF's transposed q/k kept as they lie in memory: no
    copy), cos/sin broadcast to it through strides (no copy), all permuted alike; ``perm`` undoes it."""
    x4, c4, s4 = _as_4d(x), _as_4d(cos), _as_4d(sin)
    c4, s4 = c4.expand(x4.shape), s4.expand(x4.shape)
    if (
        x4.is_contiguous()
    ):  # the common case (HF's q/k): no permutation, no copy, fewer launches' worth of Python
        return IDENTITY, x4, c4, s4
    perm = _dense_permutation(x4)
    return perm, x4.permute(perm).contiguous(), c4.permute(perm), s4.permute(perm)


IDENTITY = [0, 1, 2, 3]


def _as_4d(t: torch.Tensor) -> torch.Tensor:
    return t if t.dim() == 4 else t.reshape((1,) * (4 - t.dim()) + tuple(t.shape))


def _undo(out: torch.Tensor, perm: List[int], shape: torch.Size) -> torch.Tensor:
    if perm == IDENTITY:
        return out if out.shape == shape else out.reshape(shape)
    return out.permute([perm.index(i) for i in range(4)]).reshape(shape)


Part = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # dense x, cos, sin, out


def _n_rows(x: torch.Tensor) -> int:
    return x.shape[0] * x.shape[1] * x.shape[2]


def _args(part: Part) -> List[Any]:
    x, cos, sin, out = part
    return [x, cos, sin, out, _n_rows(x), x.shape[1], x.shape[2], *cos.stride(), *sin.stride()]


def _triton_launch(q: Part, k: Part, backward: bool) -> None:
    """Rotate ``q`` and ``k`` (dense, their ``out`` filled) in one kernel launch."""
    import triton

    half = q[0].shape[-1] // 2
    block_h = triton.next_power_of_2(half)
    block_m = max(1, min(64, 4096 // block_h))
    q_blocks = triton.cdiv(_n_rows(q[0]), block_m)
    grid = (q_blocks + triton.cdiv(_n_rows(k[0]), block_m),)
    if grid[0]:
        _kernel()[grid](
            *_args(q), *_args(k), q_blocks, HALF=half, BLOCK_H=block_h, BLOCK_M=block_m, BACKWARD=backward
        )


def _rotate_pair(
    q: torch.Tensor, k: torch.Tensor, cq: torch.Tensor, sq: torch.Tensor, ck: torch.Tensor, sk: torch.Tensor,
    dtypes: Tuple[torch.dtype, torch.dtype], backward: bool,
) -> Tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    (pq, xq, cq4, sq4), (pk, xk, ck4, sk4) = _dense(q, cq, sq), _dense(k, ck, sk)
    oq, ok = torch.empty_like(xq, dtype=dtypes[0]), torch.empty_like(xk, dtype=dtypes[1])
    _triton_launch((xq, cq4, sq4, oq), (xk, ck4, sk4, ok), backward)
    return _undo(oq, pq, q.shape), _undo(ok, pk, k.shape)


def _rotate_one(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, dtype: torch.dtype, backward: bool
) -> torch.Tensor:
    """One tensor through the q/k kernel: its outermost dense slice as "q", the rest as "k", both written
    into one output (so the self-check and the golden vectors prove both halves of the kernel)."""
    perm, xd, cd, sd = _dense(x, cos, sin)
    out = torch.empty_like(xd, dtype=dtype)
    _triton_launch((xd[:1], cd[:1], sd[:1], out[:1]), (xd[1:], cd[1:], sd[1:], out[1:]), backward)
    return _undo(out, perm, x.shape)


def _dense_permutation(x: torch.Tensor) -> List[int]:
    """Dims of 4-D ``x`` ordered so that ``x.permute(perm)`` is contiguous (head dim last), or identity."""
    strides = x.stride()
    perm = [*sorted(range(3), key=lambda i: -strides[i]), 3]
    if x.stride(3) == 1 and x.permute(perm).is_contiguous():
        return perm
    return IDENTITY


def _cos_sin_grads(
    ctx: Any, grad: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, first: int
) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """Rare (HF's cos/sin carry no gradient): torch, in fp32; ``first`` = index of cos among the inputs."""
    gcos = gsin = None
    if ctx.needs_input_grad[first]:
        gcos = _sum_to(grad.float() * x.float(), cos.shape).to(cos.dtype)
    if ctx.needs_input_grad[first + 1]:
        gsin = _sum_to(grad.float() * rotate_half(x.float()), sin.shape).to(sin.dtype)
    return gcos, gsin


class _RopeTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        need_x = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        ctx.save_for_backward(cos, sin, x if need_x else None)
        ctx.x_dtype = x.dtype
        return _rotate_one(x, cos, sin, torch.result_type(x, cos), backward=False)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        cos, sin, x = ctx.saved_tensors
        gx = _rotate_one(grad, cos, sin, ctx.x_dtype, backward=True) if ctx.needs_input_grad[0] else None
        return (gx, *_cos_sin_grads(ctx, grad, x, cos, sin, 1))


class _RopeTritonQK(torch.autograd.Function):
    """q and k, each with its own cos/sin (the same tensors in ``apply_rotary_pos_emb``): one launch each way."""

    @staticmethod
    def forward(
        ctx: Any,
        q: torch.Tensor,
        k: torch.Tensor,
        qc: torch.Tensor,
        qs: torch.Tensor,
        kc: torch.Tensor,
        ks: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        need_x = any(ctx.needs_input_grad[2:])
        ctx.save_for_backward(qc, qs, kc, ks, q if need_x else None, k if need_x else None)
        ctx.dtypes = (q.dtype, k.dtype)
        return _rotate_pair(q, k, qc, qs, kc, ks, (torch.result_type(q, qc), torch.result_type(k, kc)), False)

    @staticmethod
    def backward(ctx: Any, gq: torch.Tensor, gk: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        qc, qs, kc, ks, q, k = ctx.saved_tensors
        dq = dk = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            dq, dk = _rotate_pair(gq, gk, qc, qs, kc, ks, ctx.dtypes, backward=True)
        return (dq, dk, *_cos_sin_grads(ctx, gq, q, qc, qs, 2), *_cos_sin_grads(ctx, gk, k, kc, ks, 4))


def _triton_fits(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> bool:
    if x.dim() > 4 or cos.dim() > 4 or sin.dim() > 4 or x.shape[-1] % 2:
        return False
    return _broadcasts_to(cos.shape, x.shape) and _broadcasts_to(sin.shape, x.shape)


def _broadcasts_to(shape: Sequence[int], target: Sequence[int]) -> bool:
    """``shape`` broadcasts to ``target`` without growing it (``torch.broadcast_shapes`` in plain Python:
    that one goes through torch._refs and costs more than the kernel launch at small shapes)."""
    if len(shape) > len(target):
        return False
    return all(a == b or a == 1 for a, b in zip(reversed(shape), reversed(target)))


def rope_triton(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> torch.Tensor:
    """The Triton kernel (fp32 math inside); the reference for shapes it does not take (odd D, > 4-D)."""
    cos_u, sin_u = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    if not _triton_fits(x, cos_u, sin_u):
        return _RopeReference.apply(x, cos_u, sin_u)
    return _RopeTriton.apply(x, cos_u, sin_u)


def rope_triton_qk(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(q_embed, k_embed)`` in one kernel launch each way; shapes the kernel does not take: per tensor."""
    cos_u, sin_u = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    if q.dtype != k.dtype or not (_triton_fits(q, cos_u, sin_u) and _triton_fits(k, cos_u, sin_u)):
        return (
            rope_triton(q, cos, sin, unsqueeze_dim=unsqueeze_dim),
            rope_triton(k, cos, sin, unsqueeze_dim=unsqueeze_dim),
        )
    return _RopeTritonQK.apply(q, k, cos_u, sin_u, cos_u, sin_u)


# --------------------------------------------------------------------------------------------- ascendc
def _ascendc_kernel() -> Optional[Callable[..., Any]]:
    try:
        from ascend_tools.ops import ascendc  # written by the AscendC loader; absent -> no tier
    except ImportError:
        return None
    try:
        return ascendc.get(OP, fallback=rope_reference)  # shapes the kernel does not take: the reference
    except Exception:
        return None


def rope_ascendc(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> torch.Tensor:
    kernel = _ascendc_kernel()
    if kernel is None:
        return rope_reference(x, cos, sin, unsqueeze_dim=unsqueeze_dim)
    return kernel(x, cos, sin, unsqueeze_dim=unsqueeze_dim)


def _ascendc_available(device: torch.device) -> bool:
    return getattr(device, "type", str(device)) == "npu" and _ascendc_kernel() is not None


def _ascendc_unavailable_reason(device: Any) -> Optional[str]:
    if getattr(device, "type", str(device)) != "npu":
        return "needs an NPU device"
    return (
        None if _ascendc_kernel() is not None else "no built AscendC rope kernel (ascend_tools.ops.ascendc)"
    )


# --------------------------------------------------------------------------------------- tier plumbing
def check_inputs(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, unsqueeze_dim: int = 1
) -> Tuple[tuple, dict]:
    """A small slice of the real input for the self-check: at most 2 x 8 x 8 rows of the full head dim,
    cos/sin sliced alongside (broadcast dims stay 1)."""
    caps = [2] + [8] * max(0, x.dim() - 2)
    cos_u, sin_u = cos.unsqueeze(unsqueeze_dim), sin.unsqueeze(unsqueeze_dim)
    if cos_u.dim() != x.dim() or sin_u.dim() != x.dim():
        return (x, cos, sin), {"unsqueeze_dim": unsqueeze_dim}
    index_x = tuple(slice(0, cap) for cap in caps)

    def cut(r: torch.Tensor) -> torch.Tensor:
        return r[tuple(slice(0, cap if r.shape[i] > 1 else 1) for i, cap in enumerate(caps))].squeeze(
            unsqueeze_dim
        )

    if cos_u.shape[unsqueeze_dim] != 1 or sin_u.shape[unsqueeze_dim] != 1:
        return (x, cos, sin), {"unsqueeze_dim": unsqueeze_dim}
    return (x[index_x].contiguous(), cut(cos_u).contiguous(), cut(sin_u).contiguous()), {
        "unsqueeze_dim": unsqueeze_dim
    }


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    """(rtol, atol) of a tier against the fp64 reference (errors relative to 1 + |ref|)."""
    if dtype == torch.bfloat16:
        return 1e-2, 1e-2  # a few bf16 ulps (2^-8) on |out| <= ~2|x|
    if dtype == torch.float16:
        return 2e-3, 2e-3
    return 1e-5, 1e-5


def _register() -> None:
    registry.register(
        registry.Tier(OP, "reference", forward=rope_reference, check_inputs=check_inputs, tolerance=tolerance)
    )
    registry.register(
        registry.Tier(
            OP,
            "npu",
            forward=rope_npu,
            available=_npu_available,
            unavailable_reason=_npu_unavailable_reason,
            check_inputs=check_inputs,
            tolerance=tolerance,
        )
    )
    registry.register(
        registry.Tier(
            OP,
            "triton",
            forward=rope_triton,
            available=triton_available,
            unavailable_reason=unavailable_reason,
            check_inputs=check_inputs,
            tolerance=tolerance,
        )
    )
    registry.register(
        registry.Tier(
            OP,
            "ascendc",
            forward=rope_ascendc,
            available=_ascendc_available,
            unavailable_reason=_ascendc_unavailable_reason,
            check_inputs=check_inputs,
            tolerance=tolerance,
        )
    )


_register()
# tiers that rotate q and k in one launch (the self-check of the tier, on one tensor, runs the same kernel)
JOINT_FORWARDS: Dict[str, Callable[..., Tuple[torch.Tensor, torch.Tensor]]] = {"triton": rope_triton_qk}


# ----------------------------------------------------------------------------------------------- API
def apply_rotary_pos_emb(
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    position_ids: Any = None,
    unsqueeze_dim: int = 1,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Drop-in for HF's ``apply_rotary_pos_emb``: ``(q_embed, k_embed)``, each through the best tier.

    ``position_ids`` is ignored, as in transformers 4.x; transformers 5.x has ``unsqueeze_dim`` in that
    position, so an ``int`` there is taken as ``unsqueeze_dim``."""
    if isinstance(position_ids, int) and not isinstance(position_ids, bool):
        unsqueeze_dim = position_ids
    kwargs = {"unsqueeze_dim": unsqueeze_dim}
    tier = registry.select(OP, (q, cos, sin), kwargs)
    joint = JOINT_FORWARDS.get(tier.name)
    if joint is not None:
        return joint(q, k, cos, sin, **kwargs)
    return tier.forward(q, cos, sin, **kwargs), tier.forward(k, cos, sin, **kwargs)


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0, dtype: torch.dtype = torch.float64
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Default-rope cos/sin of shape ``positions.shape + (head_dim,)``, as HF's rotary embedding makes
    them (``emb = cat(freqs, freqs)``)."""
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
    freqs = positions.to(torch.float64)[..., None] * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def golden_cases() -> List[Tuple[str, Dict[str, Any]]]:
    """Inputs for the golden vectors, fp64: (name, kwargs of the tiers' forward ``(x, cos, sin,
    unsqueeze_dim)``). The expected output is ``rope_reference(**kwargs)`` in fp64."""
    gen = torch.Generator().manual_seed(1234)
    cases = []
    for name, (b, h, s, d, unsqueeze_dim, offset) in {
        "bnsd_d64": (2, 4, 7, 64, 1, 0),
        "bnsd_d80": (1, 3, 5, 80, 1, 3),
        "bnsd_d128_gqa_k": (2, 1, 6, 128, 1, 0),
        "decode_seq1_d128": (2, 8, 1, 128, 1, 37),
        "bsnd_d64": (2, 4, 5, 64, 2, 0),
    }.items():
        positions = torch.arange(offset, offset + s).unsqueeze(0).expand(b, s)
        cos, sin = rope_cos_sin(positions, d)
        shape = (b, h, s, d) if unsqueeze_dim == 1 else (b, s, h, d)
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
        cases.append((name, {"x": x, "cos": cos, "sin": sin, "unsqueeze_dim": unsqueeze_dim}))
    return cases
