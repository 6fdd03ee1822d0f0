"""Metrics for one pair of tensors (target vs reference) or one pair of statistics records.

The reference is the truth: every error is measured against it, and every ULP is a ULP of the
*target's* dtype (what the target could have represented). Everything is computed in float64 with numpy,
in blocks that stay in cache (no torch import: compare's start-up), one pass for every metric; no Python
loop touches elements. The formulas are in ``docs/precision.md``
("Metrics"); the verdicts built on them are in ``standards.py``.

Every numeric metric is either a finite float or None: None when it does not apply (cosine of
integers, anything of an empty pair), and a value too large for float64 (a ULP error of a float64
target against an exact zero) is reported as the largest float64.
"""

import importlib
import math
import sys
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, Optional, Sequence, Tuple, TypedDict

import numpy as np

from .records import TensorStats

try:  # one pass over a pair (_pair_sums.c); built by setup.py where a C compiler is
    from . import _pair_sums
except ImportError:  # no compiler at install: the NumPy pass
    _pair_sums = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import torch

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


def ulp(x: "torch.Tensor", dtype: str) -> "torch.Tensor":
    """Spacing of ``dtype`` at |x| for every element of the float64 tensor ``x``.

    ulp(x) = 2**(e - p) with e = floor(log2|x|) clamped to [emin, emax] and p the explicit mantissa
    bits: the gap between neighbours of |x|'s binade in ``dtype``. 0 and subnormals get the smallest
    subnormal spacing 2**(emin - p); values at or beyond the largest finite get the spacing of the
    top binade. Agrees with ``np.spacing`` of the positive finite values of ``dtype``."""
    if dtype not in FLOAT_FORMATS:
        raise ValueError(f"no ULP for dtype {dtype!r}; known: {', '.join(FLOAT_FORMATS)}")
    import torch

    mant, emin, emax = FLOAT_FORMATS[dtype]
    x = x.to(torch.float64).contiguous()
    p2 = torch.bitwise_and(x.view(torch.int64), _EXP_BITS).view(torch.float64)  # 2**floor(log2|x|)
    p2 = p2.clamp(2.0**emin, 2.0**emax)
    p2[torch.isnan(x)] = float("nan")
    return p2 * 2.0**-mant  # exact: 2**(emin - mant) >= 2**-1074 is representable


# ----------------------------------------------------------------------------------------- compare


@dataclass(frozen=True)
class RawBits:
    """A tensor of a dtype numpy lacks (bfloat16, float8) as the raw bits our dumps store (``uint16`` /
    ``uint8``) and the dtype's name: what compare reads without torch."""

    bits: np.ndarray
    dtype: str

    @property
    def shape(self) -> Tuple[int, ...]:
        return tuple(self.bits.shape)

    @property
    def nbytes(self) -> int:
        return int(self.bits.nbytes)

    def to_torch(self) -> "torch.Tensor":
        """The tensor itself, a view of the same memory (imports torch; ``uint16`` bits go through
        ``int16``, which torch before 2.3 has and ``uint16`` not)."""
        torch = importlib.import_module("torch")
        bits = self.bits.view(np.int16) if self.bits.dtype == np.uint16 else self.bits
        return torch.from_numpy(bits).view(getattr(torch, self.dtype))


def _torch() -> Any:
    """torch when something in this process imported it (a torch tensor cannot exist otherwise), else None:
    compare's pair metrics run on numpy and must not pay for torch's import."""
    return sys.modules.get("torch")


def _is_torch(x: Any) -> bool:
    # getattr: torch may be half-imported by another thread (the compare command imports it meanwhile); a
    # tensor exists only once it is imported
    return isinstance(x, getattr(_torch(), "Tensor", ()))


def dtype_name(x: Any) -> str:
    """ "float32", "bfloat16", "int64", "bool": torch's name without "torch.", numpy's name."""
    if _is_torch(x) or isinstance(x, RawBits):
        return str(x.dtype).replace("torch.", "")
    return str(np.asarray(x).dtype)


def _kind(name: str) -> str:
    if name == "bool":
        return "bool"
    if name.startswith("float") or name == "bfloat16":
        return "float"
    if name.startswith(("int", "uint")):
        return "int"
    return "other"  # complex, quantized, strings, objects


_NUMPY_KEPT = ("bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64")


