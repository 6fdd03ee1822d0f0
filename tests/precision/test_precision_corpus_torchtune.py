"""``dump``/``compare``/``shadow`` on pytorch/torchtune's ``recipes/full_finetune_single_device.py`` (the check-ops
corpus copy, byte for byte; PROVENANCE.md there) with its Llama 3.2 1B config, ``optimizer_in_bwd: True``: torchtune's
``OptimizerInBackward`` steps one optimizer per parameter from gradient hooks inside backward, and the recipe still
calls its no-op ``step()`` after it. Run unmodified through the zero-code-change CLI on the CPU with the truth's
command and fixtures (a tiny Llama 3.2 checkpoint, a byte-level tokenizer, an alpaca-cleaned datasets cache), plus
``device=cpu``, ``optimizer._component_=torch.optim.AdamW`` (the YAML's bitsandbytes PagedAdamW8bit needs CUDA),
``max_steps_per_epoch=3`` (two steps of the fixture's eight rows) and ``dtype`` fp32 (the reference) or bf16.

Found this way, each fixed with a CI test of its own: each per-parameter ``optimizer.step()`` ended a step (a
two-step run read as dozens of steps, their optimizer ops as backward ops) and the recipe's no-op step another
(test_capture.py, test_shadow.py); the recipe's tokens-per-second log value (``num_tokens / time_per_step``) was a
proven divergence in two clean fp32 runs (test_logged_values.py).

Needs torchtune at the recipe's commit, torchao and torchdata (``make_venv_torchtune.sh``), which CI's venvs do not
install: run by hand (docs/precision.md, "torchtune").
"""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from test_precision_corpus import CORPUS, cli, fixtures, report, truth

for name in ("torchtune", "torchao", "torchdata", "omegaconf"):
    pytest.importorskip(name)

FLAGS = ["device=cpu", "optimizer._component_=torch.optim.AdamW", "max_steps_per_epoch=3", "log_peak_memory_stats=False"]  # fmt: skip
ENV = {"HF_DATASETS_CACHE": "hf-datasets", "HF_DATASETS_OFFLINE": "1"}


def run(base: Path, name: str, verb_args, dtype: str) -> str:
    cwd = base / name
    shutil.copytree(os.path.join(CORPUS, "torchtune_full"), cwd)
    fixtures("torchtune_full", cwd)
    command = [sys.executable, *truth("torchtune_full")["command"][1:], *FLAGS, f"dtype={dtype}"]
    proc = cli(str(cwd), ENV, *verb_args, "--", *command)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(cwd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("torchtune")
    for name, dtype in (("ref", "fp32"), ("clean", "fp32"), ("bf16", "bf16")):
        run(base, name, ("dump", "-o", f"{base}/{name}.dump", "--mode", "tensor"), dtype)
    return base


@pytest.mark.slow
def test_one_step_per_backward_with_the_optimizer_ops_in_it(runs):
    with open(runs / "ref.dump" / "rank0" / "meta.json") as f:
        assert sorted(json.load(f)["steps_recorded"]) == ["0", "1"]
    for step in (0, 1):
        with open(runs / "ref.dump" / "rank0" / f"step{step}" / "records.jsonl") as f:
            phases = {r["phase"] for r in map(json.loads, f)}
        assert {"forward", "backward", "optimizer"} <= phases


@pytest.mark.slow
@pytest.mark.parametrize("target", ["clean", "bf16"])
@pytest.mark.parametrize("step", [0, 1])
def test_clean_runs_list_nothing(runs, target, step):
    out = f"{runs}/{target}-{step}.json"
    rep = report(
        str(runs), {}, out, "compare", f"{runs}/{target}.dump", f"{runs}/ref.dump", "--step", str(step)
    )
    assert rep["summary"]["pairs"] > 900
    assert [(c["kind"], c["name"]) for c in rep["culprits"]] == []


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_shadow_lists_nothing(tmp_path, dtype):
    run(tmp_path, "shadow", ("shadow", "--fail-on", "never", "-f", "json", "-o", f"{tmp_path}/s.json"), dtype)
    with open(tmp_path / "s.json") as f:
        rep = json.load(f)
    assert rep["summary"]["compared"] > 500 and rep["summary"]["internal_errors"] == 0
    assert rep["summary"]["steps"][:2] == [0, 1]  # then the checkpoint save after training
    assert rep["culprits"] == []
