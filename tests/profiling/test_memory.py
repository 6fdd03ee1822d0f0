"""Memory sampler: records, per-step peaks against hand-computed values from allocator counters in the
real CUDA ``memory_stats()`` key set, USS cadence, bounds, the thread, fail open."""

import itertools
import logging
import threading
import time
import types

import pytest
from gloo_ranks import events
from polling import wait_for

from ascend_tools import backend
from ascend_tools.profiling import memory
from ascend_tools.profiling.memory import MemorySampler, fragmentation
from ascend_tools.profiling.profiler import profile

# torch.cuda.memory_stats()'s keys as its docstring lists them (torch/cuda/memory.py)
CORE = (
    "allocated",
    "allocated_bytes",
    "segment",
    "reserved_bytes",
    "active",
    "active_bytes",
    "inactive_split",
    "inactive_split_bytes",
    "requested_bytes",
)
EVENTS = (
    "num_alloc_retries",
    "num_ooms",
    "num_sync_all_streams",
    "num_device_alloc",
    "num_device_free",
    "max_split_size",
)


def cuda_stats(allocated, reserved, active, peak_allocated, peak_reserved, retries=0, ooms=0):
    raw = {
        f"{stat}.{pool}.{metric}": 0
        for stat, pool, metric in itertools.product(
            CORE, ("all", "large_pool", "small_pool"), ("current", "peak", "allocated", "freed")
        )
    }
    raw.update({k: 0 for k in EVENTS})
    raw.update(
        {
            f"oversize_{k}.{m}": 0
            for k in ("allocations", "segments")
            for m in ("current", "peak", "allocated", "freed")
        }
    )
    raw.update(
        {
            "allocated_bytes.all.current": allocated,
            "reserved_bytes.all.current": reserved,
            "active_bytes.all.current": active,
            "allocated_bytes.all.peak": peak_allocated,
            "reserved_bytes.all.peak": peak_reserved,
            "num_alloc_retries": retries,
            "num_ooms": ooms,
            # the large pool holds all of it: a value the sampler must not pick up instead
            "allocated_bytes.large_pool.current": allocated,
            "segment.all.current": 7,
        }
    )
    return raw


@pytest.fixture
def allocator(monkeypatch):
    """A fake ``torch.cuda`` whose ``memory_stats()`` returns ``allocator.now`` (set by the test)."""
    fake = types.SimpleNamespace(now={})
    fake.memory_stats = lambda dev=None: dict(fake.now)
    monkeypatch.setattr(backend, "accelerator_module", lambda: fake)
    return fake


def test_fragmentation():
    assert fragmentation({"allocated_bytes": 300, "reserved_bytes": 400}) == 0.25
    assert fragmentation({"allocated_bytes": 0, "reserved_bytes": 0}) is None
    assert fragmentation({}) is None


def test_samples_and_step_peaks(allocator):
    allocator.now = cuda_stats(100, 200, 100, 150, 200)  # before the profiler: the baseline
    emitted, step = [], [0]
    s = MemorySampler(emitted.append, 0.0, lambda: step[0], uss_interval=3600)  # every step end reads

    allocator.now = cuda_stats(300, 400, 320, 300, 400)
    first = s.sample()
    assert first["k"] == "mem" and first["step"] == 0 and first["host"]["rss"] > 0
    assert first["dev"] == {
        "allocated_bytes": 300,
        "reserved_bytes": 400,
        "active_bytes": 320,
        "peak_allocated_bytes": 300,
        "peak_reserved_bytes": 400,
        "num_alloc_retries": 0,
        "num_ooms": 0,
        "fragmentation": 0.25,
    }
    allocator.now = cuda_stats(250, 500, 260, 350, 500)
    s.sample()
    # between samples the allocator peaked at 900 and retried twice; the step ends lower
    allocator.now = cuda_stats(120, 450, 130, 900, 500, retries=2)
    peaks0 = s.on_step(0)
    assert peaks0 == {
        "step": 0,
        "samples": 3,
        "allocated_bytes": 900,
        "reserved_bytes": 500,
        "active_bytes": 320,
        "fragmentation": 0.5,
        "peak_allocated_bytes": 900,
        "peak_reserved_bytes": 500,
        "num_alloc_retries": 2,
        "num_ooms": 0,
        "rss": peaks0["rss"],
        "uss": peaks0["uss"],
    }
    assert peaks0["uss"] > 0 and peaks0["rss"] > 0

    step[0] = 1
    allocator.now = cuda_stats(100, 450, 110, 900, 500, retries=2)  # peaks unchanged: not reached in step 1
    peaks1 = s.on_step(1)
    assert {
        k: peaks1[k]
        for k in ("allocated_bytes", "reserved_bytes", "peak_allocated_bytes", "num_alloc_retries", "samples")
    } == {
        "allocated_bytes": 100,
        "reserved_bytes": 450,
        "peak_allocated_bytes": 900,
        "num_alloc_retries": 0,
        "samples": 1,
    }
    assert set(s.step_peaks()) == {0, 1} and s.step_peaks()[0] == peaks0
    # only on_step emits on the caller's thread; sample() returns its record to the thread that emits it
    assert [(r["step"], r["dev"]["allocated_bytes"]) for r in emitted] == [(0, 120), (1, 100)]


