"""An output directory belongs to one run (issue 11: nothing lost or mixed): ``ascend-doctor dump`` and
``profile`` refuse a second run into a directory another run is writing or already wrote (``--append`` for
dump), and a single-process profile keeps every step, even when killed."""

import json
import os
import subprocess
import sys

import pytest
from polling import wait_for

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# trains STEPS steps, then says it is running (file argv[1]) and waits for argv[2] to exist; AFTER more steps
GATED = """
import os, sys, time, torch
STEPS, AFTER = int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
m = torch.nn.Linear(4, 3)
opt = torch.optim.SGD(m.parameters(), lr=0.1)
def step():
    m(torch.ones(2, 4)).pow(2).mean().backward(); opt.step(); opt.zero_grad()
for _ in range(STEPS):
    step()
open(sys.argv[1], "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.02)
for _ in range(AFTER):
    step()
"""


def cli_args(*args):
    return [sys.executable, "-m", "ascend_tools.cli", *[str(a) for a in args]]


def cli(*args, timeout=180):
    return subprocess.run(cli_args(*args), cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def gated(tmp_path, steps, after):
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    started, release = tmp_path / "started", tmp_path / "release"
    return [sys.executable, script, started, release, steps, after], started, release


def records_by_step(rank_dir):
    out = {}
    for name in sorted(os.listdir(rank_dir)):
        if name.startswith("step"):
            with open(os.path.join(rank_dir, name, "records.jsonl"), encoding="utf-8") as f:
                out[int(name[4:])] = [json.loads(line)["id"] for line in f]
    return out


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("ascend-doctor: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


# --- dump -----------------------------------------------------------------------------------------------


def test_second_dump_refused_then_append(tmp_path):
    out = tmp_path / "d"
    cmd, _, release = gated(tmp_path, 2, 0)
    release.write_text("")
    assert cli("dump", "-o", out, "--", *cmd).returncode == 0
    first = records_by_step(out / "rank0")

    line = one_error_line(cli("dump", "-o", out, "--", *cmd))
    assert line == (
        f"ascend-doctor: error: {out} already holds a dump (steps 0-1 of rank0): give another -o DIR, "
        "delete it, or --append to add this run's records to it"
    )
    assert records_by_step(out / "rank0") == first  # nothing written

    proc = cli("dump", "-o", out, "--append", "--", *cmd)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stderr.splitlines()[0]
        == f"ascend-doctor dump: appending to {out}: steps 0-1 of rank0 already there"
    )
    from ascend_tools.precision.store import OurDump

    dump = OurDump.find(str(out))
    assert dump is not None and dump.steps() == [0, 1]
    for step in (0, 1):  # readable: every line parses, the second run's after the first's
        assert [r.id for r in dump.records(step)] == first[step] * 2

    # tensors are files named by record id, which every run numbers from 0: appending them would overwrite
    line = one_error_line(cli("dump", "-o", out, "--append", "--mode", "tensor", "--", *cmd))
    assert "--append --mode tensor" in line and "overwrite" in line
    assert not list((out / "rank0").rglob("*.npy"))


# --- profile --------------------------------------------------------------------------------------------


LONG = """
import torch
m = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(m.parameters(), lr=0.01)
for _ in range(3000):
    m(torch.ones(1, 2)).sum().backward(); opt.step(); opt.zero_grad()
"""


def test_single_process_keeps_every_step(tmp_path):
    script = tmp_path / "long.py"
    script.write_text(LONG)
    out = tmp_path / "p"
    proc = cli("profile", "-o", out, "--hang-timeout", "0", "--", sys.executable, script, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with open(out / "rank0" / "meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    with open(out / "rank0" / "events.jsonl", encoding="utf-8") as f:
        steps = [e["step"] for e in map(json.loads, f) if e["k"] == "step"]
    assert meta["steps"] == 3000
    missing = 3000 - len(set(steps))
    assert missing == 0 or meta["dropped"] >= missing, (missing, meta["dropped"])
    assert steps == list(range(3000))  # and here none is missing


def test_direct_api_second_writer_of_a_rank_dir_records_nothing(tmp_path, caplog):
    import torch

    from ascend_tools.precision import capture
    from ascend_tools.profiling.profiler import Profiler

    first, second = (capture(str(tmp_path / "d"), background=False) for _ in range(2))
    with first, second:  # the second into the rank dir the first writes
        torch.ones(2) + 1
    assert sum(first.counts().values()) >= 1 and second.counts() == {}
    assert "records nothing" in caplog.text
    ids = records_by_step(tmp_path / "d" / "rank0")
    assert all(got == list(range(len(got))) for got in ids.values())

    a = Profiler(str(tmp_path / "p"), memory=False, comm=False)
    b = Profiler(str(tmp_path / "p"), memory=False, comm=False)
    a.start()
    b.start()
    assert a._name(0, 1, watch=False) and not b._name(0, 1, watch=False)
    a.close()
    b.close()
    assert b.recorder is None and a.recorder is not None


# --- profile --append ------------------------------------------------------------------------------------

TRAIN_AS_RANK = """
import os, sys, torch
os.environ["RANK"], os.environ["WORLD_SIZE"] = sys.argv[1], "2"  # one node's rank of a two-node job
m = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(m.parameters(), lr=0.01)
for _ in range(int(sys.argv[2])):
    m(torch.ones(1, 2)).sum().backward(); opt.step(); opt.zero_grad()
"""


def profile_meta(rank_dir):
    with open(rank_dir / "meta.json", encoding="utf-8") as f:
        return json.load(f)


def test_profile_append_adds_ranks_and_never_rewrites_one(tmp_path):
    script = tmp_path / "rank.py"
    script.write_text(TRAIN_AS_RANK)
    out = tmp_path / "p"
    run = ("profile", "-o", out, "--hang-timeout", "0")
    assert cli(*run, "--", sys.executable, script, 0, 2).returncode == 0
    first = profile_meta(out / "rank0")
    events0 = (out / "rank0" / "events.jsonl").read_bytes()

    proc = cli(*run, "--append", "--", sys.executable, script, 1, 3)  # the other node
    assert proc.returncode == 0, proc.stderr
    line = proc.stderr.splitlines()[0]
    assert line.startswith("ascend-doctor profile: appending run ") and line.endswith(
        f"to {out}: rank0 of run {first['run_id']} already there (a rank already there is not written again)"
    )
    assert "rank0:" not in proc.stderr and "rank1: " in proc.stderr  # its summary: its own rank only
    second = profile_meta(out / "rank1")
    assert second["steps"] == 3 and second["run_id"] != first["run_id"]

    # the same rank again: refused inside the rank (one warning), rank0 untouched
    proc = cli(*run, "--append", "--", sys.executable, script, 0, 5)
    assert proc.returncode == 0, proc.stderr
    assert "rank0 of run" in proc.stderr.splitlines()[0] and "rank1 of run" in proc.stderr.splitlines()[0]
    assert "holds run " in proc.stderr and "records nothing" in proc.stderr
    assert profile_meta(out / "rank0") == first
    assert (out / "rank0" / "events.jsonl").read_bytes() == events0
    assert sorted(os.listdir(out)) == ["rank0", "rank1"]


def test_profile_append_runs_together_but_not_beside_a_plain_run(tmp_path):
    out = tmp_path / "p"
    cmd, started, release = gated(tmp_path, 0, 1)
    first = subprocess.Popen(
        cli_args("profile", "-o", out, "--hang-timeout", "0", "--append", "--", *cmd),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(started.exists, 60)
        plain = cli("profile", "-o", out, "--", sys.executable, "-c", "pass")
        other_node = cli("profile", "-o", out, "--append", "--", sys.executable, "-c", "pass")
    finally:
        release.write_text("")
        _, err = first.communicate(timeout=120)
    assert "another run is writing there" in one_error_line(plain)
    assert other_node.returncode == 0, other_node.stderr  # a second appender (another node) may run
    assert first.returncode == 0, err


# --- shadow --------------------------------------------------------------------------------------------------


def test_second_shadow_into_records_dir_refused(tmp_path):
    cmd, _, release = gated(tmp_path, 1, 0)
    release.write_text("")
    rec = tmp_path / "rec"
    assert cli("shadow", "--records", rec, "--", *cmd).returncode == 0
    before = {n: (rec / n).read_bytes() for n in os.listdir(rec)}
    assert "rank0.jsonl" in before
    line = one_error_line(cli("shadow", "--records", rec, "--", *cmd))
    assert line == (
        f"ascend-doctor: error: {rec} already holds shadow records (rank 0): give another --records DIR or "
        "delete it first, so that two runs are never mixed"
    )
    assert {n: (rec / n).read_bytes() for n in os.listdir(rec)} == before
