"""Memory sampler: device allocator counters and host memory of one rank, over time and per step.

A daemon thread takes a sample every ``interval`` seconds and hands it to ``emit`` as a ``mem`` record
(docs/profile-format.md). Host RSS is read at every sample (``/proc/self/statm``: ~15 µs); USS needs the
kernel to walk the page tables (``/proc/self/smaps_rollup``: measured 4 ms at 0.2 GB RSS, 38 ms at 4 GB,
about 9 ms per GB), so it is read at most every ``uss_interval`` seconds and never for more than 1% of
the time, and never on the training thread.

Per step (closed by :meth:`MemorySampler.on_step`) the sampler keeps the maxima of what it sampled, plus
the allocator's own peak counters: those are lifetime peaks (we never reset them, the script may), so a
step whose counter changed reached that value during the step, between samples or not. A step end runs on
the training thread: it reads nothing unless a reading is due (``interval`` seconds since the last one at a
step end), so steps shorter than the interval cost a lock and a dict, not a ``/proc`` read each.
"""

import collections
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional

import psutil

from .. import backend
from ..failopen import FailOpen
from .background import Background

USS_MAX_DUTY = 0.01
RECENT_SAMPLES = 32
# sampled maxima per step; (ours, the allocator's lifetime peak counter for it or None)
_STEP_MAX = (
    ("allocated_bytes", "peak_allocated_bytes"),
    ("reserved_bytes", "peak_reserved_bytes"),
    ("active_bytes", None),
)
_STEP_COUNTERS = ("num_alloc_retries", "num_ooms")


def fragmentation(dev: Dict[str, Any]) -> Optional[float]:
    """``1 − allocated/reserved``: the share of what the allocator holds from the device that no tensor
    uses (cached free blocks, split remainders). None without reserved memory."""
    reserved = dev.get("reserved_bytes", 0)
    if reserved <= 0 or "allocated_bytes" not in dev:
        return None
    return round(1.0 - dev["allocated_bytes"] / reserved, 4)


