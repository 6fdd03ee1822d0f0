"""Hang watchdog: dumps on a stuck collective, peers dump on the signal (file and store), kill on request,
fail open; and a real 2-rank gloo hang where rank 1 skips an all_reduce."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import torch.distributed as dist
from gloo_ranks import free_port, read_json
from polling import wait_for

from ascend_tools.profiling import hang
from ascend_tools.profiling.hang import Watchdog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 0.5
COLL = {
    "gid": "0",
    "seq": 3,
    "op": "all_reduce",
    "api": "all_reduce",
    "bytes": 4096,
    "n": 2,
    "ranks": [0, 1],
    "step": 2,
}
RECENT = [{"k": "coll", "gid": "0", "seq": 2, "op": "broadcast", "api": "broadcast", "t0": 1.0, "t1": 1.5}]


def pyspy_functions(hang_dir, thread="MainThread"):
    """Function names on ``thread``'s stack in a py-spy JSON dump."""
    threads = read_json(os.path.join(hang_dir, "pyspy.json"))
    return [f["name"] for t in threads if t.get("thread_name") == thread for f in t["frames"]]


def make_watchdog(out, rank, inflight, flushes=None, **kw):
    kw.setdefault("store", lambda: None)
    return Watchdog(
        str(out),
        rank,
        TIMEOUT,
        inflight=lambda: list(inflight),
        recent=lambda: list(RECENT),
        flush=lambda: flushes.append(time.time()) if flushes is not None else None,
        **kw,
    )


def wait_in_training_step(watchdogs):
    """Stands for the training loop stuck in a collective: its name must show in the stacks."""
    return wait_for(lambda: all(w.triggered is not None for w in watchdogs))


def test_stuck_collective_dumps_stacks_and_signals(tmp_path):
    entered = dict(COLL, t0=time.time())
    flushes = []
    wd = make_watchdog(tmp_path, 0, [entered], flushes)
    wd.start()
    try:
        assert wait_in_training_step([wd])
    finally:
        wd.stop()
    d = tmp_path / "rank0" / "hang"
    report = read_json(d / "hang.json")
    assert report["rank"] == 0 and report["trigger"] == "self" and report["peer"] is None
    assert report["collective"] == entered
    assert report["inflight"] == [entered] and report["recent"] == RECENT
    assert report["detected_at"] - entered["t0"] >= TIMEOUT  # not before the timeout
    assert len(flushes) == 1
    assert report["files"]["pyspy"] == "pyspy.json"
    assert "wait_in_training_step" in pyspy_functions(d)
    assert report["files"]["faulthandler"] == "faulthandler.txt"
    assert "wait_in_training_step" in (d / "faulthandler.txt").read_text()
    fr = report["files"]["flight_recorder"]
    if fr == "flight_recorder.json":  # newer torch has one on every backend, gloo included
        assert isinstance(read_json(d / fr), dict)
    else:
        assert fr == "flight_recorder.pkl" or fr.startswith("no flight recorder")
    sig = read_json(tmp_path / hang.SIGNAL_FILE)  # no store: peers learn it from the file
    assert sig["rank"] == 0 and sig["collective"] == entered
    assert wd.triggered == report


@pytest.mark.parametrize("via", ["file", "store"])
def test_peer_dumps_on_the_signal(tmp_path, via):
    """Rank 1 never entered the collective, so only rank 0's signal (through the store, or a file where there
    is none) makes it dump."""
    store = dist.HashStore() if via == "store" else None
    kwargs = {"store": lambda: store} if store is not None else {}
    entered = dict(COLL, t0=time.time())
    rank0 = make_watchdog(tmp_path, 0, [entered], **kwargs)
    rank1 = make_watchdog(tmp_path, 1, [], **kwargs)
    rank0.start()
    rank1.start()
    try:
        assert wait_in_training_step([rank0, rank1])
    finally:
        rank0.stop()
        rank1.stop()
    report = read_json(tmp_path / "rank1" / "hang" / "hang.json")
    assert (report["trigger"], report["peer"], report["via"]) == ("peer", 0, via)
    assert report["collective"] == entered and report["inflight"] == []
    assert "wait_in_training_step" in pyspy_functions(tmp_path / "rank1" / "hang")
    if store is not None:
        assert json.loads(store.get(hang.SIGNAL_KEY))["collective"] == entered
    assert (tmp_path / hang.SIGNAL_FILE).exists() == (via == "file")


def test_no_dump_without_a_hang_or_for_a_stale_signal(tmp_path):
    """A collective younger than the timeout, and a signal left by an earlier run, trigger nothing."""
    (tmp_path / hang.SIGNAL_FILE).write_text(
        json.dumps({"rank": 0, "detected_at": time.time() - 3600, "collective": COLL})
    )
    young = [dict(COLL, t0=time.time() + 3600)]
    wd = make_watchdog(tmp_path, 1, young, poll=0.01)
    polls = []
    stuck = wd._stuck
    wd._stuck = lambda: polls.append(1) or stuck()
    wd.start()
    assert wait_for(lambda: len(polls) >= 20)  # twenty rounds looked at the young collective and the signal
    wd.stop()
    assert wd.triggered is None and wd.internal_errors == 0
    assert not (tmp_path / "rank1").exists()


