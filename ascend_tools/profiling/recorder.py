"""One rank's profile files (docs/profile-format.md): ``meta.json`` and the append-only ``events.jsonl``.

The training thread only appends dicts to a bounded deque (thread-safe, no lock, no encoding); a writer
thread encodes and appends them to the file and flushes at least every ``interval`` seconds. When the
writer falls behind by ``capacity`` records, the oldest are dropped and counted, so memory stays bounded
whatever the job does. ``flush()`` drains synchronously (step boundaries, hangs, exit).
"""

import collections
import json
import os
import threading
import time
from typing import IO, Any, Callable, Deque, Dict, List, Optional

from .. import atomic
from ..failopen import FailOpen
from . import columnar

SCHEMA = "ascend-doctor/profile/1"
CAPACITY = 1 << 16
INTERVAL = 0.5


class RankRecorder(FailOpen):
    """``emit`` from any thread; ``start`` the writer; ``close`` drains and finalizes ``meta.json``.

    ``ticks`` are callables the writer thread runs before each drain (the collective interceptor resolves
    its pending device events there)."""

    def __init__(
        self, rank_dir: str, meta: Dict[str, Any], capacity: int = CAPACITY, interval: float = INTERVAL
    ) -> None:
        self.rank_dir = rank_dir
        self.meta = dict(meta, schema=SCHEMA)
        self.capacity = capacity
        self.interval = interval
        self.records = 0
        self.dropped = 0
        self.ticks: List[Callable[[], None]] = []
        self._buf: Deque[Dict[str, Any]] = collections.deque()
        self._lock = threading.Lock()  # one drain at a time: writer thread vs flush()
        self._wake = threading.Event()
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._file: Optional[IO[str]] = None  # closed in close()
        self._out: Optional[atomic.OutputDir] = None
        self._name = os.path.basename(rank_dir)
        self._columnar = columnar.Writer()  # the coll records written, as columns too (columnar.py)
        self._bytes = 0  # written to events.jsonl (json.dumps writes ASCII: one byte a character)
        try:
            # from a descriptor of the profile directory, never through a symlink (at rank{r} or the file's
            # name), FIFO or hard link planted there: refused, logged once, the events are dropped (and counted
            # in meta.json's ``dropped``), the training goes on
            self._out = atomic.OutputDir(os.path.dirname(rank_dir))
            self._file = self._out.open_append(f"{self._name}/events.jsonl", truncate=True)
            self._out.write_json(f"{self._name}/meta.json", self.meta)
        except OSError as exc:
            self._fail(exc)

    def emit(self, rec: Dict[str, Any]) -> None:
        buf = self._buf
        if len(buf) >= self.capacity:
            try:
                buf.popleft()
                self.dropped += 1
            except IndexError:  # the writer drained it meanwhile
                pass
        buf.append(rec)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ascend-doctor-profile-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self.interval)
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        """Run the ticks, then encode, append and flush everything emitted so far. The writer thread and the
        watchdog both flush: one at a time, ticks included."""
        with self._lock:
            if self._file is None:  # events.jsonl was refused: count what would have gone there
                while self._buf:
                    try:
                        self._buf.popleft()
                    except IndexError:
                        break
                    self.dropped += 1
                return
            if self._file.closed:
                return
            for tick in self.ticks:
                self._guarded(tick)
            buf = self._buf
            drained = []
            while buf:
                try:
                    drained.append(buf.popleft())
                except IndexError:
                    break
            lines = []
            colls = []
            for rec in self._guarded(self._select, drained) or []:
                try:
                    lines.append(json.dumps(rec))  # no keyword arguments: json reuses its cached C encoder
                except (TypeError, ValueError) as exc:
                    self._fail(exc)
                    continue
                if rec.get("k") == "coll":
                    colls.append(rec)
            if lines:
                text = "\n".join(lines) + "\n"
                try:
                    self._file.write(text)
                    self._file.flush()
                    self.records += len(lines)
                    self._bytes += len(text)
                except OSError as exc:
                    self._fail(exc)
                    return
                self._guarded(self._columnar.add, colls, (self.records + 1, self._bytes), self._open_columnar)

    def _open_columnar(self, name: str) -> Any:
        assert self._out is not None
        return self._out.open_atomic(f"{self._name}/{name}", "wb")

    def _select(self, records: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """The drained records that go to ``events.jsonl`` (all of them; the always-on recorder keeps
        fewer). Runs in the draining thread with the drain lock held."""
        return records

    def anomaly(self, reason: str) -> None:
        """Something went wrong (``hang``, ``oom``): make what was recorded so far durable."""
        self.flush()

    def discard(self) -> None:
        """Stop the writer and remove ``events.jsonl``, ``meta.json`` and the rank directory (when that leaves
        it empty): a provisional rank0 given back (profiler.py)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None
        if self._out is not None:
            for name in ("events.jsonl", *self._columnar.names, "meta.json", ""):
                self._out.remove(f"{self._name}/{name}".rstrip("/"))
            self._out.close()
            self._out = None

    def close(self, **final: Any) -> None:
        """Stop the writer, drain, and rewrite ``meta.json`` with ``closed_at``, the counters and ``final``."""
        self._stop = True
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self.flush()
        with self._lock:
            if self._file is not None:
                if not self._file.closed:
                    self._guarded(self._columnar.close, (self.records + 1, self._bytes), self._open_columnar)
                self._file.close()
        self.meta.update(
            final,
            closed_at=time.time(),
            records=self.records,
            dropped=self.dropped,
            internal_errors=self.internal_errors,
        )
        try:
            if self._out is not None:
                self._out.write_json(f"{self._name}/meta.json", self.meta)
                self._out.close()
        except OSError as exc:
            self._fail(exc)

    def _fail_message(self) -> str:
        return f"profile: cannot write {self.rank_dir} (training goes on)"
