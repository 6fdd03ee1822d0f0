"""The background thread that runs shadow's float64 references and comparisons.

The training thread only copies an op's inputs and outputs (it must: the next op may overwrite them) and
hands the copies over; the float64 replay, the screening and the same-dtype baseline run here, on another
core, while the training goes on (torch releases the GIL inside its kernels). Jobs start in the order they
came. At most :data:`MAX_PENDING` jobs holding :data:`MAX_PENDING_BYTES` of copies wait: a training thread
that is faster than the checks does not pile up copies beyond that but runs waiting jobs itself, next to the
worker, until half of each is left (it would wait for them anyway; this way both cores work): two jobs may then
run at once, and ``check`` must allow it.

The hand-off is a deque and one condition variable, and a thread is woken only when the other waits for it
(the worker for a first job, the training thread for the last jobs in flight): a wake-up costs both threads
more than a small op's check, and a busy worker takes the next job without one.

A forked child (a DataLoader worker inherits the dispatch mode, not the thread) runs its jobs inline.

Only ops that ran on a device come here (:data:`INLINE_CPU`): the check of an op the training thread ran on the
CPU itself runs there at once (:meth:`Worker.run`). Two threads that both run Python between short kernels give
the GIL to each other at every kernel and gain nothing: on the bench's model (CPU, one torch thread, 2 cores)
the step took 252-257 ms with the checks inline against 264-346 ms with this thread, which used 1.5x the CPU
(377-489 ms a step; docs/precision-speed.md). A device op's training thread waits on the device (its copies to
the host) with the GIL released, which is when this thread runs.
"""

import os
import threading
from collections import deque
from typing import Any, Callable, Deque, Optional, Tuple

#: jobs waiting at most, and the bytes of copies they hold at most: a training thread that finds either
#: reached runs waiting jobs itself until half of each is left. Few jobs on purpose: checks not run within a
#: step are not gone but moved into the next ones (a queue of 1 GiB made the bench's steps look 20% faster by
#: leaving their checks to the block's end; drained each step, it measured what 16 jobs do)
MAX_PENDING = 16
#: the checks of ops the training thread ran on the CPU run on it at once, not on this thread (see above)
INLINE_CPU = True
MAX_PENDING_BYTES = 256 << 20
_STOP = object()
# forks seen by this process's children so far: a child's workers have no thread (os.getpid() per op was a
# system call each, 2% of the training thread's time)
_forks = [0]
if hasattr(os, "register_at_fork"):  # POSIX; elsewhere there is no fork
    os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


def fork_count() -> int:
    """Forks this process has come through (0 in the process that started the shadow)."""
    return _forks[0]


class Worker:
    """``submit(job)`` runs ``check(job)`` on one background thread; an exception goes to ``fail``."""

    def __init__(self, check: Callable[[Any], None], fail: Callable[[BaseException], None]) -> None:
        self._check, self._fail = check, fail
        self._jobs: Deque[Tuple[Any, int]] = deque()  # (job, bytes of the copies it holds)
        self._cond = threading.Condition(threading.Lock())
        self._unfinished = 0  # submitted and not yet run (guarded by _cond)
        self._bytes = 0  # the copies the unfinished jobs hold (guarded by _cond)
        self._idle = False  # the worker waits for a job
        self._waiting = False  # the training thread waits for room or for the end
        self._wake_at = (0, 0)  # ... until this few jobs and bytes are unfinished
        self._thread: Optional[threading.Thread] = None
        self._forks = _forks[0]

    def submit(self, job: Any, nbytes: int = 0) -> None:
        """Queue ``job``, which holds ``nbytes`` of copies until it has run."""
        if _forks[0] != self._forks:  # a forked child has no worker thread
            self.run(job)
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="ascend-doctor-shadow", daemon=True)
            self._thread.start()
        with self._cond:
            self._jobs.append((job, nbytes))
            self._unfinished += 1
            self._bytes += nbytes
            if self._idle:
                self._cond.notify()
            full = self._unfinished >= MAX_PENDING or self._bytes >= MAX_PENDING_BYTES
        if full:
            self._help(MAX_PENDING // 2, MAX_PENDING_BYTES // 2)

    def drain(self) -> None:
        """Wait until every submitted job has run (running waiting ones on this thread)."""
        if self._thread is not None and _forks[0] == self._forks:
            self._help(0, 0)

    def stop(self) -> None:
        """Run what is pending, then end the thread. Safe to call twice."""
        if self._thread is None or _forks[0] != self._forks:
            return
        with self._cond:
            self._jobs.append((_STOP, 0))
            self._unfinished += 1
            self._cond.notify()
        self._thread.join()
        self._thread = None

    def _done(self, jobs: int, nbytes: int) -> bool:
        """At most ``jobs`` jobs and ``nbytes`` bytes are unfinished (under ``_cond``)."""
        return self._unfinished <= jobs and self._bytes <= nbytes

    def _help(self, jobs_left: int, bytes_left: int) -> None:
        """Run waiting jobs on this thread until at most ``jobs_left`` jobs holding ``bytes_left`` bytes are
        unfinished; sleep while the rest are running on the worker."""
        cond, jobs = self._cond, self._jobs
        while True:
            with cond:
                if self._done(jobs_left, bytes_left):
                    return
                if not jobs or jobs[0][0] is _STOP:
                    self._wake_at = (jobs_left, bytes_left)
                    while not self._done(jobs_left, bytes_left):
                        self._waiting = True
                        cond.wait()
                    self._waiting = False
                    return
                job, nbytes = jobs.popleft()
            self.run(job)
            with cond:
                self._unfinished -= 1
                self._bytes -= nbytes

    def _loop(self) -> None:
        cond, jobs = self._cond, self._jobs
        ran: Optional[int] = None  # the bytes of the job just run (None: none yet)
        while True:
            with cond:
                if ran is not None:
                    self._finished(ran)
                while not jobs:
                    self._idle = True
                    cond.wait()
                self._idle = False
                job, nbytes = jobs.popleft()
            if job is _STOP:
                with cond:
                    self._finished(0)
                return
            self.run(job)
            # an idle worker holds no job: a job's call holds the user's tensors, and torch.utils.swap_tensors
            # (module.to() under swap_module_params_on_conversion, FSDP2's to_empty) refuses a tensor held elsewhere
            del job
            ran = nbytes

    def _finished(self, nbytes: int) -> None:
        """One job has run (under ``_cond``): wake the training thread where it waits for this few."""
        self._unfinished -= 1
        self._bytes -= nbytes
        if self._waiting and self._done(*self._wake_at):
            self._cond.notify()

    def run(self, job: Any) -> None:
        """Run ``job`` on this thread now (jobs are independent: it may run beside one on the worker)."""
        try:
            self._check(job)
        except Exception as exc:
            self._fail(exc)
