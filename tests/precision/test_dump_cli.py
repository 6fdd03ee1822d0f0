"""``ascend-doctor dump`` end to end on a small training script."""

import os
import sys


def test_three_steps_and_exit_status(tmp_path, run_verb):
    out = tmp_path / "d"
    proc = run_verb("dump", "-o", out, "--", sys.executable, "SCRIPT", "3")
    assert proc.returncode == 3, proc.stderr
    assert sorted(os.listdir(out / "rank0")) == ["meta.json", "stacks.jsonl", "step0", "step1", "step2"]
    assert "rank 0:" in proc.stderr and "3 steps" in proc.stderr


def test_steps_filter(tmp_path, run_verb):
    out = tmp_path / "d"
    proc = run_verb("dump", "-o", out, "--steps", "1", "--", sys.executable, "SCRIPT")
    assert proc.returncode == 0, proc.stderr
    assert sorted(n for n in os.listdir(out / "rank0") if n.startswith("step")) == ["step1"]


def test_bad_options_exit_2(tmp_path, run_verb):
    proc = run_verb("dump", "-o", tmp_path / "d", "--steps", "a-b", "--", sys.executable, "SCRIPT")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    proc = run_verb("dump", "-o", tmp_path / "d", "--", "no-such-command-xyz")
    assert proc.returncode == 2 and "command not found" in proc.stderr
