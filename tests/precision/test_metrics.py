"""compare_tensors, compare_stats and ulp against formulas written here in plain numpy."""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ascend_tools.precision.metrics import (
    FLOAT_FORMATS,
    PairMetrics,
    compare_stats,
    compare_tensors,
    largest,
    ulp,
)
from ascend_tools.precision.records import TensorStats

# (mantissa bits, emin, emax): the IEEE / bfloat16 formats, written out again for the oracle
FORMATS = {
    "float16": (10, -14, 15),
    "bfloat16": (7, -126, 127),
    "float32": (23, -126, 127),
    "float64": (52, -1022, 1023),
}
NUMERIC = (
    "cosine", "max_abs_err", "max_rel_err", "mean_rel_err", "rmse", "within_1e3", "within_5e3",
    "max_ulp_err", "mean_ulp_err", "error_balance", "mismatch", "rel_l2_err", "max_scaled_ulp_err",
)  # fmt: skip


def np_ulp(r: np.ndarray, dtype: str) -> np.ndarray:
    """Spacing of ``dtype`` at |r|, from log2 (an independent route from the module's bit masks)."""
    mant, emin, emax = FORMATS[dtype]
    a = np.abs(r)
    with np.errstate(divide="ignore"):
        e = np.floor(np.log2(np.where(a == 0, 1.0, a)))
    e = np.where(a == 0, emin, np.clip(e, emin, emax))
    return np.ldexp(1.0, (e - mant).astype(np.int64))


def oracle(t: np.ndarray, r: np.ndarray, t_dtype: str) -> dict:
    t, r = t.astype(np.float64).ravel(), r.astype(np.float64).ravel()
    keep = np.isfinite(t) & np.isfinite(r)
    t, r = t[keep], r[keep]
    d = t - r
    ad, ar = np.abs(d), np.abs(r)
    rel = ad / np.maximum(ar, 2.0**-52)
    u = ad / np_ulp(r, t_dtype)
    rms = math.sqrt(np.mean(r * r))
    return {
        "count": t.size,
        "cosine": float(np.dot(t, r) / (np.linalg.norm(t) * np.linalg.norm(r))),
        "max_abs_err": float(ad.max()),
        "max_rel_err": float(rel.max()),
        "mean_rel_err": float(rel.mean()),
        "rmse": float(np.sqrt(np.mean(d**2))),
        "within_1e3": float(np.mean(rel <= 1e-3)),
        "within_5e3": float(np.mean(rel <= 5e-3)),
        "max_ulp_err": float(u.max()),
        "mean_ulp_err": float(u.mean()),
        "error_balance": abs(int(np.sum(d > 0)) - int(np.sum(d < 0))) / t.size,
        "mismatch": float(np.mean(t != r)),
        "rel_l2_err": float(np.linalg.norm(d) / np.linalg.norm(r)),
        "max_scaled_ulp_err": float(np.max(ad / np_ulp(np.maximum(ar, rms), t_dtype))),
    }


def to_torch(x: np.ndarray, dtype: str) -> torch.Tensor:
    return torch.from_numpy(x).to(getattr(torch, dtype))


def as_f64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy()


#: metrics measured in float32 arithmetic (both sides at most float32; docs/precision.md, "Metrics"): one
#: rounding of d = t - r and of each quotient, sums added in float64 block by block from float32 pairwise sums
FLOAT32_WORK = {key: 2e-6 for key in NUMERIC if key not in ("error_balance", "mismatch")}


def assert_matches(m: PairMetrics, want: dict, rel: "dict | None" = None) -> None:
    assert m.count == want["count"]
    for key in NUMERIC:
        got = getattr(m, key)
        assert got == pytest.approx(want[key], rel=(rel or {}).get(key, 1e-9), abs=1e-12), key


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_low_precision_against_float64_reference(dtype, seed):
    rng = np.random.default_rng(seed)
    r = rng.standard_normal((37, 53)) * 10.0 ** rng.integers(-3, 3, size=(37, 53))
    r[0, :5] = 0.0  # exact zeros in the reference hit the relative error's floor
    target = to_torch(r * (1 + 1e-3 * rng.standard_normal(r.shape)), dtype)
    m = compare_tensors(target, torch.from_numpy(r))
    assert m.status == "ok" and m.target_dtype == dtype and m.reference_dtype == "float64"
    assert_matches(m, oracle(as_f64(target), r, dtype))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cast_of_float32_is_within_half_an_ulp(dtype):
    x = torch.randn(4096) * 3
    m = compare_tensors(x.to(getattr(torch, dtype)), x)
    assert m.reference_dtype == "float32"
    assert m.max_ulp_err <= 0.5
    assert m.max_scaled_ulp_err <= 0.5
    assert m.cosine > 0.9999
    assert_matches(m, oracle(as_f64(x.to(getattr(torch, dtype))), x.numpy(), dtype), FLOAT32_WORK)


