"""Hang watchdog: dumps on a stuck collective, peers dump on the signal (file and store), kill on request,
fail open; and a real 2-rank gloo hang where rank 1 skips an all_reduce."""

import hashlib
import hmac
import json
import logging
import math
import os
import pathlib
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


TOKEN = "3f2a9c0e7b1d4a6f8e5c2b9a0d7f1e3c"


def make_watchdog(out, rank, inflight, flushes=None, **kw):
    kw.setdefault("store", lambda: None)
    kw.setdefault("world_size", 2)
    kw.setdefault("token", TOKEN)
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


# --- hostile hang signals (issue 11): whoever reaches the store or the signal file --------------------------


def signed(sig, token=TOKEN):
    """``sig`` with the HMAC the job's ranks expect, computed here from the documented recipe: HMAC-SHA256
    under the token of the canonical JSON (sorted keys, no spaces) of rank, host, pid, detected_at and
    collective."""
    fields = {k: sig.get(k) for k in ("rank", "host", "pid", "detected_at", "collective")}
    msg = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return dict(sig, mac=hmac.new(token.encode(), msg.encode(), hashlib.sha256).hexdigest())


def peer_signal(**over):
    sig = {"rank": 0, "host": "h", "pid": 1, "detected_at": time.time(), "collective": COLL}
    sig.update(over)
    return signed(sig)


def counted_polls(wd):
    polls = []
    peer = wd._peer_signal
    wd._peer_signal = lambda: polls.append(1) or peer()
    return polls


FORGED = {
    "rank 99": lambda: peer_signal(rank=99),
    "rank -1": lambda: peer_signal(rank=-1),
    "rank '0'": lambda: peer_signal(rank="0"),
    "rank 0.0": lambda: peer_signal(rank=0.0),
    "rank true": lambda: peer_signal(rank=True),
    "own rank": lambda: peer_signal(rank=1),
    "future": lambda: peer_signal(detected_at=time.time() + 3600),
    "NaN": lambda: peer_signal(detected_at=math.nan),
    "string time": lambda: peer_signal(detected_at="soon"),
    "no token": lambda: {k: v for k, v in peer_signal().items() if k != "mac"},
    "wrong token": lambda: signed(dict(peer_signal(), mac=None), token="0" * 32),
    "tampered": lambda: dict(peer_signal(), rank=0, collective=dict(COLL, seq=4)),
    "oversized collective": lambda: peer_signal(
        collective=dict(COLL, pad="x" * (hang.MAX_COLLECTIVE_BYTES + 1))
    ),
    "collective a list": lambda: peer_signal(collective=[COLL]),
    "not an object": lambda: [peer_signal()],
}


@pytest.mark.parametrize("via", ["store", "file"])
@pytest.mark.parametrize("case", sorted(FORGED))
def test_forged_signal_is_ignored(tmp_path, caplog, via, case):
    """A signal that is not a live peer of this job's, signed with its token, makes no rank dump or die."""
    store = dist.HashStore() if via == "store" else None
    wd = make_watchdog(tmp_path, 1, [], store=lambda: store, kill=True, kill_grace=0.01, poll=0.01)
    kills = []
    wd._terminate = lambda: kills.append(1)
    polls = counted_polls(wd)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        wd.start()
        payload = json.dumps(FORGED[case]())  # after the start: not merely stale
        if store is not None:
            store.set(hang.SIGNAL_KEY, payload)
        else:
            (tmp_path / hang.SIGNAL_FILE).write_text(payload)
        seen = len(polls)
        assert wait_for(lambda: len(polls) >= seen + 20)
        wd.stop()
    assert wd.triggered is None and kills == [] and wd.internal_errors == 0
    assert not (tmp_path / "rank1").exists()
    assert wd.ignored_signals == 1  # counted once, not once per poll
    ignored = [r.getMessage() for r in caplog.records if "ignored a hang signal" in r.getMessage()]
    assert len(ignored) == 1 and f"from the {via}" in ignored[0], ignored


def test_oversized_signal_is_not_parsed(tmp_path):
    store = dist.HashStore()
    wd = make_watchdog(tmp_path, 1, [], store=lambda: store, poll=0.01)
    polls = counted_polls(wd)
    wd.start()
    store.set(hang.SIGNAL_KEY, json.dumps(dict(peer_signal(), pad="x" * hang.MAX_SIGNAL_BYTES)))
    seen = len(polls)
    assert wait_for(lambda: len(polls) >= seen + 20)
    wd.stop()
    assert wd.triggered is None and wd.ignored_signals == 1 and wd.internal_errors == 0


def test_valid_signed_signal_dumps_every_rank(tmp_path):
    """A signal of rank 2 of a 3-rank job, signed with the job's token, makes ranks 0 and 1 dump."""
    store = dist.HashStore()
    ranks = [make_watchdog(tmp_path, r, [], store=lambda: store, world_size=3) for r in (0, 1)]
    for wd in ranks:
        wd.start()
    store.set(hang.SIGNAL_KEY, json.dumps(peer_signal(rank=2)))
    try:
        assert wait_in_training_step(ranks)
    finally:
        for wd in ranks:
            wd.stop()
    for r in (0, 1):
        report = read_json(tmp_path / f"rank{r}" / "hang" / "hang.json")
        assert (report["trigger"], report["peer"], report["via"], report["collective"]) == (
            "peer",
            2,
            "store",
            COLL,
        )
        assert "wait_in_training_step" in pyspy_functions(tmp_path / f"rank{r}" / "hang")


