"""Fused linear cross-entropy: the LM head and the loss without the full logits, with tiers: reference, npu,
triton.

``linear_cross_entropy(hidden (N, H), weight (V, H), labels (N,), bias=None, ...)`` is Hugging Face's causal
LM loss on ``logits = hidden @ weight.T (+ bias)`` (labels already shifted): logits in the input dtype,
optional Gemma-2 ``softcap * tanh(logits / softcap)`` (in the input dtype, as HF), then upcast to fp32 and
``F.cross_entropy(..., ignore_index, label_smoothing)`` with ``reduction="mean"``, or ``"sum"`` divided by
``num_items_in_batch`` when given (transformers' ``fixed_cross_entropy``).

Memory (why the op exists): HF materialises the ``N x V`` logits in the model dtype, their fp32 copy, and
in backward an fp32 and a model-dtype gradient of the same size: for Qwen2's 151,936-token vocabulary and
4,096 tokens, 2.5 GB in fp32 for each fp32 copy. This op walks the rows in chunks; each chunk's logits
are turned into the loss and, in the same pass, into ``grad_hidden`` for its rows and a contribution to
``grad_weight``/``grad_bias`` (accumulated in place in the parameters' dtype: one GEMM with ``beta=1`` per
chunk, fp32 accumulation inside it, one rounding per chunk), as Liger-Kernel's fused linear cross-entropy does. The
backward only scales the stored gradients by the incoming scalar. Peak extra memory: one chunk's logits
(and their gradient) plus ``grad_weight``, which the unfused model holds too.

Chunk size: Liger-Kernel's rule ``next_power_of_2(ceil(N / ceil(V / H)))`` rows (a chunk's logits about as
large as ``hidden`` itself), but at least 512 rows (:data:`MIN_CHUNK_ROWS`: each chunk's ``grad_weight``
update reads and writes all of ``V x H``); ``chunk_size=`` overrides it.

Gradient, per row with ``p = softmax(z)``, ``eps`` the label smoothing, ``y`` the label: ``dz = (p -
(1 - eps) onehot(y) - eps / V) * w`` where ``w`` is ``1 / (number of non-ignored rows)`` (mean), ``1``
(sum) or ``1 / num_items_in_batch``, and ``0`` on ignored rows; through the softcap ``dlogits = dz * (1 -
tanh^2(logits / softcap))``; ``dlogits`` is rounded to the input dtype (HF's autograd does the same at the
``.float()``), then ``grad_hidden = dlogits @ weight``, ``grad_weight += dlogits.T @ hidden``.
With every row ignored, ``mean`` gives NaN, as ``F.cross_entropy`` does.

Tiers (chosen and self-checked by :mod:`ascend_tools.ops.registry`):

- ``reference``: the chunked scheme in PyTorch (softmax, gradient and loss in fp32 per chunk).
- ``triton``: the same chunks and matmuls in PyTorch; the per-row softmax / loss / gradient step is one
  Triton kernel that reads the chunk's logits once for the max and sum (online softmax) and overwrites
  them with their gradient in place (no fp32 copy of the chunk).
- ``npu``: the same chunks and matmuls; the per-chunk step is torch_npu's fused log-softmax + NLL,
  ``npu_cross_entropy_loss(z, target, reduction="none", label_smoothing=eps)`` on the chunk's fp32 logits
  (one kernel for the per-row loss, returning ``log_prob``), and ``npu_cross_entropy_loss_backward(scale,
  log_prob, target, reduction="none", label_smoothing=eps)`` for ``dz`` (one kernel, the registered
  backward of the former). Documented limits it works around: ``ignore_index < 0`` means "nothing
  ignored" and targets must lie in ``[0, V)``, so ignored rows get target 0 and a row factor of 0 (as in
  every tier); at most 200,000 rows per call (the step splits larger chunks); no fp64 (the reference's
  step). torch_npu documents no fused linear cross-entropy (the matmuls stay in PyTorch, as Liger-Kernel
  keeps them). Never run on an NPU here: tested through a double of the documented semantics.

Tolerances (against the fp64 reference, ``|a-b| / (max(1, rms(b))+|b|)``, the sum of each pair): gradients
(:data:`TOLERANCES`) fp32 2e-5 (sums over V and H terms), fp16 4e-3, bf16 3e-2 (the logits and ``dlogits``
are rounded to the input dtype, then matmuls in that dtype; measured on the golden cases: 1.3e-3 fp16,
1.1e-2 bf16 with the softcap's tanh rounded in bf16). The loss (:data:`FORWARD_TOLERANCES`) is reduced in
fp32 whatever the inputs: fp32 2e-6, fp16 1e-3, bf16 2e-3 (measured: 5e-8, 3.3e-5, 3.4e-4), so a tier whose
loss is 1% off is refused in every dtype, which the gradients' bound alone would not do in bf16.
"""

