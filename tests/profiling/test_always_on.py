"""Always-on profiling: bounded files, anomaly dumps around a slow window and a hang on real gloo ranks, and
``analyze`` of the windows agreeing with ``analyze`` of the full records of the same run."""

import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.distributed as dist
from gloo_ranks import events, init, read_json, spawn

from ascend_tools.profiling import always_on, synthetic
from ascend_tools.profiling.always_on import WindowRecorder
from ascend_tools.profiling.analyze import aggregates, collectives, run
from ascend_tools.profiling.analyze.reader import read_profile
from ascend_tools.profiling.profiler import profile

BIN = 2 ** (1 / always_on.BINS_PER_OCTAVE)  # one histogram bin, as a factor


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _slow_window_rank(rank, n, out):
    init(rank, n)
    x = torch.ones(1024)
    with profile(out, memory=False, always_on=True, window_s=0.3, hang_timeout=None) as prof:
        for step in range(80):
            time.sleep(0.02)
            if rank == 1 and step in (60, 61, 62):
                time.sleep(0.4)  # the injected slow window: every rank waits for rank 1
            for _ in range(3):
                dist.all_reduce(x)
            prof.step()


def test_a_slow_window_is_dumped_with_its_full_records_and_nothing_else_is(tmp_path):
    out = str(tmp_path / "prof")
    spawn(_slow_window_rank, 2, out)
    for rank in (0, 1):
        rdir = os.path.join(out, f"rank{rank}")
        assert events(out, rank) == []  # no record per collective in events.jsonl
        meta = read_json(os.path.join(rdir, "meta.json"))
        assert meta["windows"] >= 5 and meta["options"]["always_on"]
        dumps = meta["dumps"]
        assert dumps and all("slow-window" in d for d in dumps), dumps
        recs = [r for d in dumps for r in _lines(os.path.join(rdir, d))]
        steps = {r["step"] for r in recs if r["k"] == "coll"}
        assert {60, 61, 62} & steps  # around the slow steps ...
        assert len(recs) <= always_on.RING + always_on.AFTER  # ... and no more than the ring and what follows
        windows = _lines(os.path.join(rdir, "windows.0.jsonl"))
        assert sum(c["count"] for w in windows for c in w["colls"]) == 240  # every collective counted once
        slow = [w for w in windows if w["slow"]]
        assert slow and all(w["steps"]["first"] <= 62 and w["steps"]["last"] >= 60 for w in slow)
    report = run(out)
    assert len(report.profile.colls) > 0  # the dumped records are read as full records


def _stall_rank(rank, n, out):
    init(rank, n)
    x = torch.ones(256)
    with profile(out, memory=False, always_on=True, window_s=60, hang_timeout=1.0) as prof:
        for _ in range(5):
            dist.all_reduce(x)
            prof.step()
        if rank == 1:
            time.sleep(4.0)  # rank 0 waits in the next all_reduce past the hang timeout
        dist.all_reduce(x)
        prof.step()


def test_a_hang_dumps_the_ring(tmp_path):
    out = str(tmp_path / "prof")
    spawn(_stall_rank, 2, out)
    rdir = os.path.join(out, "rank0")
    assert os.path.exists(os.path.join(rdir, "hang", "hang.json"))
    dumps = sorted(glob.glob(os.path.join(rdir, "ring", "*-hang.jsonl")))
    assert len(dumps) == 1
    recs = _lines(dumps[0])
    colls = [r for r in recs if r["k"] == "coll"]
    assert [c["seq"] for c in colls][:5] == [0, 1, 2, 3, 4]  # the collectives before the hang


def _replay(src_rank_dir, dst_rank_dir, window_s=0.0):
    """Feed a full profile's records, in order, through the always-on recorder (what it would have kept)."""
    meta = read_json(os.path.join(src_rank_dir, "meta.json"))
    rec = WindowRecorder(dst_rank_dir, meta, window_s=window_s)
    with open(os.path.join(src_rank_dir, "events.jsonl"), encoding="utf-8") as f:
        for line in f:
            rec.emit(json.loads(line))
            if len(rec._buf) > 512:
                rec.flush()
    rec.close()


