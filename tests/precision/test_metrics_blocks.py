"""compare_tensors on tensors of several blocks (metrics.BLOCK), in float32 and float64 arithmetic, against
the plain-numpy oracle of test_metrics: block boundaries, the float32 route's fallbacks to float64 (values
whose squares over- or underflow float32), NaN/Inf, and torch inputs (shadow passes float64 tensors)."""

import numpy as np
import pytest
import torch
from test_metrics import FLOAT32_WORK, as_f64, assert_matches, oracle, to_torch

from ascend_tools.precision import metrics
from ascend_tools.precision.metrics import compare_tensors

N = 3 * metrics.BLOCK + 17  # three full blocks and a short one


def _pair(seed: int, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(N) * 10.0 ** rng.integers(-2, 2, size=N) * scale
    r[:7] = 0.0
    return r, r * (1 + 1e-2 * rng.standard_normal(N))


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32"])
def test_blocks_in_float32_work(dtype):
    r, t = _pair(1)
    rt = torch.from_numpy(r).float()
    tt = to_torch(t, dtype)
    m = compare_tensors(tt, rt)
    assert m.status == "ok" and m.count == N
    assert_matches(m, oracle(as_f64(tt), r.astype(np.float32), dtype), FLOAT32_WORK)


def test_blocks_in_float64_work_and_numpy_bfloat16_bits_agree():
    r, t = _pair(2)
    tt = to_torch(t, "bfloat16")
    m = compare_tensors(tt, torch.from_numpy(r))  # a float64 side: float64 arithmetic, as before
    assert_matches(m, oracle(as_f64(tt), r, "bfloat16"))


@pytest.mark.parametrize("scale", [1e-25, 1e25])
def test_float32_squares_out_of_range_fall_back_to_float64(scale):
    """|x| ~ 1e-25: squares underflow float32; ~1e25: they overflow. Either way the float64 result."""
    r, t = _pair(3, scale)
    rt, tt = torch.from_numpy(r).float(), torch.from_numpy(t).float()
    m = compare_tensors(tt, rt)
    assert_matches(m, oracle(tt.numpy(), rt.numpy(), "float32"))


def test_nan_inf_across_blocks():
    r, t = _pair(4)
    r32, t32 = r.astype(np.float32), t.astype(np.float32)
    t32[metrics.BLOCK + 3] = np.nan
    r32[2 * metrics.BLOCK + 5] = np.inf
    t32[2 * metrics.BLOCK + 5] = np.inf
    t32[N - 1] = -np.inf
    m = compare_tensors(t32, r32)
    assert m.status == "nan_inf_mismatch" and (m.nan_mismatch, m.inf_mismatch) == (1, 1)
    assert_matches(m, oracle(t32, r32, "float32"), FLOAT32_WORK)


def test_cosine_near_one_keeps_its_digits():
    """bf16 rounding of fp32: 1 - cos ~ 1e-6; float32 sums of t.r would leave no digit of it."""
    x = torch.randn(N, dtype=torch.float64).float()
    m = compare_tensors(x.bfloat16(), x)
    t, r = x.bfloat16().double().numpy(), x.double().numpy()
    want = 1 - np.dot(t, r) / np.linalg.norm(t) / np.linalg.norm(r)
    assert 1 - m.cosine == pytest.approx(want, rel=1e-4)


def test_cosine_of_extreme_magnitudes_stays_within_one():
    # parallel vectors whose squares leave float64 (the scaled route): the cosine is exactly 1, and rounding
    # must not push it past 1 (found by the fuzz test: 1.0000000000000002)
    m = compare_tensors(np.full(3, 7.74100152e153), np.ones(3, dtype=np.float16))
    assert m.cosine == 1.0
