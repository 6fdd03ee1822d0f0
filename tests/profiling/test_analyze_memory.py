"""Memory per rank: peaks, per-step peaks, fragmentation, thinning that keeps peaks, OOM summaries."""

import json

import numpy as np
import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import memory, run


def test_peaks_match_the_simulation(tmp_path):
    truth = synthetic.write_profile(str(tmp_path), ranks=3, collectives=60, per_step=6)
    a = run(str(tmp_path))
    assert a.memory["primary"] == "dev.allocated_bytes"
    peaks = {r["rank"]: r["peak"]["dev.allocated_bytes"] for r in a.memory["ranks"]}
    assert peaks == {r: float(truth.peak_allocated[r]) for r in range(3)}
    # the saw-tooth peaks at step 4 of every 5; the highest rank holds every step's maximum
    assert all(r["peak_step"] == 4 for r in a.memory["ranks"])
    assert [s["rank"] for s in a.memory["steps"]] == [2] * 10
    assert [s["step"] for s in a.memory["steps"]] == list(range(10))
    # reserved is 2 GiB throughout; the first sample with it is step 0's
    rank0 = a.memory["ranks"][0]
    assert rank0["fragmentation"] == pytest.approx(1 - synthetic.GIB / (2 * synthetic.GIB))


def test_thinning_keeps_the_peak():
    n = 10 * memory.MAX_POINTS + 7
    t = np.arange(n, dtype=float)
    values = [{"dev.allocated_bytes": float(i % 97), "host.rss": 1.0} for i in range(n)]
    values[1234]["dev.allocated_bytes"] = 1e9
    mem = memory.rank_memory(t, [i // 100 for i in range(n)], values)
    assert len(mem.t) == memory.MAX_POINTS and mem.samples == n
    assert mem.series["dev.allocated_bytes"].max() == 1e9 == mem.peak["dev.allocated_bytes"]
    steps, peaks = mem.step_peaks
    assert steps.tolist() == list(range(n // 100 + 1)) and peaks[12] == 1e9


def test_flatten_keeps_numbers_only():
    flat = memory.flatten(
        {"dev": {"allocated_bytes": 5, "name": "x", "ok": True}, "host": {"rss": 2.5}, "x": 1}
    )
    assert flat == {"dev.allocated_bytes": 5.0, "host.rss": 2.5}


def test_oom_files_are_summarised(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=10, per_step=5)
    (tmp_path / "rank1" / "oom.json").write_text(
        json.dumps(
            {
                "step": 7,
                "error": "CUDA out of memory. Tried to allocate 2.00 GiB",
                "allocated_bytes": 123,
                "memory_stats": {"num_ooms": 1},
                "top_blocks": [{"size": 1}],
            }
        )
    )
    (tmp_path / "rank0" / "oom.json").write_text("not json")
    a = run(str(tmp_path))
    ooms = {o["rank"]: o for o in a.memory["ooms"]}
    assert ooms[1]["step"] == 7 and ooms[1]["error"].startswith("CUDA out of memory")
    assert ooms[1]["facts"] == {"allocated_bytes": 123}
    assert ooms[1]["sections"] == ["memory_stats", "top_blocks"]
    assert ooms[0]["error"] == "oom.json could not be read"  # unreadable, but reported
