"""Hang verdict: the collective in flight, the ranks that never entered it, where every rank stands."""

import json

import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import run
from ascend_tools.profiling.analyze.report import build
from ascend_tools.report.output import render


@pytest.mark.parametrize("ranks,missing", [(2, 1), (4, 0), (4, 3)])
def test_the_missing_rank_and_the_collective_are_named(tmp_path, ranks, missing):
    truth = synthetic.write_profile(
        str(tmp_path), ranks=ranks, collectives=60, per_step=6, hang_at=40, hang_rank=missing, clock_skew=0.2
    )
    a = run(str(tmp_path))
    assert len(a.hangs) == 1
    hang = a.hangs[0]
    event = truth.events[truth.hang_seq]  # world group only: seq = index
    assert (hang["group"], hang["seq"], hang["op"], hang["bytes"]) == (
        "0",
        truth.hang_seq,
        event.op,
        event.nbytes,
    )
    assert hang["missing_ranks"] == [missing]
    assert hang["waiting_ranks"] == [r for r in range(ranks) if r != missing]
    assert hang["mismatched_ranks"] == []
    pos = a.positions[missing]
    assert pos["last_collective"]["seq"] == truth.hang_seq - 1 and pos["inflight"] == []
    assert pos["hang_trigger"] == "peer" and pos["cut_short"]
    waiting = a.positions[(missing + 1) % ranks]
    assert waiting["inflight"][0]["seq"] == truth.hang_seq and waiting["hang_trigger"] == "self"


def test_a_rank_in_flight_on_another_op_is_mismatched(tmp_path):
    truth = synthetic.write_profile(
        str(tmp_path), ranks=3, collectives=30, per_step=5, hang_at=20, hang_rank=2
    )
    path = tmp_path / "rank1" / "hang" / "hang.json"
    doc = json.loads(path.read_text())
    other = "broadcast" if doc["inflight"][0]["op"] != "broadcast" else "all_reduce"
    doc["inflight"][0].update(op=other, api=other, bytes=4096)
    path.write_text(json.dumps(doc))
    hang = run(str(tmp_path)).hangs[0]
    assert hang["seq"] == truth.hang_seq and hang["missing_ranks"] == [2]
    assert hang["mismatched_ranks"] == [1]
    assert hang["mismatched_calls"] == [{"rank": 1, "op": other, "api": other, "bytes": 4096}]
    text = render(build(run(str(tmp_path))), "table")
    assert f"at that seq rank 1 called {other} ({other}, 4,096 B) instead" in " ".join(text.split())
    doc["inflight"][0]["bytes"] = "4 KB"  # what a hostile or broken hang report may hold
    path.write_text(json.dumps(doc))
    text = render(build(run(str(tmp_path))), "table")
    assert f"rank 1 called {other} ({other}, ? B) instead" in " ".join(text.split())


def test_hang_json_is_read_defensively(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=3, collectives=30, per_step=5, hang_at=20, hang_rank=2)
    (tmp_path / "rank0" / "hang" / "hang.json").write_text(
        json.dumps({"rank": 0, "trigger": "self", "inflight": [{"gid": 7}, "junk"], "recent": None})
    )
    (tmp_path / "rank1" / "hang" / "hang.json").write_text("[1, 2")
    a = run(str(tmp_path))
    assert a.hangs == []  # no well-formed in-flight entry left
    assert any(p.rank == 1 and "unreadable" in p.message for p in a.profile.problems)


def test_no_hang_no_verdict(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=12, per_step=6)
    a = run(str(tmp_path))
    assert a.hangs == [] and not any(p["cut_short"] for p in a.positions.values())


def test_cut_short_rank(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=3, collectives=40, per_step=5, cut_short=2)
    a = run(str(tmp_path))
    assert [r for r, p in a.positions.items() if p["cut_short"]] == [2]
    assert a.positions[2]["last_collective"]["seq"] == 40 // 2 - 1
    assert a.positions[0]["last_collective"]["seq"] == 39
