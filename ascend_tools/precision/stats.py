"""Tensor statistics computed on the tensor's own device and read back in batches.

:class:`StatsQueue` turns a tensor into a :class:`Pending` entry. On an accelerator, ``max``, ``min``,
``sum`` and the L2 norm are computed at once on the device (four small reductions, no host sync) and
stacked into one 4-element row; rows wait in the queue, and :meth:`StatsQueue.flush` stacks every waiting
row and moves them to the host in **one** transfer per device (:func:`to_host`). Nothing calls ``.item()``
per tensor there. On the CPU, where reading a value is no device sync (:func:`reads_free`), the same
reductions are read at once as four scalars (one pass of the compiled ``_moments.c`` for a float tensor
where the package was built with it, else torch's reductions, the fp32/fp64 norm as the square root of a
BLAS dot product) and the entry is complete when it is made; only its digest, in hash mode, waits for the flush.

The counts (NaN, ±Inf, finite values at the dtype's ±max) are expensive on some devices (a boolean
reduction per count) and almost always 0, so they are gated on the row: a tensor whose sum, max and min
are finite and whose max and min are below the dtype's max in magnitude has no NaN, no Inf and no
saturated element. On the CPU a suspect tensor is counted at once and the tensor is let go. On an
accelerator the other tensors are counted at flush, from the tensor the entry still holds (a second small
transfer, only when such tensors exist). The entries of a tensor about to be written in place
(:meth:`StatsQueue.before_write`, called by the capture mode for each tensor an op writes, then
:meth:`StatsQueue.settle` once for the op) are settled before the write: their rows read in one transfer, the
suspect ones counted. That is one device sync per op that writes a recorded tensor (an optimizer's in-place
updates; one per ``_foreach_*_`` op); counting every such tensor unconditionally instead took 12 small kernels
each (114 tensors per step of the bench's AdamW step: a third of the statistics' kernel launches).

Integer and bool tensors get max/min/mean/norm as floats and counts 0, exact on every path (:func:`_int_row`;
the norm None where its int64 sum of squares may wrap); empty tensors get no statistics;
complex, sparse, meta and other non-strided tensors get none either.

Hash mode adds a digest: the tensor's raw bits (viewed as an integer type of the same width) are summed
twice on the device, once plain and once weighted by ``(index mod 65521) + 1``, in int64 with wrap-around;
the digest is both sums as 16 hex digits each. Identical tensors (same dtype, shape, bits) give the same
digest; any change of one element's bits changes the plain sum. It is a checksum for determinism checks,
not a cryptographic hash.
"""

import math
from typing import Any, Dict, List, Optional, Sequence

import torch

from .lines import row_json
from .records import TensorStats

try:  # one pass over a CPU tensor (_moments.c); built by setup.py where a C compiler is
    from . import _moments
except ImportError:  # no compiler at install: torch's reductions
    _moments = None  # type: ignore[assignment]

_BITS_VIEW = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _fmax(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).max)


_FMAX: Dict[torch.dtype, float] = {}


def dtype_max(dtype: torch.dtype) -> float:
    value = _FMAX.get(dtype)
    if value is None:
        value = _FMAX[dtype] = _fmax(dtype)
    return value


_MASK = 0xFFFFFFFFFFFFFFFF


def to_host(t: torch.Tensor) -> torch.Tensor:
    """Copy ``t`` (the stacked rows of a flush) to the host: the one place statistics leave the device
    (tests count its calls)."""
    return t.cpu()


def reads_free(t: torch.Tensor) -> bool:
    """Whether reading ``t``'s values costs no device sync (a CPU tensor): its statistics are then read
    at once; otherwise they wait for the flush's one transfer (tests force that path on the CPU)."""
    return t.is_cpu


def has_stats(t: torch.Tensor) -> bool:
    """Whether statistics can be computed for ``t`` (strided, real data, a real device, not empty)."""
    ok = _HAS_STATS.get(t.dtype)
    if ok is None:
        ok = _HAS_STATS[t.dtype] = not (t.dtype.is_complex or t.dtype in _NO_STATS)
    return ok and t.layout == torch.strided and not t.is_meta and t.numel() > 0


_NO_STATS = {
    d
    for d in (
        getattr(torch, n, None)
        for n in (
            "float8_e4m3fn",
            "float8_e5m2",
            "float8_e4m3fnuz",
            "float8_e5m2fnuz",
            "float8_e8m0fnu",
            "float4_e2m1fn_x2",
            "quint8",
            "qint8",
            "qint32",
            "quint4x2",
            "quint2x4",
            "uint16",
            "uint32",
            "uint64",
        )
    )
    if d is not None
}
_HAS_STATS: Dict[torch.dtype, bool] = {}