import math
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from .. import backend
from . import registry
from .autocast import autocast_inputs, autocast_off
from .triton_available import interpreting, jit_kernels, triton_available
from .triton_available import unavailable_reason as triton_unavailable_reason

OP = "linear_cross_entropy"
REDUCTIONS = ("mean", "sum")
TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.5e-2, 1.5e-2),
}
# the loss alone: reduced in fp32 whatever the input dtype, so held far tighter than the gradients
FORWARD_TOLERANCES: Dict[torch.dtype, Tuple[float, float]] = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (1e-6, 1e-6),
    torch.float16: (5e-4, 5e-4),
    torch.bfloat16: (1e-3, 1e-3),
}
# Each chunk's grad_weight update reads and writes all of V x H, so chunks must not be tiny: with hidden 256
# and vocabulary 151,936, Liger's rule alone gives 8 rows, 512 chunks, and a CPU train step 2.1x slower
# than unpatched (bench/bench_fused_memory.py). 512 rows of a 151,936 vocabulary: 311 MB of fp32 logits.
MIN_CHUNK_ROWS = 512
CHECK_ROWS = 16  # rows of the real input the self-check uses
CHECK_VOCAB = 512  # vocabulary rows of the real head the self-check uses (labels remapped into them)


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    return TOLERANCES.get(dtype, TOLERANCES[torch.float32])


def forward_tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    return FORWARD_TOLERANCES.get(dtype, FORWARD_TOLERANCES[torch.float32])


def chunk_rows(n: int, vocab: int, hidden: int) -> int:
    """Rows per chunk: a chunk's logits about as large as ``hidden`` itself (Liger-Kernel's rule), but at
    least :data:`MIN_CHUNK_ROWS`."""
    if n <= 0:
        return 1
    factor = max(1, math.ceil(vocab / max(1, hidden)))
    liger = 1 << max(0, math.ceil(math.log2(math.ceil(n / factor))))
    return min(n, max(liger, MIN_CHUNK_ROWS))


def _validate(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"linear_cross_entropy: reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}"
        )
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear_cross_entropy: hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} must be "
            "(N, H) and (V, H)"
        )
    if labels.shape != hidden.shape[:1]:
        raise ValueError(f"linear_cross_entropy: labels {tuple(labels.shape)} must be ({hidden.shape[0]},)")


def _row_weight(
    labels: torch.Tensor, ignore_index: int, reduction: str, num_items_in_batch: Any, dtype: torch.dtype
) -> Tuple[torch.Tensor, torch.Tensor]:
    """(valid mask, the factor each valid row's loss is multiplied by)."""
    valid = labels != ignore_index
    if num_items_in_batch is not None:
        denom = torch.as_tensor(num_items_in_batch, device=labels.device, dtype=dtype)
    elif reduction == "mean":
        denom = valid.sum().to(dtype)
    else:
        denom = torch.ones((), device=labels.device, dtype=dtype)
    return valid, 1.0 / denom