class MemorySampler(Background, FailOpen):
    """``emit(record)`` receives every sample (from the sampler thread, and from :meth:`on_step` on the
    caller's thread); ``current_step()`` labels it. Keeps the last :data:`RECENT_SAMPLES` samples and
    the peaks of the last ``keep_steps`` steps."""

    thread_name = "ascend-doctor-memory"

    def __init__(
        self,
        emit: Callable[[dict], None],
        interval: float,
        current_step: Callable[[], int],
        uss_interval: float = 10.0,
        keep_steps: int = 4096,
    ) -> None:
        self.interval = float(interval)
        self.uss_interval = float(uss_interval)
        self.keep_steps = int(keep_steps)
        self._emit = emit
        self._current_step = current_step
        self._proc = psutil.Process()
        self._lock = threading.Lock()
        self._recent: Deque[dict] = collections.deque(maxlen=RECENT_SAMPLES)
        self._open: Dict[str, Any] = {}
        self._steps: collections.OrderedDict[int, dict] = collections.OrderedDict()
        self._at_close = backend.memory_stats()  # counters at the last step end read (the baseline first)
        self._at_close_step = -1  # the step whose end that was
        self._close_due = time.time() + self.interval  # the next step end at or after this reads
        self._uss_due = 0.0
        self._init_background()

    def _fail_message(self) -> str:
        return "memory sampler: internal error, samples may be missing (training goes on)"

    def sample(self, uss: bool = True) -> dict:
        """One ``mem`` record, counted into the open step; ``uss``: read USS if it is due (slow: keep
        it off the training thread)."""
        t = time.time()
        dev: Dict[str, Any] = backend.memory_stats()  # + fragmentation, a float
        frag = fragmentation(dev)
        if frag is not None:
            dev["fragmentation"] = frag
        rec = {"k": "mem", "t": t, "step": self._current_step(), "dev": dev, "host": self._host(t, uss)}
        with self._lock:
            self._recent.append(rec)
            self._accumulate(rec)
        return rec

    def on_step(self, step: int, now: Optional[float] = None) -> dict:
        """Close ``step`` (ended at ``now``, the caller's clock reading) and return its peaks. When a reading
        is due (``interval`` seconds since the last step end that read), take a sample (no USS) and emit it;
        the allocator's peak counters are then attributed to ``step`` only when the previous reading was at
        the previous step's end."""
        if now is None:
            now = time.time()
        rec = None
        if now >= self._close_due:
            self._close_due = now + self.interval
            rec = self.sample(uss=False)
            self._emit(rec)
        with self._lock:
            peaks, self._open = self._open, {}
            peaks["step"] = step
            peaks.setdefault("samples", 0)
            if rec is not None:
                self._close_counters(peaks, rec["dev"], consecutive=self._at_close_step == step - 1)
                self._at_close, self._at_close_step = rec["dev"], step
            self._steps[step] = peaks
            while len(self._steps) > self.keep_steps:
                self._steps.popitem(last=False)
        return peaks

    def _close_counters(self, peaks: dict, now: Dict[str, Any], consecutive: bool) -> None:
        """The allocator's counters at a step end: the peaks (reached in the step when they changed since
        the previous step's end) and the increase of the retry and OOM counts during the step."""
        for ours, peak_key in _STEP_MAX:
            if peak_key is not None and peak_key in now:
                peaks[peak_key] = now[peak_key]
                if consecutive and now[peak_key] != self._at_close.get(peak_key, 0):
                    peaks[ours] = max(peaks.get(ours, 0), now[peak_key])
        if consecutive:
            for counter in _STEP_COUNTERS:
                if counter in now:
                    before = self._at_close.get(counter, 0)
                    peaks[counter] = now[counter] - before if now[counter] >= before else now[counter]

    def step_peaks(self) -> Dict[int, dict]:
        """Per closed step: ``allocated_bytes``, ``reserved_bytes``, ``active_bytes`` (max sampled, or
        the allocator's peak when it was reached in the step), ``fragmentation`` (at the sample with the
        most reserved), ``rss``/``uss`` (max sampled), ``peak_allocated_bytes``/``peak_reserved_bytes``
        (the allocator's counters at the step's end), ``num_alloc_retries``/``num_ooms`` (during the
        step), ``samples``. Device keys only where the allocator reports them."""
        with self._lock:
            return {step: dict(p) for step, p in self._steps.items()}

    def recent(self) -> List[dict]:
        """The last samples, oldest first (for OOM forensics)."""
        with self._lock:
            return list(self._recent)

    # --- internals -------------------------------------------------------------------------------

    def _host(self, t: float, uss: bool) -> Dict[str, int]:
        host = {"rss": int(self._proc.memory_info().rss)}
        if uss and t >= self._uss_due:
            t0 = time.perf_counter()
            full = backend.host_memory()
            cost = time.perf_counter() - t0
            if "uss" in full:
                host["uss"] = full["uss"]
            self._uss_due = t + max(self.uss_interval, cost / USS_MAX_DUTY)
        return host

    def _accumulate(self, rec: dict) -> None:
        acc, dev, host = self._open, rec["dev"], rec["host"]
        acc["samples"] = acc.get("samples", 0) + 1
        for ours, _ in _STEP_MAX:
            if ours in dev:
                if ours == "reserved_bytes" and dev[ours] >= acc.get(ours, -1) and "fragmentation" in dev:
                    acc["fragmentation"] = dev["fragmentation"]
                acc[ours] = max(acc.get(ours, 0), dev[ours])
        for key in ("rss", "uss"):
            if key in host:
                acc[key] = max(acc.get(key, 0), host[key])

    def _run(self) -> None:
        while True:
            self._guarded(lambda: self._emit(self.sample()))
            if self._stop.wait(self.interval):
                return
