"""``dump``/``compare``/``shadow`` on TRL's DPO script (``trl dpo``), which none of the tests were written for:
``tests/data/precision_corpus/trl_dpo/dpo.py``, the trl 1.16.0 wheel's ``trl/scripts/dpo.py`` byte for byte
(PROVENANCE.md there), run unmodified through the zero-code-change CLI on the CPU with a tiny local Llama (two
layers, seeded weights) and sixteen local preference pairs, two optimizer steps. TRL trains in bf16 by default
(CPU autocast through accelerate); ``--bf16 False`` is the fp32 reference. Each step runs the policy, then the
reference model (a second copy, under ``no_grad``) on the same batch: two models whose modules have the same
names. The reference model's are named by the attribute that holds it (``ref_model.model.layers.0.mlp``).

Known answers: two clean runs and bf16 against fp32 list nothing; ``--beta 0.2`` against the default 0.1 is a
divergence whose arguments differ (at step 0 the policy is the reference, the log-ratios are 0 and so is
``beta * 0``: the first op that differs is the backward's ``mul`` by beta; at step 1 the forward's); a faulty
``mm`` kernel (``corpus_fault/``) on a call of the policy's forward and on one of the reference model's is named
first, in its own model (its module path, and its stack through that model's forward).

Found this way: nothing was recorded at all (``import datasets``/``transformers`` before ``torch`` took the
finder that waits for torch off ``sys.meta_path``: tests/test_launch.py), and the bf16 faults (3% on a tenth of a
matmul's outputs, from inputs that agree) were never replayed (tests/precision/test_replay_gate.py).

Needs ``trl`` (and ``datasets``, ``accelerate``), which CI's virtualenvs leave out: the file skips there and is
run by hand (docs/precision.md, "TRL's DPO trainer").
"""

import json
import os
import random
import shutil
import sys
from pathlib import Path

import pytest
from suite_runs import seeded_weights
from test_precision_corpus import FAULT_SITE, HERE, cli, fired, report

pytest.importorskip("trl")
pytest.importorskip("datasets")
pytest.importorskip("accelerate")

CORPUS = os.path.join(os.path.dirname(HERE), "data", "precision_corpus", "trl_dpo")
COMMAND = [
    "dpo.py", "--model_name_or_path", "./tiny-llama", "--dataset_name", "./prefs", "--output_dir", "./out",
    "--max_steps", "2", "--per_device_train_batch_size", "2", "--max_length", "32", "--report_to", "none",
    "--save_strategy", "no", "--logging_steps", "1", "--use_cpu", "True",
]  # fmt: skip
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
#: mm calls of a step's forwards (bias-free Llama, two layers: q, k, v, o, gate, up, down): the policy's are 0-13,
#: the reference model's 14-27; call 5 and 19 are layer 0's up_proj in each
FAULTS = {"policy": "5", "reference-model": "19"}
#: dpo_trainer.py's lines that run each model (its ``_compute_loss``)
POLICY_FORWARD = "outputs = model(**model_kwargs"
REFERENCE_FORWARD = "ref_outputs = self.ref_model(**ref_model_kwargs"
WORDS = [
    "the",
    "a",
    "cat",
    "dog",
    "sat",
    "on",
    "mat",
    "hi",
    "hello",
    "world",
    "say",
    "add",
    "one",
    "two",
    "good",
    "day",
    "see",
    "you",
    "bye",
    "no",
    "yes",
]


def workdir(base: Path, run: str) -> str:
    """A copy of the script, the tiny Llama (seeded weights: the same in every run) and the preference pairs."""
    cwd = base / run
    shutil.copytree(CORPUS, cwd)
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "opcheck"))
    try:
        import corpus_fixtures
    finally:
        sys.path.pop(0)
    corpus_fixtures.make(cwd, {"kind": "hf_llama", "path": "tiny-llama"})
    seeded_weights(cwd / "tiny-llama")
    rng = random.Random(0)
    (cwd / "prefs").mkdir()
    with open(cwd / "prefs" / "train.jsonl", "w") as f:
        for _ in range(16):
            prompt, chosen, rejected = (" ".join(rng.choice(WORDS) for _ in range(n)) for n in (6, 5, 7))
            f.write(json.dumps({"prompt": prompt, "chosen": " " + chosen, "rejected": " " + rejected}) + "\n")
    return str(cwd)


def dump(base: Path, run: str, *flags: str, env=None) -> str:
    cwd = workdir(base, run)
    out = str(base / f"{run}.dump")
    proc = cli(cwd, {**OFFLINE, **(env or {})}, "dump", "-o", out, "--mode", "tensor", "--",
               sys.executable, *COMMAND, *flags)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