def test_numpy_inputs_and_float32_target():
    rng = np.random.default_rng(5)
    r = rng.standard_normal(1000)
    t = (r + 1e-6 * rng.standard_normal(1000)).astype(np.float32)
    m = compare_tensors(t, r)
    assert (m.target_dtype, m.reference_dtype) == ("float32", "float64")
    assert_matches(m, oracle(t, r, "float32"))


def test_nan_inf_at_matching_positions_are_left_out():
    nan, inf = float("nan"), float("inf")
    t = torch.tensor([nan, 1.0, inf, -inf, 2.0])
    r = torch.tensor([nan, 1.5, inf, -inf, 2.0])
    m = compare_tensors(t, r)
    assert m.status == "ok" and m.count == 2
    assert (m.nan_mismatch, m.inf_mismatch) == (0, 0)
    assert m.max_abs_err == 0.5
    assert_matches(m, oracle(t.numpy(), r.numpy(), "float32"), FLOAT32_WORK)


def test_nan_inf_at_different_positions_are_counted():
    nan, inf = float("nan"), float("inf")
    t = torch.tensor([nan, 1.0, inf, -inf, 2.0, 5.0, nan, 3.0])
    r = torch.tensor([nan, 1.0, inf, inf, nan, 5.0, inf, inf])
    m = compare_tensors(t, r)
    assert m.status == "nan_inf_mismatch"
    # NaN on one side only: positions 4 and 6 (NaN against Inf counts as NaN); Inf: 3 (sign) and 7
    assert (m.nan_mismatch, m.inf_mismatch) == (2, 2)
    assert m.count == 2 and m.max_abs_err == 0.0
    assert "2 NaN and 2 Inf" in m.note


def test_all_positions_nan_on_both_sides():
    m = compare_tensors(torch.full((3,), float("nan")), torch.full((3,), float("nan")))
    assert m.status == "ok" and m.count == 0
    assert all(getattr(m, k) is None for k in NUMERIC)


def test_empty():
    m = compare_tensors(torch.zeros(0, 4, dtype=torch.bfloat16), torch.zeros(0, 4))
    assert m.status == "empty" and m.count == 0
    assert all(getattr(m, k) is None for k in NUMERIC)


def test_zero_dim():
    m = compare_tensors(torch.tensor(2.0, dtype=torch.bfloat16), torch.tensor(2.001, dtype=torch.float64))
    assert m.status == "ok" and m.count == 1
    assert m.cosine == 1.0  # one element: the cosine is the agreement of signs
    assert m.max_abs_err == pytest.approx(0.001)
    assert m.max_ulp_err == pytest.approx(0.001 / 2.0**-6)  # bf16 spacing in [2, 4) is 2**-6
    neg = compare_tensors(torch.tensor(-1.0), torch.tensor(1.0))
    assert neg.cosine == -1.0 and neg.error_balance == 1.0


def test_integers_compare_exactly():
    t = torch.tensor([[1, 2, 3], [4, 5, 6]], dtype=torch.int64)
    r = torch.tensor([[1, 2, 3], [4, 9, 6]], dtype=torch.int32)
    m = compare_tensors(t, r)
    assert m.status == "ok" and m.count == 6
    assert m.max_abs_err == 4.0
    assert m.mismatch == pytest.approx(1 / 6)
    assert m.cosine is None and m.max_ulp_err is None and m.max_rel_err is None
    same = compare_tensors(np.arange(10, dtype=np.uint8), np.arange(10, dtype=np.int64))
    assert same.mismatch == 0.0 and same.max_abs_err == 0.0


def test_bools_compare_exactly():
    t = torch.tensor([True, False, True, True])
    r = torch.tensor([True, True, True, True])
    m = compare_tensors(t, r)
    assert m.status == "ok" and m.count == 4
    assert m.mismatch == 0.25 and m.max_abs_err == 1.0
    assert m.cosine is None


def test_different_kinds_are_not_comparable():
    m = compare_tensors(torch.tensor([True, False]), torch.tensor([1.0, 0.0]))
    assert m.status == "not_comparable" and "bool vs float32" in m.note
    assert compare_tensors(torch.tensor([1, 2]), torch.tensor([1.0, 2.0])).status == "not_comparable"
    complex_pair = compare_tensors(
        torch.zeros(2, dtype=torch.complex64), torch.zeros(2, dtype=torch.complex64)
    )
    assert complex_pair.status == "not_comparable"


def test_missing_side():
    m = compare_tensors(None, torch.ones(3))
    assert m.status == "not_comparable" and m.note == "no target tensor"
    assert m.reference_dtype == "float32" and m.target_dtype == ""
    assert compare_tensors(torch.ones(3), None).note == "no reference tensor"


