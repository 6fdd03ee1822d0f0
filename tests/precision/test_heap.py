"""heap.retain_freed_memory: a freed large buffer is reused, not handed back to the kernel and faulted in again."""

import subprocess
import sys
from pathlib import Path

import pytest

# three 16 MB buffers (above glibc's starting mmap threshold) written in full and freed, ten times over, as a
# compare's metrics do: by default glibc gives the freed blocks back to the kernel (the top of the heap past
# its trim threshold) and every round faults fresh pages in again
_CHILD = """
import resource, sys
import numpy as np
from ascend_tools.precision.heap import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
np.ones(2 * 2**20).sum()  # numpy's own first-use allocations out of the count
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    bufs = [np.ones(2 * 2**20) for _ in range(3)]  # 16 MB of float64 each
    del bufs
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], cwd=root, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_buffers_are_reused_instead_of_faulted_in_again():
    default, retained = _faults("default"), _faults("retain")
    assert retained * 4 < default, (retained, default)  # the first round's pages, then reused
