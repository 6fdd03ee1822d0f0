"""Causes in a ``level="mix"`` dump: module records beside op records. A bf16 run against fp32 (the same weights, the
same batch) lists nothing, at step 0 and after (where every parameter has drifted by the step before).

Before: the model's forward (its inputs are token ids: nothing float to agree, so any output difference read as an
infinite amplification), each parameter's module-level gradient record (no input at all) and, after step 0, modules
whose weights had drifted (a module record does not hold its parameters) were listed as divergences: 4 to 22
suspects per rank and step on MedicalGPT's LoRA script under DDP (test_precision_corpus_ddp_lora.py)."""

import pytest
import torch
from tiny_llama import build

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps


def train(out, dtype):
    model = build().to(dtype)
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    with capture(out, level="mix", mode="tensor", stack=False):
        for _ in range(2):
            model(input_ids=ids, labels=ids).loss.float().backward()
            opt.step()
            opt.zero_grad()


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mix")
    train(str(tmp / "fp32"), torch.float32)
    train(str(tmp / "bf16"), torch.bfloat16)
    return tmp


@pytest.mark.parametrize("step", [0, 1])
def test_a_clean_bf16_mix_dump_against_fp32_lists_nothing(dumps, step):
    report = compare_dumps(str(dumps / "bf16"), str(dumps / "fp32"), step=step)
    names = [p["name"] for p in report.data["pairs"]]
    assert any(n.startswith("aten::") for n in names) and any(
        "#forward#" in n and "::" not in n for n in names
    )
    assert [(c["kind"], c["name"]) for c in report.data["culprits"]] == []
