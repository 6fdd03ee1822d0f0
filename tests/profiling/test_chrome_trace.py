"""The Chrome/Perfetto trace: valid structure, one process per rank, collectives with args, aligned times."""

import json

import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import run
from ascend_tools.profiling.chrome_trace import write_trace


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    path = tmp_path_factory.mktemp("prof")
    truth = synthetic.write_profile(
        str(path), ranks=3, collectives=30, per_step=5, clock_skew=2.0, hang_at=25, hang_rank=2, p2p=True
    )
    a = run(str(path))
    out = path / "trace.json"
    write_trace(a, str(out))
    with open(out, encoding="utf-8") as f:
        return truth, a, json.load(f)


def test_structure(trace):
    _, _, doc = trace
    events = doc["traceEvents"]
    assert events and doc["displayTimeUnit"] == "ms"
    for e in events:
        assert {"ph", "pid", "ts"} <= set(e), e
        if e["ph"] == "X":
            assert e["dur"] >= 0 and "name" in e and "tid" in e
        if e["ph"] == "C":
            assert all(isinstance(v, float) for v in e["args"].values())
    names = {e["pid"]: e["args"]["name"] for e in events if e["name"] == "process_name"}
    assert names == {0: "rank 0 (node-0)", 1: "rank 1 (node-0)", 2: "rank 2 (node-0)"}


def test_collectives_steps_memory_and_the_hang(trace):
    truth, a, doc = trace
    events = doc["traceEvents"]
    colls = [e for e in events if e.get("cat") == "collective"]
    assert len(colls) == len(a.profile.colls)
    assert {"op", "group", "seq", "bytes", "busbw_GBps"} <= set(colls[0]["args"])
    assert sum(1 for e in events if e.get("cat") == "step") == len(a.profile.steps)
    assert sum(1 for e in events if e["ph"] == "C") > 0
    hung = [e for e in events if e.get("cat") == "hang"]
    assert sorted(e["pid"] for e in hung) == [0, 1] and all(e["args"]["seq"] == truth.hang_seq for e in hung)


def test_times_are_on_one_clock(trace):
    """Clocks 2 s apart on disk; in the trace, an all_reduce ends at the same instant on every rank."""
    _, _, doc = trace
    ends = {}
    for e in doc["traceEvents"]:
        if e.get("cat") == "collective" and e["args"]["op"] == "all_reduce":
            ends.setdefault(e["args"]["seq"], []).append(e["ts"] + e["dur"])
    assert ends and all(max(v) - min(v) < 200 for v in ends.values())  # microseconds
    assert min(e["ts"] for e in doc["traceEvents"] if e["ph"] != "M") >= 0


def test_unwritable_path_is_an_input_error(trace, tmp_path):
    from ascend_tools.errors import InputError

    _, a, _ = trace
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError):
        write_trace(a, str(blocker / "trace.json"))
