"""``analyze`` reads ranks in worker processes with the same result as one process; a directory that is not
a profile is refused in one line."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.errors import InputError
from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import reader, run
from ascend_tools.profiling.analyze.reader import read_profile


def test_workers_read_the_same_profile_as_one_process(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "CHUNK", 3)  # 10 ranks: 4 chunks over 2 workers
    truth = synthetic.write_profile(str(tmp_path), ranks=10, collectives=40, per_step=5, tp=2, p2p=True)
    with open(tmp_path / "rank7" / "events.jsonl", "a", encoding="utf-8") as f:
        f.write("not json\n")  # a problem in a chunk a worker reads
    serial = read_profile(str(tmp_path), jobs=1)
    parallel = read_profile(str(tmp_path), jobs=2)
    assert parallel.gids == serial.gids and parallel.ops == serial.ops and parallel.groups == serial.groups
    for name in serial.colls.__dataclass_fields__:
        np.testing.assert_array_equal(
            getattr(parallel.colls, name), getattr(serial.colls, name), err_msg=name
        )
    for name in serial.steps.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(parallel.steps, name), getattr(serial.steps, name))
    assert parallel.problems == serial.problems
    assert any("corrupt line" in p.message and p.rank == 7 for p in parallel.problems)
    assert [i.meta for i in parallel.ranks.values()] == [i.meta for i in serial.ranks.values()]
    # against the simulation, not only against the serial reader
    sent = {
        op: int(parallel.colls.bytes[parallel.colls.op == code].sum()) for code, op in enumerate(parallel.ops)
    }
    assert sent == truth.bytes_by_op


def test_the_analyses_do_not_depend_on_the_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "CHUNK", 2)
    synthetic.write_profile(str(tmp_path), ranks=6, collectives=60, per_step=6, straggler=4, delay=0.01)
    out = {}
    for jobs in (1, 2):
        a = run(str(tmp_path), jobs=jobs)
        parts = (a.collectives, a.collectives_by_group, a.p2p, a.slow, a.hangs, a.positions, a.memory)
        out[jobs] = json.dumps(parts, default=repr, sort_keys=True)  # NaN as NaN: equal text
    assert out[1] == out[2]


def _precision_dump(path):
    (path / "rank0").mkdir(parents=True)
    (path / "rank0" / "meta.json").write_text(json.dumps({"schema": "ascend-doctor/dump/1", "rank": 0}))
    (path / "rank0" / "records.jsonl").write_text("{}\n")


@pytest.mark.parametrize(
    "make", ["precision dump", "empty", "random", "empty rank dir", "rank dirs of other JSON lines"]
)
def test_a_directory_that_is_not_a_profile_is_refused_in_one_line(tmp_path, make):
    path = tmp_path / "d"
    path.mkdir()
    if make == "precision dump":
        _precision_dump(path)
    elif make == "random":
        (path / "notes.txt").write_text("hello")
        (path / "sub").mkdir()
    elif make == "empty rank dir":
        (path / "rank0").mkdir()
    elif make == "rank dirs of other JSON lines":  # another tool's per-rank logs named as ours
        for r in range(2):
            (path / f"rank{r}").mkdir()
            (path / f"rank{r}" / "events.jsonl").write_text('{"event": "loss", "value": 2.3}\n')
    with pytest.raises(InputError, match="not a profile"):
        read_profile(str(path))
    result = CliRunner().invoke(main, ["analyze", str(path)])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "not a profile" in lines[0] and "Traceback" not in result.output


def test_the_precision_dump_is_named_as_such(tmp_path):
    _precision_dump(tmp_path)
    with pytest.raises(InputError, match="'ascend-doctor/dump/1'"):
        read_profile(str(tmp_path))


def test_a_profile_whose_meta_json_was_lost_is_still_a_profile(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=10, per_step=5)
    (tmp_path / "rank0" / "meta.json").unlink()
    (tmp_path / "rank1" / "meta.json").write_text("{corrupt")
    profile = read_profile(str(tmp_path))
    assert len(profile.colls) == 20
