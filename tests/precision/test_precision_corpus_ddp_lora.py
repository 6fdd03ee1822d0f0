"""``dump``/``compare``/``shadow`` on a LoRA fine-tuning script under torchrun with two DDP ranks, none of the tests
written for it: shibing624/MedicalGPT's ``training/supervised_finetuning.py`` (the check-ops corpus copy, byte for
byte; PROVENANCE.md there), Hugging Face ``Trainer`` + peft LoRA on every linear layer + gradient checkpointing,
run unmodified through the zero-code-change CLI on the CPU (gloo) with the check-ops truth's command and fixtures
(a two-layer Llama, weights drawn from a seeded config), two optimizer steps. The truth's flags are kept but for
``--use_cpu True`` (without it a CPU-only Trainer trains each rank alone, without DDP), ``--max_steps 2``,
``--report_to none --save_strategy no``; the reference is ``--torch_dtype float32``, the usual target ``--torch_dtype
bfloat16 --bf16`` (the base weights in bf16, the LoRA weights in float32, CPU autocast).

On both ranks: two clean fp32 runs list nothing (tensors and statistics, steps 0 and 1), nor does the bf16 run
against the fp32 one (also with module records, ``--level mix``), nor ``shadow`` of either; a LoRA flag that differs
from the reference's (``--lora_alpha``, ``--lora_dropout``) is named first, with the argument that differs; a faulty ``mm`` kernel on one forward call (``corpus_fault/``, as in
test_precision_corpus.py) is named first by ``compare`` and by ``shadow``. Found this way (each fixed, with a unit
test in test_capture_ddp.py): DDP's reducer views its gradient buckets (``as_strided``) after the all-reduce, which
gloo writes after ``c10d::allreduce_`` returns: the capture read the views' input as the rank's own gradients and
compare listed the views as kernel errors 10^11 tolerances off their replay (bf16 vs fp32, 6 to 15 per rank and
step); DDP's start-up broadcast flattens parameters with one ``cat`` per dtype, listed as a target-only op in the bf16
run (fp32 LoRA weights beside bf16 base weights).

Needs what the script imports (``peft``, ``datasets``, ``loguru``) and transformers 4.x, which CI's venvs do not
have (the time they would add): run by hand in a venv with them (docs/precision.md, "Real scripts").
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import transformers
from suite_runs import seeded_weights
from test_precision_corpus import CORPUS, FAULT_SITE, cli, fired, fixtures, report, truth

for name in ("peft", "datasets", "loguru"):
    pytest.importorskip(name)
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip("the corpus truth of MedicalGPT is measured with transformers 4.57", allow_module_level=True)

RANKS = (0, 1)
#: a faulty CPU mm kernel (corpus_fault/sitecustomize.py) on forward call 3 of each rank: layer 0's q_proj base
#: layer, its LoRA A and B (0-2), then k_proj's base layer (call 5, k_proj's lora_B, multiplies by LoRA's zero
#: initialisation: a fault there changes nothing)
FAULT = {"FAULT_OP": "mm", "FAULT_CALL": "3", "PYTHONPATH": FAULT_SITE}
FAULTY = ("aten::mm#forward#3", "module.base_model.model.model.layers.0.self_attn.k_proj.base_layer")
BF16 = ["--torch_dtype", "bfloat16", "--bf16", "True"]  # a later flag wins (HfArgumentParser)
#: a LoRA hyperparameter that differs from the reference's launch (the truth's: alpha 16, dropout 0.05): the cause
#: compare must name, with the argument that differs (scaling alpha / rank: 4.0 vs 2.0; dropout's keep probability)
CONFIGS = {"alpha": ["--lora_alpha", "32"], "dropout": ["--lora_dropout", "0.1"]}
WANT = {
    "alpha": ("aten::mul.Tensor", "args[1]: 4.0 vs 2.0"),
    "dropout": ("aten::bernoulli_.float", "args[1]: 0.9 vs 0.95"),
}


def command():
    """The truth's torchrun command, for this interpreter's torchrun, on the CPU, two steps."""
    cmd = truth("medicalgpt_sft")["command"]
    assert cmd[0] == "torchrun"
    return [sys.executable, "-m", "torch.distributed.run", *cmd[1:], "--use_cpu", "True", "--max_steps", "2",
            "--torch_dtype", "float32", "--bf16", "False", "--report_to", "none", "--save_strategy", "no"]  # fmt: skip


def workdir(base: Path, run: str) -> str:
    """A copy of the script with the truth's fixtures and the tiny Llama's weights (seeded: the same in every run)."""
    cwd = base / run
    shutil.copytree(os.path.join(CORPUS, "medicalgpt_sft"), cwd)
    fixtures("medicalgpt_sft", cwd)
    seeded_weights(cwd / "tiny-llama")
    return str(cwd)


def read_json(path: str):
    with open(path) as f:
        return json.load(f)


def run(base: Path, name: str, verb_args, env=None, extra=()):
    cwd = workdir(base, name)
    proc = cli(cwd, env or {}, *verb_args, "--", *command(), *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("medicalgpt")
    for mode in ("tensor", "stats"):
        for name, extra in (("ref", ()), ("clean", ()), ("bf16", BF16)):
            run(
                base,
                f"{mode}-{name}",
                ("dump", "-o", f"{base}/{mode}-{name}.dump", "--mode", mode),
                extra=extra,
            )
    for name, extra in (("ref", ()), ("bf16", BF16)):  # module records beside the ops
        run(base, f"mix-{name}", ("dump", "-o", f"{base}/mix-{name}.dump", "--level", "mix"), extra=extra)
    for name, extra in CONFIGS.items():  # a launch flag that differs from the reference's
        run(base, name, ("dump", "-o", f"{base}/{name}.dump", "--mode", "tensor"), extra=extra)
    cwd = run(base, "fault", ("dump", "-o", f"{base}/fault.dump", "--mode", "tensor"), env=FAULT)
    assert fired(cwd) == ["mm forward 3"] * len(RANKS)
    return base


def compare(base: Path, target: str, reference: str, rank: int, step: int):
    out = f"{base}/{target}-{rank}-{step}.json"
    return report(str(base), {}, out, "compare", f"{base}/{target}.dump", f"{base}/{reference}.dump",
                  "--rank", str(rank), "--step", str(step))  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("target", ["clean", "bf16"])
@pytest.mark.parametrize("mode", ["tensor", "stats"])
@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("rank", RANKS)
def test_clean_ddp_lora_runs_list_nothing(runs, target, mode, step, rank):
    rep = compare(runs, f"{mode}-{target}", f"{mode}-ref", rank, step)
    assert len(rep["pairs"]) > 1000  # the Trainer's model did run under the capture
    assert [(c["kind"], c["name"]) for c in rep["culprits"]] == []


@pytest.mark.slow
@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("rank", RANKS)
def test_a_clean_bf16_mix_dump_lists_nothing(runs, step, rank):
    """Before: 4 to 22 suspects per rank and step, module records (test_mix_level_causes.py)."""
    rep = compare(runs, "mix-bf16", "mix-ref", rank, step)
    assert [(c["kind"], c["name"]) for c in rep["culprits"]] == []


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("rank", RANKS)
def test_a_lora_flag_that_differs_is_named_first_with_its_argument(runs, config, rank):
    """Before the module paths followed activation checkpointing, the alpha's scaling was named at the root."""
    rep = compare(runs, config, "tensor-ref", rank, 0)
    top = rep["culprits"][0]
    op, diff = WANT[config]
    assert (top["kind"], top["op"], top["verdict"]) == ("divergence", op, "error")
    assert diff in top["arg_diff"]
    assert top["module"].startswith("module.base_model.model.model.layers.")  # a LoRA layer of the model


