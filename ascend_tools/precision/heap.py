"""How a compare manages its process's memory: freed buffers kept for reuse, the garbage collector paused.

**Freed memory kept** (:func:`retain_freed_memory`), for a CLI command that allocates the same large buffers
thousands of times.

glibc hands a large allocation (above its mmap threshold: 128 KB at start, adapting up to 32 MB) straight to
the kernel and back when it is freed, so the next buffer of that size is fresh pages again: a page fault per
4 KB, which in a compare costs more than the arithmetic on the buffer (a float64 ``sub`` into a fresh 64 MB
tensor: 39 ms; into a reused one: 6 ms). Raising the thresholds keeps freed blocks for reuse; a compare then
has 60% fewer page faults. For the ``compare`` command's own process only, never inside a user's training:
the heap keeps its peak size until the process ends.

**The collector paused** (:func:`collector_paused`): a compare holds every record of both dumps, an object per
record, tensor and statistic (a 104k-op step of an LSTM: ~5M objects), and every collection of the oldest
generation walks all of them; as the records are read, that happens again and again. Paused, reading that pair
of dumps took 6 s against 11-15 s, and the whole compare 24 s against 32-45 s. What a compare makes forms no
reference cycles that hold memory worth freeing early; any it makes are collected after the block.
"""

import contextlib
import ctypes
import gc
import sys
from typing import Iterator

#: mallopt(3) parameters of glibc
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: allocations below this come from the heap (glibc caps it at 32 MB on 64-bit: 4 M float64 elements)
MMAP_THRESHOLD = 32 * 2**20
#: freed memory at the top of the heap kept up to this
TRIM_THRESHOLD = 2**30


def retain_freed_memory() -> bool:
    """Set glibc's thresholds so freed large blocks are reused; False where that is not possible (not Linux,
    not glibc): the command then runs as before, only slower."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        # the process's own symbols (dlopen(NULL): the C library CPython is linked with), no library loaded
        mallopt = ctypes.pythonapi.mallopt
    except AttributeError:  # a C library without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the block, then as it was (a block inside another leaves it off)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