def _flat(x: Any) -> np.ndarray:
    """``x`` as a flat numpy array, without a copy where it can be: float16/32/64, bool and the signed ints
    as they are; a bfloat16 torch tensor as its ``uint16`` bits (:class:`_Widen` decodes them); the rest
    (uint16/32 widened to int64, uint64, float8, ml_dtypes' bfloat16) as float64 or int64."""
    if isinstance(x, RawBits):
        if x.dtype == "bfloat16":
            return x.bits.reshape(-1).view(np.uint16)
        x = x.to_torch()  # float8: decoded by torch
    if _is_torch(x):
        torch = _torch()
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            return x.contiguous().view(torch.int16).numpy().view(np.uint16).reshape(-1)
        name = str(x.dtype).replace("torch.", "")
        x = x.numpy() if name in _NUMPY_KEPT else x.to(torch.float64).numpy()
    arr = np.asarray(x).reshape(-1)
    if arr.dtype.name in _NUMPY_KEPT:
        return arr
    if arr.dtype.name in ("uint16", "uint32"):
        return arr.astype(np.int64)
    return arr.astype(np.float64)  # uint64 (exact to 2**53), ml_dtypes' bfloat16/float8


def _shape(x: Any) -> Tuple[int, ...]:
    return tuple(x.shape) if isinstance(x, RawBits) or _is_torch(x) else tuple(np.shape(x))


def squeezed(shape: Sequence[int]) -> Tuple[int, ...]:
    """``shape`` without its dimensions of size 1: two tensors whose shapes differ only there hold the same
    elements in the same order (a bmm of one batch against the mm another run folded it into, see ``align.py``)."""
    return tuple(n for n in shape if n != 1)


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
    t_shape, r_shape = _shape(target), _shape(reference)
    if t_shape != r_shape and squeezed(t_shape) != squeezed(r_shape):
        return PairMetrics(
            status="shape_mismatch", count=0, note=f"shape {list(t_shape)} vs {list(r_shape)}", **base
        )
    t_kind, r_kind = _kind(t_dtype), _kind(r_dtype)
    if t_kind != r_kind or t_kind == "other":
        return PairMetrics(status="not_comparable", count=0, note=f"dtype {t_dtype} vs {r_dtype}", **base)
    t, r = _flat(target), _flat(reference)
    if t.size == 0:
        return PairMetrics(status="empty", count=0, note="no elements", **base)
    if t_kind in ("int", "bool"):
        return _compare_exact(t, r, t_kind, base)
    with np.errstate(all="ignore"):  # overflow and NaN are detected from the sums and handled
        return _compare_float(t, r, t_dtype, base)


class _Dtypes(TypedDict):
    """The two dtypes every :class:`PairMetrics` past the missing-side check carries."""

    target_dtype: str
    reference_dtype: str


def _compare_exact(t: np.ndarray, r: np.ndarray, kind: str, base: _Dtypes) -> PairMetrics:
    """Integers and bools: equal or not. max_abs_err is |t - r| in float64 (1 for bools)."""
    n = t.size
    if kind == "bool" or t.dtype == r.dtype:
        differs = t != r
    else:  # int32 vs int64 and the like; a uint64 side arrives as float64
        wide = np.float64 if np.float64 in (t.dtype, r.dtype) else np.int64
        differs = t.astype(wide) != r.astype(wide)
    mismatches = int(np.count_nonzero(differs))
    if not mismatches:
        max_abs = 0.0
    elif kind == "bool":
        max_abs = 1.0
    else:
        max_abs = _f(np.abs(t.astype(np.float64) - r.astype(np.float64)).max())
    return PairMetrics(status="ok", count=n, max_abs_err=max_abs, mismatch=mismatches / n, **base)


#: elements per block of the float metrics: the work buffers of a block stay in a core's L2 cache, so each of
#: the ~30 vectorized steps per block reads cache, not memory, and numpy's per-call cost stays small beside it
BLOCK = 1 << 16
#: per work dtype: the integer type of its width and its exponent field (x & field = 2**floor(log2|x|)), and
#: the smallest largest-magnitude of a vector whose sum of squares underflow cannot have distorted
_WORK: Dict[Any, Tuple[Any, int, float]] = {
    np.float32: (np.int32, 0x7F800000, 2.0**-50),
    np.float64: (np.int64, _EXP_BITS, 2.0**-450),
}


_local = threading.local()


