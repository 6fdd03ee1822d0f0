"""Verdicts: bf16 rounding passes, real faults fail; the standards table is generated from msprobe's."""

import importlib.util
import os
import subprocess
import sys

import pytest
import torch

from ascend_tools.precision.metrics import compare_stats, compare_tensors
from ascend_tools.precision.records import TensorStats
from ascend_tools.precision.standards import (
    RTOL,
    canonical_op_name,
    expected_rounding_error,
    judge,
    judge_stats,
    reduction_length,
    reduction_ulp,
    rounding_ulp,
    standard_for,
    stats_tolerance,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    "gen_precision_standards", os.path.join(ROOT, "tools", "gen_precision_standards.py")
)
gen_precision_standards = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_precision_standards)

ELEMENTWISE = ("aten::add.Tensor", "aten::mul.Tensor", "aten::div.Tensor", "aten::rsqrt")
MATMUL = ("aten::mm", "aten::bmm", "aten::matmul", "aten::linear", "aten::addmm")
OTHERS = ("aten::relu", "aten::_softmax", "aten::silu", "aten::convolution")


def perturb(x: torch.Tensor, share: float = 0.01, by: float = 0.10, seed: int = 0) -> torch.Tensor:
    """``x`` with ``share`` of its elements (at random) scaled by 1 + ``by``, in x's dtype."""
    g = torch.Generator().manual_seed(seed)
    flat = x.detach().clone().reshape(-1)
    idx = torch.randperm(flat.numel(), generator=g)[: max(1, int(share * flat.numel()))]
    flat[idx] = (flat[idx].double() * (1 + by)).to(x.dtype)
    return flat.reshape(x.shape)


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    return torch.randn(64, 64, generator=g) * 2


@pytest.mark.parametrize("op", ELEMENTWISE + MATMUL + OTHERS)
def test_clean_bf16_cast_passes(data, op):
    v = judge(compare_tensors(data.bfloat16(), data), op)
    assert v.level == "pass", v.reason
    half = judge(compare_tensors(data.half(), data), op)
    assert half.level == "pass", half.reason


def test_bf16_matmul_against_fp32_reference_passes():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    target = a.bfloat16() @ b.bfloat16()  # inputs rounded to bf16, fp32 accumulation, bf16 output
    m = compare_tensors(target, a @ b)
    k = reduction_length("aten::mm", [[64, 64], [64, 64]])
    assert k == 64
    for reduction in (k, None):
        v = judge(m, "aten::mm", reduction)
        assert v.level == "pass", v.reason
        assert v.metric == "max_scaled_ulp_err"
    # the same product replayed in float64 on the bf16 inputs: only the output rounding is left
    replay = judge(compare_tensors(target, a.bfloat16().double() @ b.bfloat16().double()), "aten::mm", k)
    assert replay.level == "pass" and replay.value <= 0.5 + 1e-6
    # batched and fp32-vs-fp64 at a longer reduction
    x, y = torch.randn(4, 32, 512, generator=g), torch.randn(4, 512, 48, generator=g)
    assert judge(compare_tensors(x.bfloat16() @ y.bfloat16(), x @ y), "aten::bmm", 512).level == "pass"
    assert judge(compare_tensors(x @ y, x.double() @ y.double()), "aten::bmm", 512).level == "pass"


@pytest.mark.parametrize("op", ELEMENTWISE + MATMUL + OTHERS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_one_percent_of_elements_off_by_ten_percent_is_an_error(data, op, dtype):
    target = perturb(data.to(dtype))
    v = judge(compare_tensors(target, data.double()), op, 64)
    assert v.level == "error", v.reason


def test_matmul_fault_is_an_error():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    v = judge(compare_tensors(perturb(a.bfloat16() @ b.bfloat16()), a @ b), "aten::mm", 64)
    assert v.level == "error", v.reason


def test_fp16_softmax_with_saturation_is_an_error():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 16, 64, generator=g) * 30000  # many beyond fp16's 65504
    reference = torch.softmax(logits, dim=-1)
    saturated = logits.half().clamp(-65504, 65504)  # an fp16-only part saturates instead of Inf
    target = torch.softmax(saturated.float(), dim=-1).half()
    v = judge(compare_tensors(target, reference), "aten::_softmax")
    assert v.level == "error", v.reason
    overflowed = torch.softmax(logits.half(), dim=-1)  # Inf - Inf = NaN where Inf appeared
    v = judge(compare_tensors(overflowed, reference), "aten::_softmax")
    assert v.level == "error" and "NaN" in v.reason


