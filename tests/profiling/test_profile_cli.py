"""End to end, with zero code change: ``ascend-doctor profile -- torchrun ... demo_train`` on real gloo ranks, then
``ascend-doctor analyze``. Injected faults (a straggler, a skipped collective, a SIGKILL) are named; a
balanced run is not flagged."""

import json
import os
import signal
import subprocess
import sys

import pytest
from gloo_ranks import read_json
from polling import wait_for

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]
TRAIN = [os.path.join(ROOT, "ascend_tools", "examples", "train_ddp.py")]


def cli(*args, timeout=180, **kw):
    return subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def read_text(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def profile_run(out, nproc, *train_args, options=()):
    return cli("profile", "-o", out, *options, "--", *TORCHRUN, str(nproc), *TRAIN, *train_args)


def analyze_json(out):
    proc = cli("analyze", out, "-f", "json")
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("nproc", [2, 4])
def test_straggler_named_at_a_tenth_of_the_step(tmp_path, nproc):
    out = str(tmp_path / "prof")
    straggler = nproc - 1
    run = profile_run(
        out,
        nproc,
        "--steps",
        "16",
        "--compute-ms",
        "60",
        "--straggler",
        str(straggler),
        "--delay-frac",
        "0.125",
    )  # 7.5 ms: 10% of a ~75 ms step
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == [f"rank{r}" for r in range(nproc)]
    report = analyze_json(out)
    assert [s["rank"] for s in report["slow_ranks"]] == [straggler]


def test_balanced_runs_have_no_slow_rank(tmp_path):
    for i in range(2):
        out = str(tmp_path / f"prof{i}")
        run = profile_run(out, 2, "--steps", "16", "--compute-ms", "60")
        assert run.returncode == 0, run.stderr
        assert analyze_json(out)["slow_ranks"] == []


def test_skipped_collective_dumps_every_rank_and_names_the_missing_one(tmp_path):
    out = str(tmp_path / "prof")
    run = profile_run(
        out,
        2,
        "--steps",
        "4",
        "--compute-ms",
        "20",
        "--skip",
        "1:2",
        "--hang-sleep",
        "12",
        options=("--hang-timeout", "3"),
    )
    assert run.returncode != 0  # rank 1 exits, the all_reduce on rank 0 then fails
    for rank in (0, 1):
        hang = os.path.join(out, f"rank{rank}", "hang")
        frames = [fr["name"] for th in read_json(os.path.join(hang, "pyspy.json")) for fr in th["frames"]]
        assert "main" in frames  # train_ddp.main, on both ranks: the hung one and the one that skipped
    assert read_json(os.path.join(out, "rank0", "hang", "hang.json"))["trigger"] == "self"
    assert read_json(os.path.join(out, "rank1", "hang", "hang.json"))["trigger"] == "peer"
    report = analyze_json(out)
    assert len(report["hangs"]) == 1
    hang = report["hangs"][0]
    assert hang["op"] == "all_reduce" and hang["missing_ranks"] == [1]
    sleep_line = next(
        i
        for i, line in enumerate(read_text(TRAIN[0]).splitlines(), 1)
        if "time.sleep(args.hang_sleep)" in line
    )
    rank1 = next(r for r in report["ranks"] if r["rank"] == 1)
    assert (
        rank1["stack_top"] == f"ascend_tools/examples/train_ddp.py:{sleep_line} in main"
    )  # where the missing rank stood, from py-spy


def test_a_stall_that_resolves_names_the_late_rank_and_how_long_it_held_the_others(tmp_path):
    """Rank 1 sleeps 6 s before step 2's loss all_reduce and then goes on: the watchdog (2 s) fires on rank 0, both
    ranks write their stacks, and the job completes. Before, analyze read rank 1's later records as "entered":
    "missing rank(s) none", and both ranks' status "hang" although both finished."""
    out = str(tmp_path / "prof")
    args = ("--steps", "4", "--compute-ms", "20", "--stall", "1:2", "--hang-sleep", "6")
    run = profile_run(out, 2, *args, options=("--hang-timeout", "2"))
    assert run.returncode == 0, run.stderr
    report = analyze_json(out)
    (hang,) = report["hangs"]
    assert hang["op"] == "all_reduce" and hang["missing_ranks"] == [1] and hang["waiting_ranks"] == [0]
    assert 5.5 <= hang["completed_after_s"] <= 9.0  # the 6 s sleep, from rank 0's arrival to the completion
    assert [r["status"] for r in report["ranks"]] == ["stalled", "stalled"]
    sleep_line = next(
        i
        for i, line in enumerate(read_text(TRAIN[0]).splitlines(), 1)
        if "time.sleep(args.hang_sleep)  # the others wait" in line
    )
    rank1 = next(r for r in report["ranks"] if r["rank"] == 1)
    assert rank1["stack_top"] == f"ascend_tools/examples/train_ddp.py:{sleep_line} in main"
    text = cli("analyze", out, "--fail-on", "warning", env=dict(os.environ, COLUMNS="300"))
    assert text.returncode == 1 and "stalled past the watchdog's timeout and completed" in text.stdout


def test_sigkilled_rank_is_read_up_to_the_kill(tmp_path):
    out = str(tmp_path / "prof")
    cmd = [
        sys.executable,
        "-m",
        "ascend_tools.cli",
        "profile",
        "-o",
        out,
        "--",
        *TORCHRUN,
        "2",
        *TRAIN,
        "--steps",
        "400",
        "--compute-ms",
        "20",
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        events = os.path.join(out, "rank1", "events.jsonl")
        wait_for(lambda: os.path.exists(events) and read_text(events).count('"k": "coll"') >= 10, 90)
        os.kill(read_json(os.path.join(out, "rank1", "meta.json"))["pid"], signal.SIGKILL)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = analyze_json(out)
    rank1 = next(r for r in report["ranks"] if r["rank"] == 1)
    assert rank1["cut_short"]
    assert rank1["collectives"] >= 10


@pytest.mark.parametrize(
    "case", ["negative-timeout", "nan-timeout", "existing-profile", "not-found", "out-is-a-file"]
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case):
    out = tmp_path / "prof"
    options, command = [], ["python", "-c", "pass"]
    if case == "negative-timeout":
        options = ["--hang-timeout", "-1"]
    elif case == "nan-timeout":
        options = ["--hang-timeout", "nan"]
    elif case == "existing-profile":
        (out / "rank0").mkdir(parents=True)
        (out / "rank0" / "meta.json").write_text("{}")
    elif case == "not-found":
        command = ["no-such-command-xyz"]
    else:
        out.write_text("a file")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    proc = cli("profile", "-o", str(out), *options, "--", *command, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ascend-doctor: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