def _buffer(role: str, dtype: Any) -> np.ndarray:
    """This thread's work buffer of BLOCK elements for ``role``, reused from call to call (a fresh 256 KiB
    array is fresh pages: their faults cost more than a small pair's arithmetic)."""
    key = (role, np.dtype(dtype).name)
    buffers = _local.__dict__.setdefault("buffers", {})
    if key not in buffers:
        buffers[key] = np.empty(BLOCK, dtype)
    return buffers[key]


class _Widen:
    """Blocks of a flat array in the work dtype (float32 or float64), decoded into a reused buffer where
    the array is not already of it (bfloat16 bits become float32 on the way). Blocks may be views of the
    array: never written."""

    def __init__(self, arr: np.ndarray, work: Any, side: str) -> None:
        self.arr, self.work = arr, work
        self.bits = _buffer(side, np.uint32) if arr.dtype == np.uint16 else None
        self.buf = None if arr.dtype == work else _buffer(side, work)

    def block(self, lo: int, hi: int) -> np.ndarray:
        part = self.arr[lo:hi]
        if self.bits is not None:  # bfloat16 = the top half of a float32
            part = np.left_shift(part, 16, out=self.bits[: hi - lo], dtype=np.uint32).view(np.float32)
            if self.work is np.float32:
                return part
        if self.buf is None:
            return part
        out = self.buf[: hi - lo]
        np.copyto(out, part)
        return out

    def whole(self) -> np.ndarray:
        """The whole array as float64 (a fresh array)."""
        if self.bits is not None:
            return (self.arr.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return self.arr.astype(np.float64)


def largest(dtype: str) -> Optional[float]:
    """The largest finite magnitude of a float dtype, from :data:`FLOAT_FORMATS`: (2 - 2**-m) * 2**emax with m
    its mantissa bits, one fewer for a finite-only ("fn") format, whose top mantissa is NaN (an attention mask is
    ``finfo(dtype).min``); None for another dtype."""
    fmt = FLOAT_FORMATS.get(dtype)
    if fmt is None:
        return None
    mantissa = fmt[0] - 1 if dtype.endswith("fn") else fmt[0]
    return (2.0 - 2.0**-mantissa) * 2.0 ** fmt[2]


def rel_l2_unmasked(target: Any, reference: Any) -> Optional[float]:
    """Relative L2 error of two float tensors over the elements that are neither non-finite nor at the largest
    finite magnitude on either side: an additive attention mask (``finfo(dtype).min``, or -inf) holds values
    whose norm hides every other element's error (softmax's input: a 1e-38 relative error whatever the scores).
    None when no element is left or the shapes differ."""
    t_top, r_top = largest(dtype_name(target)), largest(dtype_name(reference))
    t, r = _flat(target), _flat(reference)
    if t.shape != r.shape or t_top is None or r_top is None:
        return None
    tv, rv = _Widen(t, np.float64, "t").whole(), _Widen(r, np.float64, "r").whole()
    with np.errstate(all="ignore"):
        keep = (np.abs(tv) < t_top) & (np.abs(rv) < r_top)  # (NaN compares False: left out too)
        if not keep.any():
            return None
        norm = float(np.linalg.norm(rv[keep]))
        diff = float(np.linalg.norm(tv[keep] - rv[keep]))
    return diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)


def _narrow(arr: np.ndarray) -> bool:
    """float16, float32 or bfloat16 bits: exact in float32."""
    return arr.dtype in (np.float16, np.float32, np.uint16)


class _Sums:
    """What one pass over the blocks accumulates: counts, maxima, and sums of each block added in float64."""

    def __init__(self) -> None:
        self.above = self.differ = self.within_1e3 = self.within_5e3 = 0
        self.max_abs = self.max_r = self.max_t = self.max_rel = self.max_ulp = self.max_scaled = 0.0
        self.dd = self.rr = self.tt = self.tr = self.ds = self.sum_rel = self.sum_ulp = 0.0

    def finite(self) -> bool:
        return all(math.isfinite(v) for v in vars(self).values())

    def exact(self, work: Any) -> bool:
        """Finite, and no vector so small that underflow ate its squares (squares that overflow ``work``
        make a sum Inf, caught by :meth:`finite`)."""
        tiny = _WORK[work][2]
        return self.finite() and all(v == 0.0 or v >= tiny for v in (self.max_abs, self.max_r, self.max_t))


def _blocks(n: int) -> Iterator[Tuple[int, int]]:
    return ((lo, min(n, lo + BLOCK)) for lo in range(0, n, BLOCK))


