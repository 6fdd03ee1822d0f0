"""An optimizer configured otherwise in the target run: its ops' outputs may stay within twice their tolerance
(AdamW's decoupled weight decay, ``p.mul_(1 - lr * wd)``: 0.02 against 0.01 at lr 5e-4 moves each weight by 5e-6
of itself). A statistics-only compare of karpathy/makemore's GRU said "none found" over 18 warnings, the decayed
weights 1.3 tolerances off, amplification 42, under the 100x bar statistics need (the tensor compare named them:
their largest ULP error is past twice the tolerance). An op given other non-tensor arguments on inputs that agree
is a divergence at a warning too, and from 8x in statistics; without such an argument a warning is still no
cause, nor is a statistics-only ratio under 100x."""

import pytest
import tiny_llama
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps

LR = 5e-4


def run(path, weight_decay, mode):
    model = tiny_llama.build()
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=weight_decay, foreach=False)
    with capture(str(path), level="op", mode=mode, model=model):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
    return str(path)


@pytest.fixture(scope="module", params=["tensor", "stats"])
def runs(tmp_path_factory, request):
    base = tmp_path_factory.mktemp(f"wd-{request.param}")
    return {
        name: run(base / name, wd, request.param)
        for name, wd in (("ref", 0.01), ("clean", 0.01), ("wd", 0.02))
    }


def test_other_weight_decay_is_named_at_the_optimizer_with_its_argument(runs):
    report = compare_dumps(runs["wd"], runs["ref"], step=0)
    summary, first = report.data["summary"], report.data["culprits"][0]
    assert summary["culprits"] + summary["suspects"] >= 1 and first["kind"] == "divergence"
    assert first["phase"] == "optimizer" and first["op"] == "aten::mul_.Tensor"
    # the argument torch's AdamW multiplies each weight by, 1 - lr * weight_decay, in each run
    want = f"args[1]: {1 - LR * 0.02!r} vs {1 - LR * 0.01!r}"
    assert want in first["detail"] and want in summary["cause"]
    # every weight decayed is named, nothing else
    names = {c["op"] for c in report.data["culprits"]}
    assert names == {"aten::mul_.Tensor"}


def test_the_same_configuration_lists_nothing(runs):
    report = compare_dumps(runs["clean"], runs["ref"], step=0)
    assert report.data["culprits"] == [] and report.data["summary"]["cause"] == "none found"
