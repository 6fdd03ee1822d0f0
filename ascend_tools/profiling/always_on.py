"""Always-on profiling (``profile(..., always_on=True)``, ``ascend-doctor profile --always-on``): disk per
rank bounded whatever the length of the run (docs/profiling.md, "Always on").

Instead of one record per collective, step and memory sample, :class:`WindowRecorder` writes one
``window`` record per window of about ``window_s`` seconds (closed at the first step end after that, or on
time when no step ends): per op × message-size bucket × process group (× peer for send/recv) × async, the
count, bytes, summed time and a log2 histogram of the times; per block of :data:`ARRIVAL_BLOCK` seqs of
each group (async collectives included: issue and completion) the summed entry and exit times, compute gaps
and blocking time (``analyze`` lines them up across ranks for the lateness and the slow-rank rule); the
time spent in blocking collectives, the steps, the memory peaks and DDP's own timings of its iterations
(ddp_stats.py: always-on times DDP's bucket all-reduces so, without a Python comm hook). Group and stack records still go to
``events.jsonl`` (a few per run). The last :data:`RING` full records stay in memory; on an anomaly (a
window whose time per step is :data:`SLOW_FACTOR` × the median of the previous ones, a hang, an OOM) they
are written to ``ring/NNNN-REASON.jsonl``, followed by the next :data:`AFTER` records, in the
``events.jsonl`` format.

Budget per rank: the windows alternate between ``windows.0.jsonl`` and ``windows.1.jsonl``, each
truncated when it is started again past :data:`WINDOWS_FILE_BYTES` (so ≤ 2 × 16 MiB, the latest ≥ 16 MiB
of windows kept); at most :data:`MAX_DUMPS` ring dumps of ≤ (:data:`RING` + :data:`AFTER`) records
(~1.6 MiB each; the oldest is removed first): ≤ 45 MiB per rank for the whole run, plus ``meta.json`` and
the group/stack records. Everything happens in the writer thread; the training thread only appends to the
recorder's queue, as without always-on.
"""

import collections
import json
import math
import statistics
import time
from typing import IO, Any, Deque, Dict, List, Optional, Tuple

from .recorder import RankRecorder

WINDOW_S = 60.0  # seconds per window
RING = 4096  # full records kept in memory for an anomaly dump
AFTER = 1024  # records written to a dump after the anomaly
MAX_DUMPS = 8
WINDOWS_FILE_BYTES = 16 << 20
MAX_KEYS = 512  # aggregate keys per window; records past them are counted in "overflow"
BINS_PER_OCTAVE = 8  # histogram resolution: a bin spans a factor 2^(1/8) (9%)
BIN_UNIT_S = 1e-6  # bin 0 starts at 1 µs
ARRIVAL_BLOCK = 64  # seqs of a group whose entry and exit times are summed together
SLOW_FACTOR = 2.0  # a window this many times slower per step than the median of ...
SLOW_HISTORY = 16  # ... the previous (up to) 16 windows ...
SLOW_MIN_HISTORY = 3  # ... once there are at least 3, is an anomaly
SIZE_BUCKET_ZERO = -1  # S = 0 (barriers)
DDP_TIMES = ("fwd", "bwd", "comm", "overlap")  # a ``ddp`` record's times (ddp_stats.py), summed per window
DDP_KEYS = ("count", *(f"{n}_s" for n in DDP_TIMES))  # a window's ``ddp`` aggregate


def time_bin(seconds: float) -> int:
    """The histogram bin of a duration: floor(8 · log2(seconds / 1 µs)), durations under 1 µs in bin 0."""
    return max(0, math.floor(BINS_PER_OCTAVE * math.log2(max(seconds, BIN_UNIT_S) / BIN_UNIT_S)))


def bin_value(b: int) -> float:
    """The geometric middle of bin ``b`` in seconds (within a factor 2^(1/16) of any time in it)."""
    return BIN_UNIT_S * 2.0 ** ((b + 0.5) / BINS_PER_OCTAVE)


def size_bucket(nbytes: int) -> int:
    """floor(log2 S), -1 for S = 0: the buckets of ``analyze``'s collectives table."""
    return int(nbytes).bit_length() - 1 if nbytes > 0 else SIZE_BUCKET_ZERO