def _pass(t: _Widen, r: _Widen, n: int, fmt: Optional[Tuple[int, int, int]], floor: float) -> _Sums:
    """Every elementwise step of :func:`_compare_float`, one block at a time, in ``t.work``; ``floor`` is
    the power of two the scaled ULP error clamps at."""
    s = _Sums()
    work = t.work
    d_buf, w_buf, p_buf = (_buffer(role, work) for role in "dwp")
    for lo, hi in _blocks(n):
        tb, rb = t.block(lo, hi), r.block(lo, hi)
        d, w, p = d_buf[: hi - lo], w_buf[: hi - lo], p_buf[: hi - lo]
        np.subtract(tb, rb, out=d)  # float32: exact or one rounding; its sign and zeros are exact either way
        above = int(np.count_nonzero(d > 0))
        s.above += above
        s.differ += above + int(np.count_nonzero(d < 0))
        s.ds += float(np.multiply(d, np.add(tb, rb, out=p), out=p).sum())  # sum of t^2 - r^2
        s.tr += float(np.multiply(tb, rb, out=p).sum())
        s.tt += float(np.multiply(tb, tb, out=p).sum())
        s.max_t = max(s.max_t, float(np.abs(tb, out=p).max()))
        np.abs(d, out=d)
        s.max_abs = max(s.max_abs, float(d.max()))
        s.dd += float(np.multiply(d, d, out=p).sum())
        np.abs(rb, out=w)
        s.max_r = max(s.max_r, float(w.max()))
        rel = np.divide(d, np.maximum(w, REL_FLOOR, out=w), out=w)
        s.max_rel = max(s.max_rel, float(rel.max()))
        s.sum_rel += float(rel.sum())
        s.within_1e3 += int(np.count_nonzero(rel <= 1e-3))
        s.within_5e3 += int(np.count_nonzero(rel <= 5e-3))
        if fmt is not None:
            _, emin, emax = fmt
            p2 = _pow2_floor(rb, w, 2.0**emin, 2.0**emax)
            q = np.divide(d, p2, out=p)
            s.max_ulp = max(s.max_ulp, float(q.max()))
            s.sum_ulp += float(q.sum())
            # clip(p2, floor, high) = max(clip(p2, low, high), floor): floor lies in [low, high]
            q = np.divide(d, np.maximum(p2, floor, out=p2), out=p2)
            s.max_scaled = max(s.max_scaled, float(q.max()))
    return s


def _scaled_norms(t: _Widen, r: _Widen, n: int) -> Tuple[float, float, float, float]:
    """||d||, ||r||, ||t|| and the cosine for extreme magnitudes: each vector scaled to max 1 before its
    squares (as msprobe's cosine_sim does), in float64."""
    tw, rw = t.whole(), r.whole()
    dw = tw - rw
    scales = [float(np.abs(x).max()) or 1.0 for x in (dw, rw, tw)]
    dn, rn, tn = (x / sc for x, sc in zip((dw, rw, tw), scales))
    norms = [sc * math.sqrt(float(np.dot(x, x))) for x, sc in zip((dn, rn, tn), scales)]
    nr, nt = math.sqrt(float(np.dot(rn, rn))), math.sqrt(float(np.dot(tn, tn)))
    cos = float(np.dot(tn, rn)) / nt / nr if nt and nr else (1.0 if nt == nr else 0.0)
    return norms[0], norms[1], norms[2], max(-1.0, min(1.0, cos))  # rounding may leave [-1, 1] by an ulp


def _finite_parts(t: _Widen, r: _Widen) -> Tuple[np.ndarray, np.ndarray, int, int]:
    """float64 copies of t and r at the positions where both are finite, and the NaN / Inf mismatch counts."""
    tw, rw = t.whole(), r.whole()
    t_nan, r_nan = np.isnan(tw), np.isnan(rw)
    both = np.isfinite(tw) & np.isfinite(rw)
    nan_mismatch = int(np.count_nonzero(t_nan ^ r_nan))
    # ±Inf on one side only, or Infs of different sign (NaN against Inf counts as a NaN mismatch)
    inf_mismatch = int(np.count_nonzero(~both & ~(t_nan | r_nan) & (tw != rw)))
    return tw[both], rw[both], nan_mismatch, inf_mismatch