def test_own_signal_is_signed_and_accepted_by_a_peer(tmp_path):
    """What a stuck rank writes carries the MAC computed as above, so its peers accept it."""
    store = dist.HashStore()
    stuck = make_watchdog(tmp_path, 0, [dict(COLL, t0=time.time() - 10)], store=lambda: store)
    stuck.start()
    try:
        assert wait_in_training_step([stuck])
    finally:
        stuck.stop()
    sig = json.loads(store.get(hang.SIGNAL_KEY))
    assert sig["mac"] == signed(sig)["mac"]


def test_peer_signal_never_kills_a_rank_without_a_stuck_collective(tmp_path, caplog):
    """kill=True: a rank dumped on a valid peer signal while in no collective stays alive; it is killed only
    once a collective of its own passes the timeout."""
    store = dist.HashStore()
    inflight = []
    wd = make_watchdog(tmp_path, 1, inflight, store=lambda: store, kill=True, kill_grace=0.01, poll=0.01)
    kills = []
    wd._terminate = lambda: kills.append(1)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        wd.start()
        store.set(hang.SIGNAL_KEY, json.dumps(peer_signal(rank=0)))
        assert wait_in_training_step([wd])
        polls = []
        stuck = wd._stuck
        wd._stuck = lambda: polls.append(1) or stuck()
        assert wait_for(lambda: len(polls) >= 20)
        assert kills == [] and wd.triggered["trigger"] == "peer"
        inflight.append(dict(COLL, t0=time.time() - 10))  # now it is stuck itself
        assert wait_for(lambda: kills == [1])
        wd.stop()
    assert any("not killed on rank 0's signal" in r.getMessage() for r in caplog.records)


# --- py-spy's ptrace permission (issue 11) ----------------------------------------------------------------


class FakeLibc:
    def __init__(self):
        self.calls = []

    @property
    def prctl(self):
        def prctl(*args):
            option, arg = (getattr(a, "value", a) for a in args[:2])
            cmdline = pathlib.Path(f"/proc/{arg}/cmdline").read_bytes() if 0 < arg < 2**22 else b""
            self.calls.append((option, arg, cmdline))
            return 0

        return prctl


def test_ptrace_is_allowed_for_pyspy_only(tmp_path, monkeypatch):
    """PR_SET_PTRACER names py-spy's pid before py-spy runs (its process still the held shell), never ANY, and
    is reset to 0 afterwards; py-spy still dumps our stacks."""
    libc = FakeLibc()
    monkeypatch.setattr(hang.ctypes, "CDLL", lambda *a, **k: libc)
    started = []
    popen = subprocess.Popen

    def spy(*a, **k):
        started.append(popen(*a, **k))
        return started[-1]

    monkeypatch.setattr(hang.subprocess, "Popen", spy)
    assert hang.dump_pyspy(str(tmp_path), native=False) == "pyspy.json"
    assert "test_ptrace_is_allowed_for_pyspy_only" in pyspy_functions(str(tmp_path))
    pr_set_ptracer = 0x59616D61
    assert [(o, a) for o, a, _ in libc.calls] == [(pr_set_ptracer, started[0].pid), (pr_set_ptracer, 0)]
    assert b"py-spy" not in libc.calls[0][2].split(b"\0")[0]  # not yet exec'd when allowed


def test_profiler_gives_its_watchdog_the_world_size_and_the_job_token(tmp_path, monkeypatch):
    from ascend_tools.profiling.profiler import Profiler

    monkeypatch.setenv("ASCEND_DOCTOR_JOB_TOKEN", TOKEN)
    prof = Profiler(str(tmp_path), memory=False, hang_timeout=100.0)
    prof.start()
    try:
        prof._name(1, 4)  # what it does once torch.distributed says rank 1 of 4
        assert (prof.watchdog.rank, prof.watchdog.world_size, prof.watchdog.token) == (1, 4, TOKEN)
    finally:
        prof.close()


def test_a_pyspy_read_that_meets_a_changing_frame_is_tried_again(tmp_path, monkeypatch):
    """``py-spy dump --nonblocking`` reads the stacks while the threads run: a frame changed under it fails the read
    ("Failed to copy PyFrameObject: Bad address", seen with two watchdogs dumping at once). It is tried again."""
    failed = subprocess.CompletedProcess(
        [], 1, b"", b"Error: Failed to get stack traces\nFailed to copy PyFrameObject"
    )
    good = subprocess.CompletedProcess([], 0, b"[]", b"")
    runs = [failed, failed, good]
    monkeypatch.setattr(hang, "_pyspy_exe", lambda: "py-spy")
    monkeypatch.setattr(hang, "_run_traced", lambda cmd: runs.pop(0))
    waits = []
    monkeypatch.setattr(hang.time, "sleep", waits.append)
    assert hang.dump_pyspy(str(tmp_path), native=False) == "pyspy.json"
    assert (tmp_path / "pyspy.json").read_bytes() == b"[]"
    # longer after each failure: two dumpers that collided fall out of step
    assert waits == [hang.PYSPY_BACKOFF_S, 2 * hang.PYSPY_BACKOFF_S]
    runs[:] = [failed] * hang.PYSPY_TRIES
    waits.clear()
    with pytest.raises(hang.DumpError, match="Failed to copy PyFrameObject"):
        hang.dump_pyspy(str(tmp_path / "again"), native=False)
    assert runs == [] and len(waits) == hang.PYSPY_TRIES - 1  # none after the last
