"""``profile``/``analyze`` on TRL's DPO script under torchrun with two DDP ranks, none of it written for the profiler:
``tests/data/precision_corpus/trl_dpo/dpo.py`` (the trl 1.16.0 wheel's ``trl/scripts/dpo.py`` byte for byte,
PROVENANCE.md there), a full fine-tune of a tiny Llama against a frozen reference copy, run unmodified through the
zero-code-change CLI on the CPU (gloo) with the command and fixtures of test_precision_corpus_dpo.py, for
:data:`STEPS` optimizer steps.

Known answers, none taken from the profiler: the policy's parameter count, from its config through transformers
(the reference model has no gradients), gives the bytes DDP must all-reduce each step (every parameter's float32
gradient, one bucket) and those of its start-up broadcast (every parameter and buffer: the rotary embedding's
``inv_freq``, ``head_dim / 2`` floats, besides); the trainer's ``--max_steps`` gives the steps.

Needs ``trl`` (and ``datasets``, ``accelerate``), which CI's virtualenvs leave out: run by hand (docs/profiling.md,
"A real script").
"""

import json
import os
import sys
from pathlib import Path

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "precision"))
# skips this module where trl, datasets or accelerate is missing
from test_precision_corpus_dpo import COMMAND, OFFLINE, cli, workdir  # noqa: E402

STEPS = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The analyze JSON report and the working directory of one profiled run."""
    base = tmp_path_factory.mktemp("dpo-profile")
    cwd = workdir(Path(base), "run")
    prof = f"{base}/run.prof"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    # the parser takes the last --max_steps
    proc = cli(cwd, OFFLINE, "profile", "-o", prof, "--", *torchrun, *COMMAND, "--max_steps", str(STEPS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = cli(cwd, {}, "analyze", prof, "-f", "json", "-o", f"{base}/run.json")
    assert done.returncode == 0, done.stderr[-3000:]
    with open(f"{base}/run.json") as f:
        return json.load(f), cwd


def policy(cwd: str):
    """(parameters, head_dim) of the run's tiny Llama, from its config (the numbers the profiler must find)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(os.path.join(cwd, "tiny-llama"))
    model = transformers.AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters()), config.head_dim


def rows(report, op):
    return [r for r in report["collectives"] if r["op"] == op]


@pytest.mark.slow
def test_both_ranks_and_every_step_are_profiled(run):
    report, _ = run
    assert report["summary"]["ranks"] == 2 and report["summary"]["ranks_by_status"] == {"ok": 2}
    assert report["summary"]["steps"] == STEPS and report["summary"]["problems"] == 0


@pytest.mark.slow
def test_each_step_all_reduces_every_policy_gradient_once(run):
    report, cwd = run
    params, _ = policy(cwd)
    (row,) = rows(report, "all_reduce")
    assert row["async"] is True and row["calls"] == STEPS and row["records"] == 2 * STEPS
    assert row["bytes_min"] == row["bytes_max"] == 4 * params


@pytest.mark.slow
def test_the_start_up_broadcast_holds_the_policy_and_its_buffer(run):
    report, cwd = run
    params, head_dim = policy(cwd)
    largest = max(rows(report, "broadcast"), key=lambda r: r["bytes_max"])
    assert largest["calls"] == 1 and largest["bytes_max"] == 4 * (params + head_dim // 2)