# The per-chunk step: logits (rows, V) in the input dtype -> (per-row loss in the compute dtype, dlogits in
# the input dtype, or None when no gradient is needed). ``scale``: each row's loss factor (0 on ignored rows).
ChunkStep = Callable[..., Tuple[torch.Tensor, Optional[torch.Tensor]]]


def _step_torch(
    logits: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    label_smoothing: float,
    softcap: Optional[float],
    need_grad: bool,
    compute: torch.dtype,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    t = None
    if softcap is not None:
        t = torch.tanh(logits / softcap)
        logits = t * softcap
    z = logits.to(compute)
    lse = torch.logsumexp(z, dim=-1)
    z_y = z.gather(1, target.unsqueeze(1)).squeeze(1)
    loss = lse - z_y
    if label_smoothing:
        loss = (1 - label_smoothing) * loss + label_smoothing * (lse - z.mean(-1))
    loss = loss * scale
    if not need_grad:
        return loss, None
    # softmax from the lse already at hand, in place over the chunk's own logits (never the caller's): one
    # pass and no (rows, V) allocation instead of softmax's own max and sum passes (0.73x its time, CPU)
    dz = z.sub_(lse.unsqueeze(1)).exp_()
    dz.scatter_add_(1, target.unsqueeze(1), torch.full_like(z_y, -(1 - label_smoothing)).unsqueeze(1))
    if label_smoothing:
        dz -= label_smoothing / z.shape[1]
    dz *= scale.unsqueeze(1)
    dlogits = dz.to(logits.dtype)
    if t is not None:  # through softcap * tanh(x / softcap), in the input dtype as HF's autograd
        dlogits = dlogits * (1 - t * t)
    return loss, dlogits


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        bias: Optional[torch.Tensor],
        ignore_index: int,
        reduction: str,
        label_smoothing: float,
        softcap: Optional[float],
        num_items_in_batch: Any,
        chunk_size: Optional[int],
        step: ChunkStep,
    ) -> torch.Tensor:
        n, h = hidden.shape
        compute = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[3]
        valid, factor = _row_weight(labels, ignore_index, reduction, num_items_in_batch, compute)
        target = torch.where(valid, labels, torch.zeros_like(labels))
        scale = torch.where(valid, factor, torch.zeros((), dtype=compute, device=labels.device))
        grad_h = torch.empty_like(hidden) if need_h else None
        # accumulated in place in the parameters' dtype (an fp32 accumulator for a bf16 head would cost
        # 2.5 GB at V=151,936, H=4,096, and its add a pass over it per chunk)
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_b = torch.zeros_like(bias) if need_b and bias is not None else None
        total = torch.zeros((), dtype=compute, device=hidden.device)
        rows = chunk_size or chunk_rows(n, weight.shape[0], h)
        for start in range(0, n, rows):
            sl = slice(start, min(n, start + rows))
            x = hidden[sl]
            logits = x @ weight.t()
            if bias is not None:
                logits = logits + bias
            loss, dlogits = step(
                logits, target[sl], scale[sl], label_smoothing, softcap, need_h or need_w or need_b, compute
            )
            total += loss.sum()
            if dlogits is None:
                continue
            if grad_h is not None:
                grad_h[sl] = dlogits @ weight
            if grad_w is not None:
                grad_w.addmm_(dlogits.t(), x)
            if grad_b is not None:
                grad_b += dlogits.sum(0).to(grad_b.dtype)
        if reduction == "mean" and num_items_in_batch is None and not bool(valid.any()):
            total = torch.full((), float("nan"), dtype=compute, device=hidden.device)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        return total.to(torch.float32) if compute == torch.float32 else total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        grad_h, grad_w, grad_b = ctx.saved_tensors
        one = bool(torch.all(grad == 1))

        def scaled(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
            return t if t is None or one else t * grad.to(t.dtype)

        return scaled(grad_h), scaled(grad_w), None, scaled(grad_b), None, None, None, None, None, None, None


def _apply(
    step: ChunkStep,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    softcap: Optional[float] = None,
    num_items_in_batch: Union[int, torch.Tensor, None] = None,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    _validate(hidden, weight, labels, reduction)
    return _LinearCrossEntropy.apply(
        hidden,
        weight,
        labels,
        bias,
        int(ignore_index),
        reduction,
        float(label_smoothing),
        None if softcap is None else float(softcap),
        num_items_in_batch,
        chunk_size,
        step,
    )


def linear_cross_entropy_reference(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *args: Any, **kwargs: Any
) -> torch.Tensor:
    return _apply(_step_torch, hidden, weight, labels, *args, **kwargs)


# --- npu: torch_npu.npu_cross_entropy_loss per chunk -----------------------------------------------------------

NPU_OPS = ("npu_cross_entropy_loss", "npu_cross_entropy_loss_backward")
NPU_MAX_ROWS = 200_000  # documented: N in (0, 200000]


def _step_npu(
    logits: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    label_smoothing: float,
    softcap: Optional[float],
    need_grad: bool,
    compute: torch.dtype,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if compute != torch.float32:  # fp64: the reference's step (the NPU op has no fp64)
        return _step_torch(logits, target, scale, label_smoothing, softcap, need_grad, compute)
    mod, err = backend.torch_npu_status()
    if mod is None:
        raise RuntimeError(err or "torch_npu is not importable")
    t = None
    if softcap is not None:
        t = torch.tanh(logits / softcap)
        logits = t * softcap
    z = logits.to(torch.float32)
    losses, grads = [], []
    for start in range(0, z.shape[0], NPU_MAX_ROWS):
        rows = slice(start, start + NPU_MAX_ROWS)
        # ignored rows: target 0 (in range) and scale 0; ignore_index < 0 means "none ignored" to the op
        loss, log_prob, _, _ = mod.npu_cross_entropy_loss(
            z[rows], target[rows], reduction="none", ignore_index=-100, label_smoothing=label_smoothing
        )
        losses.append(loss.to(compute) * scale[rows])
        if need_grad:
            dz = mod.npu_cross_entropy_loss_backward(
                scale[rows].to(torch.float32),
                log_prob,
                target[rows],
                reduction="none",
                ignore_index=-100,
                label_smoothing=label_smoothing,
            )
            grads.append(dz.to(logits.dtype))
        del log_prob
    loss_rows = torch.cat(losses) if len(losses) != 1 else losses[0]
    if not need_grad:
        return loss_rows, None
    dlogits = torch.cat(grads) if len(grads) != 1 else grads[0]
    if t is not None:  # through softcap * tanh(x / softcap), in the input dtype as HF's autograd
        dlogits = dlogits * (1 - t * t)
    return loss_rows, dlogits


def linear_cross_entropy_npu(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *args: Any, **kwargs: Any
) -> torch.Tensor:
    return _apply(_step_npu, hidden, weight, labels, *args, **kwargs)


def _npu_unavailable(device: Any) -> Optional[str]:
    for name in NPU_OPS:
        reason = backend.npu_op_unavailable(device, name)
        if reason is not None:
            return reason
    return None


# --- triton ---------------------------------------------------------------------------------------------------

if TYPE_CHECKING:
    constexpr = Any
else:
    constexpr = "constexpr"
tl: Any = None  # triton.language, bound in the kernel's own namespace by _kernel()


def _ce_rows(
    Z,
    stride_z,
    TARGET,
    SCALE,
    LOSS,
    n_cols,
    smoothing,
    softcap,
    SOFTCAP: constexpr,
    NEED_GRAD: constexpr,
    BLOCK: constexpr,
):
    """One program per row: online max/sum over the row in blocks, the loss, then the gradient in place."""
    row = tl.program_id(0).to(tl.int64)
    base = Z + row * stride_z
    y = tl.load(TARGET + row)
    w = tl.load(SCALE + row)
    m = tl.full([], float("-inf"), tl.float32)
    d = tl.full([], 0.0, tl.float32)
    zsum = tl.full([], 0.0, tl.float32)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        mask = cols < n_cols
        z = tl.load(base + cols, mask=mask, other=-float("inf")).to(tl.float32)
        if SOFTCAP:
            z = softcap * _tanh(z / softcap)
            z = tl.where(mask, z, -float("inf"))
        # tl.reduce with our own combine functions, not tl.max/tl.sum (see ops/rms_norm.py)
        m_new = tl.maximum(m, tl.reduce(z, 0, _max))
        d = d * tl.exp(m - m_new) + tl.reduce(tl.exp(z - m_new), 0, _add)
        zsum += tl.reduce(tl.where(mask, z, 0.0), 0, _add)
        m = m_new
    z_y = tl.load(base + y).to(tl.float32)
    if SOFTCAP:
        z_y = softcap * _tanh(z_y / softcap)
    lse = m + tl.log(d)
    loss = (1.0 - smoothing) * (lse - z_y) + smoothing * (lse - zsum / n_cols)
    tl.store(LOSS + row, loss * w)
    if NEED_GRAD:
        for start in range(0, n_cols, BLOCK):
            cols = start + tl.arange(0, BLOCK)
            mask = cols < n_cols
            raw = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
            z = raw
            if SOFTCAP:
                t = _tanh(raw / softcap)
                z = softcap * t
            g = tl.exp(z - lse) - smoothing / n_cols - tl.where(cols == y, 1.0 - smoothing, 0.0)
            g = (g * w).to(Z.dtype.element_ty)
            if SOFTCAP:
                g = g.to(tl.float32) * (1.0 - t * t)
            tl.store(base + cols, g.to(Z.dtype.element_ty), mask=mask)


def _add(a, b):
    return a + b


def _max(a, b):
    return tl.maximum(a, b)


def _tanh(x):
    e = tl.exp(-2.0 * tl.abs(x))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(x < 0, -t, t)


_KERNELS: Dict[bool, Any] = {}  # TRITON_INTERPRET -> triton.JITFunction


def _kernel() -> Any:
    key = interpreting()
    if key not in _KERNELS:
        (_KERNELS[key],) = jit_kernels(globals(), [_ce_rows], helpers=[_add, _max, _tanh])
    return _KERNELS[key]


def _step_triton(
    logits: torch.Tensor,
    target: torch.Tensor,
    scale: torch.Tensor,
    label_smoothing: float,
    softcap: Optional[float],
    need_grad: bool,
    compute: torch.dtype,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    if compute != torch.float32:  # fp64: the reference's step (the kernel computes in fp32)
        return _step_torch(logits, target, scale, label_smoothing, softcap, need_grad, compute)
    z = logits if logits.stride(-1) == 1 else logits.contiguous()
    loss = torch.empty(z.shape[0], dtype=torch.float32, device=z.device)
    if z.shape[0]:
        _kernel()[(z.shape[0],)](
            z,
            z.stride(0),
            target.contiguous(),
            scale.to(torch.float32).contiguous(),
            loss,
            z.shape[1],
            float(label_smoothing),
            float(softcap or 1.0),
            SOFTCAP=softcap is not None,
            NEED_GRAD=need_grad,
            BLOCK=4096 if z.shape[1] >= 4096 else 1 << max(4, math.ceil(math.log2(max(1, z.shape[1])))),
        )
    return loss, z if need_grad else None


def linear_cross_entropy_triton(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *args: Any, **kwargs: Any
) -> torch.Tensor:
    return _apply(_step_triton, hidden, weight, labels, *args, **kwargs)


# --- self-check inputs, golden cases, registration -----------------------------------------------------------


def check_inputs(
    hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, *args: Any, **kwargs: Any
) -> Tuple[tuple, dict]:
    """The first rows of the real hidden states and the first ``CHECK_VOCAB`` rows of the real head, labels
    remapped into that vocabulary (ignored ones kept, one more row ignored), the real options; nothing
    drawn from the global RNG."""
    h = torch.nan_to_num(hidden.detach()[:CHECK_ROWS], nan=0.0, posinf=0.0, neginf=0.0)
    w = weight.detach()[:CHECK_VOCAB]
    lab = labels.detach()[: h.shape[0]].clone()
    ignore = kwargs.get("ignore_index", -100)
    lab = torch.where(lab == ignore, lab, lab.remainder(w.shape[0]))
    if lab.numel() > 1:
        lab[-1] = ignore
    opts = dict(kwargs)
    opts.pop("chunk_size", None)
    opts["chunk_size"] = 5  # several chunks and a ragged last one
    if opts.get("num_items_in_batch") is not None:
        opts["num_items_in_batch"] = max(1, int((lab != ignore).sum()))
    bias = args[0] if args else kwargs.get("bias")
    if bias is not None:
        bias = bias.detach()[:CHECK_VOCAB]
        if args:
            args = (bias, *tuple(args[1:]))
        else:
            opts["bias"] = bias
    return (h, w, lab, *tuple(args)), opts


def golden_cases() -> List[Tuple[str, Dict[str, Any]]]:
    """fp64 cases: plain mean with ignored rows; sum with bias, label smoothing and softcap; a
    ``num_items_in_batch`` divisor; each walking several chunks."""
    gen = torch.Generator().manual_seed(61)
    cases = []
    for name, n, h, v, opts in (
        ("mean_ignore", 13, 24, 50, {}),
        ("sum_bias_smooth_softcap", 9, 16, 37, {"reduction": "sum", "label_smoothing": 0.1, "softcap": 3.0}),
        ("num_items", 11, 32, 64, {"num_items_in_batch": 20}),
    ):
        hidden = torch.randn((n, h), generator=gen, dtype=torch.float64)
        weight = torch.randn((v, h), generator=gen, dtype=torch.float64) / math.sqrt(h) * 3
        labels = torch.randint(0, v, (n,), generator=gen)
        labels[::4] = -100
        case: Dict[str, Any] = {"hidden": hidden, "weight": weight, "labels": labels, "chunk_size": 4, **opts}
        if name.startswith("sum_bias"):
            case["bias"] = torch.randn(v, generator=gen, dtype=torch.float64)
        cases.append((name, case))
    return cases


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    bias: Optional[torch.Tensor] = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    softcap: Optional[float] = None,
    num_items_in_batch: Union[int, torch.Tensor, None] = None,
    chunk_size: Optional[int] = None,
) -> torch.Tensor:
    """HF's causal-LM loss of ``hidden @ weight.T (+ bias)`` against already shifted ``labels``, never
    holding the full logits, run by the best self-checked tier for the inputs. Under ``torch.autocast`` the
    product runs as an autocast ``linear`` would (inputs and weight in the autocast dtype, the gradients cast back),
    the loss in float32 as HF's."""
    device_type = hidden.device.type
    hidden, weight, bias = autocast_inputs(device_type, hidden, weight, bias)
    with autocast_off(device_type):
        return registry.call(
            OP,
            hidden,
            weight,
            labels,
            bias=bias,
            ignore_index=ignore_index,
            reduction=reduction,
            label_smoothing=label_smoothing,
            softcap=softcap,
            num_items_in_batch=num_items_in_batch,
            chunk_size=chunk_size,
        )


def _register() -> None:
    common: Dict[str, Any] = {
        "check_inputs": check_inputs,
        "tolerance": tolerance,
        "forward_tolerance": forward_tolerance,
    }
    registry.register(registry.Tier(OP, "reference", forward=linear_cross_entropy_reference, **common))
    registry.register(
        registry.Tier(
            OP,
            "npu",
            forward=linear_cross_entropy_npu,
            available=lambda device: _npu_unavailable(device) is None,
            unavailable_reason=_npu_unavailable,
            **common,
        )
    )
    registry.register(
        registry.Tier(
            OP,
            "triton",
            forward=linear_cross_entropy_triton,
            available=triton_available,
            unavailable_reason=triton_unavailable_reason,
            **common,
        )
    )


_register()
