"""The background thread that runs shadow's float64 references and comparisons.

The training thread only copies an op's inputs and outputs (it must: the next op may overwrite them) and
hands the copies over; the float64 replay, the screening and the same-dtype baseline run here, on another
core, while the training goes on (torch releases the GIL inside its kernels). Jobs start in the order they
came. At most :data:`MAX_PENDING` jobs wait: a training thread that is faster than the checks does not pile
up copies but runs waiting jobs itself, next to the worker, until :data:`RESUME_AT` are left (it would wait
for them anyway; this way both cores work): two jobs may then run at once, and ``check`` must allow it.

The hand-off is a deque and one condition variable, and a thread is woken only when the other waits for it
(the worker for a first job, the training thread for the last jobs in flight): a wake-up costs both threads
more than a small op's check, and a busy worker takes the next job without one.

A forked child (a DataLoader worker inherits the dispatch mode, not the thread) runs its jobs inline.
"""

import os
import threading
from collections import deque
from typing import Any, Callable, Deque, Optional

#: jobs waiting at most (each holds copies of one op's inputs and outputs)
MAX_PENDING = 16
#: a training thread that found MAX_PENDING jobs runs jobs itself until this few are left
RESUME_AT = 8
_STOP = object()


class Worker:
    """``submit(job)`` runs ``check(job)`` on one background thread; an exception goes to ``fail``."""

    def __init__(self, check: Callable[[Any], None], fail: Callable[[BaseException], None]) -> None:
        self._check, self._fail = check, fail
        self._jobs: Deque[Any] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._unfinished = 0  # submitted and not yet run (guarded by _cond)
        self._idle = False  # the worker waits for a job
        self._waiting = False  # the training thread waits for room or for the end
        self._wake_at = 0  # ... until this few jobs are unfinished
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def submit(self, job: Any) -> None:
        if os.getpid() != self._pid:  # a forked child has no worker thread
            self._run(job)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ascend-doctor-shadow", daemon=True)
            self._thread.start()
        with self._cond:
            self._jobs.append(job)
            self._unfinished += 1
            if self._idle:
                self._cond.notify()
            full = self._unfinished >= MAX_PENDING
        if full:
            self._help(RESUME_AT)

    def drain(self) -> None:
        """Wait until every submitted job has run (running waiting ones on this thread)."""
        if self._thread is not None and os.getpid() == self._pid:
            self._help(0)

    def stop(self) -> None:
        """Run what is pending, then end the thread. Safe to call twice."""
        if self._thread is None or os.getpid() != self._pid:
            return
        with self._cond:
            self._jobs.append(_STOP)
            self._unfinished += 1
            self._cond.notify()
        self._thread.join()
        self._thread = None

    def _help(self, left: int) -> None:
        """Run waiting jobs on this thread until at most ``left`` are unfinished; sleep while the rest are
        running on the worker."""
        cond, jobs = self._cond, self._jobs
        while True:
            with cond:
                if self._unfinished <= left:
                    return
                if not jobs or jobs[0] is _STOP:
                    self._wake_at = left
                    while self._unfinished > left:
                        self._waiting = True
                        cond.wait()
                    self._waiting = False
                    return
                job = jobs.popleft()
            self._run(job)
            with cond:
                self._unfinished -= 1

    def _loop(self) -> None:
        cond, jobs = self._cond, self._jobs
        job = None
        while True:
            with cond:
                if job is not None:  # the one just run
                    self._unfinished -= 1
                    if self._waiting and self._unfinished <= self._wake_at:
                        cond.notify()
                    if job is _STOP:
                        return
                while not jobs:
                    self._idle = True
                    cond.wait()
                self._idle = False
                job = jobs.popleft()
            if job is not _STOP:
                self._run(job)

    def _run(self, job: Any) -> None:
        try:
            self._check(job)
        except Exception as exc:
            self._fail(exc)