def rms_floor(squares: float, n: int, fmt: Tuple[int, int, int]) -> float:
    """The power of two the scaled ULP error clamps at: 2**floor(log2(rms of r)), within the format."""
    _, emin, emax = fmt
    rms = math.sqrt(squares / n)
    return 2.0 ** max(emin, min(emax, math.frexp(rms)[1] - 1)) if rms > 0 else 2.0**emin


def _sum_squares(r: _Widen, n: int) -> float:
    """sum(r^2), block by block as :func:`_pass` sums (first: the scaled ULP error's floor needs it)."""
    p = _buffer("p", r.work)
    return sum(float(np.multiply(rb, rb, out=p[: len(rb)]).sum()) for rb in (r.block(*b) for b in _blocks(n)))


def _cosine(s: _Sums, norm_t: float, norm_r: float) -> float:
    """Both all-zero: 1.0 (identical); one all-zero: 0.0 (no common direction). Near 1 from d = t - r, as
    1 - cos = (||d||^2 - (||t|| - ||r||)^2) / (2 ||t|| ||r||) with ||t|| - ||r|| = sum(t^2 - r^2) / (||t|| + ||r||),
    where t.r / (||t|| ||r||) would lose the digits that matter; t.r otherwise (the rounding error of each
    route is that of its largest term, relative to 2 ||t|| ||r||)."""
    if norm_t == 0.0 or norm_r == 0.0:
        return 1.0 if norm_t == norm_r else 0.0
    gap = s.ds / (norm_t + norm_r)
    both = 2.0 * norm_t * norm_r
    cos = 1.0 - (s.dd - gap * gap) / both if s.dd + gap * gap < both else s.tr / norm_t / norm_r
    return max(-1.0, min(1.0, cos))


def _measure(t: _Widen, r: _Widen, n: int, t_dtype: str) -> _Sums:
    """:func:`_pass` after sum(r^2), which gives the scaled ULP error's floor (a sum of squares that is not
    finite or not exact ends as a float64 measurement; the floor is then not used); both in one compiled pass
    each where they can be (:func:`_compiled_sums`)."""
    fmt = FLOAT_FORMATS.get(t_dtype)
    compiled = _compiled_sums(t, r, n, fmt)
    if compiled is not None:
        return compiled
    rr = _sum_squares(r, n)
    floor = rms_floor(rr, n, fmt) if fmt and math.isfinite(rr) else 1.0
    s = _pass(t, r, n, fmt, floor)
    s.rr = rr
    return s


#: the element types ``_pair_sums.c`` reads (float32, bfloat16 as its bits, float16), by its kind numbers
_PAIR_KINDS = {np.dtype(np.float32): 0, np.dtype(np.uint16): 2, np.dtype(np.float16): 3}
#: the order of ``_pair_sums.pair_sums``'s result
_PAIR_FIELDS = (
    "above", "differ", "within_1e3", "within_5e3",
    "max_abs", "max_r", "max_t", "max_rel", "max_ulp", "max_scaled",
    "dd", "tt", "tr", "ds", "sum_rel", "sum_ulp",
)  # fmt: skip


def _compiled_kinds(t: _Widen, r: _Widen) -> Optional[Tuple[int, int]]:
    """The ``_pair_sums.c`` kinds of the two arrays where it can run on them (built, float32 work, element types
    it reads, contiguous), else None."""
    if _pair_sums is None or t.work is not np.float32:
        return None
    t_kind, r_kind = _PAIR_KINDS.get(t.arr.dtype), _PAIR_KINDS.get(r.arr.dtype)
    if t_kind is None or r_kind is None or not (t.arr.flags.c_contiguous and r.arr.flags.c_contiguous):
        return None
    return t_kind, r_kind


def _compiled_sums(t: _Widen, r: _Widen, n: int, fmt: Optional[Tuple[int, int, int]]) -> Optional[_Sums]:
    """:func:`_measure`'s sums from ``_pair_sums.c`` (the same float32 steps, one load of each element), or
    None where it does not apply (:func:`_compiled_kinds`, or a CPU without AVX2)."""
    kinds = _compiled_kinds(t, r)
    if kinds is None:
        return None
    t_kind, r_kind = kinds
    t_address, r_address = t.arr.ctypes.data, r.arr.ctypes.data
    rr = _pair_sums.sum_squares(r_address, r_kind, n)
    if rr is None:
        return None
    floor = rms_floor(rr, n, fmt) if fmt and math.isfinite(rr) else 1.0
    emin, emax = (fmt[1], fmt[2]) if fmt else (1, 0)  # emin > emax: no ULP metric
    values = _pair_sums.pair_sums(t_address, t_kind, r_address, r_kind, n, emin, emax, floor)
    if values is None:
        return None
    s = _Sums()
    for name, value in zip(_PAIR_FIELDS, values):
        setattr(s, name, value)
    s.rr = rr
    return s