def test_shape_mismatch():
    m = compare_tensors(torch.ones(2, 3, dtype=torch.bfloat16), torch.ones(3, 2))
    assert m.status == "shape_mismatch" and m.count == 0
    assert "[2, 3] vs [3, 2]" in m.note
    # same number of elements is not enough
    assert compare_tensors(torch.ones(4), torch.ones(2, 2)).status == "shape_mismatch"


def test_shapes_that_differ_by_dimensions_of_one_compare_their_elements_in_order():
    """A bmm of one batch against the mm another run folded it into (align.SAME_VALUES): (1, 5, 1) vs (5, 1)."""
    ref = torch.arange(5.0).reshape(5, 1)
    target = ref.reshape(1, 5, 1).clone()
    target[0, 3, 0] += 0.5
    m = compare_tensors(target, ref)
    assert m.status == "ok" and m.count == 5 and m.max_abs_err == 0.5
    assert compare_tensors(torch.ones(4), torch.ones(1, 4)).status == "ok"


def test_dtype_mismatch_is_the_normal_case():
    x = torch.randn(100)
    m = compare_tensors(x.bfloat16(), x.double())
    assert m.status == "ok" and (m.target_dtype, m.reference_dtype) == ("bfloat16", "float64")


def test_cosine_of_zero_vectors():
    z = torch.zeros(5)
    assert compare_tensors(z, z).cosine == 1.0
    one_zero = compare_tensors(z, torch.ones(5))
    assert one_zero.cosine == 0.0
    assert one_zero.rel_l2_err == pytest.approx(1.0)
    assert compare_tensors(torch.ones(5), z).cosine == 0.0
    assert compare_tensors(torch.ones(5), z).rel_l2_err is None  # ||r|| = 0 < ||t - r||


def test_error_balance_is_msprobes_definition():
    r = torch.zeros(10, dtype=torch.float64)
    t = torch.tensor([1.0] * 7 + [-1.0] * 2 + [0.0], dtype=torch.float64)
    # |#(t > r) - #(t < r)| / n (msprobe's get_error_balance)
    assert compare_tensors(t, r).error_balance == pytest.approx(0.5)


def test_relative_error_floor_at_zero_reference():
    m = compare_tensors(torch.tensor([1e-10], dtype=torch.float64), torch.tensor([0.0], dtype=torch.float64))
    assert m.max_rel_err == pytest.approx(1e-10 / 2.0**-52)


def test_huge_and_tiny_float64_stay_finite():
    t = torch.tensor([1e308, -1e308, 1e-320, 0.0], dtype=torch.float64)
    r = torch.tensor([-1e308, 1e308, 0.0, 5e-324], dtype=torch.float64)
    m = compare_tensors(t, r)
    for key in NUMERIC:
        value = getattr(m, key)
        assert value is None or math.isfinite(value), key
    assert m.max_abs_err == np.finfo(np.float64).max  # 2e308 saturates
    assert m.cosine == pytest.approx(-1.0)


# ------------------------------------------------------------------------------------------- ulp


@pytest.mark.parametrize(
    "dtype,np_dtype", [("float16", np.float16), ("float32", np.float32), ("float64", np.float64)]
)
def test_ulp_matches_np_spacing(dtype, np_dtype):
    rng = np.random.default_rng(3)
    info = np.finfo(np_dtype)
    exps = rng.integers(int(np.log2(info.tiny)) - 8, int(np.log2(float(info.max))) - 1, size=5000)
    x = np.ldexp(rng.uniform(1, 2, size=5000), exps).astype(np_dtype)
    x = np.concatenate([x, np.array([0, info.smallest_subnormal, info.tiny, 1, 2, 0.5, 3], dtype=np_dtype)])
    x = np.concatenate([x, -x])
    got = ulp(torch.from_numpy(x.astype(np.float64)), dtype).numpy()
    np.testing.assert_array_equal(got, np.spacing(np.abs(x)).astype(np.float64))


def test_ulp_bfloat16_against_bits():
    x = (torch.randn(5000, dtype=torch.float64) * 10.0 ** torch.randint(-30, 30, (5000,))).bfloat16()
    x = torch.cat([x, torch.tensor([1.0, 2.0, 0.0, 2.0**-126, 2.0**-133], dtype=torch.bfloat16)]).abs()
    following = (x.view(torch.int16) + 1).view(torch.bfloat16)  # next bf16 up, bit by bit
    want = following.double() - x.double()
    np.testing.assert_array_equal(ulp(x.double(), "bfloat16").numpy(), want.numpy())


