"""The background thread that runs shadow's float64 references and comparisons.

The training thread only copies an op's inputs and outputs (it must: the next op may overwrite them) and
hands the copies over; the float64 replay, the screening and the same-dtype baseline run here, on another
core, while the training goes on (torch releases the GIL inside its kernels). Jobs run one at a time in
the order they came, so records keep execution order. At most :data:`MAX_PENDING` jobs wait: a training
thread that is faster than the checks waits for them instead of piling up copies.

A forked child (a DataLoader worker inherits the dispatch mode, not the thread) runs its jobs inline.
"""

import os
import queue
import threading
from typing import Any, Callable, Optional

#: jobs waiting at most (each holds copies of one op's inputs and outputs)
MAX_PENDING = 16
_STOP = object()


class Worker:
    """``submit(job)`` runs ``check(job)`` on one background thread; an exception goes to ``fail``."""

    def __init__(self, check: Callable[[Any], None], fail: Callable[[BaseException], None]) -> None:
        self._check, self._fail = check, fail
        self._queue: queue.Queue[Any] = queue.Queue(MAX_PENDING)
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def submit(self, job: Any) -> None:
        if os.getpid() != self._pid:  # a forked child has no worker thread
            self._run(job)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ascend-doctor-shadow", daemon=True)
            self._thread.start()
        self._queue.put(job)

    def drain(self) -> None:
        """Wait until every submitted job has run."""
        if self._thread is not None and os.getpid() == self._pid:
            self._queue.join()

    def stop(self) -> None:
        """Run what is pending, then end the thread. Safe to call twice."""
        if self._thread is None or os.getpid() != self._pid:
            return
        self._queue.put(_STOP)
        self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is _STOP:
                    return
                self._run(job)
            finally:
                self._queue.task_done()

    def _run(self, job: Any) -> None:
        try:
            self._check(job)
        except Exception as exc:
            self._fail(exc)
