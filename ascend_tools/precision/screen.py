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
_F64_MAX = float(torch.finfo(_F64).max)
_EXP_BITS = 0x7FF0000000000000  # float64 exponent field: x & _EXP_BITS = 2**floor(log2|x|)
_CPU = torch.device("cpu")
#: ``_pair_sums.max_ulp_f64``'s kind of each target dtype it reads against a float64 reference
_F64_TARGET_KINDS = {torch.float64: 1, torch.float32: 0, torch.bfloat16: 2, torch.float16: 3}
#: ``_pair_sums.max_ulp``'s kind of each dtype it reads in float32 (bfloat16 as its bits)
_NARROW_KINDS = {torch.float32: 0, torch.bfloat16: 2, torch.float16: 3}
_UNDECIDED = -1.0
#: PairMetrics.note of a screened pass: only the metric the verdict reads was computed.
SCREENED = "screened: only the judged metric computed"


def judge_output(
    name: str, target: Any, ref: Any, reduction: Optional[int], target_dtype: Optional[torch.dtype] = None
) -> Tuple[M.PairMetrics, Verdict]:
    """The verdict on one output: first from the one metric the op's standard reads (a few vectorized
    passes, the same formula as ``metrics``); only when that says "error" from the full
    ``compare_tensors`` (every metric, NaN/Inf handling). ``target_dtype``: the output's own dtype where
    ``target`` holds its values widened (shadow's float64 copy, made once on its worker): ULPs are that
    dtype's, and the full comparison gets the values narrowed back to it (exactly)."""
    m = screen(standards.standard_for(name), target, ref, target_dtype)
    if m is not None:
        v = standards.judge(m, name, reduction)
        if v.level != "error":
            return m, v
    if target_dtype is not None and isinstance(target, torch.Tensor) and target.dtype != target_dtype:
        target = target.to(target_dtype)
    m = M.compare_tensors(target, ref)
    return m, standards.judge(m, name, reduction)


def screen(standard: str, t: Any, r: Any, t_dtype: Optional[torch.dtype] = None) -> Optional[M.PairMetrics]:
    """A PairMetrics holding only what ``standards.judge`` reads for ``standard`` (status, count,
    dtypes and one of mismatch / max_ulp_err / max_scaled_ulp_err), or None when the full comparison is
    needed (not floats, shapes differ, NaN/Inf anywhere, an unknown dtype). ``t_dtype``: see
    :func:`judge_output`."""
    if not (isinstance(t, torch.Tensor) and isinstance(r, torch.Tensor)) or t.shape != r.shape:
        return None
    if not (t.is_floating_point() and r.is_floating_point()):
        return None
    n = t.numel()
    t_dt, r_dt = dtype_name(t.dtype if t_dtype is None else t_dtype), dtype_name(r.dtype)
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
    if r.dtype == _F64 and t.dtype in _F64_TARGET_KINDS:
        worst = _max_ulp_ratio_f64(t, r, emin, emax, scaled)
    else:
        worst = _max_ulp_ratio_narrow(t, r, emin, emax, scaled)
        if worst is _UNDECIDED:
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


def _max_ulp_ratio_narrow(
    t: torch.Tensor, r: torch.Tensor, emin: int, emax: int, scaled: bool
) -> Optional[float]:
    """:func:`metrics.max_ulp_ratio` of two float32/bf16/fp16 tensors (shadow's replays in the op's own dtype,
    or in float32 for a bf16/fp16 op) straight from their memory (``metrics.compiled_max_ulp``: no NumPy views
    or dtype lookups, ~20 us an op); None for a NaN/Inf element, :data:`_UNDECIDED` where those steps do not
    decide or cannot run here (another layout or dtype): ``metrics.max_ulp_ratio`` then does."""
    kind, r_kind = _NARROW_KINDS.get(t.dtype), _NARROW_KINDS.get(r.dtype)
    if kind is None or r_kind is None or not (t.is_contiguous() and r.is_contiguous()):
        return _UNDECIDED
    worst = M.compiled_max_ulp(t.data_ptr(), kind, r.data_ptr(), r_kind, t.numel(), emin, emax, scaled)
    if worst is None:
        return _UNDECIDED
    return None if math.isnan(worst) else worst


def _max_ulp_ratio_f64(
    t: torch.Tensor, r: torch.Tensor, emin: int, emax: int, scaled: bool
) -> Optional[float]:
    """:func:`metrics.max_ulp_ratio` of a float64 reference (shadow's and compare's float64 replays) and a
    target in float64 or its own floating dtype (read widened, exactly): one pass of ``_pair_sums.max_ulp_f64``
    where it is built, else whole-tensor torch passes, which run faster there than numpy's blocks, after one
    ``torch.equal`` (it stops at the first difference: exact ops' outputs)."""
    r = r.contiguous()
    compiled = M._pair_sums is not None
    if not compiled and torch.equal(t.to(_F64), r):
        return 0.0
    low = 2.0**emin
    if scaled:
        squares = float(torch.dot(r.reshape(-1), r.reshape(-1)))
        if not math.isfinite(squares):
            return None
        low = M.rms_floor(squares, r.numel(), (0, emin, emax))
    if compiled:
        t = t.contiguous()
        worst_c = M._pair_sums.max_ulp_f64(
            t.data_ptr(), _F64_TARGET_KINDS[t.dtype], r.data_ptr(), r.numel(), low, 2.0**emax
        )
        if worst_c is not None:
            return worst_c if math.isfinite(worst_c) else None
        if torch.equal(t.to(_F64), r):  # a CPU without AVX2
            return 0.0
    # |t - r| / 2**floor(log2|r|): the power of two from r's exponent bits, clamped
    p2 = torch.bitwise_and(r.view(torch.int64), _EXP_BITS).view(_F64).clamp_(low, 2.0**emax)
    worst = float(torch.sub(t, r).abs_().div_(p2).amax())
    return worst if math.isfinite(worst) else None  # NaN/Inf somewhere: the full comparison
