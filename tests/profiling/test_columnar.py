"""The columnar collectives files (``colls.{i}.npz``): the reader takes the records they hold and the coll lines
of ``events.jsonl`` past them, every record once, whatever the profiler managed to write before it stopped;
a damaged or stale file is reported and the JSON read instead."""

import json
import os
import shutil
import zipfile

import numpy as np
import pytest
from columnar_files import cover

from ascend_tools.profiling import columnar, synthetic
from ascend_tools.profiling.analyze import reader
from ascend_tools.profiling.analyze.reader import read_profile
from ascend_tools.profiling.recorder import RankRecorder


def assert_same_read(got, want):
    """Every column, group, name and problem of two reads of a profile."""
    assert got.gids == want.gids and got.ops == want.ops and got.groups == want.groups
    for name in want.colls.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(got.colls, name), getattr(want.colls, name), err_msg=name)
    assert [(p.rank, p.message) for p in got.problems] == [(p.rank, p.message) for p in want.problems]
    assert [i.records for i in got.ranks.values()] == [i.records for i in want.ranks.values()]


@pytest.fixture
def loads(monkeypatch):
    """The columnar files the reader loaded."""
    loaded = []
    original = columnar.load

    def load(path, limit):
        part = original(path, limit)
        loaded.append(os.path.basename(path))
        return part

    monkeypatch.setattr(reader.columnar, "load", load)
    return loaded


def json_only(tmp_path, **kw):
    synthetic.write_profile(str(tmp_path), columnar_files=False, **kw)
    return read_profile(str(tmp_path))


def lines_of(rank_dir):
    with open(os.path.join(rank_dir, "events.jsonl"), "rb") as f:
        return f.read().split(b"\n")[:-1]


