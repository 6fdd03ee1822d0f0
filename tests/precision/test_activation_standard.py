"""GELU/SiLU/tanh-family outputs are judged tightly enough to catch an approximation swap: against the float64
function on the same (rounded) inputs, a correct kernel in bf16/fp16/fp32 passes, and an approximation a
fast kernel might use fails (``x * sigmoid(1.702 x)`` for GELU: 2.83 ULPs of the output's RMS in bf16,
which the 4-ULP "benchmark" floor used to pass)."""

import pytest
import torch
import torch.nn.functional as F

from ascend_tools.precision import metrics, standards
from ascend_tools.precision.screen import judge_output

X = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * 2
CORRECT = {
    "aten::gelu": F.gelu,
    "aten::silu": F.silu,
    "aten::tanh": torch.tanh,
    "aten::sigmoid": torch.sigmoid,
    "aten::exp": torch.exp,
}
APPROXIMATIONS = {
    "aten::gelu": lambda x: x * torch.sigmoid(1.702 * x),  # "fast GELU", rel L2 ~1%
    "aten::tanh": lambda x: (x * (27 + x * x) / (27 + 9 * x * x)).clamp(-1, 1),  # Pade [3/2]
    "aten::silu": lambda x: x * F.hardsigmoid(1.2 * x),
    "aten::sigmoid": F.hardsigmoid,
}


def verdicts(name, produced, truth):
    """The verdict of the full metrics and of shadow's screened path: they must agree."""
    full = standards.judge(metrics.compare_tensors(produced, truth), name)
    _, screened = judge_output(name, produced, truth, None)
    assert full.level == screened.level, (full.reason, screened.reason)
    return full


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("name", sorted(CORRECT))
def test_a_correct_kernel_passes(name, dtype):
    x = X.to(dtype)
    v = verdicts(name, CORRECT[name](x), CORRECT[name](x.double()))
    assert v.standard == "activation" and v.level == "pass", v.reason


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize("name", sorted(APPROXIMATIONS))
def test_an_approximation_fails(name, dtype):
    x = X.to(dtype)
    produced = APPROXIMATIONS[name](x.double()).to(dtype)  # the approximation, correctly rounded
    v = verdicts(name, produced, CORRECT[name](x.double()))
    assert v.level == "error", v.reason