class Pending:
    """Statistics of one tensor, on their way to the host. An accelerator entry's ``row`` is computed when
    the entry is made and dropped once :meth:`StatsQueue.resolve` has read it, and ``tensor`` is held while
    its counts may still be needed; a CPU entry has its ``stats`` from the start (see the module docstring)."""

    __slots__ = (
        "digest",
        "digest_row",
        "dtype",
        "is_float",
        "numel",
        "row",
        "stats",
        "tensor",
        "version",
    )

    def __init__(
        self, x: torch.Tensor, row: Optional[torch.Tensor], is_float: bool, keep: bool = True
    ) -> None:
        self.tensor: Optional[torch.Tensor] = x if keep else None
        self.version = x._version
        self.dtype = x.dtype
        self.numel = x.numel()
        self.row: Optional[torch.Tensor] = row
        self.is_float = is_float
        self.digest_row: Optional[torch.Tensor] = None
        self.digest: Optional[str] = None
        self.stats: Optional[TensorStats] = None


def _row(x: torch.Tensor) -> Any:
    """``(row, is_float)``: ``[max, min, sum, norm]`` of a float ``x`` on its device, :func:`_int_row` (as
    float64: stacked with float32 rows it would round) of another."""
    if x.dtype.is_floating_point:
        # an fp32 norm overflows for elements above ~1e19: such rows are "suspect" and the norm is
        # recomputed scaled by max|x| at flush (see _counts)
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        mn, mx = torch.aminmax(x)
        return torch.stack([mx, mn, x.sum(dtype=acc), torch.linalg.vector_norm(x, dtype=acc)]), True
    return _int_row(x).to(torch.float64), False


def _int_row(x: torch.Tensor) -> torch.Tensor:
    """``[max, min, sum, sum of squares]`` of an integer or bool tensor in int64, on its device. Integer
    addition wraps the same in any order, so every device and the CPU agree to the bit: an integer tensor is
    data (token ids, positions, masks) and compare checks it exactly. A float32 sum of 2 x 4096 token ids off a
    150k vocabulary is past 2**24, rounded, and rounded differently by each device's reduction order."""
    if x.dtype == torch.bool:
        xi = x.to(torch.uint8)
        mn, mx = torch.aminmax(xi)
        total = xi.sum(dtype=torch.int64)
        return torch.stack([mx.to(torch.int64), mn.to(torch.int64), total, total])
    xi = x.to(torch.int64)
    mn, mx = torch.aminmax(xi)
    return torch.stack([mx, mn, xi.sum(), (xi * xi).sum()])


def _int_values(vals: List[float], numel: int) -> List[Any]:
    """``[max, min, sum, norm]`` from :func:`_int_row`'s values: the norm the square root of the exact sum of
    squares, None where that sum may have wrapped (|max| * sqrt(numel) at or past 2**31.5)."""
    mx, mn, total, squares = vals
    big = max(abs(mx), abs(mn))
    norm = math.sqrt(squares) if big * big * numel < 2.0**63 else None
    return [mx, mn, total, norm]


_DOT = (torch.float32, torch.float64)
_MOMENTS_KIND = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
_STRIDED = torch.strided


def _cpu_values(x: torch.Tensor) -> Any:
    """``([max, min, sum, norm], is_float)`` of a CPU tensor as Python floats: one pass of the compiled
    kernel where it applies (:func:`_compiled_values`), else torch's reductions, the norm of an fp32/fp64
    tensor as the square root of a BLAS dot product (faster than ``vector_norm`` on the CPU); it overflows
    where the fp32 ``vector_norm`` does, and such a tensor is suspect (see :func:`_counts`)."""
    if not x.dtype.is_floating_point:
        return _int_values([float(v) for v in _int_row(x).tolist()], x.numel()), False
    if x.numel() == 1:  # a scalar (a loss, a scale): one read instead of four reductions
        v = float(x.item())
        return [v, v, v, abs(v)], True
    vals = _compiled_values(x)
    if vals is not None:
        return vals, True
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    mn, mx = torch.aminmax(x)
    total = x.sum(dtype=acc).item()
    if x.dtype in _DOT and x.is_contiguous():
        flat = x.view(-1)
        norm = math.sqrt(torch.dot(flat, flat).item())
    else:
        norm = torch.linalg.vector_norm(x, dtype=acc).item()
    return [mx.item(), mn.item(), total, norm], True


