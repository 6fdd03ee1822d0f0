"""The screened verdict computes the one metric its standard reads with the same formula as the full
metrics: the values agree with metrics.compare_tensors, and a screened pass is a pass there too."""

import pytest
import torch

from ascend_tools.precision import metrics as M
from ascend_tools.precision import standards
from ascend_tools.precision.screen import SCREENED, judge_output, screen


def _pair(dtype, n, seed, scale=1.0, noise_ulps=1.0):
    g = torch.Generator().manual_seed(seed)
    r = torch.randn(n, dtype=torch.float64, generator=g) * scale
    t = r.to(dtype)
    eps = torch.finfo(dtype).eps
    t = (t.to(torch.float64) * (1 + noise_ulps * eps * torch.randn(n, dtype=torch.float64, generator=g))).to(
        dtype
    )
    return t, r


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(
    "standard,metric",
    [("absolute", "max_ulp_err"), ("ulp", "max_scaled_ulp_err"), ("benchmark", "max_scaled_ulp_err")],
)
@pytest.mark.parametrize("n,scale", [(1, 1.0), (1000, 1.0), (70_000, 3e-3), (5000, 200.0)])
def test_screened_metric_equals_full_metric(dtype, standard, metric, n, scale):
    t, r = _pair(dtype, n, seed=n + len(standard), scale=scale)
    got = screen(standard, t, r)
    full = M.compare_tensors(t, r)
    assert got is not None and got.note == SCREENED
    assert getattr(got, metric) == pytest.approx(getattr(full, metric), rel=1e-12, abs=0)
    assert (got.count, got.target_dtype, got.reference_dtype) == (
        full.count,
        full.target_dtype,
        full.reference_dtype,
    )


def test_screen_defers_to_full_metrics_for_non_finite_and_mismatches():
    t, r = _pair(torch.float32, 100, seed=1)
    t[3] = float("nan")
    assert screen("absolute", t, r) is None
    assert screen("absolute", t[:50], r) is None
    assert screen("absolute", t.to(torch.int32), r) is None


def test_screened_pass_is_a_full_pass_and_an_error_gets_every_metric():
    t, r = _pair(torch.float32, 4096, seed=2)
    m, v = judge_output("aten::add.Tensor", t, r, None)
    full = M.compare_tensors(t, r)
    assert v.level == standards.judge(full, "aten::add.Tensor", None).level != "error" and m.note == SCREENED
    bad = t.clone()
    bad[17] *= 1.5
    m, v = judge_output("aten::add.Tensor", bad, r, None)
    assert v.level == "error" and m.note != SCREENED and m.cosine is not None
    assert m.max_ulp_err == M.compare_tensors(bad, r).max_ulp_err


def test_repeated_calls_of_other_sizes_give_the_same_values():
    """A large call between two small ones changes nothing (no state carried between calls)."""
    big_t, big_r = _pair(torch.float32, 50_000, seed=3, noise_ulps=4.0)
    small_t, small_r = _pair(torch.float32, 300, seed=4)
    first = screen("absolute", small_t, small_r).max_ulp_err
    screen("absolute", big_t, big_r)
    assert screen("absolute", small_t, small_r).max_ulp_err == first
    assert (
        screen("ulp", small_t.view(10, 30), small_r.view(10, 30)).max_scaled_ulp_err
        == M.compare_tensors(small_t, small_r).max_scaled_ulp_err
    )
