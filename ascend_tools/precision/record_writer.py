"""A capture's records on their way from the user's thread to the rank directory.

Records arrive one at a time (:meth:`RecordWriter.add`): as their JSON line when every tensor's
statistics are known (a string outlives the young generation without adding to what the garbage
collector scans), else as the record's tuple, encoded once the flush has its statistics. A flush
(:meth:`RecordWriter.flush`) hands the batch, the new stacks and the pending statistics to the writer
thread when there is one (the user's thread does not wait; at most :data:`QUEUE_JOBS` flushes wait),
else writes them at once. Statistics of accelerator tensors are moved to the host on the user's thread
and stream, in the flush.
"""

import os
import queue
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from . import store
from .lines import LineEncoder
from .stats import StatsQueue

YIELD_EVERY = 8  # records the writer thread encodes between two offers of the GIL
QUEUE_JOBS = 4  # flushes waiting for the writer thread before the user's thread waits for it


def default_background() -> bool:
    """The writer thread is off unless ASCEND_DOCTOR_CAPTURE_THREAD=1: on the CPU bench it made steps
    slower (its JSON encoding holds the GIL; the training thread waits up to the 5 ms switch interval
    each time one of its kernels returns)."""
    env = os.environ.get("ASCEND_DOCTOR_CAPTURE_THREAD", "")
    return env.strip().lower() in ("1", "true", "yes", "on")


class RecordWriter:
    """``fail``: where an error of the writer thread goes (the capture's fail-open ``_fail``)."""

    def __init__(self, rank: int, stats: StatsQueue, background: bool, fail: Callable[[BaseException], None]):
        self.encoder = LineEncoder(rank)
        self.stats = stats
        self.background = background
        self.fail = fail
        self.records_written = 0
        self.files: Optional[store.RankWriter] = None
        self.batch: List[Union[str, tuple]] = []  # a record's line, or its tuple until its stats are known
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_JOBS)
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def open(self, files: store.RankWriter) -> None:
        self.files = files
        self._pid = os.getpid()
        if self.background:
            self._jobs = queue.Queue(maxsize=QUEUE_JOBS)
            self._thread = threading.Thread(target=self._work, name="ascend-doctor-capture", daemon=True)
            self._thread.start()

    def rank_files(self) -> store.RankWriter:
        """The rank directory's writer :meth:`open` was given (records are made and flushed only after it)."""
        files = self.files
        if files is None:
            raise RuntimeError("capture not started")
        return files

    def add(self, rec: tuple, step: int) -> None:
        for t in rec[6]:
            if t.body is None:
                self.batch.append(rec)
                return
        for t in rec[7]:
            if t.body is None and not t.settle():
                self.batch.append(rec)
                return
        self.batch.append(self.line(rec, step))

    def flush(self, step: int, stacks: Sequence[Tuple[int, List[str]]]) -> None:
        q = self.stats
        on_device = q.on_device
        pending = q.take()
        if on_device or self._thread is None:
            q.resolve(pending)
            pending = []
        batch, self.batch = self.batch, []
        stack_lines = [store._dumps({"id": sid, "frames": frames}) + "\n" for sid, frames in stacks]
        if not (batch or stack_lines or pending):
            return
        job = (step, batch, stack_lines, pending)
        if self._thread is not None and self._thread.is_alive() and os.getpid() == self._pid:
            self._jobs.put(job)  # blocks when QUEUE_JOBS flushes are waiting: memory stays bounded
        else:
            self._write_job(job)

    def line(self, rec: tuple, step: int) -> str:
        rid, name, kind, phase, call, module, inputs, outputs, call_args, sid = rec
        enc = self.encoder
        return enc.line(
            rid,
            name,
            kind,
            phase,
            call,
            module,
            ",".join([t.encoded(enc) for t in inputs]),
            ",".join([t.encoded(enc) for t in outputs]),
            enc.args(call_args) if call_args is not None else "",
            sid,
            step,
        )

    def close(self) -> None:
        """Write what the writer thread still holds and stop it (the files stay open: see :meth:`release`)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread.is_alive():
            self._jobs.put(None)
            thread.join()
        # a job left behind by a thread that died (it cannot: _work catches everything) is written here
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._write_job(job)

    def release(self) -> None:
        if self.files is not None:
            self.files.close()

    def forget_thread(self) -> None:
        """In a forked child: the parent's writer thread does not exist here."""
        self._thread = None

    def _write_job(self, job: tuple) -> None:
        step, batch, stacks, pending = job
        if pending:
            self.stats.resolve(pending)
        pause = time.sleep if threading.current_thread() is self._thread else None
        lines = []
        for n, rec in enumerate(batch):
            if isinstance(rec, str):
                lines.append(rec)
                continue
            if pause is not None and not n % YIELD_EVERY:
                # let the user's thread take the GIL: it would otherwise wait up to the switch interval
                # (5 ms) each time one of its kernels returns while this thread encodes
                pause(0)
            lines.append(self.line(rec, step))
        if lines or stacks:
            self.rank_files().write(step, lines, stacks)
            self.records_written += len(lines)

    def _work(self) -> None:
        """The writer thread: statistics of CPU tensors, JSON encoding and file writes, one flush at
        a time in order. Torch ops here do not pass through the capture's mode (modes are per thread)."""
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                self._write_job(job)
            except Exception as exc:
                self.fail(exc)