def test_ulp_edges():
    assert ulp(torch.tensor([0.0], dtype=torch.float64), "bfloat16").item() == 2.0**-133
    assert ulp(torch.tensor([float("inf")], dtype=torch.float64), "float16").item() == 32.0  # top binade
    assert math.isnan(ulp(torch.tensor([float("nan")], dtype=torch.float64), "float32").item())
    with pytest.raises(ValueError, match="int8"):
        ulp(torch.zeros(1, dtype=torch.float64), "int8")


# ------------------------------------------------------------------------------------------ fuzz

FLOAT_DTYPES = st.sampled_from([np.float16, np.float32, np.float64])


@st.composite
def float_pairs(draw):
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6))
    elems = {"allow_nan": True, "allow_infinity": True, "allow_subnormal": True}
    t = draw(hnp.arrays(draw(FLOAT_DTYPES), shape, elements=st.floats(**elems, width=16)))
    r_dtype = draw(FLOAT_DTYPES)
    width = {np.float16: 16, np.float32: 32, np.float64: 64}[r_dtype]
    r = draw(hnp.arrays(r_dtype, shape, elements=st.floats(**elems, width=width)))
    if draw(st.booleans()):  # big values in the target too
        t = draw(hnp.arrays(np.float64, shape, elements=st.floats(**elems, width=64)))
    return t, r


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(float_pairs(), st.booleans())
def test_fuzz_never_raises_and_stays_finite(pair, bf16):
    t, r = pair
    target = torch.from_numpy(t).bfloat16() if bf16 and t.dtype == np.float32 else t
    m = compare_tensors(target, r)
    assert m.status in ("ok", "empty", "nan_inf_mismatch")
    for key in NUMERIC:
        value = getattr(m, key)
        assert value is None or (isinstance(value, float) and math.isfinite(value)), (key, value)
    if m.cosine is not None:
        assert -1.0 <= m.cosine <= 1.0
    for key in ("within_1e3", "within_5e3", "mismatch", "error_balance"):
        value = getattr(m, key)
        assert value is None or 0.0 <= value <= 1.0


# ----------------------------------------------------------------------------------------- stats


def test_compare_stats():
    t = TensorStats(max=2.0, min=-1.0, mean=0.5, norm=10.0, nan=1, inf=0, sat=3)
    r = TensorStats(max=2.5, min=-1.0, mean=0.0, norm=8.0, nan=0, inf=0, sat=0)
    s = compare_stats(t, r)
    assert s.status == "nan_inf_mismatch" and s.nan_delta == 1 and s.sat_delta == 3
    assert s.max_abs_diff == 0.5 and s.max_rel_diff == pytest.approx(0.2)
    assert s.min_abs_diff == 0.0 and s.min_rel_diff == 0.0
    assert s.mean_abs_diff == 0.5 and s.mean_rel_diff == pytest.approx(0.5 / 2.0**-52)
    assert s.norm_rel_diff == pytest.approx(0.25)
    assert s.worst_rel_diff == s.mean_rel_diff
    assert s.scaled_diff == pytest.approx(0.5 / 2.5)  # max |diff| of max/min/mean over max(|max|, |min|)


def test_compare_stats_edges():
    assert compare_stats(None, TensorStats()).status == "not_comparable"
    assert compare_stats(TensorStats(), TensorStats()).status == "empty"
    inf = float("inf")
    s = compare_stats(
        TensorStats(max=inf, min=0.0, mean=1.0, norm=inf), TensorStats(max=inf, min=0.0, mean=1.0, norm=5.0)
    )
    assert s.status == "ok" and s.max_abs_diff == 0.0 and s.norm_abs_diff is None


def test_rel_l2_unmasked_leaves_out_an_additive_masks_values():
    from ascend_tools.precision.metrics import rel_l2_unmasked

    scores = np.array([1.0, 2.0, -1.5, 0.5], dtype=np.float32)
    noisy = scores * np.float32(1.01)
    mask = np.float32(np.finfo(np.float32).min)
    t = np.concatenate([noisy, [mask, mask, -np.inf]]).astype(np.float32)
    r = np.concatenate([scores, [mask, mask, -np.inf]]).astype(np.float32)
    want = np.linalg.norm(noisy.astype(np.float64) - scores) / np.linalg.norm(scores.astype(np.float64))
    assert rel_l2_unmasked(t, r) == pytest.approx(want)  # the scores' 1%
    assert rel_l2_unmasked(t[:4], r[:4]) == pytest.approx(want)  # no mask: the plain relative L2 error
    assert rel_l2_unmasked(t[4:6], r[4:6]) is None  # nothing but mask


@pytest.mark.parametrize("name", sorted(FLOAT_FORMATS))
def test_largest_is_finfo_max(name):
    assert largest(name) == float(torch.finfo(getattr(torch, name)).max)
