"""The per-pair work of a compare on a pool of threads.

A compare is thousands of small, independent jobs (load two tensors, compute the metrics, maybe replay the
op). torch releases the GIL inside its kernels, so a few threads keep every core busy, each kernel running
single-threaded: on tensors of this size OpenMP's fork/join costs more than it gains, and on a loaded machine
a kernel's thread team waits for its slowest, descheduled member (on a shared 2-core VM, a compare of
msprobe's dumps took 108 s with torch's default 2 intra-op threads and 11 s with 1). Results come back in
the order of the jobs, so a report does not depend on which thread finished first, nor, with kernels
single-threaded, on how many threads there were.
"""

import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, List, Optional, Sequence, TypeVar

#: at most this many threads: each holds a pair's tensors and their float64 work buffers at once
MAX_WORKERS = 4
#: a job handed to a thread takes up to this many items: a pair of statistics only is ~50 us of Python, and handing
#: each to the pool on its own cost ~150 us more (the hand-off wakes a thread that then waits for the GIL): a
#: 104k-record dump's pairs took 20 s one by one, 13 s in chunks (5 s once no thread took the tensor cache's lock
#: for a tensor without a file: ``Diagnoser._load``)
MAX_CHUNK = 64
#: ... and each thread gets its items in at least this many chunks, so that a few large pairs at the end do not
#: leave the other threads idle
CHUNKS_PER_WORKER = 64

T = TypeVar("T")
R = TypeVar("R")


def default_workers() -> int:
    """The CPUs this process may run on, at most :data:`MAX_WORKERS`."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


@contextlib.contextmanager
def single_threaded_kernels() -> Iterator[None]:
    """torch's intra-op threads set to 1 for the block (process-wide), restored after it; nothing when torch
    is not imported (numpy's work here uses no thread pool)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def map_in_order(
    job: Callable[[T], R],
    items: Sequence[T],
    workers: int,
    progress: Optional[Callable[[int], None]] = None,
) -> List[R]:
    """``[job(x) for x in items]``, on ``workers`` threads when there are more than one, in chunks of
    :func:`chunk_size` items; ``progress(n)`` after each ``n`` results, from the calling thread. An exception of
    a job is raised here. Kernels run single-threaded either way, so the numbers do not depend on the pool's size
    or the machine's cores (a float64 dot product summed by 2 threads differs from 1 thread's in the last bits)."""
    results: List[R] = []
    with single_threaded_kernels():
        if workers <= 1 or len(items) <= 1:
            for item in items:
                results.append(job(item))
                if progress is not None:
                    progress(1)
            return results
        size = chunk_size(len(items), workers)

        def run_chunk(start: int) -> List[R]:
            return [job(x) for x in items[start : start + size]]

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for part in pool.map(run_chunk, range(0, len(items), size)):
                results.extend(part)
                if progress is not None:
                    progress(len(part))
    return results


def chunk_size(items: int, workers: int) -> int:
    """Items per job: 1 for a few (replays: each is long), up to :data:`MAX_CHUNK` for many."""
    return max(1, min(MAX_CHUNK, items // (workers * CHUNKS_PER_WORKER)))
