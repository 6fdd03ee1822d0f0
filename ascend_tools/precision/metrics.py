"""Metrics for one pair of tensors (target vs reference) or one pair of statistics records.

The reference is the truth: every error is measured against it, and every ULP is a ULP of the
*target's* dtype (what the target could have represented). Everything is computed in float64 and
vectorized with torch; no Python loop touches elements. The formulas are in ``docs/precision.md``
("Metrics"); the verdicts built on them are in ``standards.py``.

Every numeric metric is either a finite float or None: None when it does not apply (cosine of
integers, anything of an empty pair), and a value too large for float64 (a ULP error of a float64
target against an exact zero) is reported as the largest float64.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Tuple, TypedDict

import numpy as np
import torch

from ..dispatch import dtype_name as torch_dtype_name
from .records import TensorStats

#: Floor of the relative error's denominator: float64 machine epsilon, what msprobe's
#: ``get_relative_err`` adds where the reference is exactly 0.
REL_FLOOR = 2.0**-52
_F64_MAX = float(np.finfo(np.float64).max)
_EXP_BITS = 0x7FF0000000000000  # float64 exponent field

#: (explicit mantissa bits, smallest normal exponent, largest exponent) of the float dtypes whose ULP
#: we know. ulp(x) = 2**(max(floor(log2|x|), emin) - mantissa), so subnormals and 0 get the
#: smallest subnormal spacing 2**(emin - mantissa).
FLOAT_FORMATS: Dict[str, Tuple[int, int, int]] = {
    "float16": (10, -14, 15),
    "bfloat16": (7, -126, 127),
    "float32": (23, -126, 127),
    "float64": (52, -1022, 1023),
    "float8_e4m3fn": (3, -6, 8),
    "float8_e5m2": (2, -14, 15),
}

STATUSES = ("ok", "empty", "shape_mismatch", "nan_inf_mismatch", "not_comparable")


@dataclass
class PairMetrics:
    """How far ``target`` is from ``reference``. See docs/precision.md for each formula.

    ``status``: "ok" | "empty" | "shape_mismatch" | "nan_inf_mismatch" | "not_comparable".
    Numeric metrics cover the ``count`` positions where both sides are finite; NaN/±Inf at the same
    positions on both sides are left out, NaN/±Inf at different positions are counted in
    ``nan_mismatch``/``inf_mismatch`` and set the status. ``note`` says why a status is not "ok".
    """

    status: str
    count: int
    cosine: Optional[float] = None
    max_abs_err: Optional[float] = None
    max_rel_err: Optional[float] = None
    mean_rel_err: Optional[float] = None
    rmse: Optional[float] = None
    within_1e3: Optional[float] = None
    within_5e3: Optional[float] = None
    max_ulp_err: Optional[float] = None
    mean_ulp_err: Optional[float] = None
    error_balance: Optional[float] = None
    nan_mismatch: int = 0
    inf_mismatch: int = 0
    target_dtype: str = ""
    reference_dtype: str = ""
    # beyond the list: what the dtype-aware verdicts need (standards.py)
    mismatch: Optional[float] = None  # share of compared elements with t != r (exact inequality)
    rel_l2_err: Optional[float] = None  # ||t - r||_2 / ||r||_2
    max_scaled_ulp_err: Optional[float] = None  # ULP error with the reference's RMS as floor
    note: str = ""

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


@dataclass
class StatsMetrics:
    """Differences between the statistics of two tensors (stats-mode dumps).

    ``*_abs_diff`` = |t - r|, ``*_rel_diff`` = |t - r| / max(|r|, REL_FLOOR) for max, min, mean and
    norm; None where either side lacks the statistic or it is not finite. ``*_delta`` = target's
    count minus reference's. ``status``: "ok" | "empty" | "nan_inf_mismatch" | "not_comparable"."""

    status: str
    max_abs_diff: Optional[float] = None
    max_rel_diff: Optional[float] = None
    min_abs_diff: Optional[float] = None
    min_rel_diff: Optional[float] = None
    mean_abs_diff: Optional[float] = None
    mean_rel_diff: Optional[float] = None
    norm_abs_diff: Optional[float] = None
    norm_rel_diff: Optional[float] = None
    nan_delta: int = 0
    inf_delta: int = 0
    sat_delta: int = 0
    worst_rel_diff: Optional[float] = None  # the largest of the four relative differences
    # max(|d max|, |d min|, |d mean|) / max(|r.max|, |r.min|): against the tensor's largest magnitude,
    # so a max or mean near 0 does not blow up (what standards.judge_stats reads)
    scaled_diff: Optional[float] = None
    note: str = ""

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- ulp