def test_internal_error_is_logged_once_and_never_raised(tmp_path, caplog):
    def broken():
        raise KeyError("t0")

    wd = Watchdog(
        str(tmp_path),
        0,
        TIMEOUT,
        inflight=broken,
        recent=list,
        flush=lambda: None,
        store=lambda: None,
        poll=0.01,
    )
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        wd.start()
        assert wait_for(lambda: wd.internal_errors >= 3)
        wd.stop()
    assert [r.getMessage() for r in caplog.records if "hang watchdog" in r.getMessage()] == [
        "hang watchdog: rank 0: internal error, a hang may go unreported (training goes on): KeyError: 't0'"
    ]


def test_missing_pyspy_is_recorded_and_the_rest_still_dumped(tmp_path, monkeypatch):
    monkeypatch.setattr(hang, "_pyspy_exe", lambda: None)
    wd = make_watchdog(tmp_path, 0, [dict(COLL, t0=time.time() - 10)])
    wd.start()
    try:
        assert wait_in_training_step([wd])
    finally:
        wd.stop()
    files = wd.triggered["files"]
    assert files["pyspy"].startswith("py-spy not found")
    assert files["faulthandler"] == "faulthandler.txt"
    assert not (tmp_path / "rank0" / "hang" / "pyspy.json").exists()


def test_native_stacks(tmp_path):
    """``--native`` cannot be combined with ``--nonblocking``: the dump pauses the process instead."""
    assert hang.dump_pyspy(str(tmp_path), native=True) == "pyspy.json"
    names = pyspy_functions(str(tmp_path))
    assert "test_native_stacks" in names and "dump_pyspy" in names


KILL_SCRIPT = """
import signal, sys, time
sys.path.insert(0, {root!r})
from ascend_tools.profiling.hang import Watchdog
if sys.argv[2] == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
stuck = [{{"gid": "0", "seq": 0, "op": "barrier", "t0": time.time() - 60}}]
Watchdog(sys.argv[1], 0, 0.5, inflight=lambda: stuck, recent=list, flush=lambda: None, store=lambda: None,
         kill=True, kill_grace=0.2).start()
time.sleep(60)
"""


@pytest.mark.parametrize("mode,killed_by", [("default", signal.SIGTERM), ("ignore-term", signal.SIGKILL)])
def test_kill_after_dump(tmp_path, mode, killed_by):
    script = tmp_path / "stuck.py"
    script.write_text(KILL_SCRIPT.format(root=ROOT))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), mode], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -killed_by, proc.stderr
    assert (tmp_path / "rank0" / "hang" / "hang.json").exists()


GLOO_RANK = """
import datetime, os, sys, time
import torch, torch.distributed as dist
sys.path.insert(0, {root!r})
from ascend_tools.profiling.hang import Watchdog

rank, port, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{{port}}", rank=rank, world_size=2,
                        timeout=datetime.timedelta(seconds=120))
inflight = []
Watchdog(out, rank, 1.0, inflight=lambda: list(inflight), recent=list, flush=lambda: None).start()


def hung_all_reduce():
    inflight.append({{"gid": "0", "seq": 0, "op": "all_reduce", "api": "all_reduce", "t0": time.time(),
                     "bytes": 16, "n": 2, "ranks": [0, 1], "step": 0}})
    dist.all_reduce(torch.ones(4))
    inflight.clear()


def skip_and_sleep():
    time.sleep(120)


(hung_all_reduce if rank == 0 else skip_and_sleep)()
"""


@pytest.mark.slow
def test_real_gloo_hang_dumps_every_rank(tmp_path):
    """Rank 1 skips an all_reduce: rank 0 times out in it, and rank 1 dumps on rank 0's TCPStore signal."""
    script = tmp_path / "rank.py"
    script.write_text(GLOO_RANK.format(root=ROOT))
    port = str(free_port())
    prof = tmp_path / "prof"
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(r), port, str(prof)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for r in (0, 1)
    ]
    reports = [prof / f"rank{r}" / "hang" / "hang.json" for r in (0, 1)]
    try:
        done = wait_for(
            lambda: all(p.exists() for p in reports) or any(p.poll() is not None for p in procs), 90
        )
        assert done and all(p.exists() for p in reports), [p.poll() for p in procs]
    finally:
        for p in procs:
            p.kill()
        logs = [p.communicate(timeout=30)[0] for p in procs]
    r0, r1 = (read_json(p) for p in reports)
    assert (r0["trigger"], r0["collective"]["op"], r0["collective"]["seq"]) == ("self", "all_reduce", 0), logs
    assert (r1["trigger"], r1["peer"], r1["via"], r1["collective"]) == ("peer", 0, "store", r0["collective"])
    assert "hung_all_reduce" in pyspy_functions(prof / "rank0" / "hang")
    assert "skip_and_sleep" in pyspy_functions(prof / "rank1" / "hang")