def test_cpu_has_no_device_keys():
    s = MemorySampler(lambda r: None, 1.0, lambda: 0)
    rec = s.sample()
    assert rec["dev"] == {}
    assert set(s.on_step(0)) == {"step", "samples", "rss", "uss"}


def test_uss_is_read_rarely_and_never_on_step(monkeypatch):
    calls = []

    def slow_full_info():
        calls.append(1)
        time.sleep(0.03)  # a 30 ms smaps read: the next one waits at least 100× that
        return {"rss": 1, "vms": 1, "uss": 5}

    monkeypatch.setattr(backend, "host_memory", slow_full_info)
    emitted = []
    s = MemorySampler(emitted.append, 0.0, lambda: 0, uss_interval=0.0)
    assert s.sample()["host"]["uss"] == 5
    assert "uss" not in s.sample()["host"]
    s._uss_due = 0.0  # due again, but a step boundary runs on the training thread
    s.on_step(0)
    assert "uss" not in emitted[-1]["host"]
    assert len(calls) == 1


def test_step_ends_read_only_when_due(allocator, monkeypatch):
    """A step end on the training thread reads neither the allocator nor /proc until ``interval`` has
    passed since the last step end that read; a counter change over several steps is not given to one."""
    reads = []
    host = MemorySampler._host
    monkeypatch.setattr(
        MemorySampler, "_host", lambda self, t, uss: reads.append("host") or host(self, t, uss)
    )
    allocator.now = cuda_stats(100, 200, 100, 150, 200)
    emitted = []
    s = MemorySampler(emitted.append, 0.05, lambda: 0, uss_interval=3600)
    fake_stats = allocator.memory_stats
    allocator.memory_stats = lambda dev=None: reads.append("dev") or fake_stats(dev)
    allocator.now = cuda_stats(100, 200, 100, 900, 200, retries=1)  # peaked and retried in steps 0..9
    for step in range(10):
        assert s.on_step(step) == {"step": step, "samples": 0}
    assert reads == [] and emitted == []
    time.sleep(0.06)
    peaks = s.on_step(10)  # due: reads, but the change happened somewhere in steps 0..10
    assert reads == ["dev", "host"] and len(emitted) == 1
    assert (
        peaks["peak_allocated_bytes"] == 900
        and "allocated_bytes" in peaks
        and peaks["allocated_bytes"] == 100
    )
    assert "num_alloc_retries" not in peaks
    allocator.now = cuda_stats(100, 200, 100, 950, 200, retries=3)
    time.sleep(0.06)
    peaks = s.on_step(11)  # the previous step's end read: the change is this step's
    assert peaks["allocated_bytes"] == 950 and peaks["num_alloc_retries"] == 2


def test_profile_samples_memory_on_the_interval_not_every_step(tmp_path):
    """100 steps of 5 ms with a 0.1 s interval: host memory in the profile at the interval (the sampler
    thread, plus a step end at most once per interval), not once per step."""
    out = str(tmp_path / "prof")
    t0 = time.perf_counter()
    with profile(out, comm=False, hang_timeout=None, memory_interval=0.1) as prof:
        for _ in range(100):
            time.sleep(0.005)
            prof.step()
    elapsed = time.perf_counter() - t0
    mems = events(out, 0, "mem")
    assert len(events(out, 0, "step")) == 100
    assert 1 <= len(mems) <= 2 * (elapsed / 0.1 + 1) < 100
    assert all(r["host"]["rss"] > 0 for r in mems)


def test_bounded():
    s = MemorySampler(lambda r: None, 1.0, lambda: 0, uss_interval=3600, keep_steps=3)
    for step in range(5):
        s.on_step(step)
    assert list(s.step_peaks()) == [2, 3, 4]
    last = [s.sample() for _ in range(memory.RECENT_SAMPLES + 8)][-1]
    assert len(s.recent()) == memory.RECENT_SAMPLES and s.recent()[-1] is last


def test_thread_samples_until_stopped():
    emitted = []
    s = MemorySampler(emitted.append, 0.01, lambda: 4)
    s.start()
    wait_for(lambda: len(emitted) >= 3)
    thread = s._thread
    s.stop()
    assert thread.daemon and not thread.is_alive()
    n = len(emitted)
    assert n >= 3 and all(r["k"] == "mem" and r["step"] == 4 for r in emitted)
    assert [r["t"] for r in emitted] == sorted(r["t"] for r in emitted)
    assert "uss" in emitted[0]["host"] and "uss" not in emitted[1]["host"]  # default: at most every 10 s
    time.sleep(0.05)
    assert len(emitted) == n


def test_thread_fails_open(caplog):
    def broken(rec):
        raise OSError("disk full")

    s = MemorySampler(broken, 0.01, lambda: 0)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        s.start()
        wait_for(lambda: s.internal_errors >= 3)
        s.stop()
    assert s.internal_errors >= 3
    assert sum("memory sampler: internal error" in r.getMessage() for r in caplog.records) == 1
    assert not any(t.name == "ascend-doctor-memory" for t in threading.enumerate())
