"""compare's per-pair work on a thread pool (precision/pairpool.py) gives the report the one-thread run gives:
the same rows, in the same order, on the demo's dumps (ours, with a fault) and on real msprobe 26.2 dumps."""

import os
import threading

import pytest
import torch

from ascend_tools.precision import compare as C
from ascend_tools.precision import demo_run, pairpool

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "msprobe")


def _report(monkeypatch, target, reference, workers):
    """compare_dumps with ``workers`` threads; also the set of threads that compared pairs."""
    monkeypatch.setattr(pairpool, "default_workers", lambda: workers)
    threads = set()
    original = C.diagnose.Diagnoser.compare_pair

    def compare_pair(self, pair):
        threads.add(threading.get_ident())
        return original(self, pair)

    monkeypatch.setattr(C.diagnose.Diagnoser, "compare_pair", compare_pair)
    report = C.compare_dumps(target, reference)
    monkeypatch.setattr(C.diagnose.Diagnoser, "compare_pair", original)
    return report.data, threads


@pytest.fixture(scope="module")
def demo_dumps(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    reference, target = str(out / "fp32"), str(out / "bf16")
    with torch.random.fork_rng():  # train_step seeds the global generator: leave other tests' draws alone
        demo_run.train_step(reference, torch.float32)
        demo_run.train_step(target, torch.bfloat16, demo_run.FAULT)
    return target, reference


@pytest.mark.parametrize("which", ["demo", "msprobe"])
def test_pooled_compare_gives_the_rows_of_the_one_thread_compare(monkeypatch, demo_dumps, which):
    if which == "demo":
        target, reference = demo_dumps
    else:
        target, reference = os.path.join(DATA, "bf16_tensor"), os.path.join(DATA, "fp32_tensor")
    serial, serial_threads = _report(monkeypatch, target, reference, 1)
    pooled, pooled_threads = _report(monkeypatch, target, reference, 3)
    assert serial_threads == {threading.get_ident()}
    assert threading.get_ident() not in pooled_threads  # the pool did the work
    assert len(pooled["pairs"]) > 50
    assert pooled["pairs"] == serial["pairs"]
    assert pooled["culprits"] == serial["culprits"]
    assert pooled["summary"] == serial["summary"]
    if which == "demo":  # the fault is still the one culprit
        assert [c["name"] for c in pooled["culprits"]] == ["aten::mm#forward#12"]


def test_map_in_order_keeps_the_order_runs_kernels_single_threaded_and_restores_threads():
    before = torch.get_num_threads()
    seen = []

    def job(x):
        seen.append(torch.get_num_threads())
        return x * x

    ticks = []
    assert pairpool.map_in_order(job, list(range(50)), 4, ticks.append) == [x * x for x in range(50)]
    assert set(seen) == {1} and len(ticks) == 50
    assert torch.get_num_threads() == before


def test_many_items_go_to_the_threads_in_chunks_and_come_back_in_order():
    # a stats-only pair is ~50 us of Python: handed over one by one, the hand-off cost three times the work
    items = list(range(10_000))
    threads = set()

    def job(x):
        threads.add(threading.get_ident())
        return -x

    ticks = []
    assert pairpool.map_in_order(job, items, 2, ticks.append) == [-x for x in items]
    assert sum(ticks) == len(items)
    assert len(ticks) == -(
        -len(items) // pairpool.MAX_CHUNK
    )  # chunks of MAX_CHUNK: 157 hand-offs, not 10,000
    assert threading.get_ident() not in threads
    # few items (replays, seconds each) go one by one, so no thread waits behind another's long chunk
    assert pairpool.chunk_size(15, 1) == 1 and pairpool.chunk_size(1341, 2) == 10


def test_a_failing_job_raises_and_restores_threads():
    before = torch.get_num_threads()

    def job(x):
        if x == 7:
            raise ValueError("job 7")
        return x

    with pytest.raises(ValueError, match="job 7"):
        pairpool.map_in_order(job, list(range(20)), 2)
    assert torch.get_num_threads() == before


def test_default_workers_is_bounded():
    assert 1 <= pairpool.default_workers() <= pairpool.MAX_WORKERS