@pytest.mark.slow
@pytest.mark.parametrize("rank", RANKS)
def test_a_faulty_kernel_under_ddp_is_named_first_on_every_rank(runs, rank):
    rep = compare(runs, "fault", "tensor-ref", rank, 0)
    top = rep["culprits"][0]
    assert (top["kind"], top["name"], top["module"]) == ("kernel", *FAULTY)


@pytest.mark.slow
@pytest.mark.parametrize("extra", [(), BF16], ids=["fp32", "bf16"])
def test_shadow_of_the_ddp_lora_script_lists_nothing_and_fails_nowhere(tmp_path, extra):
    run(
        tmp_path,
        "shadow",
        ("shadow", "--fail-on", "never", "-f", "json", "-o", f"{tmp_path}/shadow.json"),
        extra=extra,
    )
    rep = read_json(f"{tmp_path}/shadow.json")
    assert rep["summary"]["ranks"] == list(RANKS) and rep["summary"]["compared"] > 2000
    assert rep["summary"]["internal_errors"] == 0
    assert rep["culprits"] == []


@pytest.mark.slow
def test_shadow_names_the_faulty_kernel_first_on_every_rank(tmp_path):
    cwd = run(
        tmp_path,
        "shadow",
        ("shadow", "--fail-on", "never", "-f", "json", "-o", f"{tmp_path}/shadow.json"),
        env=FAULT,
    )
    assert fired(cwd) == ["mm forward 3"] * len(RANKS)
    rep = read_json(f"{tmp_path}/shadow.json")
    assert [(c["name"], c["module"]) for c in rep["culprits"][:2]] == [FAULTY, FAULTY]