def _mixed_rank(rank, n, out):
    init(rank, n)
    with profile(out, memory=False, hang_timeout=None) as prof:
        for _ in range(12):
            time.sleep(0.02 if rank == 2 else 0.001)  # rank 2: the straggler
            for size in (256, 16384, 262144):
                dist.all_reduce(torch.ones(size))
            out_t = [torch.zeros(1000) for _ in range(n)]
            dist.all_gather(out_t, torch.ones(1000))
            dist.all_reduce(torch.ones(64), async_op=True).wait()
            dist.barrier()
            prof.step()


def test_windows_agree_with_the_full_records_of_the_same_run(tmp_path):
    full = str(tmp_path / "full")
    spawn(_mixed_rank, 3, full)
    windows = str(tmp_path / "windows")
    for rank in range(3):
        _replay(os.path.join(full, f"rank{rank}"), os.path.join(windows, f"rank{rank}"))
    summary = aggregates.summarize(read_profile(windows))
    a = run(full)
    by_key = {(r["op"], r["async"], r["bucket"]): r for r in summary["collectives"]}
    assert sorted(by_key) == sorted((r["op"], r["async"], r["bucket"]) for r in a.collectives)
    for r in a.collectives:
        w = by_key[(r["op"], r["async"], r["bucket"])]
        assert (w["records"], w["bytes_total"]) == (r["records"], r["bytes_total"])
    # quantiles against the raw records: within one histogram bin of the exact order statistic
    raw = [c for rank in range(3) for c in events(full, rank)]
    for (op, is_async, bucket), w in by_key.items():
        times = np.array(
            [
                c["t1"] - c["t0"]
                for c in raw
                if c["op"] == op
                and c["async"] == is_async
                and collectives.bucket_label(int(c["bytes"]).bit_length() - 1 if c["bytes"] else -1) == bucket
            ]
        )
        assert len(times) == w["records"]
        assert np.isclose(w["time_mean_s"], times.mean())
        for q in (50, 99):
            exact = max(np.percentile(times, q, method="inverted_cdf"), 1e-6)
            assert 1 / BIN <= w[f"time_p{q}_s"] / exact <= BIN, (op, q)
    late = {r["rank"]: r["lateness_mean_s"] for r in summary["ranks"]}
    assert max(late, key=late.get) == 2


def test_lateness_from_windows_finds_the_straggler_across_skewed_clocks(tmp_path):
    truth = synthetic.write_profile(
        str(tmp_path / "full"), ranks=6, collectives=600, per_step=6, straggler=3, delay=0.006, clock_skew=5.0
    )
    for rank in range(6):
        _replay(str(tmp_path / "full" / f"rank{rank}"), str(tmp_path / "win" / f"rank{rank}"))
    summary = aggregates.summarize(read_profile(str(tmp_path / "win")))
    late = {r["rank"]: r for r in summary["ranks"]}
    assert max(late, key=lambda r: late[r]["lateness_mean_s"]) == truth.straggler
    # the straggler arrives delay / per_step later at each collective (the others' jitter aside)
    assert late[3]["lateness_mean_s"] == pytest.approx(0.001, rel=0.3)
    assert late[3]["last_in_blocks"] == late[3]["blocks"]


