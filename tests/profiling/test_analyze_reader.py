"""Reading a profile directory: every damaged or missing file becomes a problem, never a crash."""

import json
import os

import pytest

from ascend_tools.errors import InputError
from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze.reader import read_profile


def coll_lines(path):
    with open(path, encoding="utf-8") as f:
        return [line for line in f if line.endswith("\n") and '"k": "coll"' in line]


def problems(profile, rank=None):
    return [p.message for p in profile.problems if rank is None or p.rank == rank]


def test_every_record_is_read(tmp_path):
    truth = synthetic.write_profile(str(tmp_path), ranks=3, collectives=30, per_step=5, p2p=True)
    profile = read_profile(str(tmp_path))
    for r in range(3):
        assert (profile.colls.rank == r).sum() == len(coll_lines(tmp_path / f"rank{r}" / "events.jsonl"))
    assert profile.world_size == 3 and not profile.problems
    assert profile.groups == {"0": [0, 1, 2]}
    assert int(profile.colls.bytes.sum()) == sum(truth.bytes_by_op.values())
    assert len(profile.steps) == 3 * 6
    assert all(info.closed for info in profile.ranks.values())


def test_damaged_files_become_problems(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=5, collectives=20, per_step=5)
    ev1 = tmp_path / "rank1" / "events.jsonl"
    lines = ev1.read_text().splitlines(keepends=True)
    lines.insert(5, "{not json\n")
    lines.insert(6, json.dumps({"k": "telepathy", "x": 1}) + "\n")
    lines.insert(7, json.dumps({"k": "coll", "gid": "0", "op": "all_reduce"}) + "\n")  # no seq, no times
    ev1.write_text("".join(lines) + '{"k": "coll", "gid"')  # and a last line cut short
    (tmp_path / "rank2" / "meta.json").write_text("{ broken")
    os.remove(tmp_path / "rank3" / "meta.json")
    for name in os.listdir(tmp_path / "rank4"):
        os.remove(tmp_path / "rank4" / name)
    os.rmdir(tmp_path / "rank4")

    profile = read_profile(str(tmp_path))
    assert profile.world_size == 5  # from the other ranks' meta.json
    text = " | ".join(problems(profile, 1))
    assert "1 corrupt line" in text and "unknown kind: 'telepathy' × 1" in text
    assert "1 malformed coll record" in text and "last line has no newline" in text
    assert (profile.colls.rank == 1).sum() == (profile.colls.rank == 0).sum()  # the good records all read
    assert any("unreadable" in m for m in problems(profile, 2))
    assert any("missing" in m for m in problems(profile, 3))
    assert not profile.ranks[4].present and any("no directory for rank 4" in m for m in problems(profile, 4))
    assert (profile.colls.rank == 2).sum() > 0  # a corrupt meta.json does not lose the events


def test_a_rank_without_closed_at_is_cut_short(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=20, per_step=5, cut_short=1)
    profile = read_profile(str(tmp_path))
    assert profile.ranks[0].closed and not profile.ranks[1].closed
    assert any("cut short" in m for m in problems(profile, 1))
    assert (profile.colls.rank == 1).sum() == len(coll_lines(tmp_path / "rank1" / "events.jsonl"))


def test_progress_is_reported_per_rank(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=3, collectives=5, per_step=5)
    seen = []
    read_profile(str(tmp_path), progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_not_a_profile_is_an_input_error(tmp_path, make):
    path = tmp_path / "prof"
    if make == "empty":
        path.mkdir()
    elif make == "file":
        path.write_text("x")
    with pytest.raises(InputError):
        read_profile(str(path))


def test_implausible_ranks_and_sizes_are_problems_not_crashes(tmp_path):
    """A group whose members are not ranks, a hang entry naming non-ranks, an absurd world_size: each is
    reported and left out (the CLI neither crashes nor builds a million missing ranks)."""
    from ascend_tools.profiling.analyze import run

    synthetic.write_profile(str(tmp_path), ranks=2, collectives=10, per_step=5)
    with open(tmp_path / "rank1" / "events.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps({"k": "group", "gid": "9", "ranks": ["a", 1]}) + "\n")
    meta = json.loads((tmp_path / "rank1" / "meta.json").read_text())
    (tmp_path / "rank1" / "meta.json").write_text(json.dumps(dict(meta, world_size=10**12)))
    (tmp_path / "rank0" / "hang").mkdir()
    (tmp_path / "rank0" / "hang" / "hang.json").write_text(
        json.dumps(
            {
                "trigger": "self",
                "inflight": [{"gid": "0", "seq": 3, "op": "all_reduce", "ranks": ["x"], "t0": 1.0}],
            }
        )
    )
    profile = read_profile(str(tmp_path))
    assert profile.world_size == 2 and "9" not in profile.groups
    assert any("malformed group record" in m for m in problems(profile, 1))
    assert any("world_size 1000000000000 ignored" in m for m in problems(profile, 1))
    assert profile.ranks[0].hang["inflight"][0]["ranks"] is None
    assert run(str(tmp_path)).hangs[0]["op"] == "all_reduce"  # the analysis still runs to the end