def _compare_float(t_arr: np.ndarray, r_arr: np.ndarray, t_dtype: str, base: _Dtypes) -> PairMetrics:
    # float32 arithmetic when both sides are at most float32 (half the bytes, twice the lanes); float64 when
    # a side is wider or float32 over- or underflowed
    work = np.float32 if _narrow(t_arr) and _narrow(r_arr) else np.float64
    t, r = _Widen(t_arr, work, "t"), _Widen(r_arr, work, "r")
    s = _measure(t, r, t_arr.size, t_dtype)
    if work is np.float32 and not s.exact(work):
        work = np.float64
        t, r = _Widen(t_arr, work, "t"), _Widen(r_arr, work, "r")
        s = _measure(t, r, t_arr.size, t_dtype)
    n = t_arr.size
    nan_mismatch = inf_mismatch = 0
    if not s.finite():
        # NaN/Inf somewhere (or squares that overflow): the finite positions only, measured again
        tf, rf, nan_mismatch, inf_mismatch = _finite_parts(t, r)
        t, r, n = _Widen(tf, work, "t"), _Widen(rf, work, "r"), tf.size
        if n:
            s = _measure(t, r, n, t_dtype)
    status = "nan_inf_mismatch" if nan_mismatch or inf_mismatch else "ok"
    note = f"{nan_mismatch} NaN and {inf_mismatch} Inf positions differ" if status != "ok" else ""
    m = PairMetrics(
        status=status, count=n, nan_mismatch=nan_mismatch, inf_mismatch=inf_mismatch, note=note, **base
    )
    if n == 0:
        return m
    if s.exact(work):
        norm_d, norm_r, norm_t = math.sqrt(s.dd), math.sqrt(s.rr), math.sqrt(s.tt)
        m.cosine = _cosine(s, norm_t, norm_r)
    else:  # extreme magnitudes (squares beyond float64)
        norm_d, norm_r, norm_t, m.cosine = _scaled_norms(t, r, n)
    m.error_balance = abs(s.above - (s.differ - s.above)) / n
    m.mismatch = s.differ / n
    m.max_abs_err = _f(s.max_abs)
    m.rmse = _f(norm_d / math.sqrt(n))
    m.rel_l2_err = _f(norm_d / norm_r) if norm_r > 0 else (0.0 if norm_d == 0 else None)
    m.max_rel_err = _f(s.max_rel)
    m.mean_rel_err = _f(s.sum_rel / n)
    m.within_1e3 = s.within_1e3 / n
    m.within_5e3 = s.within_5e3 / n
    fmt = FLOAT_FORMATS.get(t_dtype)
    if fmt is not None:
        scale = 2.0 ** fmt[0]  # ulp(r) = p2 * 2**-mant, so |d| / ulp(r) = |d| / p2 * 2**mant
        m.max_ulp_err = _f(s.max_ulp * scale)
        m.mean_ulp_err = _f(s.sum_ulp / n * scale)
        # against ulp(max(|r|, rms)): floor(log2) is monotonic, so the power of two is clamped at rms's
        m.max_scaled_ulp_err = _f(s.max_scaled * scale)
    return m


def max_ulp_ratio(target: Any, reference: Any, emin: int, emax: int, scaled: bool) -> Optional[float]:
    """max |t - r| / p over the elements, block by block, p = 2**floor(log2|r|) clamped to [2**emin, 2**emax],
    or for ``scaled`` to [2**floor(log2(rms of r)), 2**emax]: the one metric of a verdict (``screen.py``; times
    2**mantissa it is max_ulp_err or max_scaled_ulp_err). In float32 when both sides are at most float32 (as
    :func:`compare_tensors`: d = t - r is exact or one rounding, p a power of two), again in float64 where
    float32 over- or underflowed; None when a value is not finite or r's squares leave float64's range (the
    full :func:`compare_tensors` then decides)."""
    t_arr, r_arr = _flat(target), _flat(reference)
    if _narrow(t_arr) and _narrow(r_arr):
        worst = _max_ulp_ratio(t_arr, r_arr, np.float32, emin, emax, scaled)
        if worst is not None:  # NaN: a NaN/Inf element, which float64 would meet as well
            return None if math.isnan(worst) else worst
    worst = _max_ulp_ratio(t_arr, r_arr, np.float64, emin, emax, scaled)
    return None if worst is None or math.isnan(worst) else worst


