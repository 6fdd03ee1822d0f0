"""compare's float64 replays in processes of their own.

A replay needs torch, and ``import torch`` is a second of CPU spent mostly holding the GIL. Imported on a thread
of the compare itself, it stalled the threads measuring the pairs: on the bench's 1.5 GB pair the CLI took 0.98 s
without replays and 2.1 s with 15 of them. A spawned process imports torch on another core while the pairs are
measured, then replays the jobs (``replay_job.py``: file paths and the encoded call, no tensors) the compare sends
it. It also keeps a replay that kills its interpreter (an op on a hostile dump's arguments, the OOM killer) from
ending the compare: that process's jobs come back as not replayed, with the reason.
"""

import functools
import multiprocessing
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, List, Optional

from . import pairpool, replay_job
from .replay_job import ReplayJob, ReplayOutcome

#: each process gets its jobs in about this many parts (fewer round trips than a job each, and a dead process
#: costs only its part's replays)
PARTS_PER_PROCESS = 4
DIED = (
    "not replayed: the replay process ended before this op's replay came back (killed, or crashed on an op)"
)


def _prepare(threads: int) -> None:
    import torch

    from . import replay  # noqa: F401 (imported now, not by the first job)

    # the CPUs shared out: the compare sends its jobs once its own threads have measured every pair, and one
    # op's replay takes most of a replay's time (the bench's 1.5 GB pair: 4 flash-attention backwards, 280 of
    # 306 ms on one thread, 158 ms in all on two)
    torch.set_num_threads(threads)


def _ready() -> bool:
    return True


class ReplayProcesses:
    """``processes`` spawned processes; 0 starts none (the caller replays in its own process). ``start``: started
    at once, their ``import torch`` running while the caller measures the pairs, else at the first :meth:`run`
    that has jobs (none at all where no op needs a replay: a clean run, a dump compared with itself).
    ``prepare``: what each runs first (a module-level function: it is sent by name), by default torch imported
    and its kernels given this process's CPUs shared out among the processes. Use as a context manager, or
    :meth:`close`."""

    def __init__(
        self, processes: int = 1, prepare: Optional[Callable[[], None]] = None, start: bool = True
    ) -> None:
        self.processes = processes
        threads = max(1, pairpool.default_workers() // max(1, processes))
        self._prepare = prepare or functools.partial(_prepare, threads)
        self._pool: Optional[ProcessPoolExecutor] = None
        self._ready: Optional[Future[bool]] = None
        self._tried = False
        if start:
            self._start()

    def _start(self) -> None:
        if self._tried or self.processes < 1:
            return
        self._tried = True
        try:
            context = multiprocessing.get_context("spawn")
            pool = ProcessPoolExecutor(self.processes, mp_context=context, initializer=self._prepare)
            self._ready = pool.submit(_ready)  # a pool starts its processes at the first job
        except (OSError, RuntimeError, ImportError):  # no semaphores (/dev/shm), no fork/exec: replay here
            return
        self._pool = pool

    @property
    def available(self) -> bool:
        return self._pool is not None

    def run(self, jobs: List[ReplayJob]) -> Optional[List[ReplayOutcome]]:
        """Every job's outcome, in order; None when no process could be started or none lived to take a job
        (replay them in-process: what ended it was no dump's call)."""
        if not jobs:
            return []
        self._start()
        if self._pool is None or self._ready is None:
            return None
        try:
            self._ready.result()
        except BrokenProcessPool:
            self.close()
            return None
        size = max(1, -(-len(jobs) // (self.processes * PARTS_PER_PROCESS)))
        parts = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        try:
            futures: List[Future[Any]] = [self._pool.submit(replay_job.run_all, part) for part in parts]
        except BrokenProcessPool:
            return [ReplayOutcome(problem=DIED) for _ in jobs]
        out: List[ReplayOutcome] = []
        for part, future in zip(parts, futures):
            try:
                out.extend(future.result())
            except BrokenProcessPool:
                out.extend(ReplayOutcome(problem=DIED) for _ in part)
        return out

    def close(self) -> None:
        """Ends the processes now: they hold nothing to save, and a graceful exit is torch's teardown (a quarter
        of a second of the bench's compare)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # private: Python < 3.14 has no terminate_workers()
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(5)
        pool.shutdown(wait=True)

    def __enter__(self) -> "ReplayProcesses":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
