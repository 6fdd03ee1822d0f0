"""A single-process ``profile`` or ``dump`` killed with SIGKILL before its first optimizer step keeps what it
flushed (issue 11, finding 8): the profiler writes its pending records as a provisional ``rank0`` after
``PROVISIONAL_AFTER`` seconds or ``PROVISIONAL_RECORDS`` records, the capture flushes a record that comes
``FLUSH_AFTER`` seconds after its last flush. Before, the profile left no rank directory at all and the dump
only ``meta.json`` (its records waited for 256 more or a step). A launcher that starts ranks with
``torch.multiprocessing`` gives a provisional ``rank0`` back to its rank 0."""

import json
import os
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# computes without an optimizer step (at most argv[3] rounds of two ops, fewer than the 256 records after
# which a capture flushes anyway) until the tool flushed argv[2] lines to the file argv[1], then is killed
WAITS_THEN_DIES = """
import os, signal, sys, time, torch
x = torch.ones(8, 8)
flushed = sys.argv[1]
for _ in range(int(sys.argv[3])):
    x = torch.tanh(x @ x)  # an op a dump records (the profiler's memory sampler runs meanwhile)
    try:
        with open(flushed) as f:
            if f.read().count("\\n") >= int(sys.argv[2]):
                break
    except OSError:
        pass
    time.sleep(0.1)
os.kill(os.getpid(), signal.SIGKILL)
"""


def cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )


def lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_profile_killed_before_its_first_step_keeps_a_rank_dir(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text(WAITS_THEN_DIES)
    out = tmp_path / "p"
    events = out / "rank0" / "events.jsonl"
    proc = cli("profile", "-o", out, "--hang-timeout", "0", "--", sys.executable, script, events, 2, 600)
    assert proc.returncode == 128 + signal.SIGKILL, proc.stderr
    assert sorted(os.listdir(out)) == ["rank0"]
    got = lines(events)
    assert len(got) >= 2 and {e["k"] for e in got} == {"mem"}  # memory samples, no step ended
    meta = json.loads((out / "rank0" / "meta.json").read_text())
    assert meta["rank"] == 0 and "closed_at" not in meta  # cut short
    assert "rank0: cut short" in proc.stderr


def test_dump_killed_before_its_first_step_keeps_its_records(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text(WAITS_THEN_DIES)
    out = tmp_path / "d"
    records = out / "rank0" / "step0" / "records.jsonl"
    proc = cli("dump", "-o", out, "--", sys.executable, script, records, 3, 60)
    assert proc.returncode == 128 + signal.SIGKILL, proc.stderr
    got = lines(records)
    assert len(got) >= 3 and [r["id"] for r in got] == list(range(len(got)))
    assert {r["name"] for r in got} >= {"aten::mm", "aten::tanh"}
    assert "what it recorded before that is in" in proc.stderr


SPAWNS_LATE = """
import os, socket, sys, time, torch, torch.distributed as dist, torch.multiprocessing as mp

def rank(r, n, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=r, world_size=n)
    t = torch.ones(4)
    dist.all_reduce(t)
    dist.destroy_process_group()

if __name__ == "__main__":
    rank0 = os.path.join(sys.argv[1], "rank0", "meta.json")
    deadline = time.monotonic() + 60
    while not os.path.exists(rank0) and time.monotonic() < deadline:  # the provisional rank0 is there
        time.sleep(0.05)
    print("provisional", os.path.exists(rank0), flush=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(rank, args=(2, port), nprocs=2, join=True)
"""


def test_a_spawn_launcher_gives_its_provisional_rank0_to_its_rank0(tmp_path):
    script = tmp_path / "spawns.py"
    script.write_text(SPAWNS_LATE)
    out = tmp_path / "p"
    proc = cli("profile", "-o", out, "--hang-timeout", "0", "--", sys.executable, script, out)
    assert proc.returncode == 0, proc.stderr
    assert "provisional True" in proc.stdout
    assert sorted(os.listdir(out)) == ["rank0", "rank1"]
    for r in (0, 1):
        meta = json.loads((out / f"rank{r}" / "meta.json").read_text())
        assert (meta["rank"], meta["world_size"]) == (r, 2)  # written by the spawned rank, not the launcher
        assert any(e["k"] == "coll" for e in lines(out / f"rank{r}" / "events.jsonl"))


def test_a_provisional_rank0_moves_to_the_rank_learnt_later(tmp_path, monkeypatch):
    from ascend_tools.profiling.profiler import Profiler

    monkeypatch.delenv("RANK", raising=False)
    prof = Profiler(str(tmp_path), memory=False, comm=False, hang_timeout=None)
    prof.start()
    try:
        prof.emit({"k": "mem", "t": 0.0})
        assert prof.rank_dir is None  # too early and too few to guess
        prof._step_t0 -= 10  # PROVISIONAL_AFTER has passed
        prof.emit({"k": "mem", "t": 1.0})
        assert prof.rank_dir == str(tmp_path / "rank0")
        assert (tmp_path / "rank0" / "meta.json").exists()
        monkeypatch.setenv("RANK", "3")
        monkeypatch.setenv("WORLD_SIZE", "4")
        prof._name_from_dist()
    finally:
        prof.close()
    assert sorted(os.listdir(tmp_path)) == ["rank3"]
    meta = json.loads((tmp_path / "rank3" / "meta.json").read_text())
    assert (meta["rank"], meta["world_size"]) == (3, 4)