def _max_ulp_ratio(
    t_arr: np.ndarray, r_arr: np.ndarray, work: Any, emin: int, emax: int, scaled: bool
) -> Optional[float]:
    """The ratio in ``work``; NaN where an element is NaN or Inf (no other dtype would do better), None where
    ``work`` over- or underflowed (float64 may not)."""
    if work is np.float64:
        compiled = _compiled_max_ulp_f64(t_arr, r_arr, emin, emax, scaled)
        if compiled is not None:
            return compiled
    t, r = _Widen(t_arr, work, "t"), _Widen(r_arr, work, "r")
    n, low, worst = t_arr.size, 2.0**emin, 0.0
    d_buf, p_buf = _buffer("d", work), _buffer("p", work)
    kinds = _compiled_kinds(t, r)
    if kinds:
        compiled = compiled_max_ulp(
            t.arr.ctypes.data, kinds[0], r.arr.ctypes.data, kinds[1], n, emin, emax, scaled
        )
        if compiled is not None:
            return compiled
    with np.errstate(all="ignore"):
        if scaled:
            rr = _sum_squares(r, n)
            if not (_WORK[work][2] if work is np.float32 else 2.0**-900) < rr < math.inf:
                return None
            low = rms_floor(rr, n, (0, emin, emax))
        for lo, hi in _blocks(n):
            tb, rb = t.block(lo, hi), r.block(lo, hi)
            d = np.subtract(tb, rb, out=d_buf[: hi - lo])
            if not d.any():  # equal, and finite (inf - inf is NaN): 0 here (exact ops' outputs, most often)
                continue
            d = np.abs(d, out=d)
            q = float(
                np.divide(d, _pow2_floor(rb, p_buf[: hi - lo], low, 2.0**emax), out=p_buf[: hi - lo]).max()
            )
            if not math.isfinite(q):
                return q if math.isnan(q) else None
            worst = max(worst, q)
    return worst


def compiled_max_ulp(
    t_address: int, t_kind: int, r_address: int, r_kind: int, n: int, emin: int, emax: int, scaled: bool
) -> Optional[float]:
    """:func:`max_ulp_ratio`'s float32 steps in ``_pair_sums`` on ``n`` elements of two arrays of its kinds (0
    float32, 2 bfloat16 bits, 3 float16) at these addresses: for ``scaled`` the reference's sum of squares
    first (its floor), then one pass. The ratio, NaN for a NaN/Inf element, or None where these steps do not
    decide (not built, no AVX2, exponents or squares beyond float32's range, a float32 overflow): the NumPy
    passes then do. Shared by this module and ``screen.py`` (torch tensors' memory, shadow's own-dtype
    replays)."""
    if _pair_sums is None or emin < -126 or emax > 127:
        return None
    low = 2.0**emin
    if scaled:
        squares = _pair_sums.sum_squares(r_address, r_kind, n)
        # float32's squares: at least 2**-50 (as _Sums.exact), so that those underflowing weigh nothing
        if squares is None or not _WORK[np.float32][2] < squares < math.inf:
            return None
        low = rms_floor(squares, n, (0, emin, emax))
    worst = _pair_sums.max_ulp(t_address, t_kind, r_address, r_kind, n, low, 2.0**emax)
    return None if worst is None or worst == math.inf else worst


#: the element types ``_pair_sums.max_ulp_f64`` reads as a target, by its kind numbers
_F64_TARGET_KINDS = {**_PAIR_KINDS, np.dtype(np.float64): 1}


def _compiled_max_ulp_f64(
    t_arr: np.ndarray, r_arr: np.ndarray, emin: int, emax: int, scaled: bool
) -> Optional[float]:
    """:func:`_max_ulp_ratio`'s float64 measurement of a float64 reference in one compiled pass (the same IEEE
    float64 operations, the same sums: the same result), or None where it does not apply
    (not built, no AVX2, other element types, not contiguous) or r's squares leave float64's range (the NumPy
    pass then says so)."""
    t_kind = _F64_TARGET_KINDS.get(t_arr.dtype)
    if _pair_sums is None or t_kind is None or r_arr.dtype != np.float64:
        return None
    if not (t_arr.flags.c_contiguous and r_arr.flags.c_contiguous):
        return None
    n, low = t_arr.size, 2.0**emin
    if scaled:
        rr = _sum_squares(
            _Widen(r_arr, np.float64, "r"), n
        )  # as the NumPy pass (np.dot would start BLAS threads)
        if not 2.0**-900 < rr < math.inf:
            return None
        low = rms_floor(rr, n, (0, emin, emax))
    worst = _pair_sums.max_ulp_f64(t_arr.ctypes.data, t_kind, r_arr.ctypes.data, n, low, 2.0**emax)
    return None if worst is None or worst == math.inf else worst


