"""The replay's truth is float32 for 16-bit outputs (float64 otherwise), and it reaches the verdicts a float64
truth reaches; the screened metric in float32 equals the full metrics' and falls back to float64 where float32
overflows."""

import pytest
import torch

from ascend_tools.precision import metrics as M
from ascend_tools.precision.replay import replay
from ascend_tools.precision.screen import judge_output, screen

aten = torch.ops.aten


def _positional(tensors):
    return tuple(tensors), {}


def _run(op, name, inputs, produced, reduction=None):
    return replay(op, name, _positional, inputs, [produced], reduction)


def _inputs(dtype, seed, *shapes):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g).to(dtype) for s in shapes]


@pytest.mark.parametrize(
    "dtype,truth", [(torch.bfloat16, "float32"), (torch.float16, "float32"), (torch.float32, "float64")]
)
def test_truth_dtype_follows_the_target_output(dtype, truth):
    a, b = _inputs(dtype, 0, (8, 64), (64, 8))
    found = _run(aten.mm.default, "aten::mm", [a, b], aten.mm.default(a, b), reduction=64)
    assert found is not None and found.metrics.reference_dtype == truth


def test_a_float64_input_keeps_a_float64_truth():
    x, scale = torch.randn(100).to(torch.bfloat16), torch.tensor(1.0 / 3.0, dtype=torch.float64)
    out = aten.mul.Tensor(x, scale)  # a 0-dim float64 operand leaves the output bfloat16
    found = _run(aten.mul.Tensor, "aten::mul.Tensor", [x, scale], out)
    assert out.dtype == torch.bfloat16
    assert found is not None and found.metrics.reference_dtype == "float64"


def _off(out, ulps, seed):
    """``out`` with a few elements moved by ``ulps`` ULPs of its dtype (0: unchanged)."""
    bad = out.contiguous().clone()
    if ulps:
        idx = torch.randperm(out.numel(), generator=torch.Generator().manual_seed(seed))[:3]
        flat = bad.view(-1)
        eps = torch.finfo(out.dtype).eps
        flat[idx] = (flat[idx].double() * (1 + ulps * eps) + ulps * eps).to(out.dtype)
    return bad


CASES = [
    (aten.mm.default, "aten::mm", ((16, 256), (256, 16)), 256),
    (aten.add.Tensor, "aten::add.Tensor", ((500,), (500,)), None),
    (aten.mul.Tensor, "aten::mul.Tensor", ((500,), (500,)), None),
    (aten.silu.default, "aten::silu", ((700,),), None),
    (aten.exp.default, "aten::exp", ((300,),), None),
    (aten.t.default, "aten::t", ((30, 40),), None),
    (aten.neg.default, "aten::neg", ((300,),), None),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("op,name,shapes,reduction", CASES)
@pytest.mark.parametrize("ulps", [0, 1, 3, 8, 64])
def test_float32_truth_gives_the_float64_verdict(dtype, op, name, shapes, reduction, ulps):
    inputs = _inputs(dtype, len(name) + ulps, *shapes)
    produced = _off(op(*inputs), ulps, seed=ulps)
    found = _run(op, name, inputs, produced, reduction)
    truth64 = op(*[x.double() for x in inputs])  # independent: the float64 truth, judged directly
    _, expected = judge_output(name, produced, truth64, reduction)
    assert found is not None and found.metrics.reference_dtype == "float32"
    assert found.verdict.level == expected.level
    # the float32 truth's own error: ~sqrt(K) * 2**-24, at most a hundredth of a target ULP here
    assert found.verdict.value == pytest.approx(expected.value, rel=1e-3, abs=1e-2)


@pytest.mark.parametrize(
    "standard,metric", [("absolute", "max_ulp_err"), ("benchmark", "max_scaled_ulp_err")]
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_screen_against_a_float32_truth_equals_the_full_metrics(standard, metric, dtype):
    r = torch.randn(70_000, generator=torch.Generator().manual_seed(3))
    t = (r * (1 + 0.01 * torch.randn(70_000, generator=torch.Generator().manual_seed(4)))).to(dtype)
    t[:5000] = r[:5000].to(dtype)  # a first block equal to its reference where exact, others not
    got = screen(standard, t, r)
    assert got is not None
    assert getattr(got, metric) == pytest.approx(getattr(M.compare_tensors(t, r), metric), rel=1e-12, abs=0)


def test_screen_in_float32_falls_back_to_float64_on_overflow_and_defers_on_inf():
    r = torch.tensor([-3e38, 1.0, 2.0])
    t = torch.tensor([3e38, 1.0, 2.0]).to(torch.bfloat16)  # t - r overflows float32
    got = screen("absolute", t, r)
    expected = float((t.double()[0] - r.double()[0]).abs() / 2.0**127 * 2.0**7)
    assert got is not None and got.max_ulp_err == pytest.approx(expected, rel=1e-12)
    inf = torch.tensor([float("inf"), 1.0])
    assert screen("absolute", inf.to(torch.bfloat16), inf) is None  # equal, but inf - inf: the full metrics