def test_disk_stays_within_the_budget_however_long_the_run(tmp_path, monkeypatch):
    """Window files alternate and are truncated, dumps rotate: the directory never exceeds
    2 × WINDOWS_FILE_BYTES + MAX_DUMPS × (RING + AFTER) records (+ meta.json and events.jsonl)."""
    monkeypatch.setattr(always_on, "WINDOWS_FILE_BYTES", 20_000)
    monkeypatch.setattr(always_on, "MAX_DUMPS", 2)
    rdir = str(tmp_path / "rank0")
    rec = WindowRecorder(rdir, {"rank": 0, "world_size": 1}, window_s=0.0)
    t = 1_700_000_000.0
    sizes = []
    for step in range(3000):
        slow = 10.0 if step % 500 == 499 else 1.0  # an anomaly now and then
        for seq in range(4):
            rec.emit(
                {"k": "coll", "gid": "0", "seq": 4 * step + seq, "op": "all_reduce", "bytes": 4 << seq,
                 "n": 1, "peer": None, "t0": t, "t1": t + 0.001 * slow, "async": False, "step": step}
            )  # fmt: skip
            t += 0.002 * slow
        rec.emit({"k": "step", "step": step, "t0": t - 0.01 * slow, "t1": t})
        if step % 10 == 0:
            rec.flush()
            sizes.append(
                sum(
                    os.path.getsize(p) for p in glob.glob(os.path.join(rdir, "**", "*.jsonl"), recursive=True)
                )
            )
    rec.close()
    line = max(len(json.dumps({"k": "coll", "gid": "0", "seq": 12000, "op": "all_reduce", "bytes": 32, "n": 1,
                               "peer": None, "t0": t, "t1": t, "async": False, "step": 2999})) + 1, 60)  # fmt: skip
    bound = 2 * (20_000 + 4_000) + 2 * (always_on.RING + always_on.AFTER) * line
    assert max(sizes) <= bound
    assert rec.dumps_written >= 5 and len(rec.dumps) == 2  # rotated
    assert rec.windows > 1000
    got = read_profile(str(tmp_path)).ranks[0].windows
    assert got and [w["w"] for w in got] == sorted(w["w"] for w in got)
    assert got[-1]["w"] == rec.windows - 1  # the latest windows are the ones kept


@pytest.mark.slow
def test_profile_always_on_cli_end_to_end(tmp_path):
    """``ascend-doctor profile --always-on`` under torchrun (DDP, a straggler), then ``analyze``: windows only,
    their section in the report, the straggler the latest rank."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = str(tmp_path / "prof")
    train = os.path.join(root, "ascend_tools", "examples", "train_ddp.py")
    cmd = [
        sys.executable,
        "-m",
        "ascend_tools.cli",
        "profile",
        "-o",
        out,
        "--always-on",
        "--window",
        "0.3",
        "--",
    ]
    cmd += [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", train]
    cmd += ["--steps", "20", "--compute-ms", "30", "--straggler", "1", "--delay-frac", "1.0"]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert events(out, 0) == [] and os.path.exists(os.path.join(out, "rank0", "windows.0.jsonl"))
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", "analyze", out, "-f", "json"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode in (0, 1), proc.stderr
    data = json.loads(proc.stdout)["always_on"]
    assert {r["rank"] for r in data["ranks"]} == {0, 1}
    assert sum(r["steps"] for r in data["ranks"]) == 40
    # DDP's bucket all-reduces are timed by DDP's own timers (no comm hook): the fast rank waits in them for
    # the straggler, which sleeps 30 ms a step longer before its forward
    ddp = {r["rank"]: r for r in data["ranks"]}
    assert all(r["ddp_iterations"] >= 10 for r in ddp.values())
    assert ddp[0]["ddp_comm_mean_s"] - ddp[1]["ddp_comm_mean_s"] > 0.015


@pytest.mark.parametrize("window", ["0", "-1", "inf", "nan"])
def test_a_window_that_is_not_a_positive_duration_is_one_line_and_exit_2(tmp_path, window):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = tmp_path / "prof"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            "profile",
            "-o",
            str(out),
            "--always-on",
            "--window",
            window,
            "--",
            sys.executable,
            "-c",
            "pass",
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"ascend-doctor: error: --window: must be a positive number of seconds, not {float(window)}"
    ]
    assert not out.exists()
