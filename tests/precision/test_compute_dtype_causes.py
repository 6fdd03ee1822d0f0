"""A bfloat16 run against its float32 reference where the compute dtype changes which kernels run and how well
conditioned the backward is: two false causes karpathy/nanochat's ``base_train.py`` showed (``NANOCHAT_DTYPE=
bfloat16`` against ``float32``, tensor dumps of steps 0-1; docs/precision.md, "nanochat"), rebuilt small:

* aten's matmul folds a 3-D input into one ``mm`` in one run and calls ``bmm`` with a batch of one in the other
  (nanochat's smear gate: its weight's bf16 cast makes a copy); the bmm was a "target-only op", the first culprit
  of step 0. Here the target calls the bmm itself, as a device backend that decomposes matmul otherwise would.
* a scalar parameter that scales an activation (nanochat's ``resid_lambdas``, ``smear_lambda``) gets its gradient
  from a sum over the whole activation, in bf16 when the activation is: with a gradient that cancels, the sum is
  hundreds of tolerances off fp32's while its inputs are within theirs: "output diverges while inputs agree",
  every step, though the kernel is right for its inputs and nothing in the code differs.
"""

import json

import pytest
import torch
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision import capture


class Gated(torch.nn.Module):
    def __init__(self, dtype: torch.dtype, batched: bool) -> None:
        super().__init__()
        self.dtype, self.batched = dtype, batched
        self.proj = torch.nn.Linear(64, 64, bias=False)
        self.lam = torch.nn.Parameter(torch.tensor([1.1, 0.9]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.dtype)
        w = self.proj.weight.to(self.dtype)  # nanochat's Linear: the weight cast to the activations' dtype
        if self.batched:
            h = torch.bmm(x.unsqueeze(0), w.t().unsqueeze(0)).squeeze(0)
        else:
            h = torch.mm(x, w.t())
        return self.lam[0] * h + self.lam[1] * x  # a 0-d float32 scalar keeps the product in x's dtype


def run(out: str, dtype: torch.dtype, batched: bool) -> None:
    torch.manual_seed(0)
    model = Gated(dtype, batched)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(1)
    x = 1 + 0.01 * torch.rand(2048, 64, generator=gen)  # near 1: bf16 rounds them all the same way
    signs = torch.ones(2048, 64)
    signs[::2] = -1  # a gradient of alternating signs: the scalars' gradients cancel
    with capture(out, mode="tensor", model=model):
        (model(x).float() * signs).sum().backward()
        opt.step()
        opt.zero_grad()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("dtype")
    # one thread: torch's CPU sum of a bf16 tensor split over threads rounds each thread's partial sum to bf16
    # (two threads, this cancelling sum: -0.0586 against the true -0.06146, 12 ULPs of the result; one thread
    # -0.06152): a kernel that is not right for its inputs, which compare rightly names, and not this test's case
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(str(base / "ref"), torch.float32, batched=False)
        run(str(base / "bf16"), torch.bfloat16, batched=True)
    finally:
        torch.set_num_threads(threads)
    result = CliRunner().invoke(main, ["compare", str(base / "bf16"), str(base / "ref"), "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_clean_bf16_run_lists_nothing(report):
    assert [(c["kind"], c["name"]) for c in report["culprits"]] == []
    assert report["summary"]["cause"] == "none found"


def test_the_batch_of_one_pairs_with_the_mm_and_is_judged(report):
    bmm = [p for p in report["pairs"] if p["name"] == "aten::bmm#forward#0"]
    assert len(bmm) == 1 and bmm[0]["how"] == "sequence" and bmm[0]["verdict"] in ("pass", "warning")
    assert not [p for p in report["pairs"] if p["name"] == "aten::mm#forward#0"]  # not left reference-only


def test_the_cancelling_backward_sums_are_off_the_reference_yet_no_cause(report):
    sums = [p for p in report["pairs"] if p["name"].startswith("aten::sum#backward")]
    assert len(sums) == 2 and all(p["target_dtype"] == "bfloat16" for p in sums)
    # far off fp32's sums (what a divergence needs), from inputs within their tolerance
    assert all(p["verdict"] == "error" and p["error_ratio"] > 10 for p in sums)