def _pow2_floor(r: np.ndarray, out: np.ndarray, low: float, high: float) -> np.ndarray:
    """2**floor(log2|r|) clamped to [low, high], written into ``out`` (r's dtype and size): keep only the
    exponent bits of r (giving 0 for 0 and subnormals, then clamped to low)."""
    itype, bits, _ = _WORK[r.dtype.type]
    np.bitwise_and(r.view(itype), bits, out=out.view(itype))
    return np.clip(out, low, high, out=out)


# ------------------------------------------------------------------------------------------- stats


def compare_stats(target: Optional[TensorStats], reference: Optional[TensorStats]) -> StatsMetrics:
    """Differences of max/min/mean/norm and NaN/Inf/saturation count deltas of two tensors'
    statistics (stats-mode dumps carry no elements)."""
    if target is None or reference is None:
        return StatsMetrics(
            status="not_comparable", note=f"no {'target' if target is None else 'reference'} statistics"
        )
    t_max, t_min, t_mean, t_norm = target.max, target.min, target.mean, target.norm
    r_max, r_min, r_mean, r_norm = reference.max, reference.min, reference.mean, reference.norm
    max_abs, max_rel = _stat_diff(t_max, r_max)
    min_abs, min_rel = _stat_diff(t_min, r_min)
    mean_abs, mean_rel = _stat_diff(t_mean, r_mean)
    norm_abs, norm_rel = _stat_diff(t_norm, r_norm)
    rels = [r for r in (max_rel, min_rel, mean_rel, norm_rel) if r is not None]
    scaled = None
    if max_abs is not None and min_abs is not None and mean_abs is not None:
        bounds = [abs(float(v)) for v in (r_max, r_min) if v is not None and math.isfinite(float(v))]
        if bounds:
            scaled = _f(max(max_abs, min_abs, mean_abs) / max(max(bounds), REL_FLOOR))
    nan_delta = int(target.nan or 0) - int(reference.nan or 0)
    inf_delta = int(target.inf or 0) - int(reference.inf or 0)
    status, note = "ok", ""
    if (
        t_max is None
        and t_min is None
        and t_mean is None
        and t_norm is None
        and (r_max is None and r_min is None and r_mean is None and r_norm is None)
    ):
        status, note = "empty", "no statistics on either side (empty tensors)"
    elif nan_delta or inf_delta:
        status, note = "nan_inf_mismatch", f"NaN count {nan_delta:+d}, Inf count {inf_delta:+d}"
    return StatsMetrics(
        status,
        max_abs,
        max_rel,
        min_abs,
        min_rel,
        mean_abs,
        mean_rel,
        norm_abs,
        norm_rel,
        nan_delta,
        inf_delta,
        int(target.sat or 0) - int(reference.sat or 0),
        max(rels) if rels else None,
        scaled,
        note,
    )


def _stat_diff(tv: Optional[float], rv: Optional[float]) -> Tuple[Optional[float], Optional[float]]:
    """``(|t - r|, |t - r| / max(|r|, REL_FLOOR))`` of one statistic, saturated at float64's max; ``(0, 0)`` for the
    same Inf on both sides; ``(None, None)`` where either is missing or they are other non-finite values."""
    if tv is None or rv is None:
        return None, None
    tv, rv = float(tv), float(rv)
    if not (math.isfinite(tv) and math.isfinite(rv)):
        return (0.0, 0.0) if tv == rv else (None, None)
    diff = abs(tv - rv)  # (inlined _f: neither is NaN, both >= 0; ~1M calls on a 100k-record dump)
    scale = abs(rv)
    rel = diff / (scale if scale > REL_FLOOR else REL_FLOOR)
    return (diff if diff < _F64_MAX else _F64_MAX), (rel if rel < _F64_MAX else _F64_MAX)
