"""Double of ``torch_npu.npu_rotary_mul`` from ``torch_npu-npu_rotary_mul.md``.

Documented: ``npu_rotary_mul(input, r1, r2, rotary_mode='half', rotate=None) -> Tensor``,
``output = x * cos + rotate(x) * sin`` with ``r1`` = cos and ``r2`` = sin; ``half``:
``rotate(x) = cat(-x2, x1)`` (x1, x2 = chunk(x, 2, -1)); ``interleave``: pairs (x[::2], x[1::2]) ->
(-x2, x1) interleaved. Output has the shape and dtype of ``input``. Rules checked (jit_compile=False, Atlas
A2/A3), anything else raises:

- input, r1, r2: 3-D or 4-D; dtypes fp16/bf16/fp32 (the doc names no mixed-dtype support, so the double
  requires r1/r2 in input's dtype);
- ``rotary_mode`` in {half, interleave}; ``rotate`` (the matrix form) is not modelled;
- D even and < 896;
- half mode, 4-D: x BNSD with r 11SD/B1SD/BNSD, x BSND with r 1S1D/BS1D/BSND, x SBND with r
  S11D/SB1D/SBND, and B, N < 1000 for the matching layout; 3-D (TND): r T1D or TND;
  interleave mode: r 11SD / 1S1D / S11D / T1D only, B*N < 1000;
- r1/r2 values in [-1, 1] ("数据范围：[-1, 1]");
- B*N <= 1024 when r1/r2 need a gradient.

Autograd flows through the PyTorch ops, standing in for torch_npu's registered backward. The double
computes in fp32 and rounds once (the fused op's internal precision).
"""

from typing import Optional

import torch

DTYPES = (torch.float16, torch.bfloat16, torch.float32)

calls = []  # (input shape, r1 shape, dtype, rotary_mode) of every call, for tests

_HALF_4D = (  # layout, r patterns ("x" = input's size, "1" = broadcast), (B index, N index)
    ("BNSD", ("11x", "x1x", "xxx"), (0, 1)),
    ("BSND", ("1x1", "xx1", "xxx"), (0, 2)),
    ("SBND", ("x11", "xx1", "xxx"), (1, 2)),
)
_INTERLEAVE_4D = (("BNSD", ("11x",), (0, 1)), ("BSND", ("1x1",), (0, 2)), ("SBND", ("x11",), (1, 2)))


def _matches(pattern: str, x_shape: tuple, r_shape: tuple) -> bool:
    return all((r_shape[i] == x_shape[i]) if p == "x" else (r_shape[i] == 1) for i, p in enumerate(pattern))


def _layout(x_shape: tuple, r_shape: tuple, mode: str) -> Optional[tuple]:
    if len(x_shape) == 4:
        for name, patterns, (ib, in_) in _HALF_4D if mode == "half" else _INTERLEAVE_4D:
            if any(_matches(p, x_shape[:3], r_shape[:3]) for p in patterns):
                return name, x_shape[ib], x_shape[in_]
        return None
    t, n, _ = x_shape
    allowed = [(t, 1)] + ([(t, n)] if mode == "half" else [])
    return ("TND", 1, n) if tuple(r_shape[:2]) in allowed else None


def npu_rotary_mul(
    input: torch.Tensor,
    r1: torch.Tensor,
    r2: torch.Tensor,
    rotary_mode: str = "half",
    rotate: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    x = input
    if rotate is not None:
        raise NotImplementedError("npu_rotary_mul double: the rotate matrix form is not modelled")
    if rotary_mode not in ("half", "interleave"):
        raise RuntimeError(f"npu_rotary_mul: rotary_mode must be 'half' or 'interleave', got {rotary_mode!r}")
    for name, t in (("input", x), ("r1", r1), ("r2", r2)):
        if t.dim() not in (3, 4):
            raise RuntimeError(f"npu_rotary_mul: {name} must be 3-D or 4-D, got shape {tuple(t.shape)}")
        if t.dtype not in DTYPES:
            raise RuntimeError(f"npu_rotary_mul: {name} dtype {t.dtype} not supported")
    if r1.dtype != x.dtype or r2.dtype != x.dtype:
        raise RuntimeError(f"npu_rotary_mul: r1/r2 dtypes {r1.dtype}/{r2.dtype} differ from input {x.dtype}")
    if r1.dim() != x.dim() or r1.shape != r2.shape:
        raise RuntimeError(
            f"npu_rotary_mul: r1 {tuple(r1.shape)} / r2 {tuple(r2.shape)} do not fit input {tuple(x.shape)}"
        )
    d = x.shape[-1]
    if d % 2 or d >= 896 or r1.shape[-1] != d:
        raise RuntimeError(f"npu_rotary_mul: D must be even and < 896 (and r1/r2 the same D), got {d}")
    found = _layout(tuple(x.shape), tuple(r1.shape), rotary_mode)
    if found is None:
        raise RuntimeError(
            f"npu_rotary_mul: r1 shape {tuple(r1.shape)} is not a documented broadcast of input "
            f"{tuple(x.shape)} in {rotary_mode} mode"
        )
    _, b, n = found
    if rotary_mode == "half" and (b >= 1000 or n >= 1000):
        raise RuntimeError(f"npu_rotary_mul: B, N must be < 1000, got B={b}, N={n}")
    if rotary_mode == "interleave" and b * n >= 1000:
        raise RuntimeError(f"npu_rotary_mul: B*N must be < 1000 in interleave mode, got {b * n}")
    if (r1.requires_grad or r2.requires_grad) and b * n > 1024:
        raise RuntimeError(f"npu_rotary_mul: B*N must be <= 1024 when r1/r2 need gradients, got {b * n}")
    with torch.no_grad():
        if bool((r1.abs() > 1).any()) or bool((r2.abs() > 1).any()):
            raise RuntimeError("npu_rotary_mul: r1/r2 values must lie in [-1, 1]")
    calls.append((tuple(x.shape), tuple(r1.shape), x.dtype, rotary_mode))
    xf, c, s = x.float(), r1.float(), r2.float()
    if rotary_mode == "half":
        x1, x2 = torch.chunk(xf, 2, dim=-1)
        rot = torch.cat((-x2, x1), dim=-1)
    else:
        x1, x2 = xf[..., ::2], xf[..., 1::2]
        rot = torch.stack((-x2, x1), dim=-1).flatten(-2)
    return (xf * c + rot * s).to(x.dtype)