def fault_env(call: str):
    return {"FAULT_OP": "mm", "FAULT_CALL": call, "PYTHONPATH": FAULT_SITE}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("dpo")
    dump(base, "ref")
    dump(base, "clean")
    dump(base, "fp32", "--bf16", "False")
    dump(base, "beta", "--beta", "0.2")
    for name, call in FAULTS.items():
        cwd = dump(base, name, env=fault_env(call))
        assert fired(cwd) == [f"mm forward {call}"]
    return base


def compare(base: Path, target: str, reference: str, step: int = 0):
    rep = report(str(base), {}, f"{base}/{target}-{reference}-{step}.json", "compare", f"{base}/{target}.dump",
                 f"{base}/{reference}.dump", "--step", str(step))  # fmt: skip
    assert rep["summary"]["pairs"] > 1000  # the trainer's models did run under the capture
    return rep


@pytest.mark.slow
@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("target, reference", [("clean", "ref"), ("ref", "fp32")])
def test_clean_dpo_runs_list_nothing(runs, target, reference, step):
    rep = compare(runs, target, reference, step)
    assert rep["culprits"] == []


@pytest.mark.slow
def test_another_beta_is_named_with_its_argument(runs):
    top = compare(runs, "beta", "ref", 0)["culprits"][0]
    # step 0: the policy is the reference model, the log-ratios are 0, beta * 0 agrees: the backward's mul differs
    assert (top["kind"], top["op"], top["phase"]) == ("divergence", "aten::mul.Tensor", "backward")
    assert any("0.2 vs 0.1" in d for d in top["arg_diff"])
    top = compare(runs, "beta", "ref", 1)["culprits"][0]
    assert (top["kind"], top["op"], top["phase"]) == ("divergence", "aten::mul.Tensor", "forward")
    assert any("0.2 vs 0.1" in d for d in top["arg_diff"])
    assert "dpo_trainer.py" in top["stack"][-1]


@pytest.mark.slow
@pytest.mark.parametrize("model", sorted(FAULTS))
def test_a_faulty_kernel_in_either_model_is_named_first(runs, model):
    rep = compare(runs, model, "ref")
    top = rep["culprits"][0]
    call = FAULTS[model]
    prefix = "" if model == "policy" else "ref_model."  # before: "model.layers.0.mlp.up_proj" in both
    assert (top["kind"], top["name"]) == ("kernel", f"aten::mm#forward#{call}")
    assert top["module"] == prefix + "model.layers.0.mlp.up_proj"
    trainer = [line for line in top["stack"] if "dpo_trainer.py" in line and "_compute_loss" in line]
    assert trainer, top["stack"]
    src = _trainer_line(trainer[-1])
    assert (POLICY_FORWARD if model == "policy" else REFERENCE_FORWARD) in src


@pytest.mark.slow
def test_the_trl_cli_is_captured_like_the_script(runs, tmp_path):
    """``trl dpo ...`` runs ``accelerate launch`` of the same script in-process: before, the ``trl`` process took
    the top role and the training below it recorded nothing."""
    cwd = workdir(tmp_path, "cli")
    trl = os.path.join(os.path.dirname(sys.executable), "trl")
    proc = cli(cwd, OFFLINE, "dump", "-o", f"{tmp_path}/cli.dump", "--mode", "tensor", "--",
               trl, "dpo", *COMMAND[1:])  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rep = report(cwd, {}, f"{tmp_path}/cli.json", "compare", f"{tmp_path}/cli.dump", f"{runs}/ref.dump")
    assert rep["summary"]["pairs"] > 1000 and rep["culprits"] == []


@pytest.mark.slow
def test_shadow_of_the_dpo_script_lists_nothing_and_fails_nowhere(tmp_path):
    cwd = workdir(tmp_path, "shadow")
    rep = report(cwd, OFFLINE, f"{tmp_path}/shadow.json", "shadow", "--", sys.executable, *COMMAND)
    assert rep["summary"]["compared"] > 1000 and rep["summary"]["internal_errors"] == 0
    assert rep["culprits"] == []


def _trainer_line(frame: str) -> str:
    """The source line a stack frame ``trl/trainer/dpo_trainer.py:1299 in _compute_loss`` names."""
    import trl.trainer.dpo_trainer as dpo_trainer

    line = int(frame.split(":")[1].split()[0])
    with open(dpo_trainer.__file__) as f:
        return f.read().splitlines()[line - 1]