class Window:
    """The aggregates of one window, fed one record at a time."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.first: Optional[float] = None  # earliest record time
        self.last: Optional[float] = None
        self.keys: Dict[Tuple[Any, ...], List[Any]] = {}  # key -> [count, bytes, time_s, {bin: n}]
        # (gid, block) -> [count, Σ(t0 − base), Σ(t1 − base), Σgap, Σ(t1 − t0) of the blocking ones]: sums of
        # times since the window's first collective, written with 6 decimals in a third of the characters
        self.arrivals: Dict[Tuple[str, int], List[float]] = {}
        self.base: Optional[float] = None
        self.sync_s = 0.0
        self.blocking = 0
        self.steps: List[float] = [0, 0.0, 0.0, math.inf, -math.inf]  # count, Σ s, max s, first, last step
        self.mem_peak: Dict[str, float] = {}
        self.overflow = 0
        self.ddp: List[float] = [0, 0.0, 0.0, 0.0, 0.0]  # DDP iterations timed, Σ fwd, bwd, comm, overlap s

    def _seen(self, *times: Any) -> None:
        for t in times:
            if isinstance(t, (int, float)):
                self.first = t if self.first is None else min(self.first, t)
                self.last = t if self.last is None else max(self.last, t)

    def add(self, rec: Dict[str, Any]) -> None:
        kind = rec.get("k")
        if kind == "coll":
            self._coll(rec)
        elif kind == "step":
            self._seen(rec.get("t0"), rec.get("t1"))
            seconds, s = float(rec["t1"]) - float(rec["t0"]), self.steps
            s[0] += 1
            s[1] += seconds
            s[2] = max(s[2], seconds)
            s[3] = min(s[3], rec["step"])
            s[4] = max(s[4], rec["step"])
        elif kind == "ddp":
            d = self.ddp
            d[0] += 1
            for i, name in enumerate(DDP_TIMES, 1):
                d[i] += float(rec.get(name) or 0.0)
        elif kind == "mem":
            self._seen(rec.get("t"))
            for side in ("dev", "host"):
                values = rec.get(side)
                for name, value in values.items() if isinstance(values, dict) else ():
                    if isinstance(value, (int, float)) and not name.startswith("num_"):
                        key = f"{side}.{name}"
                        self.mem_peak[key] = max(self.mem_peak.get(key, value), value)

    def _coll(self, rec: Dict[str, Any]) -> None:
        t0, t1 = rec.get("t0"), rec.get("t1")
        if not isinstance(t0, (int, float)) or not isinstance(t1, (int, float)):
            return
        self._seen(t0, t1)
        seconds = t1 - t0
        nbytes = int(rec.get("bytes") or 0)
        is_async = bool(rec.get("async"))
        key = (rec.get("gid"), rec.get("op"), is_async, size_bucket(nbytes), rec.get("n"), rec.get("peer"))
        agg = self.keys.get(key)
        if agg is None:
            if len(self.keys) >= MAX_KEYS:
                self.overflow += 1
                return
            agg = self.keys[key] = [0, 0, 0.0, {}]
        agg[0] += 1
        agg[1] += nbytes
        agg[2] += seconds
        b = time_bin(seconds)
        agg[3][b] = agg[3].get(b, 0) + 1
        blocking = 0.0 if is_async else seconds
        if not is_async:
            self.sync_s += seconds
            self.blocking += 1
        seq = rec.get("seq")
        if rec.get("peer") is None and isinstance(seq, int):  # p2p pairs two ranks, not the group
            arrival = self.arrivals.get((str(rec.get("gid")), seq // ARRIVAL_BLOCK))
            if arrival is None:
                arrival = self.arrivals[(str(rec.get("gid")), seq // ARRIVAL_BLOCK)] = [0, 0.0, 0.0, 0.0, 0.0]
            base = self.base
            if base is None:
                base = self.base = t0
            gap = rec.get("gap")
            arrival[0] += 1
            arrival[1] += t0 - base  # an async one's issue ...
            arrival[2] += t1 - base  # ... and completion
            arrival[3] += gap if isinstance(gap, (int, float)) else 0.0
            arrival[4] += blocking

    def per_step(self) -> Optional[float]:
        """Seconds per step (per blocking collective when no step ended in the window)."""
        if self.steps[0]:
            return self.steps[1] / self.steps[0]
        count = self.blocking
        if count and self.first is not None and self.last is not None:
            return (self.last - self.first) / count
        return None

    def record(self, closed: float, slow: Optional[float]) -> Dict[str, Any]:
        """The ``window`` record (docs/profile-format.md)."""
        return {
            "k": "window",
            "w": self.index,
            "closed": closed,
            "t0": self.first,
            "t1": self.last,
            "sync_s": self.sync_s,
            "steps": (
                dict(zip(("count", "time_s", "max_s", "first", "last"), self.steps))
                if self.steps[0]
                else {"count": 0}
            ),
            "colls": [
                {
                    "gid": gid,
                    "op": op,
                    "async": is_async,
                    "bucket": bucket,
                    "n": n,
                    "peer": peer,
                    "count": agg[0],
                    "bytes": agg[1],
                    "time_s": agg[2],
                    "hist": sorted(agg[3].items()),
                }
                for (gid, op, is_async, bucket, n, peer), agg in self.keys.items()
            ],
            "base": self.base,
            "arrivals": [
                [gid, block, a[0], *(round(x, 6) for x in a[1:])] for (gid, block), a in self.arrivals.items()
            ],
            "mem_peak": self.mem_peak,
            "overflow": self.overflow,
            "ddp": dict(zip(DDP_KEYS, self.ddp)) if self.ddp[0] else None,
            "slow": slow,
        }


class WindowRecorder(RankRecorder):
    """A :class:`RankRecorder` that writes windows and anomaly dumps instead of every record."""

    def __init__(self, rank_dir: str, meta: Dict[str, Any], window_s: float = WINDOW_S) -> None:
        super().__init__(rank_dir, meta)
        self.window_s = float(window_s)
        self.window = Window(0)
        self.ring: Deque[Dict[str, Any]] = collections.deque(maxlen=RING)
        self.history: Deque[float] = collections.deque(maxlen=SLOW_HISTORY)
        self.windows = 0
        self.dumps: Deque[str] = collections.deque()  # the ring dumps on disk, oldest first
        self.dumps_written = 0
        self._file_no = 0
        self._windows: Optional[IO[str]] = None
        self._dump: Optional[IO[str]] = None
        self._after = 0
        self._pending_anomaly: Optional[str] = None

    def _select(self, records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        keep = []
        for rec in records:
            kind = rec.get("k")
            if kind in ("group", "stack"):
                keep.append(rec)
                continue
            self.ring.append(rec)
            if self._dump is not None:
                self._write_dump_line(rec)
            window = self.window
            window.add(rec)
            first, last = window.first, window.last
            if kind == "step" and first is not None and last is not None and last - first >= self.window_s:
                self._close_window(last)  # on the records' clock, not on the drain's
        window = self.window
        now = time.time()
        if window.first is not None and not window.steps[0] and now - window.first >= self.window_s:
            self._close_window(now)  # no step ended in it: closed on time
        if self._pending_anomaly is not None:
            reason, self._pending_anomaly = self._pending_anomaly, None
            if not reason.startswith("slow-window") and self.window.first is not None:
                self._close_window(now)  # a hang or an OOM: the rank may be killed before the window ends
            self._start_dump(reason)
        if self._dump is not None:
            self._dump.flush()
        return keep

    def anomaly(self, reason: str) -> None:
        """Dump the ring now (a hang, an OOM: the rank may not record anything after this)."""
        with self._lock:
            self._pending_anomaly = reason
        self.flush()

    def close(self, **final: Any) -> None:
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            if self.window.first is not None:
                self._guarded(self._close_window, time.time())
            for f in (self._windows, self._dump):
                if f is not None:
                    f.close()
            self._windows = self._dump = None
            self.window = Window(self.window.index + 1)
            self.window_s = math.inf  # nothing more is closed or written
        super().close(
            windows=self.windows,
            dumps=list(self.dumps),
            dumps_removed=self.dumps_written - len(self.dumps),
            window_s=self.window_s,
            **final,
        )

    # --- windows -----------------------------------------------------------------------------------

    def _close_window(self, now: float) -> None:
        window, self.window = self.window, Window(self.window.index + 1)
        per_step = window.per_step()
        slow = None
        if per_step is not None:
            if len(self.history) >= SLOW_MIN_HISTORY:
                median = statistics.median(self.history)
                if median > 0 and per_step > SLOW_FACTOR * median:
                    slow = per_step / median
            self.history.append(per_step)
        self._write_window(json.dumps(window.record(now, slow)))
        self.windows += 1
        if slow is not None:
            self._pending_anomaly = f"slow-window{window.index}"

    def _write_window(self, line: str) -> None:
        if self._out is None:
            return
        f = self._windows
        if f is None or f.tell() >= WINDOWS_FILE_BYTES:
            if f is not None:
                f.close()
                self._file_no = 1 - self._file_no
            f = self._windows = self._out.open_append(
                f"{self._name}/windows.{self._file_no}.jsonl", truncate=True
            )
        f.write(line + "\n")
        f.flush()

    # --- anomaly dumps -----------------------------------------------------------------------------

    def _start_dump(self, reason: str) -> None:
        if self._out is None:
            return
        if self._dump is not None:
            self._dump.close()
        self.dumps_written += 1
        name = f"ring/{self.dumps_written:04d}-{reason}.jsonl"
        while len(self.dumps) >= MAX_DUMPS:
            self._out.remove(f"{self._name}/{self.dumps.popleft()}")
        self._dump = self._out.open_append(f"{self._name}/{name}", truncate=True)
        self.dumps.append(name)
        self._dump.write("".join(json.dumps(r) + "\n" for r in self.ring))
        self.ring.clear()  # a later dump never repeats these
        self._after = AFTER

    def _write_dump_line(self, rec: Dict[str, Any]) -> None:
        assert self._dump is not None
        self._dump.write(json.dumps(rec) + "\n")
        self.ring.pop()  # written here: not again by a later dump
        self._after -= 1
        if self._after <= 0:
            self._dump.close()
            self._dump = None