def ulp(x: torch.Tensor, dtype: str) -> torch.Tensor:
    """Spacing of ``dtype`` at |x| for every element of the float64 tensor ``x``.

    ulp(x) = 2**(e - p) with e = floor(log2|x|) clamped to [emin, emax] and p the explicit mantissa
    bits: the gap between neighbours of |x|'s binade in ``dtype``. 0 and subnormals get the smallest
    subnormal spacing 2**(emin - p); values at or beyond the largest finite get the spacing of the
    top binade. Agrees with ``np.spacing`` of the positive finite values of ``dtype``."""
    if dtype not in FLOAT_FORMATS:
        raise ValueError(f"no ULP for dtype {dtype!r}; known: {', '.join(FLOAT_FORMATS)}")
    mant, emin, emax = FLOAT_FORMATS[dtype]
    x = x.to(torch.float64).contiguous()
    p2 = torch.bitwise_and(x.view(torch.int64), _EXP_BITS).view(torch.float64)  # 2**floor(log2|x|)
    p2 = p2.clamp(2.0**emin, 2.0**emax)
    p2[torch.isnan(x)] = float("nan")
    return p2 * 2.0**-mant  # exact: 2**(emin - mant) >= 2**-1074 is representable


# ----------------------------------------------------------------------------------------- compare


def dtype_name(x: Any) -> str:
    """ "float32", "bfloat16", "int64", "bool": torch's name without "torch.", numpy's name."""
    if isinstance(x, torch.Tensor):
        return torch_dtype_name(x.dtype)
    return str(np.asarray(x).dtype)


def _kind(name: str) -> str:
    if name == "bool":
        return "bool"
    if name.startswith("float") or name == "bfloat16":
        return "float"
    if name.startswith(("int", "uint")):
        return "int"
    return "other"  # complex, quantized, strings, objects


_TORCH_NUMPY = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")


def _to_tensor(x: Any) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    arr = np.asarray(x)
    if arr.dtype.name in _TORCH_NUMPY:
        return torch.from_numpy(np.ascontiguousarray(arr))
    if arr.dtype.name in ("uint16", "uint32"):
        return torch.from_numpy(arr.astype(np.int64))
    return torch.from_numpy(arr.astype(np.float64))  # uint64 (exact to 2**53), ml_dtypes' bfloat16/float8


def _f(value: Any) -> float:
    """A finite Python float: overflow saturates at the largest float64."""
    v = float(value)
    if math.isnan(v):  # pragma: no cover - every caller excludes NaN inputs
        return _F64_MAX
    return max(-_F64_MAX, min(_F64_MAX, v))


def compare_tensors(target: Any, reference: Any) -> PairMetrics:
    """Metrics of ``target`` (e.g. the NPU's bf16 output) against ``reference`` (the truth, e.g.
    the fp32 GPU output or an fp64 replay). Accepts torch tensors, numpy arrays or None (a missing
    side). Never raises on data: shapes, dtypes and NaN/Inf disagreements become a ``status``."""
    if target is None or reference is None:
        missing = "target" if target is None else "reference"
        other = reference if target is None else target
        return PairMetrics(
            status="not_comparable",
            count=0,
            target_dtype="" if target is None else dtype_name(target),
            reference_dtype="" if reference is None else dtype_name(reference),
            note=f"no {missing} tensor" + ("" if other is not None else " on either side"),
        )
    t_dtype, r_dtype = dtype_name(target), dtype_name(reference)
    base = _Dtypes(target_dtype=t_dtype, reference_dtype=r_dtype)
    t_shape, r_shape = tuple(np.shape(target)), tuple(np.shape(reference))
    if t_shape != r_shape:
        return PairMetrics(
            status="shape_mismatch", count=0, note=f"shape {list(t_shape)} vs {list(r_shape)}", **base
        )
    t_kind, r_kind = _kind(t_dtype), _kind(r_dtype)
    if t_kind != r_kind or t_kind == "other":
        return PairMetrics(status="not_comparable", count=0, note=f"dtype {t_dtype} vs {r_dtype}", **base)
    t, r = _to_tensor(target), _to_tensor(reference)
    if t.numel() == 0:
        return PairMetrics(status="empty", count=0, note="no elements", **base)
    if t_kind in ("int", "bool"):
        return _compare_exact(t.reshape(-1), r.reshape(-1), t_kind, base)
    return _compare_float(t.reshape(-1), r.reshape(-1), t_dtype, base)


