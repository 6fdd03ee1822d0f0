"""``dump``/``compare`` on a Hugging Face ``Trainer`` script none of the tests were written for: tatsu-lab/
stanford_alpaca's ``train.py`` (the corpus copy, byte for byte; PROVENANCE.md there), run unmodified through the
zero-code-change CLI on the CPU with a tiny local Llama (two layers, weights drawn from a seeded config) and the
check-ops truth's two-example dataset, fp32 (and bf16 autocast, ``--bf16``), two optimizer steps.

Two clean runs of the same command must list nothing, with tensors and with statistics only, and so must `shadow`
of one run, without an internal error, and a bf16 run against an fp32 one; a faulty ``mm`` kernel on one call
(``corpus_fault/``, as in test_precision_corpus.py) must be named first by both. Found this way:
``resize_token_embeddings`` copies the old rows into the new ``lm_head.weight.data`` (an alias with a version
counter of its own: compare named the parameter as a cause), after initialising them with ``normal_``/``uniform_``
(two runs' random numbers, read by nothing: a divergence in stats mode); ``copy.deepcopy`` of the token ids copies
into fresh uninitialised memory (listed as different data); shadow failed on every op that moved a CPU tensor to
the meta device while the model loaded.

The script needs ``transformers`` 4.x (``Trainer(tokenizer=...)``, removed in 5.0: CI's second leg) and
``accelerate``; its ``utils.py`` imports ``openai.openai_object`` (openai<1), stood in for by ``corpus_stubs/``.
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
import transformers
from suite_runs import seeded_weights
from test_precision_corpus import CORPUS, FAULT_SITE, HERE, cli, fired, fixtures, report

pytest.importorskip("accelerate")
if int(transformers.__version__.split(".")[0]) >= 5:
    pytest.skip(
        "stanford_alpaca passes Trainer(tokenizer=...), removed in transformers 5", allow_module_level=True
    )

STUBS = os.path.join(HERE, "corpus_stubs")
#: a faulty CPU mm kernel (corpus_fault/sitecustomize.py) on call 5 of the forward: per layer q, k, v, o_proj (0-3),
#: then the MLP's gate_proj (4) and up_proj (5) of layer 0
FAULT = {"FAULT_OP": "mm", "FAULT_CALL": "5", "PYTHONPATH": os.pathsep.join([FAULT_SITE, STUBS])}
FAULTY = {"name": "aten::mm#forward#5", "module": "model.layers.0.mlp.up_proj"}
GEMMA = ["--model_name_or_path", "./tiny-gemma"]  # a later flag wins (HfArgumentParser)
COMMAND = [
    "train.py", "--model_name_or_path", "./tiny-llama", "--data_path", "./alpaca_tiny.json", "--output_dir", "./out",
    "--max_steps", "2", "--per_device_train_batch_size", "1", "--model_max_length", "64", "--report_to", "none",
    "--save_strategy", "no",
]  # fmt: skip


def workdir(base: Path, run: str) -> str:
    """A copy of the script with the truth's fixtures, the tiny Llama's weights (seeded: the same in every run) and
    a tiny Gemma beside it (``./tiny-gemma``: the same tokenizer)."""
    import torch

    cwd = base / run
    shutil.copytree(os.path.join(CORPUS, "alpaca"), cwd)
    fixtures("alpaca", cwd)
    seeded_weights(cwd / "tiny-llama")
    config = transformers.AutoConfig.from_pretrained(cwd / "tiny-llama")
    torch.manual_seed(0)
    gemma = transformers.GemmaConfig(
        vocab_size=config.vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=128,
    )  # fmt: skip
    transformers.AutoModelForCausalLM.from_config(gemma).save_pretrained(cwd / "tiny-gemma")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(cwd / "tiny-llama" / name, cwd / "tiny-gemma" / name)
    return str(cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("alpaca")
    for mode in ("tensor", "stats"):
        for run in ("ref", "clean"):
            cwd = workdir(base, f"{mode}-{run}")
            proc = cli(cwd, {"PYTHONPATH": STUBS}, "dump", "-o", f"{base}/{mode}-{run}.dump", "--mode", mode,
                       "--", sys.executable, *COMMAND)  # fmt: skip
            assert proc.returncode == 0, proc.stderr[-3000:]
    cwd = workdir(base, "fault")
    proc = cli(
        cwd, FAULT, "dump", "-o", f"{base}/fault.dump", "--mode", "tensor", "--", sys.executable, *COMMAND
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fired(cwd) == ["mm forward 5"]
    # the same command in bf16 (CPU autocast through accelerate; --use_cpu: the Trainer refuses bf16 on a CPU
    # otherwise): the usual target against an fp32 reference; and both on the Gemma
    for run, extra in (
        ("bf16", ["--use_cpu", "True", "--bf16", "True"]),
        ("gemma-fp32", GEMMA),
        ("gemma-bf16", [*GEMMA, "--use_cpu", "True", "--bf16", "True"]),
    ):
        cwd = workdir(base, run)
        proc = cli(cwd, {"PYTHONPATH": STUBS}, "dump", "-o", f"{base}/{run}.dump", "--mode", "tensor",
                   "--", sys.executable, *COMMAND, *extra)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    return base


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["tensor", "stats"])
@pytest.mark.parametrize("step", [0, 1])
def test_two_clean_trainer_runs_list_nothing(runs, mode, step):
    rep = report(str(runs), {}, f"{runs}/{mode}-{step}.json", "compare", f"{runs}/{mode}-clean.dump",
                 f"{runs}/{mode}-ref.dump", "--step", str(step))  # fmt: skip
    assert len(rep["pairs"]) > 500  # the Trainer's model did run under the capture
    assert [c["name"] for c in rep["culprits"]] == []


@pytest.mark.slow
@pytest.mark.parametrize("step", [0, 1])
def test_a_clean_bf16_trainer_run_against_fp32_lists_nothing(runs, step):
    """Before: at step 1, "parameter model.embed_tokens.weight differs from the reference's: error 0.000125": the
    drift step 0's bf16 update carried into it (diagnose.CARRIED_PARAMETER_ERROR)."""
    rep = report(str(runs), {}, f"{runs}/bf16-{step}.json", "compare", f"{runs}/bf16.dump",
                 f"{runs}/tensor-ref.dump", "--step", str(step))  # fmt: skip
    assert len(rep["pairs"]) > 500
    assert [c["name"] for c in rep["culprits"]] == []


