"""The verdict on one output against its float64 reference, cheaply: most outputs pass, and for a pass only the
one metric the op's standard reads is needed (a few vectorized passes, the same formula as ``metrics``); the
full :func:`metrics.compare_tensors` runs only for what that metric says is an error. Used by shadow (every op,
live) and by compare's replay (every output that is off against the reference)."""

from typing import Any, Optional, Tuple

import torch

from ..dispatch import dtype_name
from . import metrics as M
from . import standards
from .standards import Verdict

_F64_MAX = float(torch.finfo(torch.float64).max)
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
    if standard == "binary" and t_dt == r_dt:
        if not torch.equal(t, r):
            return None
        return M.PairMetrics(
            status="ok", count=n, target_dtype=t_dt, reference_dtype=r_dt, mismatch=0.0, note=SCREENED
        )
    mant, emin, emax = fmt
    scaled = standard not in ("binary", "absolute")
    worst = M.max_ulp_ratio(t, r, emin, emax, scaled)
    if worst is None:
        return None
    return screened(t_dt, r_dt, n, scaled, worst * 2.0**mant)


def screened(t_dt: str, r_dt: str, n: int, scaled: bool, value: float) -> M.PairMetrics:
    """The PairMetrics of a screened output: the one judged metric, ``max_scaled_ulp_err`` for a scaled
    standard, else ``max_ulp_err`` (capped at the largest float64)."""
    m = M.PairMetrics(status="ok", count=n, target_dtype=t_dt, reference_dtype=r_dt, note=SCREENED)
    if scaled:
        m.max_scaled_ulp_err = min(value, _F64_MAX)
    else:
        m.max_ulp_err = min(value, _F64_MAX)
    return m