@pytest.mark.parametrize("covered", ["none", "half", "all", "two files"])
def test_a_rank_whose_files_cover_k_of_n_records_gives_n_once(tmp_path, loads, covered):
    want = json_only(tmp_path, ranks=3, collectives=100, per_step=5, tp=3, p2p=True)
    rdir = str(tmp_path / "rank1")
    n = len(lines_of(rdir))
    coll_lines = [i + 1 for i, line in enumerate(lines_of(rdir)) if line.startswith(columnar.COLL_PREFIX)]
    if covered == "two files":
        k = cover(rdir, 40) + cover(rdir, 90, "colls.1.npz", first=40)
    else:
        k = cover(rdir, {"none": 3, "half": n // 2, "all": n + 1}[covered])
    assert k == {"none": 0, "half": sum(i < n // 2 for i in coll_lines), "all": len(coll_lines)}.get(
        covered, sum(i < 90 for i in coll_lines)
    )
    got = read_profile(str(tmp_path))
    assert loads == (["colls.0.npz", "colls.1.npz"] if covered == "two files" else ["colls.0.npz"])
    assert_same_read(got, want)
    assert (
        int((got.colls.rank == 1).sum()) == len(coll_lines) == 100 + 20 + 2 * 20
    )  # world, tp, send and recv


def coll(seq, gid="0", op="all_reduce", t0=100.0, step=0):
    return {
        "k": "coll",
        "gid": gid,
        "seq": seq,
        "op": op,
        "api": op,
        "dtype": "float32",
        "bytes": 4096 * (seq + 1),
        "n": 2,
        "peer": None,
        "t0": t0 + seq,
        "t1": t0 + seq + 0.5,
        "dev_ms": None if seq % 2 else 0.25,
        "async": bool(seq % 3 == 0),
        "step": step,
        "sid": 0,
        "via": None,
    }


def test_the_recorder_writes_files_that_cover_what_it_wrote_killed_or_closed(tmp_path, monkeypatch, loads):
    """A file once columnar.ROWS coll records (5 here) are held, and at close; killed before closing, the
    records past the last file come from events.jsonl."""
    monkeypatch.setattr(columnar, "ROWS", 5)
    rdir = str(tmp_path / "prof" / "rank0")
    rec = RankRecorder(rdir, {"rank": 0, "world_size": 1})
    rec.emit({"k": "group", "gid": "0", "ranks": [0, 1], "backend": "gloo"})
    rec.emit({"k": "stack", "sid": 0, "frames": ["train.py:1 in <module>"]})
    for seq in range(10):
        rec.emit(coll(seq, op="all_gather" if seq == 7 else "all_reduce", step=seq // 3))
        if seq % 3 == 2:
            rec.emit({"k": "step", "step": seq // 3, "t0": 100.0 + seq - 3, "t1": 100.0 + seq})
            rec.flush()
    rec.flush()  # killed here: 10 coll records written, the first 6 (up to step 1's end) in a file
    assert sorted(f for f in os.listdir(rdir) if f.endswith(".npz")) == ["colls.0.npz"]
    json_dir = tmp_path / "json"
    shutil.copytree(tmp_path / "prof", json_dir, ignore=shutil.ignore_patterns("*.npz"))
    got = read_profile(str(tmp_path / "prof"))
    assert loads == ["colls.0.npz"]
    assert_same_read(got, read_profile(str(json_dir)))
    np.testing.assert_array_equal(got.colls.seq, np.arange(10))
    assert got.ops == ["all_reduce", "all_gather"] and got.colls.op.tolist() == [0] * 7 + [1] + [0] * 2
    np.testing.assert_array_equal(got.colls.dev_ms, np.where(np.arange(10) % 2, np.nan, 0.25))
    np.testing.assert_array_equal(got.colls.bytes, 4096 * np.arange(1, 11))
    np.testing.assert_array_equal(got.colls.is_async, np.arange(10) % 3 == 0)

    rec.emit(coll(10, step=3))
    rec.close()
    assert sorted(f for f in os.listdir(rdir) if f.endswith(".npz")) == ["colls.0.npz", "colls.1.npz"]
    part = columnar.load(os.path.join(rdir, "colls.1.npz"), 1 << 20)
    assert (part.first, part.end) == (11, 17) and part.cols["seq"].tolist() == [6, 7, 8, 9, 10]
    shutil.copy(os.path.join(rdir, "events.jsonl"), json_dir / "rank0" / "events.jsonl")
    shutil.copy(os.path.join(rdir, "meta.json"), json_dir / "rank0" / "meta.json")
    assert_same_read(read_profile(str(tmp_path / "prof")), read_profile(str(json_dir)))


def _save(path, **members):
    arrays = dict(np.load(path, allow_pickle=False))
    arrays.update(members)
    np.savez(path, **arrays)


def _compressed(path):
    arrays = dict(np.load(path, allow_pickle=False))
    np.savez_compressed(path, **arrays)


def _pickled(path):
    arrays = dict(np.load(path, allow_pickle=False))
    arrays["gids"] = np.array(["0", {"x": 1}], dtype=object)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _inserted_line(rank_dir):
    path = os.path.join(rank_dir, "events.jsonl")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    lines.insert(5, json.dumps({"k": "coll", "gid": "0", "op": "all_reduce"}))  # pushes a coll line out
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def _garbage(path):
    with open(path, "wb") as f:
        f.write(b"not a zip file")


DAMAGE = {
    "not a zip": lambda d, p: _garbage(p),
    "compressed": lambda d, p: _compressed(p),
    "pickled names": lambda d, p: _pickled(p),
    "t0 as ints": lambda d, p: _save(p, t0=np.zeros(60, np.int64)),
    "a short column": lambda d, p: _save(p, seq=np.zeros(3)),
    "an op code past the names": lambda d, p: _save(p, op=np.full(60, 9, np.int32)),
    "an extra member": lambda d, p: _save(p, extra=np.zeros(1)),
    "larger than events.jsonl": lambda d, p: _save(p, dev_ms=np.zeros(1 << 16)),
    "lines not from 1": lambda d, p: _save(p, lines=np.array([2, 10, 500])),
    "a line inserted in events.jsonl": lambda d, p: _inserted_line(d),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_or_stale_file_is_reported_and_the_json_read(tmp_path, damage):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=60, per_step=5)
    rdir = str(tmp_path / "rank1")
    DAMAGE[damage](rdir, os.path.join(rdir, "colls.0.npz"))
    json_dir = tmp_path / "json"
    shutil.copytree(tmp_path, json_dir, ignore=shutil.ignore_patterns("*.npz", "json"))
    got, want = read_profile(str(tmp_path)), read_profile(str(json_dir))
    extra = [p for p in got.problems if p not in want.problems]
    assert len(extra) == 1 and extra[0].rank == 1 and extra[0].severity == "warning", extra
    got.problems.remove(extra[0])
    assert_same_read(got, want)
    assert int((got.colls.rank == 1).sum()) == 60


def test_the_files_hold_no_pickle_and_only_stored_members(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=1, collectives=30, per_step=5)
    with zipfile.ZipFile(tmp_path / "rank0" / "colls.0.npz") as z:
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    with np.load(tmp_path / "rank0" / "colls.0.npz", allow_pickle=False) as npz:
        assert {npz[k].dtype.kind for k in npz.files} <= {"i", "f", "b", "U"}
