"""The reading workers hand their columns over through files (``handoff``): merged as ``np.concatenate`` of
the recoded columns would be, whatever mix of files and held parts and dtypes, and the files are gone
after the read, also when it fails or is interrupted; `analyze` runs without numpy's huge-page advice (pages)."""

import os
import tempfile

import numpy as np
import pytest

from ascend_tools.profiling import analyze, synthetic
from ascend_tools.profiling.analyze import handoff, pages, reader
from ascend_tools.profiling.analyze.model import Steps
from ascend_tools.profiling.analyze.reader import read_profile


def _steps(rank, n, dtype):
    r = np.random.default_rng(rank)
    return Steps(np.full(n, rank, dtype), r.integers(-5, 1 << 40, n), r.random(n), r.random(n))


def test_merge_is_the_concatenation_of_the_recoded_parts(tmp_path):
    parts = [_steps(0, 7, np.int32), _steps(1, 0, np.int32), _steps(2, 5, np.int64), _steps(3, 3, np.int32)]
    table = np.arange(10, 20, dtype=np.int64)  # rank codes recoded: r -> 10 + r
    want = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ("rank", "step", "t0", "t1")}
    want["rank"] = table[want["rank"]]
    held = [handoff.spill(p, str(tmp_path), f"p{i}") if i % 2 else p for i, p in enumerate(parts)]
    assert [type(h).__name__ for h in held] == ["Steps", "Spilled", "Steps", "Spilled"]
    got = handoff.merge(Steps, [(h, {"rank": table}) for h in held], Steps.concat([]))
    for name, values in want.items():
        assert getattr(got, name).dtype == values.dtype, name
        np.testing.assert_array_equal(getattr(got, name), values, err_msg=name)


@pytest.fixture
def profile(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "CHUNK", 2)  # 6 ranks: 3 chunks over 2 workers
    spills = tmp_path / "tmp"
    spills.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spills))
    synthetic.write_profile(str(tmp_path / "prof"), ranks=6, collectives=20, per_step=5)
    return str(tmp_path / "prof"), spills


def test_workers_hand_over_through_files_that_are_removed(profile, monkeypatch):
    path, spills = profile
    seen = []
    merge = handoff.merge

    def watched(cls, parts, empty):
        (spill,) = os.listdir(spills)
        seen.append(([type(p).__name__ for p, _ in parts], spill, sorted(os.listdir(spills / spill))))
        return merge(cls, parts, empty)

    monkeypatch.setattr(handoff, "merge", watched)
    read_profile(path, jobs=2)
    (kinds, spill, files), _ = seen
    assert kinds == ["Spilled"] * 3 and spill.startswith("ascend-analyze-")
    assert files == sorted(f"{k}.{r}" for k in ("colls", "steps") for r in (0, 2, 4))
    assert os.listdir(spills) == []


@pytest.mark.parametrize("where", ["worker", "merge"])
def test_the_files_are_removed_when_the_read_fails(profile, monkeypatch, where):
    path, spills = profile

    def fail(*args, **kwargs):
        raise KeyboardInterrupt if where == "merge" else RuntimeError("boom")

    if where == "worker":  # a rank of the last chunk, once the first chunks are written
        read_rank = reader._Reader.read_rank
        monkeypatch.setattr(
            reader._Reader,
            "read_rank",
            lambda self, rank, rdir: fail() if rank == 5 else read_rank(self, rank, rdir),
        )
    else:
        monkeypatch.setattr(handoff, "merge", fail)
    with pytest.raises(KeyboardInterrupt if where == "merge" else RuntimeError):
        read_profile(path, jobs=2)
    assert os.listdir(spills) == []


def test_analyze_runs_without_numpy_huge_pages_and_restores_them(tmp_path, monkeypatch):
    switch = pages._switch()
    assert switch is not None  # numpy >= 1.20 here
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=10, per_step=5)
    seen = []

    def current():
        before = switch(False)
        switch(before)
        return before

    def read(*args):
        seen.append(current())
        return read_profile(*args)

    monkeypatch.setattr(analyze, "read_profile", read)
    before = switch(True)
    try:
        analyze.run(str(tmp_path))
        assert seen == [False] and current() is True
    finally:
        switch(before)


def test_spawned_workers_hand_over_the_same_columns(profile, monkeypatch):
    path, spills = profile
    serial = read_profile(path, jobs=1)
    get_context = reader.multiprocessing.get_context
    monkeypatch.setattr(reader.multiprocessing, "get_context", lambda method=None: get_context("spawn"))
    spawned = read_profile(path, jobs=2)
    for name in serial.colls.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(spawned.colls, name), getattr(serial.colls, name), err_msg=name)
    for name in serial.steps.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(spawned.steps, name), getattr(serial.steps, name), err_msg=name)
    assert os.listdir(spills) == []
