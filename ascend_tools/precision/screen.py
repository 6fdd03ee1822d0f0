"""The verdict on one output against its float64 reference, cheaply: most outputs pass, and for a pass only the
one metric the op's standard reads is needed (a few vectorized passes, the same formula as ``metrics``); the
full :func:`metrics.compare_tensors` runs only for what that metric says is an error. Used by shadow (every op,
live) and by compare's replay (every output that is off against the reference)."""

import math
from typing import Any, Optional, Tuple

import torch

from ..dispatch import dtype_name
from . import metrics as M
from . import standards
from .standards import Verdict

_F64 = torch.float64
_F64_MAX = float(torch.finfo(torch.float64).max)
_EXP_BITS = 0x7FF0000000000000  # float64 exponent field: x & _EXP_BITS = 2**floor(log2|x|)
_CPU = torch.device("cpu")
#: PairMetrics.note of a screened pass: only the metric the verdict reads was computed.
SCREENED = "screened: only the judged metric computed"


def judge_output(name: str, target: Any, ref: Any, reduction: Optional[int]) -> Tuple[M.PairMetrics, Verdict]:
    """The verdict on one output: first from the one metric the op's standard reads (a few vectorized
    passes, the same formula as ``metrics``); only when that says "error" from the full
    ``compare_tensors`` (every metric, NaN/Inf handling)."""
    m = screen(standards.standard_for(name), target, ref)
    if m is not None:
        v = standards.judge(m, name, reduction)
        if v.level != "error":
            return m, v
    m = M.compare_tensors(target, ref)
    return m, standards.judge(m, name, reduction)


def screen(standard: str, t: Any, r: Any) -> Optional[M.PairMetrics]:
    """A PairMetrics holding only what ``standards.judge`` reads for ``standard`` (status, count,
    dtypes and one of mismatch / max_ulp_err / max_scaled_ulp_err), or None when the full comparison is
    needed (not floats, shapes differ, NaN/Inf anywhere, an unknown dtype)."""
    if not (isinstance(t, torch.Tensor) and isinstance(r, torch.Tensor)) or t.shape != r.shape:
        return None
    if not (t.is_floating_point() and r.is_floating_point()):
        return None
    n = t.numel()
    t_dt, r_dt = dtype_name(t.dtype), dtype_name(r.dtype)
    fmt = M.FLOAT_FORMATS.get(t_dt)
    if n == 0 or fmt is None or r_dt not in M.FLOAT_FORMATS:
        return None
    if t.device != _CPU:
        t = t.detach().to(_CPU)
    t = t.detach()
    if r.dtype != _F64:
        r = r.to(_F64)
    if standard == "binary" and t_dt == r_dt:
        if not torch.equal(t.to(_F64), r):
            return None
        return M.PairMetrics(
            status="ok", count=n, target_dtype=t_dt, reference_dtype=r_dt, mismatch=0.0, note=SCREENED
        )
    mant, emin, emax = fmt
    # t widened first: a mixed float32 - float64 subtraction runs several times slower than a copy + sub_
    d = t.to(_F64, copy=True).reshape(-1).sub_(r.reshape(-1))
    scaled = standard not in ("binary", "absolute")
    low = 2.0**emin
    if scaled:
        norm_r = float(torch.linalg.vector_norm(r))
        if not math.isfinite(norm_r):
            return None
        rms = norm_r / math.sqrt(n)
        low = 2.0 ** max(emin, min(emax, math.frexp(rms)[1] - 1)) if rms > 0 else low
    # 2**floor(log2|r|) from the exponent bits, clamped as metrics.ulp does: |d| / ulp = |q| * 2**mant
    p2 = (
        torch.bitwise_and(r.contiguous().view(-1).view(torch.int64), _EXP_BITS)
        .view(_F64)
        .clamp_(low, 2.0**emax)
    )
    q = torch.div(d, p2, out=p2)
    lo, hi = torch.aminmax(q)
    worst = max(float(hi), -float(lo)) + 0.0  # + 0.0: no -0.0 in reports
    if not math.isfinite(worst):
        return None
    value = min(worst * 2.0**mant, _F64_MAX)
    m = M.PairMetrics(status="ok", count=n, target_dtype=t_dt, reference_dtype=r_dt, note=SCREENED)
    if scaled:
        m.max_scaled_ulp_err = value
    else:
        m.max_ulp_err = value
    return m