_ITEM_BYTES = {0: 4, 1: 8, 2: 2, 3: 2}


def _capacity(t: torch.Tensor, kind: int) -> int:
    """Bytes of ``t``'s storage from its first element on: what the compiled pass may read (a storage freed
    with ``resize_(0)``, as FSDP does, holds none)."""
    return int(t.untyped_storage().nbytes()) - int(t.storage_offset()) * _ITEM_BYTES[kind]


def _compiled_kind(x: torch.Tensor) -> Optional[int]:
    """``_moments.c``'s kind of ``x``, or None where it has no kernel for it (no module, another dtype, not a
    strided CPU tensor: a device address is no memory of this process)."""
    kind = _MOMENTS_KIND.get(x.dtype) if _moments is not None else None
    return kind if kind is not None and x.is_cpu and x.layout == _STRIDED else None


def _compiled_values(x: torch.Tensor) -> Optional[List[float]]:
    """``[max, min, sum, norm]`` from ``_moments.c`` for a float tensor, or None: no kernel, another dtype, a
    layout it leaves to torch, or a non-finite sum (NaN, Inf or overflow: the kernel's max/min skip NaN;
    torch's reductions then give the row with NaN in it, as every other path does)."""
    kind = _compiled_kind(x)
    if kind is None:
        return None
    vals = _moments.moments(x.data_ptr(), kind, x.shape, x.stride(), _capacity(x, kind))
    if vals is None or not (math.isfinite(vals[2]) and math.isfinite(vals[3])):
        return None
    return [vals[0], vals[1], vals[2], math.sqrt(vals[3])]


def cpu_row(t: torch.Tensor) -> Optional[tuple]:
    """``(max, min, mean, norm, nan, inf, sat)`` of a CPU tensor, read now (None: it has none, see
    :func:`has_stats`): the statistics of :meth:`StatsQueue.add` without its entry objects. The common case
    first, in as few Python steps as it takes (it runs for every op output a capture records): a float tensor
    of two or more elements whose compiled pass finds a finite sum (so no NaN or Inf element) and extremes below
    the dtype's max (so none saturated)."""
    n = t.numel()
    vals = _compiled_values(t) if n > 1 else None
    if vals is not None:
        mx, mn, total, norm = vals
        top = dtype_max(t.dtype)
        if -top < mn and mx < top:
            return (mx, mn, total / n, norm, 0, 0, 0)
    return _uncommon_row(t)


def _uncommon_row(t: torch.Tensor) -> Optional[tuple]:
    """:func:`cpu_row` of a tensor its common case does not cover (NaN, Inf, saturated, another dtype or layout,
    fewer than two elements), through torch's reductions."""
    if not has_stats(t):
        return None
    # detached only where autograd would record the reductions (a module hook runs them with grad enabled;
    # inside a dispatch mode's handler autograd is off already); nothing keeps the tensor
    return _cpu_row(t.detach() if t.requires_grad else t)


def cpu_body(t: torch.Tensor) -> Optional[str]:
    """``,"stats":{...}}``, the end of a CPU tensor's fragment in a record line (``lines.row_json`` of
    :func:`cpu_row`), or None where it has no statistics. :func:`cpu_row`'s common case is one call of
    ``_moments.stats_body``, which writes the numbers as ``repr`` does: no Python float formatting (3.8 -> 2.7 us
    for a 256-element float32 tensor; the bench's capture step 2.6 ms shorter, precision_ab.py, 80 pairs)."""
    kind = _compiled_kind(t)
    if kind is not None and t.numel() > 1:
        body = _moments.stats_body(t.data_ptr(), kind, t.shape, t.stride(), _capacity(t, kind))
        if body is not None:
            return body
    # stats_body declines exactly where cpu_row's common case does: the rest, without a second pass
    row = _uncommon_row(t)
    return None if row is None else ',"stats":' + row_json(*row) + "}"


def _cpu_row(x: torch.Tensor) -> tuple:
    vals, is_float = _cpu_values(x)
    numel = x.numel()
    if is_float and _suspect(vals, x.dtype):
        s = _make_stats(vals, numel, _counts(x).tolist())
        return (s.max, s.min, s.mean, s.norm, s.nan, s.inf, s.sat)
    return (vals[0], vals[1], vals[2] / numel, vals[3], 0, 0, 0)


