"""Shadow's verdict on one output, from the float64 copy of the device's output the worker already holds.

The same metric and value as :func:`screen.screen` (the one metric the op's standard reads; the full
:func:`metrics.compare_tensors` only when that says "error" or cannot tell), computed in fewer passes: the
target is already float64 (no widening copy), an output equal to its reference (exact ops: ``cat``, ``neg``,
``slice_backward``) is told by one ``torch.equal``, which stops at the first difference, and otherwise the
absolute error is divided in place and its maximum read with one vectorized ``amax``. (Equal outputs holding
±Inf get the screened metric 0 where screen runs the full comparison: the same verdict.)
"""

import math
from typing import Optional, Tuple

import torch

from ..dispatch import dtype_name
from . import metrics as M
from . import standards
from .screen import SCREENED, judge_output, screened
from .standards import Verdict

_F64 = torch.float64
_I64 = torch.int64
_EXP_BITS = 0x7FF0000000000000  # float64 exponent field: x & _EXP_BITS = 2**floor(log2|x|)


def judge_wide(
    name: str, dtype: torch.dtype, wide: torch.Tensor, ref: torch.Tensor, reduction: Optional[int]
) -> Tuple[M.PairMetrics, Verdict]:
    """The verdict on an output of dtype ``dtype`` held in ``wide`` (its float64 copy when floating, else
    itself) against the reference ``ref``."""
    m = _screen(standards.standard_for(name), dtype, wide, ref)
    if m is not None:
        v = standards.judge(m, name, reduction)
        if v.level != "error":
            return m, v
    return judge_output(name, wide.to(dtype), ref, reduction)


def _screen(standard: str, dtype: torch.dtype, t: torch.Tensor, r: torch.Tensor) -> Optional[M.PairMetrics]:
    """:func:`screen.screen` of the output whose float64 copy is ``t``; None: the full comparison decides."""
    if t.dtype != _F64 or not r.is_floating_point() or t.shape != r.shape:
        return None
    n = t.numel()
    t_dt, r_dt = dtype_name(dtype), dtype_name(r.dtype)
    fmt = M.FLOAT_FORMATS.get(t_dt)
    if n == 0 or fmt is None or r_dt not in M.FLOAT_FORMATS:
        return None
    r = r.to(_F64).contiguous()
    scaled = standard not in ("binary", "absolute")
    if torch.equal(t, r):  # an exact op, or exact on these inputs; it stops at the first difference
        if standard == "binary" and t_dt == r_dt:
            return M.PairMetrics(
                status="ok", count=n, target_dtype=t_dt, reference_dtype=r_dt, mismatch=0.0, note=SCREENED
            )
        return screened(t_dt, r_dt, n, scaled, 0.0)
    if standard == "binary" and t_dt == r_dt:
        return None
    mant, emin, emax = fmt
    low = 2.0**emin
    if scaled:
        norm_r = float(torch.linalg.vector_norm(r))
        if not math.isfinite(norm_r):
            return None
        rms = norm_r / math.sqrt(n)
        low = 2.0 ** max(emin, min(emax, math.frexp(rms)[1] - 1)) if rms > 0 else low
    # |t - r| / 2**floor(log2|r|), the power of two from r's exponent bits clamped as metrics.ulp does
    p2 = torch.bitwise_and(r.view(_I64), _EXP_BITS).view(_F64).clamp_(low, 2.0**emax)
    worst = float(torch.sub(t, r).abs_().div_(p2).amax())
    if not math.isfinite(worst):  # NaN/Inf somewhere
        return None
    return screened(t_dt, r_dt, n, scaled, worst * 2.0**mant)