class _Dtypes(TypedDict):
    """The two dtypes every :class:`PairMetrics` past the missing-side check carries."""

    target_dtype: str
    reference_dtype: str


def _compare_exact(t: torch.Tensor, r: torch.Tensor, kind: str, base: _Dtypes) -> PairMetrics:
    """Integers and bools: equal or not. max_abs_err is |t - r| in float64 (1 for bools)."""
    n = t.numel()
    if kind == "bool" or t.dtype == r.dtype:
        differs = t != r
    else:  # int32 vs int64 and the like; a uint64 side arrives as float64
        wide = torch.float64 if torch.float64 in (t.dtype, r.dtype) else torch.int64
        differs = t.to(wide) != r.to(wide)
    mismatches = int(differs.sum())
    if not mismatches:
        max_abs = 0.0
    elif kind == "bool":
        max_abs = 1.0
    else:
        max_abs = _f((t.to(torch.float64) - r.to(torch.float64)).abs().max())
    return PairMetrics(status="ok", count=n, max_abs_err=max_abs, mismatch=mismatches / n, **base)


def _norm(x: torch.Tensor, scale: float) -> float:
    """||x||_2 without overflow or underflow of the squares: scale by max|x| when it is extreme."""
    if scale == 0.0:
        return 0.0
    if 1e-140 < scale < 1e140:
        return math.sqrt(float(torch.dot(x, x)))
    return scale * math.sqrt(float(torch.dot(x / scale, x / scale)))