@pytest.mark.slow
def test_a_clean_bf16_gemma_against_fp32_lists_nothing(runs):
    """Before: 4 suspected divergences, first aten::rsqrt#forward#1 in layers.0.post_attention_layernorm at 21.9x
    (relative L2 2.0e-5 in, 4.5e-4 out: the smallest variances are the largest outputs and the least precise)."""
    rep = report(
        str(runs), {}, f"{runs}/gemma.json", "compare", f"{runs}/gemma-bf16.dump", f"{runs}/gemma-fp32.dump"
    )
    assert len(rep["pairs"]) > 500
    assert [c["name"] for c in rep["culprits"]] == []


@pytest.mark.slow
def test_a_faulty_kernel_under_the_trainer_is_named_first(runs, tmp_path):
    rep = report(
        str(runs), {}, f"{runs}/fault.json", "compare", f"{runs}/fault.dump", f"{runs}/tensor-ref.dump"
    )
    top = rep["culprits"][0]
    assert (top["kind"], top["name"], top["module"]) == ("kernel", FAULTY["name"], FAULTY["module"])
    cwd = workdir(tmp_path, "shadow-fault")
    rep = report(cwd, FAULT, f"{tmp_path}/shadow.json", "shadow", "--", sys.executable, *COMMAND)
    assert fired(cwd) == ["mm forward 5"]
    assert (rep["culprits"][0]["name"], rep["culprits"][0]["module"]) == (FAULTY["name"], FAULTY["module"])


@pytest.mark.slow
def test_shadow_of_the_trainer_script_lists_nothing_and_fails_nowhere(tmp_path):
    """Before: 21 internal errors, one per op that moved a CPU tensor to the meta device while transformers 4.x
    loaded the model (CPU inputs, a meta output with no data to copy)."""
    cwd = workdir(tmp_path, "shadow")
    rep = report(
        cwd, {"PYTHONPATH": STUBS}, f"{tmp_path}/shadow.json", "shadow", "--", sys.executable, *COMMAND
    )
    assert rep["summary"]["compared"] > 500 and rep["summary"]["steps"] == [0, 1]
    assert rep["summary"]["internal_errors"] == 0
    assert rep["culprits"] == []