def test_statuses_have_verdicts():
    ones = torch.ones(3)
    assert judge(compare_tensors(torch.zeros(0), torch.zeros(0)), "aten::mm").level == "pass"
    assert judge(compare_tensors(torch.ones(2), ones), "aten::add.Tensor").level == "error"  # shape
    assert judge(compare_tensors(torch.tensor([True]), torch.tensor([1.0])), "aten::eq").level == "error"
    assert judge(compare_tensors(None, ones), "aten::add.Tensor").level == "warning"  # missing side
    nan = torch.tensor([float("nan"), 1.0, 1.0])
    assert judge(compare_tensors(nan, ones), "aten::add.Tensor").level == "error"
    assert judge(compare_tensors(torch.tensor([1, 2]), torch.tensor([1, 3])), "aten::argmax").level == "error"
    assert judge(compare_tensors(torch.tensor([1, 2]), torch.tensor([1, 2])), "aten::argmax").level == "pass"


def test_binary_ops_must_be_exact():
    x = torch.randn(100)
    assert judge(compare_tensors(torch.relu(x), torch.relu(x)), "aten::relu").level == "pass"
    off = torch.relu(x).clone()
    off[3] = torch.nextafter(off[3], torch.tensor(float("inf")))
    assert judge(compare_tensors(off, torch.relu(x)), "aten::relu").level == "error"  # same dtype: exact
    # bf16 target of an exact op: the fp32 reference rounded to bf16 (<= half an ULP) passes
    assert judge(compare_tensors(torch.relu(x.bfloat16()), torch.relu(x)), "aten::relu").level == "pass"


def test_thresholds():
    assert RTOL["float16"] == 2**-10 and RTOL["bfloat16"] == 2**-8 and RTOL["float32"] == 2**-20
    assert expected_rounding_error("bfloat16", "float32") == 2**-8 + 2**-24
    assert expected_rounding_error("float16", "float64") == 2**-11 + 2**-53
    assert expected_rounding_error("int64", "int64") == 0.0
    x = torch.randn(10000) * 100
    rel = ((x.bfloat16().double() - x.double()).abs() / x.double().abs()).max().item()
    assert rel <= expected_rounding_error("bfloat16", "float32")


@pytest.mark.parametrize(
    "name,canonical,standard",
    [
        ("aten::mm", "mm", "ulp"),
        ("aten::add.Tensor", "add", "absolute"),
        ("aten::add_.Tensor", "add_", "absolute"),
        ("aten::mul_.Scalar", "mul_", "absolute"),
        ("aten::relu_", "relu_", "binary"),
        ("aten::addmm", "addmm", "ulp"),
        ("aten::linear", "linear", "ulp"),
        ("aten::convolution", "convolution", "thousandth"),
        ("aten::true_divide.Tensor", "true_divide", "absolute"),
        ("aten::_softmax", "_softmax", "benchmark"),
        ("aten::view", "view", "binary"),
        ("aten::eq.Tensor", "eq", "benchmark"),
        ("Torch.matmul.0.forward", "matmul", "ulp"),
        ("Tensor.__iadd__.3.backward", "__iadd__", "absolute"),
        ("Functional.conv2d.0.forward", "conv2d", "thousandth"),
        ("torch.nn.functional.linear", "linear", "ulp"),
        ("npu::npu_rms_norm", "npu_rms_norm", "benchmark"),
        ("model.layers.0.mlp", "model", "benchmark"),
    ],
)
def test_op_names(name, canonical, standard):
    assert canonical_op_name(name) == canonical
    assert standard_for(name) == standard


def test_reduction_length():
    assert reduction_length("aten::addmm", [[32], [8, 16], [16, 32]]) == 16
    assert reduction_length("aten::baddbmm", [[2, 8, 32], [2, 8, 16], [2, 16, 32]]) == 16
    assert reduction_length("aten::linear", [[4, 10, 256], [512, 256]]) == 256
    assert reduction_length("aten::convolution", [[1, 3, 8, 8], [16, 3, 3, 3]]) == 27
    assert reduction_length("aten::relu", [[4]]) is None
    assert reduction_length("aten::mm", []) is None


# ------------------------------------------------------------------------------- generated table

