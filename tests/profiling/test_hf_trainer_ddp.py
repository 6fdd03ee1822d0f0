"""A real Hugging Face Trainer DDP job (tests/data/profiling/train_hf_trainer_ddp.py: GPT-2, whose
attention-mask buffers DDP broadcasts before every forward) with a rank 20 ms slow a step, profiled full and
always-on through the Trainer callback: the slow rank is named (always-on: or suspected, on a loaded machine). Needs accelerate (Trainer's), which the
project's venv lacks; it runs in the corpus venv (tests/data/checkops_corpus/make_corpus_venv.sh)."""

import os
import subprocess
import sys

import pytest

pytest.importorskip("accelerate")

from ascend_tools.profiling.analyze import run

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "data", "profiling", "train_hf_trainer_ddp.py")


@pytest.mark.slow
@pytest.mark.parametrize("window", [0.0, 0.5])
def test_the_slow_rank_of_a_trainer_ddp_job_is_named(tmp_path, window):
    prof = str(tmp_path / "prof")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", SCRIPT]
    cmd += ["--prof", prof, "--out", str(tmp_path / "out"), "--steps", "160", "--window", str(window)]
    proc = subprocess.run(cmd, cwd=str(tmp_path), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    a = run(prof)
    if not window:
        assert [s["rank"] for s in a.slow["slow_ranks"]] == [1]
        return
    # DDP's timers in the windows: the ddp group names rank 1, or, where a loaded machine makes the
    # windows vary too much to establish it, calls it a suspect; never rank 0
    named = [(s["rank"], s["groups"][0]["group"]) for s in a.slow["slow_ranks"]]
    named += [(s["rank"], s["group"]) for s in a.slow["suspects"]]
    assert named == [(1, "ddp")]
