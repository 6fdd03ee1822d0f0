"""DeepSpeed's own fp16 engine (ZeRO 1 and 2, ``DynamicLossScaler``) under ``dump`` and ``profile``: each iteration
is a step, the skipped ones included (``scaler_watch.py``). Needs deepspeed (``DS_BUILD_OPS=0 pip install
deepspeed``): skipped in CI, run by hand; ~1 min."""

import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("deepspeed")

DRIVER = os.path.join(os.path.dirname(__file__), "ds_fp16_train.py")
ITERATIONS = 20


def run(tool, out, stage):
    env = dict(os.environ, DS_ACCELERATOR="cpu")
    cmd = [sys.executable, "-m", "ascend_tools.cli", tool, "-o", str(out), "--"]
    cmd += [sys.executable, DRIVER, str(stage), str(ITERATIONS)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    skipped = int(re.search(r"skipped (\d+) global (\d+)", proc.stdout).group(1))
    assert 1 <= skipped < ITERATIONS  # DeepSpeed skipped steps, and then stepped
    return skipped


@pytest.mark.parametrize("stage", [1, 2])
def test_every_iteration_of_a_deepspeed_fp16_run_is_a_dump_step(tmp_path, stage):
    run("dump", tmp_path / "dump", stage)
    with open(tmp_path / "dump" / "rank0" / "meta.json") as f:
        steps = json.load(f)["steps_recorded"]
    assert sorted(int(s) for s in steps) == list(range(ITERATIONS))


def test_every_iteration_of_a_deepspeed_fp16_run_is_a_profile_step(tmp_path):
    run("profile", tmp_path / "prof", 1)
    steps = []
    with open(tmp_path / "prof" / "rank0" / "events.jsonl") as f:
        for line in f:
            record = json.loads(line)
            if record.get("k") == "step":
                steps.append(record["step"])
    assert steps == list(range(ITERATIONS))
