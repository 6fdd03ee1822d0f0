"""heap.retain_freed_memory: a freed large buffer is reused, not handed back to the kernel and faulted in again."""

import gc
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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


def test_a_compare_runs_with_the_collector_paused_and_restores_it(tmp_path, monkeypatch):
    # a compare holds every record of both dumps: each full collection walks them all, again and again while
    # they are read (a 104k-record step: 6 s to read paused, 11-15 s not)
    from ascend_tools.errors import InputError
    from ascend_tools.precision import compare, demo_run

    with torch.random.fork_rng():
        demo_run.train_step(str(tmp_path / "a"), torch.float32)
    runs, at_the_end = [], []
    build_report = compare.build_report

    def noted(*args, **kwargs):  # the compare's last step: the records read, every pair measured
        at_the_end.append((gc.isenabled(), len(runs)))
        return build_report(*args, **kwargs)

    monkeypatch.setattr(compare, "build_report", noted)

    def count(phase, info):
        if phase == "start":
            runs.append(info["generation"])

    gc.callbacks.append(count)
    try:
        report = compare.compare_dumps(str(tmp_path / "a"), str(tmp_path / "a"))
        after = gc.isenabled()
        with pytest.raises(InputError):  # a missing dump
            compare.compare_dumps(str(tmp_path / "none"), str(tmp_path / "a"))
        after_error = gc.isenabled()
    finally:
        gc.callbacks.remove(count)
    assert report.data["culprits"] == [] and report.data["summary"]["pairs"] > 100
    assert at_the_end == [(False, 0)] and after and after_error
    gc.disable()
    try:
        compare.compare_dumps(str(tmp_path / "a"), str(tmp_path / "a"))
        assert not gc.isenabled()  # off before: left off
    finally:
        gc.enable()
