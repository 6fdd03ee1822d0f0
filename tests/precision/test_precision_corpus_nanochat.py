"""``dump``/``compare``/``shadow`` on karpathy/nanochat's ``scripts/base_train.py`` (the check-ops corpus copy, byte for
byte; PROVENANCE.md there), none of the tests written for it: ``torch.compile`` of the model and
``@torch.compile(fullgraph=True)`` on its optimizer's fused steps, a Muon + AdamW optimizer, nanochat's own Linear
(weights cast to the activations' dtype instead of autocast), scalar gates on the residual stream, an evaluation
before the first training step, a checkpoint of its tokenizer loaded with ``torch.load``. Run unmodified through the
zero-code-change CLI on the CPU with the truth's command and fixtures (its byte-level tokenizer and parquet shards),
one process instead of eight (``--total-batch-size=512``: 1 x 512 tokens), two steps; the compute dtype from
``NANOCHAT_DTYPE`` (the reference ``float32``, the usual target ``bfloat16``).

Found this way, each fixed with a CI test of its own: ``dump`` stopped the training at its first ``optimizer.step()``
("torch.compile with fullgraph=True found no compiled frames": test_compile_watch.py); loading the tokenizer's
tensor took seconds into a record line of its storage's every byte (test_capture.py); in bf16 against fp32 the
smear gate's ``bmm`` (aten's matmul folds the fp32 one into an ``mm``) was a target-only op, the headline of step 0,
and the cancelling bf16 gradient sums of the scalar gates 3 to 9 suspects a step (test_compute_dtype_causes.py);
every record of the first training forward named the evaluation loop as its caller (test_capture.py).

Needs what the script imports (``tiktoken``, ``rustbpe``, ``pyarrow``, ``wandb``), which CI's venvs do not install:
run by hand (docs/precision.md, "nanochat").
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from test_precision_corpus import CORPUS, FAULT_SITE, cli, fired, fixtures, report, truth

for name in ("tiktoken", "rustbpe", "pyarrow", "wandb"):
    pytest.importorskip(name)

#: the truth's flags for one process on the CPU, two steps
FLAGS = [*truth("nanochat_base")["command"][4:-2], "--total-batch-size=512", "--num-iterations=2"]
ENV = {"NANOCHAT_BASE_DIR": "nanochat-cache", "WANDB_MODE": "disabled", "NANOCHAT_DTYPE": "float32"}
BF16 = {"NANOCHAT_DTYPE": "bfloat16"}
#: a faulty CPU mm kernel (corpus_fault/sitecustomize.py) on backward call 2 of the process: the last layer's MLP
#: c_proj, its weight's gradient (calls 0-1 are lm_head's; call 3, c_proj's input gradient, is a product with its
#: zero-initialised weight: a fault there changes nothing)
FAULT = {"FAULT_OP": "mm", "FAULT_CALL": "2", "FAULT_PHASE": "backward", "PYTHONPATH": FAULT_SITE}
FAULTY = ("aten::mm#backward#2", "transformer.h.3.mlp.c_proj")


def workdir(base: Path, run: str) -> str:
    cwd = base / run
    shutil.copytree(os.path.join(CORPUS, "nanochat_base"), cwd)
    fixtures("nanochat_base", cwd)
    return str(cwd)


def run(base: Path, name: str, verb_args, env=None, flags=()):
    cwd = workdir(base, name)
    command = [sys.executable, "-m", "scripts.base_train", *FLAGS, *flags]
    proc = cli(cwd, dict(ENV, **(env or {})), *verb_args, "--", *command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("nanochat")
    for name, env in (("ref", None), ("clean", None), ("bf16", BF16)):
        run(base, name, ("dump", "-o", f"{base}/{name}.dump", "--mode", "tensor", "--steps", "0-1"), env)
    run(
        base,
        "wd",
        ("dump", "-o", f"{base}/wd.dump", "--mode", "tensor", "--steps", "0"),
        flags=["--weight-decay=0.5"],
    )
    cwd = run(base, "fault", ("dump", "-o", f"{base}/fault.dump", "--mode", "tensor", "--steps", "0"), FAULT)
    assert fired(cwd) == ["mm backward 2"]
    return base


def compare(base: Path, target: str, step: int):
    out = f"{base}/{target}-{step}.json"
    return report(
        str(base), {}, out, "compare", f"{base}/{target}.dump", f"{base}/ref.dump", "--step", str(step)
    )


@pytest.mark.slow
@pytest.mark.parametrize("target", ["clean", "bf16"])
@pytest.mark.parametrize("step", [0, 1])
def test_clean_runs_list_nothing(runs, target, step):
    rep = compare(runs, target, step)
    assert rep["summary"]["pairs"] > 2000
    assert [(c["kind"], c["name"]) for c in rep["culprits"]] == []


@pytest.mark.slow
def test_the_weight_decay_that_differs_is_named_first_with_its_argument(runs):
    top = compare(runs, "wd", 0)["culprits"][0]
    assert (top["kind"], top["phase"], top["verdict"]) == ("divergence", "optimizer", "error")
    # the scaled weight decay nanochat's Muon step fills in: 0.5 and 0.28, each times (12/depth)**... (its formula)
    assert top["arg_diff"] and top["stack"][-1].startswith("nanochat/optim.py:")


@pytest.mark.slow
def test_a_faulty_backward_kernel_is_named_first(runs):
    top = compare(runs, "fault", 0)["culprits"][0]
    assert (top["kind"], top["name"], top["module"]) == ("kernel", *FAULTY)


@pytest.mark.slow
def test_the_training_forward_names_its_own_caller(runs):
    """The evaluation (``evaluate_bpb``) runs the same model code before the first training forward."""
    with open(runs / "ref.dump" / "rank0" / "stacks.jsonl") as f:
        stacks = {s["id"]: s["frames"] for s in map(json.loads, f)}
    with open(runs / "ref.dump" / "rank0" / "step0" / "records.jsonl") as f:
        mm = [r for r in map(json.loads, f) if r["name"] == "aten::mm" and r["phase"] == "forward"]
    evaluation, training = mm[: len(mm) // 2], mm[len(mm) // 2 :]
    assert all(any("evaluate_bpb" in f for f in stacks[r["stack"]]) for r in evaluation)
    assert not any(any("evaluate_bpb" in f for f in stacks[r["stack"]]) for r in training)


@pytest.mark.slow
@pytest.mark.parametrize("env", [None, BF16], ids=["fp32", "bf16"])
def test_shadow_lists_nothing(tmp_path, env):
    run(tmp_path, "shadow", ("shadow", "--steps", "0-1", "--fail-on", "never", "-f", "json", "-o", f"{tmp_path}/s.json"), env)  # fmt: skip
    with open(tmp_path / "s.json") as f:
        rep = json.load(f)
    assert rep["summary"]["compared"] > 1000 and rep["summary"]["internal_errors"] == 0
    assert rep["culprits"] == []


@pytest.mark.slow
def test_shadow_names_the_faulty_kernel_first(tmp_path):
    cwd = run(tmp_path, "shadow", ("shadow", "--steps", "0", "--fail-on", "never", "-f", "json", "-o", f"{tmp_path}/s.json"), FAULT)  # fmt: skip
    assert fired(cwd) == ["mm backward 2"]
    with open(tmp_path / "s.json") as f:
        rep = json.load(f)
    assert (rep["culprits"][0]["name"], rep["culprits"][0]["module"]) == FAULTY