def _all_finite(x: torch.Tensor) -> bool:
    """Fast path: a finite sum proves every element finite (NaN and Inf propagate); an overflowing
    sum falls back to the elementwise test."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _compare_float(t: torch.Tensor, r: torch.Tensor, t_dtype: str, base: _Dtypes) -> PairMetrics:
    # Buffers are reused in place: at 16M elements every fresh float64 tensor costs more (page
    # faults) than the arithmetic. t and r may be the caller's own float64 tensors: never written.
    t = t.to(torch.float64).contiguous()
    r = r.to(torch.float64).contiguous()
    nan_mismatch = inf_mismatch = 0
    if not (_all_finite(t) and _all_finite(r)):
        t_nan, r_nan = torch.isnan(t), torch.isnan(r)
        both = torch.isfinite(t) & torch.isfinite(r)
        nan_mismatch = int((t_nan ^ r_nan).sum())
        # ±Inf on one side only, or Infs of different sign (NaN against Inf counts as a NaN mismatch)
        inf_mismatch = int((~both & ~(t_nan | r_nan) & (t != r)).sum())
        t, r = t[both], r[both]
    status = "nan_inf_mismatch" if nan_mismatch or inf_mismatch else "ok"
    note = f"{nan_mismatch} NaN and {inf_mismatch} Inf positions differ" if status != "ok" else ""
    n = t.numel()
    m = PairMetrics(
        status=status, count=n, nan_mismatch=nan_mismatch, inf_mismatch=inf_mismatch, note=note, **base
    )
    if n == 0:
        return m

    ad = torch.sub(t, r)  # d = t - r
    # every element is finite here: d != 0 exactly where d > 0 or d < 0
    above, differ = int(torch.count_nonzero(ad > 0)), int(torch.count_nonzero(ad))
    m.error_balance = abs(above - (differ - above)) / n
    m.mismatch = differ / n
    ad.abs_()
    max_abs = float(ad.max())
    m.max_abs_err = _f(max_abs)

    work = torch.abs(r)
    max_r = float(work.max())
    norm_d, norm_r = _norm(ad, max_abs), _norm(r, max_r)
    m.rmse = _f(norm_d / math.sqrt(n))
    m.rel_l2_err = _f(norm_d / norm_r) if norm_r > 0 else (0.0 if norm_d == 0 else None)
    m.cosine = _cosine(t, r, norm_r, max_r)

    rel = torch.div(ad, work.clamp_(min=REL_FLOOR), out=work)
    m.max_rel_err = _f(rel.max())
    m.mean_rel_err = _f(rel.mean())
    m.within_1e3 = int(torch.count_nonzero(rel <= 1e-3)) / n
    m.within_5e3 = int(torch.count_nonzero(rel <= 5e-3)) / n

    if t_dtype in FLOAT_FORMATS:
        mant, emin, emax = FLOAT_FORMATS[t_dtype]
        scale = 2.0**mant  # ulp(r) = p2 * 2**-mant, so |d| / ulp(r) = |d| / p2 * 2**mant
        rms = norm_r / math.sqrt(n)
        floor = 2.0 ** max(emin, min(emax, math.frexp(rms)[1] - 1)) if rms > 0 else 2.0**emin
        ulp_err = torch.div(ad, _pow2_floor(r, work, 2.0**emin, 2.0**emax), out=work)
        m.max_ulp_err = _f(float(ulp_err.max()) * scale)
        m.mean_ulp_err = _f(float(ulp_err.mean()) * scale)
        # against ulp(max(|r|, rms)): floor(log2) is monotonic, so clamp the power of two at rms's
        scaled = torch.div(ad, _pow2_floor(r, work, floor, 2.0**emax), out=work)
        m.max_scaled_ulp_err = _f(float(scaled.max()) * scale)
    return m


def _pow2_floor(r: torch.Tensor, out: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """2**floor(log2|r|) clamped to [low, high], written into ``out`` (float64, r's size): keep only
    the float64 exponent bits of r (giving 0 for 0 and float64 subnormals, then clamped to low)."""
    torch.bitwise_and(r.view(torch.int64), _EXP_BITS, out=out.view(torch.int64))
    return out.clamp_(low, high)


def _cosine(t: torch.Tensor, r: torch.Tensor, norm_r: float, max_r: float) -> float:
    """Both all-zero: 1.0 (identical); one all-zero: 0.0 (no common direction)."""
    lo, hi = torch.aminmax(t)  # max |t| without a temporary |t|
    max_t = max(abs(float(lo)), abs(float(hi)))
    norm_t = _norm(t, max_t)
    if norm_t == 0.0 or norm_r == 0.0:
        return 1.0 if norm_t == norm_r else 0.0
    if 1e-140 < max_t < 1e140 and 1e-140 < max_r < 1e140:
        cos = float(torch.dot(t, r)) / norm_t / norm_r
    else:  # scale both to max 1 first (as msprobe's cosine_sim does) so the products stay finite
        cos = float(torch.dot(t / max_t, r / max_r)) / (norm_t / max_t) / (norm_r / max_r)
    return max(-1.0, min(1.0, cos))


# ------------------------------------------------------------------------------------------- stats


def compare_stats(target: Optional[TensorStats], reference: Optional[TensorStats]) -> StatsMetrics:
    """Differences of max/min/mean/norm and NaN/Inf/saturation count deltas of two tensors'
    statistics (stats-mode dumps carry no elements)."""
    if target is None or reference is None:
        return StatsMetrics(
            status="not_comparable", note=f"no {'target' if target is None else 'reference'} statistics"
        )
    out = StatsMetrics(
        status="ok",
        nan_delta=int(target.nan or 0) - int(reference.nan or 0),
        inf_delta=int(target.inf or 0) - int(reference.inf or 0),
        sat_delta=int(target.sat or 0) - int(reference.sat or 0),
    )
    keys = ("max", "min", "mean", "norm")
    if all(getattr(target, k) is None and getattr(reference, k) is None for k in keys):
        out.status, out.note = "empty", "no statistics on either side (empty tensors)"
    rels = []
    for k in keys:
        tv, rv = getattr(target, k), getattr(reference, k)
        if tv is None or rv is None:
            continue
        tv, rv = float(tv), float(rv)
        if not (math.isfinite(tv) and math.isfinite(rv)):
            if tv == rv:  # the same Inf on both sides
                setattr(out, f"{k}_abs_diff", 0.0)
                setattr(out, f"{k}_rel_diff", 0.0)
                rels.append(0.0)
            continue
        diff = abs(tv - rv)
        rel = diff / max(abs(rv), REL_FLOOR)
        setattr(out, f"{k}_abs_diff", _f(diff))
        setattr(out, f"{k}_rel_diff", _f(rel))
        rels.append(_f(rel))
    out.worst_rel_diff = max(rels) if rels else None
    diffs = [getattr(out, f"{k}_abs_diff") for k in ("max", "min", "mean")]
    bounds = [
        abs(float(v)) for v in (reference.max, reference.min) if v is not None and math.isfinite(float(v))
    ]
    if bounds and all(v is not None for v in diffs):
        out.scaled_diff = _f(max(diffs) / max(max(bounds), REL_FLOOR))
    if out.status == "ok" and (out.nan_delta or out.inf_delta):
        out.status = "nan_inf_mismatch"
        out.note = f"NaN count {out.nan_delta:+d}, Inf count {out.inf_delta:+d}"
    return out