def _counts(x: torch.Tensor) -> torch.Tensor:
    """``[nan, inf, sat, norm]`` (float): the counts, and the L2 norm scaled by max|x| so that it
    does not overflow where the plain one did."""
    a = x.abs()
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    m = a.amax().to(acc)
    scaled = m * torch.linalg.vector_norm(a.to(acc) / m)
    return torch.stack(
        [
            torch.isnan(x).sum().to(acc),
            torch.isinf(x).sum().to(acc),
            (a == dtype_max(x.dtype)).sum().to(acc),
            scaled,
        ]
    )


def _digest_row(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(-1)
    view = _BITS_VIEW.get(flat.element_size())
    if view is None:
        raise TypeError(f"no integer view for {x.dtype}")
    bits = flat.view(view).to(torch.int64)
    return torch.stack([bits.sum(), (bits * weights[: bits.numel()]).sum()])


class StatsQueue:
    """Rows computed on the device, moved to the host in one transfer per flush.

    ``add(t)`` computes the row at once (on an accelerator: kernels queued on the current stream; on the
    CPU: the statistics themselves, counts included, and the tensor is let go). :meth:`take` hands the pending entries over
    and :meth:`resolve` fills their statistics, on the user's thread or the capture's writer thread. Only
    CPU entries ever go to the writer thread (a flush holding an accelerator entry is resolved on the
    user's thread, see ``RecordWriter.flush``), and those hold no tensor and are not reachable from
    :meth:`before_write`: no lock is needed."""

    def __init__(self, digests: bool = False) -> None:
        self.digests = digests
        self.pending: List[Pending] = []
        self.pending_bytes = 0
        self.on_device = False  # a pending entry lives on an accelerator: resolve on the user's thread
        self._by_storage: Dict[int, List[Pending]] = {}
        self._written: List[Pending] = []  # entries of tensors about to be written, for settle()
        self._weights: Dict[Any, torch.Tensor] = {}

    def add(self, t: torch.Tensor) -> Optional[Pending]:
        """Queue ``t``'s statistics (None for a tensor without them, see :func:`has_stats`)."""
        if not has_stats(t):
            return None
        if reads_free(t):
            # nothing keeps the tensor; detached only where autograd would record the reductions (a module
            # hook runs them with grad enabled; inside a dispatch mode's handler autograd is off already)
            return self._add_cpu(t.detach() if t.requires_grad else t)
        # a detached alias, not ``t``: an extra reference to ``t`` itself would change what autograd
        # does (AccumulateGrad steals a gradient only when nothing else holds it)
        x = t.detach()
        row, is_float = _row(x)
        entry = Pending(x, row, is_float)
        if self.digests:
            entry.digest_row = _digest_row(x, self._weights_for(x))
        self.pending.append(entry)
        self.pending_bytes += entry.numel * t.element_size()
        self.on_device = True
        try:
            key = t.untyped_storage().data_ptr()
        except Exception:
            key = None
        if key is not None:
            entries = self._by_storage.get(key)
            if entries is None:
                self._by_storage[key] = [entry]
            else:
                entries.append(entry)
        return entry

    def read_now(self, t: torch.Tensor) -> bool:
        """Whether ``t``'s statistics are complete when read (:func:`cpu_row`): a CPU tensor, and no digest
        waits for the flush. The capture then makes no entry for them (:meth:`add`)."""
        return not self.digests and reads_free(t)

    def _add_cpu(self, x: torch.Tensor) -> Pending:
        """Reading a CPU value is no device sync: the statistics are settled now (four scalar reads
        instead of a stacked row) and the tensor is let go (held until the flush, every tensor of a
        flush would stay allocated: fresh pages for the user's next allocations)."""
        entry = Pending(x, None, x.dtype.is_floating_point, keep=False)
        entry.stats = TensorStats(*_cpu_row(x))
        if self.digests:
            entry.digest_row = _digest_row(x, self._weights_for(x))
            self.pending.append(entry)
        return entry

    def _weights_for(self, x: torch.Tensor) -> torch.Tensor:
        w = self._weights.get(x.device)
        n = x.numel()
        if w is None or w.numel() < n:
            size = max(n, 1 << 16)
            w = (torch.arange(size, dtype=torch.int64, device=x.device) % 65521) + 1
            self._weights[x.device] = w
        return w

    def before_write(self, t: torch.Tensor) -> None:
        """``t`` is about to be written in place: the entries that share its storage (only accelerator entries
        are indexed by storage) are set aside for :meth:`settle`, which must run before the write."""
        if not self._by_storage:
            return
        try:
            key = t.untyped_storage().data_ptr()
        except Exception:
            return
        entries = self._by_storage.pop(key, None)
        if entries:
            self._written.extend(entries)

    def settle(self) -> None:
        """Resolve the entries :meth:`before_write` set aside, while their tensors still hold the values the rows
        were made from: one transfer for all of them, counts for the suspect ones (see the module docstring)."""
        if not self._written:
            return
        written, self._written = self._written, []
        rowed = [e for e in written if e.row is not None]
        if rowed:
            self._resolve_device(rowed)

    def take(self) -> List[Pending]:
        """Hand over every pending entry (to :meth:`resolve`, on this thread or another)."""
        pending, self.pending = self.pending, []
        self.pending_bytes = 0
        self.on_device = False
        self._by_storage = {}
        self._written = []
        return pending

    def flush(self) -> None:
        """Move every pending row to the host (one transfer) and fill each entry's ``stats``."""
        self.resolve(self.take())

    def resolve(self, pending: Sequence[Pending]) -> None:
        """Fill each entry's ``stats`` (and ``digest``): the rows and digests of each device go to the
        host in one transfer (a second one only for entries that need counting)."""
        groups: Dict[Any, List[Pending]] = {}
        for e in pending:
            ref = e.row if e.row is not None else e.digest_row
            if ref is not None:
                groups.setdefault(ref.device, []).append(e)
        for group in groups.values():
            self._resolve_device(group)

    def _resolve_device(self, pending: List[Pending]) -> None:
        rowed: List[Pending] = []
        rows: List[torch.Tensor] = []
        digested: List[Pending] = []
        digest_rows: List[torch.Tensor] = []
        for e in pending:
            if e.row is not None:
                rowed.append(e)
                rows.append(e.row)
            if e.digest_row is not None:
                digested.append(e)
                digest_rows.append(e.digest_row)
        # the float rows (as float64 bits) and the int64 digests in one int64 transfer: no rounding
        parts = []
        if rows:
            parts.append(torch.stack(rows).to(torch.float64).reshape(-1).view(torch.int64))
        if digest_rows:
            parts.append(torch.stack(digest_rows).reshape(-1))
        del rows, digest_rows
        host = to_host(torch.cat(parts) if len(parts) > 1 else parts[0])
        n = len(rowed) * 4
        for e, (a, b) in zip(digested, host[n:].reshape(-1, 2).tolist()):
            e.digest = f"{a & _MASK:016x}{b & _MASK:016x}"
            e.digest_row = None
        second: List[torch.Tensor] = []
        need: List[TensorStats] = []
        values = host[:n].view(torch.float64).reshape(-1, 4).tolist() if rowed else []
        for e, vals in zip(rowed, values):
            e.row = None
            t, e.tensor = e.tensor, None
            if not e.is_float:
                vals = _int_values(vals, e.numel)
            stats = e.stats = _make_stats(vals, e.numel, None)
            if e.is_float and t is not None and t._version == e.version and _suspect(vals, e.dtype):
                with torch.no_grad():
                    second.append(_counts(t))
                need.append(stats)
        if second:
            for stats, c in zip(need, to_host(torch.stack(second)).tolist()):
                _set_counts(stats, c)


def _suspect(vals: List[float], dtype: torch.dtype) -> bool:
    mx, mn, s, norm = vals
    if not (math.isfinite(mx) and math.isfinite(mn) and math.isfinite(s) and math.isfinite(norm)):
        return True
    fmax = dtype_max(dtype)
    return max(abs(mx), abs(mn)) >= fmax


def _make_stats(vals: List[float], numel: int, counts: Optional[List[Any]]) -> TensorStats:
    mx, mn, s, norm = vals
    stats = TensorStats(max=mx, min=mn, mean=s / numel, norm=norm)
    if counts is not None:
        _set_counts(stats, counts)
    return stats


def _set_counts(stats: TensorStats, c: List[float]) -> None:
    stats.nan, stats.inf, stats.sat = int(c[0]), int(c[1]), int(c[2])
    # norm: a float here (stats from _make_stats); not finite without NaN/Inf: the squares overflowed
    if not stats.nan and not stats.inf and stats.norm is not None and not math.isfinite(stats.norm):
        stats.norm = float(c[3])


def tensor_stats(t: torch.Tensor) -> Optional[TensorStats]:
    """Statistics of one tensor, computed now (tests and one-off use; capture batches them)."""
    q = StatsQueue()
    e = q.add(t)
    q.flush()
    return e.stats if e is not None else None
