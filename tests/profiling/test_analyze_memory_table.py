"""analyze's memory table and step count (issue 15): one host RSS column, no column empty in every row, and
a closing barrier after the training loop is not a step."""

import json

import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import analyze, memory

GIB = 2**30


def rank_rows(samples_per_rank):
    mems = {
        rank: memory.rank_memory(list(range(len(values))), [0] * len(values), values)
        for rank, values in samples_per_rank.items()
    }
    summary = memory.summarize(mems, {})
    return summary["ranks"], summary["primary"]


def test_cpu_run_has_one_rss_column_and_no_fragmentation():
    rows, primary = rank_rows({r: [{"host.rss": 1.0 * GIB}, {"host.rss": (1.5 + r) * GIB}] for r in range(2)})
    headers, cells = memory.peak_columns(rows, primary)
    assert headers == ["rank", "samples", "peak host.rss GiB", "peak step"]
    assert cells == [[0, 2, 1.5, 0], [1, 2, 2.5, 0]]


def test_device_run_keeps_host_rss_and_fragmentation():
    sample = {"dev.allocated_bytes": 1.0 * GIB, "dev.reserved_bytes": 4.0 * GIB, "host.rss": 3.0 * GIB}
    rows, primary = rank_rows({0: [sample]})
    headers, cells = memory.peak_columns(rows, primary)
    assert headers == [
        "rank",
        "samples",
        "peak dev.allocated_bytes GiB",
        "peak step",
        "peak host.rss GiB",
        "fragmentation",
    ]
    assert cells == [[0, 1, 1.0, 0, 3.0, 0.75]]  # 1 - allocated / reserved


@pytest.fixture
def closing_barrier(tmp_path):
    """4 steps of 5 collectives on 2 ranks, then one barrier after the loop (the step counter at 4)."""
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=20, per_step=5)
    for rank in range(2):
        events = tmp_path / f"rank{rank}" / "events.jsonl"
        records = [json.loads(line) for line in events.read_text().splitlines()]
        last = [r for r in records if r.get("k") == "coll"][-1]
        end = max(r["t1"] for r in records if r.get("k") in ("coll", "step"))
        barrier = dict(last, op="barrier", api="barrier", bytes=0, dtype=None, seq=last["seq"] + 1, step=4)
        barrier.update(t0=end + 0.001, t1=end + 0.002)
        with events.open("a") as f:
            f.write(json.dumps(barrier) + "\n")
    return tmp_path


def test_closing_barrier_is_not_a_step(closing_barrier):
    report = analyze(str(closing_barrier))
    assert dict(report.summary)["steps"].startswith("4 (steps 0–3), median ")
    (table,) = next(s for s in report.sections if s.title == "Where each rank stands").tables
    col = table.columns.index
    for row in table.rows:
        assert row[col("last step")] == 3
        assert row[col("last collective")] == "barrier #20 (group 0, after step 3)"
