"""The reader's columns and the analyses built on them give the report they gave before they were made
faster (issue 14, Scale), on a small profile with a slow rank, a hang, tp groups, send/recv, async
collectives, a corrupt line and an unknown record kind."""

import json
import os

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import analyze
from ascend_tools.profiling.analyze.arrays import count_distinct, unique_ints
from ascend_tools.profiling.analyze.reader import is_rank_list, read_profile
from ascend_tools.report.output import render

#: the JSON report of write_case's profile as analyze wrote it at 08143b7 (before issue 14's Scale
#: changes), its path written PROF
GOLDEN = os.path.join(os.path.dirname(__file__), "..", "data", "profiling", "columnar_case_report.json")


def write_case(path: str) -> None:
    """6 ranks, rank 4 slow, rank 2 stopping short of #50 (a hang), tp groups of 2, a send/recv ring; every
    all_gather async, some with a device time, one with a peer; a corrupt line, an unknown kind."""
    synthetic.write_profile(
        path,
        ranks=6,
        collectives=60,
        per_step=6,
        straggler=4,
        delay=0.01,
        hang_at=50,
        hang_rank=2,
        tp=2,
        p2p=True,
    )
    for rank in range(6):
        events = os.path.join(path, f"rank{rank}", "events.jsonl")
        with open(events, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for i, line in enumerate(lines):
            rec = json.loads(line) if line.startswith('{"k": "coll"') else None
            if rec is not None and rec["op"] == "all_gather":
                rec["async"] = True
                rec["dev_ms"] = 0.25 * (rec["seq"] % 3) or None
                lines[i] = json.dumps(rec)
        lines.insert(7, '{"k": "coll", "gid": "0", "seq": ')
        lines.insert(9, '{"k": "later-kind"}')
        with open(events, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))


def _report(path: str) -> str:
    return render(analyze(path), "json").replace(json.dumps(path)[1:-1], "PROF")


def test_the_report_is_the_one_the_json_reader_gave(tmp_path):
    """A change to the report on purpose: ``UPDATE_GOLDEN=1 pytest -k json_reader_gave`` rewrites it."""
    write_case(str(tmp_path))
    if os.environ.get("UPDATE_GOLDEN"):
        with open(GOLDEN, "w", encoding="utf-8") as f:
            f.write(_report(str(tmp_path)))
    with open(GOLDEN, encoding="utf-8") as f:
        golden = f.read()
    assert _report(str(tmp_path)) == golden


def test_a_malformed_group_or_coll_record_is_skipped_as_before(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=10, per_step=5)
    with open(tmp_path / "rank1" / "events.jsonl", "a", encoding="utf-8") as f:
        for bad in ([0, True], [0, -1], [0, 1 << 17], "01", [0.0, 1]):
            f.write(json.dumps({"k": "group", "gid": "g", "ranks": bad}) + "\n")
        f.write(
            json.dumps({"k": "coll", "gid": ["0"], "seq": 99, "op": "all_reduce", "t0": 1.0, "t1": 2.0})
            + "\n"
        )
        f.write(json.dumps({"k": "coll", "gid": "0", "seq": 98, "op": {}, "t0": 1.0, "t1": 2.0}) + "\n")
    profile = read_profile(str(tmp_path))
    messages = [p.message for p in profile.problems if p.rank == 1]
    assert messages.count("malformed group record skipped") == 5
    assert "2 malformed coll record(s) skipped (need gid, seq, op, t0 <= t1)" in messages
    assert "g" not in profile.groups and len(profile.colls) == 20


def test_a_rank_list_is_ints_in_range():
    assert is_rank_list([]) and is_rank_list([0, 5, (1 << 17) - 1])
    for bad in ([0, True], [-1], [1 << 17], [0, 1.0], ["0"], (0, 1), None):
        assert not is_rank_list(bad)


@given(st.lists(st.integers(-(1 << 40), 1 << 40), max_size=50), st.integers(0, 3))
def test_unique_ints_and_count_distinct_are_np_unique(values, spread):
    """Both paths: the table (values close together) and the sort (spread wide)."""
    a = np.array([v >> (10 * (3 - spread)) for v in values], dtype=np.int64)
    uniq, inverse = unique_ints(a)
    want, want_inverse = np.unique(a, return_inverse=True)
    np.testing.assert_array_equal(uniq, want)
    np.testing.assert_array_equal(inverse, want_inverse)
    assert count_distinct(a) == len(want)
