"""The fault suite of issue 11, run as one: a full disk (a real 64 KiB tmpfs), a read-only output directory,
``kill -9`` mid-run and two concurrent runs into one output directory for ``dump``, ``profile`` and ``shadow``.
Each asserts that nothing was lost or mixed, that the user's training ran on (fail open), and that a refused
run says so in one line (exit 2). The mounts need root: elsewhere those tests are skipped, saying so.

Kill tests that live beside the code they test are part of the suite too (``tools/hostile_tally.py`` runs
them with this file): ``tests/test_killed_before_first_step.py`` (profile and dump killed before their first
step) and ``tests/precision/test_capture.py::test_killed_writer_leaves_readable_prefix`` (a capture killed
mid-step keeps a readable prefix of its records)."""

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from polling import wait_for
from test_atomic import files, leftovers
from test_run_ownership import ROOT, cli, cli_args, gated, one_error_line, records_by_step

from ascend_tools import atomic
from ascend_tools.precision import capture, store

pytestmark = pytest.mark.slow


# --- disk full -------------------------------------------------------------------------------------------


def fill(mnt):
    """Fill the file system of ``mnt`` to the last byte."""
    with open(mnt / "filler", "wb", buffering=0) as f:
        for chunk in (4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"x" * chunk)


@contextlib.contextmanager
def mounted(path, options):
    """A tmpfs mounted at ``path`` (needs root and mount; the test is skipped, saying why, elsewhere)."""
    path.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = (
            exc.stderr.decode(errors="replace").strip()
            if isinstance(exc, subprocess.CalledProcessError)
            else exc
        )
        pytest.skip(f"cannot mount a tmpfs here (needs root): {detail}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture
def tmpfs(tmp_path):
    """A 64 KiB tmpfs, to fill up."""
    with mounted(tmp_path / "mnt", "size=64k") as mnt:
        yield mnt


def test_a_full_disk_leaves_no_partial_files(tmpfs):
    full_tmpfs = tmpfs
    writer = store.RankWriter(str(full_tmpfs), 0)
    writer.write_meta({"rank": 0, "old": True})
    writer.close()
    fill(full_tmpfs)
    before = files(full_tmpfs / "rank0")
    writer = store.RankWriter(str(full_tmpfs), 0)
    with pytest.raises(OSError) as err:
        writer.write_meta({"rank": 0, "big": "x" * 100_000})
    assert err.value.errno == errno.ENOSPC
    with pytest.raises(OSError):
        writer.save_tensor(0, "t", torch.randn(64, 64))
    with pytest.raises(OSError):
        atomic.write_json(str(full_tmpfs / "rank0" / "oom.json"), {"big": "x" * 100_000})
    writer.close()
    assert leftovers(full_tmpfs) == []
    assert files(full_tmpfs / "rank0") == before  # (an empty step0/tensors may be left)
    assert json.loads((full_tmpfs / "rank0" / "meta.json").read_text()) == {"rank": 0, "old": True}


def test_a_capture_fails_open_when_the_disk_fills_up(tmpfs):
    """The disk fills up after the capture started: its tensors, records and final meta.json fail, the
    user's code does not; no temporary file and no partial tensor file is left."""
    full_tmpfs = tmpfs
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with torch.no_grad(), capture(str(full_tmpfs), mode="tensor") as cap:
        fill(full_tmpfs)
        c = torch.mm(a, b)
    assert torch.equal(c, a @ b)
    assert cap.internal_errors >= 1
    assert leftovers(full_tmpfs) == []
    tensors = full_tmpfs / "rank0" / "step0" / "tensors"
    for npy in tensors.iterdir() if tensors.exists() else []:  # a tensor file there is a whole one
        assert np.load(npy).shape == (64, 64)


# --- read-only output directory ------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["dump", "profile", "shadow"])
@pytest.mark.parametrize("below", [False, True])
def test_a_read_only_output_directory_is_refused_in_one_line(tmp_path, verb, below):
    """``-o`` (shadow: ``--records``) on a read-only file system, the directory itself or one to make below
    it: exit 2, one line naming it, the command never runs (before: the run went ahead and its writers failed
    open: exit 0 and no records)."""
    ran = tmp_path / "ran"
    cmd = [sys.executable, "-c", f"open({str(ran)!r}, 'w').close(); import torch; torch.ones(2) + 1"]
    with mounted(tmp_path / "ro", "ro,size=64k") as ro:
        out = ro / "d" if below else ro
        option = "--records" if verb == "shadow" else "-o"
        line = one_error_line(cli(verb, option, out, "--", *cmd))
    assert line.startswith(f"ascend-doctor: error: {out}: cannot ")
    assert ("Read-only file system" in line) if below else ("read-only or no permission" in line)
    assert not ran.exists()


# --- kill -9 ---------------------------------------------------------------------------------------------


KILLED = """
import json, os, signal, sys, time, torch
m = torch.nn.Linear(2, 2)
opt = torch.optim.SGD(m.parameters(), lr=0.01)
for _ in range(10):
    m(torch.ones(1, 2)).sum().backward(); opt.step(); opt.zero_grad()
events = os.path.join(sys.argv[1], "rank0", "events.jsonl")
def flushed():  # step 9 written by the profile's writer thread (it flushes every 0.5 s)
    try:
        with open(events) as f:
            return any(json.loads(l).get("step") == 9 for l in f if l.endswith("\\n"))
    except OSError:
        return False
deadline = time.monotonic() + 20
while not flushed() and time.monotonic() < deadline:
    time.sleep(0.05)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_single_process_killed_keeps_flushed_steps(tmp_path):
    script = tmp_path / "killed.py"
    script.write_text(KILLED)
    out = tmp_path / "p"
    proc = cli("profile", "-o", out, "--hang-timeout", "0", "--", sys.executable, script, out, timeout=120)
    assert proc.returncode == 128 + signal.SIGKILL, proc.stderr
    assert sorted(os.listdir(out)) == ["rank0"]
    with open(out / "rank0" / "events.jsonl", encoding="utf-8") as f:
        steps = [e["step"] for e in map(json.loads, f) if e["k"] == "step"]
    assert steps == list(range(10))
    assert "rank0: cut short" in proc.stderr


# --- two concurrent runs into one output directory -------------------------------------------------------


def test_concurrent_dump_refused_and_first_intact(tmp_path):
    out = tmp_path / "d"
    cmd, started, release = gated(tmp_path, 2, 0)
    first = subprocess.Popen(
        cli_args("dump", "-o", out, "--", *cmd), cwd=ROOT, stderr=subprocess.PIPE, text=True
    )
    try:
        assert wait_for(started.exists, 60)
        # the same training into the same directory, while the first runs (it does not wait: release exists
        # for it only once the first is done, so give it a gate that is already open)
        open_gate = tmp_path / "open"
        open_gate.write_text("")
        second_cmd = [sys.executable, cmd[1], tmp_path / "started2", open_gate, 2, 0]
        second = cli("dump", "-o", out, "--", *second_cmd)
    finally:
        release.write_text("")
        _, err = first.communicate(timeout=120)
    line = one_error_line(second)
    assert str(out) in line and "another run is writing there" in line and f"pid {first.pid}" in line
    assert first.returncode == 0, err
    ids = records_by_step(out / "rank0")
    assert sorted(ids) == [0, 1]
    for step, got in ids.items():  # each record once: 0..n-1, no second copy appended by the refused run
        assert got == list(range(len(got))) and got, (step, got)
    assert not (tmp_path / "started2").exists()  # the refused command never ran


def test_concurrent_profile_refused_and_first_intact(tmp_path):
    out = tmp_path / "p"
    cmd, started, release = gated(tmp_path, 0, 3)  # no step yet while the second starts: no rank dir either
    first = subprocess.Popen(
        cli_args("profile", "-o", out, "--hang-timeout", "0", "--", *cmd),
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(started.exists, 60)
        second = cli("profile", "-o", out, "--", sys.executable, "-c", "import torch")
    finally:
        release.write_text("")
        _, err = first.communicate(timeout=120)
    line = one_error_line(second)
    assert str(out) in line and "another run is writing there" in line
    assert first.returncode == 0, err
    assert sorted(os.listdir(out)) == ["rank0"]
    with open(out / "rank0" / "meta.json", encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["steps"] == 3 and meta["dropped"] == 0
    with open(out / "rank0" / "events.jsonl", encoding="utf-8") as f:
        steps = [e["step"] for e in map(json.loads, f) if e["k"] == "step"]
    assert steps == [0, 1, 2]

    line = one_error_line(cli("profile", "-o", out, "--", sys.executable, "-c", "import torch"))
    assert line == (
        f"ascend-doctor: error: {out} already holds a profile (rank0): give another -o DIR or delete it "
        "first, so that two runs are never mixed"
    )


def test_concurrent_shadow_refused_and_first_intact(tmp_path):
    rec = tmp_path / "rec"
    cmd, started, release = gated(tmp_path, 1, 1)
    first = subprocess.Popen(
        cli_args("shadow", "--records", rec, "-f", "json", "--", *cmd),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(started.exists, 60)
        open_gate = tmp_path / "open"
        open_gate.write_text("")
        second = cli(
            "shadow", "--records", rec, "--", sys.executable, cmd[1], tmp_path / "s2", open_gate, 1, 0
        )
    finally:
        release.write_text("")
        out, err = first.communicate(timeout=180)
    line = one_error_line(second)
    assert str(rec) in line and "another run is writing there" in line and f"pid {first.pid}" in line
    assert "--records DIR" in line
    assert not (tmp_path / "s2").exists()  # the refused command never ran
    assert first.returncode == 0, err
    with open(rec / "rank0.jsonl", encoding="utf-8") as f:
        ids = [(r["step"], r["id"]) for r in map(json.loads, f)]
    assert len(set(ids)) == len(ids) and ids  # each record once: nothing of a second run
    assert json.loads(out[out.index("{") :])["summary"]["compared"] == len(ids)