SOURCE = gen_precision_standards.DEFAULT_STANDARDS


@pytest.mark.skipif(not os.path.exists(SOURCE), reason="../shared/data/msprobe not present")
def test_generated_json_is_up_to_date(tmp_path):
    out = tmp_path / "precision_standards.json"
    assert gen_precision_standards.main(["--out", str(out)]) == 0
    with open(gen_precision_standards.DEFAULT_OUT, "rb") as f:
        assert out.read_bytes() == f.read()
    script = os.path.join(ROOT, "tools", "gen_precision_standards.py")
    check = subprocess.run(
        [sys.executable, script, "--check", "--out", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    out.write_text(out.read_text().replace('"mm": "ulp"', '"mm": "absolute"'))
    check = subprocess.run(
        [sys.executable, script, "--check", "--out", str(out)], capture_output=True, text=True
    )
    assert check.returncode == 1 and "stale" in check.stdout


# --------------------------------------------------------------------------------- stats verdicts


def _stats(x: torch.Tensor, sat: int = 0) -> TensorStats:
    v = x.double()
    return TensorStats(
        max=v.max().item(), min=v.min().item(), mean=v.mean().item(), norm=v.norm().item(),
        nan=int(torch.isnan(v).sum()), inf=int(torch.isinf(v).sum()), sat=sat,
    )  # fmt: skip


def test_judge_stats(data):
    clean = compare_stats(_stats(data.bfloat16()), _stats(data))
    v = judge_stats(clean, "bfloat16", "aten::add.Tensor", "float32")
    assert v.level == "pass", v.reason
    assert judge_stats(clean, "bfloat16", "aten::add.Tensor").level == "pass"  # reference assumed fp32
    faulty = compare_stats(_stats(data.bfloat16() * 1.1), _stats(data))
    assert judge_stats(faulty, "bfloat16", "aten::mm").level == "error"
    saturated = compare_stats(_stats(data.half(), sat=3), _stats(data))
    v = judge_stats(saturated, "float16", "aten::_softmax")
    assert v.level == "error" and "saturated" in v.reason
    nan = data.clone()
    nan[0, 0] = float("nan")
    assert judge_stats(compare_stats(_stats(data), _stats(nan)), "float32", "aten::mm").level == "error"
    assert judge_stats(compare_stats(None, _stats(data)), "float32", "aten::mm").level == "warning"
    assert stats_tolerance("bfloat16", "float32") == 8 * (2**-8 + 2**-24)


def test_verdict_ratio(data):
    v = judge(compare_tensors(perturb(data.bfloat16()), data), "aten::add.Tensor")
    assert v.ratio == pytest.approx(v.value / v.tolerance) and v.ratio > 2
    assert judge(compare_tensors(data, data), "aten::relu").ratio == 0.0


def test_float64_against_float64_gets_twice_the_tolerance_no_wider_truth():
    # the replay of a float64 op is float64 too: two correct results, each within the tolerance of the exact one,
    # can be twice it apart (shadow of a float64 LSTM: a correct backward mm 1.26 tolerances off its replay)
    g = torch.Generator().manual_seed(0)
    a, b = (
        torch.randn(16, 256, generator=g, dtype=torch.float64),
        torch.randn(256, 16, generator=g, dtype=torch.float64),
    )
    ref = a @ b
    single = max(
        reduction_ulp("float64", 256), rounding_ulp("float64", "float64")
    )  # docs: the one-sided formula
    unit = ref.clone()
    unit[3, 5] += 1e-9  # a perturbation of one element, scaled below to a chosen number of tolerances
    per = compare_tensors(unit, ref).max_scaled_ulp_err / 1e-9

    def verdict(tolerances):
        t = ref.clone()
        t[3, 5] += tolerances * single / per
        return judge(compare_tensors(t, ref), "aten::mm", 256)

    assert verdict(1.5).level == "pass" and "no wider truth" in verdict(1.5).reason
    assert verdict(1.5).tolerance == pytest.approx(2 * single)
    assert verdict(3.0).level == "warning" and verdict(5.0).level == "error"  # a fault still shows
    # float32 against a float64 truth keeps the one-sided tolerance
    t32 = (ref + 0).to(torch.float32)
    assert judge(compare_tensors(t32, ref), "aten::mm", 256).tolerance == pytest.approx(
        max(reduction_ulp("float32", 256), rounding_ulp("float32", "float64"))
    )
