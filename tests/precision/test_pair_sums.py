"""The compiled pair pass (precision/_pair_sums.c) against metrics.py's NumPy pass, the reference it replaces:
every metric of compare_tensors with the kernel equals the metric without it (counts and maxima exactly, sums to
float32 rounding), over the element types, lengths around the vector width and block size, NaN/Inf, and
magnitudes that send the float32 pass to float64. A missing module is a failure wherever ``cc`` exists."""

import math
import shutil

import numpy as np
import pytest

from ascend_tools.precision import metrics as M

if shutil.which("cc") is None and M._pair_sums is None:
    pytest.skip("no C compiler: the package runs on the NumPy pass", allow_module_level=True)

EXACT = ("status", "count", "nan_mismatch", "inf_mismatch", "target_dtype", "reference_dtype", "note")
EXACT += ("max_abs_err", "max_rel_err", "within_1e3", "within_5e3", "max_ulp_err", "max_scaled_ulp_err")
EXACT += ("mismatch", "error_balance")


def test_the_compiled_module_is_built_and_used():
    assert M._pair_sums is not None, "pip install -e . should have built ascend_tools/precision/_pair_sums"
    r = np.linspace(-3, 3, 1000, dtype=np.float32)
    t = M._Widen(r + np.float32(1e-3), np.float32, "t")
    assert M._compiled_sums(t, M._Widen(r, np.float32, "r"), 1000, M.FLOAT_FORMATS["float32"]) is not None


def _as(values: np.ndarray, dtype: str):
    if dtype == "bfloat16":  # round to nearest even, as torch does
        bits = values.astype(np.float32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        return M.RawBits(rounded.astype(np.uint16), "bfloat16")
    return values.astype(dtype)


def _both(target, reference, monkeypatch):
    with_kernel = M.compare_tensors(target, reference).to_json()
    with monkeypatch.context() as m:
        m.setattr(M, "_pair_sums", None)
        without = M.compare_tensors(target, reference).to_json()
    return with_kernel, without


def _same(a, b):
    for key, want in b.items():
        got = a[key]
        if key in EXACT or want is None or got is None:
            assert got == want, key
        elif key == "cosine":
            assert got == pytest.approx(want, abs=1e-9), key
        else:
            assert got == pytest.approx(want, rel=1e-4, abs=1e-30), key


@pytest.mark.parametrize("t_dtype", ["bfloat16", "float16", "float32"])
@pytest.mark.parametrize("r_dtype", ["float32", "bfloat16", "float16"])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 255, 256, 257, 1000, 70001])
def test_every_metric_equals_the_numpy_pass(monkeypatch, t_dtype, r_dtype, n):
    rng = np.random.default_rng(n)
    ref = rng.standard_normal(n) * 4
    noisy = ref * (1 + rng.standard_normal(n) * 1e-3)
    noisy[:: max(1, n // 5)] = ref[:: max(1, n // 5)]  # some elements equal on both sides
    _same(*_both(_as(noisy, t_dtype), _as(ref, r_dtype), monkeypatch))


@pytest.mark.parametrize("scale", [1e-30, 1e-42, 1e25, 1e30])
def test_magnitudes_beyond_float32_squares(monkeypatch, scale):
    """Squares that underflow or overflow float32 element by element: both passes go to float64."""
    rng = np.random.default_rng(1)
    ref = rng.standard_normal(3000) * scale
    _same(*_both(_as(ref * 1.001, "float32"), _as(ref, "float32"), monkeypatch))


def test_sums_that_overflow_only_numpys_longer_float32_blocks(monkeypatch):
    """Squares near 1e37: NumPy's float32 block sums (65536 elements) overflow and it measures in float64; the
    kernel's (256) do not and it stays in float32. Both are within float32 rounding of the float64 truth."""
    rng = np.random.default_rng(1)
    ref = (rng.standard_normal(3000) * 1e18).astype(np.float32)
    target = ref * np.float32(1.0002)  # relative errors far from the 1e-3 and 5e-3 thresholds of the counts
    with_kernel, without = _both(target, ref, monkeypatch)
    for key, want in without.items():
        if isinstance(want, float) and key != "cosine":
            assert with_kernel[key] == pytest.approx(want, rel=1e-6), key
    assert with_kernel["cosine"] == pytest.approx(without["cosine"], abs=1e-9)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf(monkeypatch, bad):
    rng = np.random.default_rng(2)
    ref = rng.standard_normal(2049).astype(np.float32)
    target = ref * np.float32(1.0001)
    target[100] = bad
    _same(*_both(target, ref, monkeypatch))
    ref2 = ref.copy()
    ref2[100] = bad
    _same(*_both(target, ref2, monkeypatch))  # the same value at the same place on both sides


def test_a_target_without_a_known_ulp_format(monkeypatch):
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(600).astype(np.float32)
    with_kernel, without = _both(ref + np.float32(0.01), ref, monkeypatch)
    _same(with_kernel, without)
    s = M._compiled_sums(
        M._Widen(ref + np.float32(0.01), np.float32, "t"), M._Widen(ref, np.float32, "r"), 600, None
    )
    assert s is not None and s.max_ulp == 0.0 and s.max_abs > 0


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize(
    "t_dtype,emin,emax", [("bfloat16", -126, 127), ("float16", -14, 15), ("float32", -126, 127)]
)
@pytest.mark.parametrize("n", [1, 9, 256, 4099])
def test_max_ulp_ratio_equals_the_numpy_pass(monkeypatch, scaled, t_dtype, emin, emax, n):
    rng = np.random.default_rng(n)
    ref = rng.standard_normal(n).astype(np.float32) * 8
    ref[:: max(1, n // 7)] = 0.0  # exact zeros: the ratio's low clamp
    target = _as(ref.astype(np.float64) * (1 + rng.standard_normal(n) * 2e-3), t_dtype)
    got = M.max_ulp_ratio(target, ref, emin, emax, scaled)
    with monkeypatch.context() as m:
        m.setattr(M, "_pair_sums", None)
        want = M.max_ulp_ratio(target, ref, emin, emax, scaled)
    assert got == want  # a maximum of correctly rounded float32 quotients: no rounding differs


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("t_dtype", ["bfloat16", "float16", "float32", "float64"])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1001])
def test_max_ulp_ratio_against_a_float64_reference_equals_the_numpy_pass(monkeypatch, scaled, t_dtype, n):
    """A float64 replay's screen (an fp32 op's truth) and shadow's float64 copies: float64 work."""
    rng = np.random.default_rng(n)
    ref = rng.standard_normal(n) * 8
    ref[1::7] = 0.0
    target = _as(ref * (1 + rng.standard_normal(n) * 2e-3), t_dtype)
    got = M.max_ulp_ratio(target, ref, -126, 127, scaled)
    with monkeypatch.context() as m:
        m.setattr(M, "_pair_sums", None)
        want = M.max_ulp_ratio(target, ref, -126, 127, scaled)
    assert got == want and got is not None
    bad = np.array(target.bits if isinstance(target, M.RawBits) else target)
    bad[n // 2] = 0x7FC0 if isinstance(target, M.RawBits) else math.nan  # bfloat16's NaN bits
    again = M.RawBits(bad, "bfloat16") if isinstance(target, M.RawBits) else bad
    assert M.max_ulp_ratio(again, ref, -126, 127, scaled) is None


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_max_ulp_ratio_of_a_non_finite_element_is_none(bad):
    ref = np.ones(1001, np.float32)
    for where in (3, 1000):  # in the vector part and in the tail
        target = ref.copy()
        target[where] = bad
        assert M.max_ulp_ratio(target, ref, -126, 127, False) is None


@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 1000, 65539])
def test_float64_max_ulp_ratio_equals_the_torch_passes(monkeypatch, scaled, n):
    torch = pytest.importorskip("torch")
    from ascend_tools.precision import screen

    g = torch.Generator().manual_seed(n)
    ref = torch.randn(n, generator=g, dtype=torch.float64) * 3
    ref[::7] = 0.0
    target = ref.float().double()  # the replay's float64 truth against a float32 kernel's output
    target[::5] += 1e-3
    got = screen._max_ulp_ratio_f64(target, ref, -126, 127, scaled)
    with monkeypatch.context() as m:
        m.setattr(M, "_pair_sums", None)
        want = screen._max_ulp_ratio_f64(target, ref, -126, 127, scaled)
    assert got == want and got > 0
    target[n // 2] = math.nan
    assert screen._max_ulp_ratio_f64(target, ref, -126, 127, scaled) is None
    assert screen._max_ulp_ratio_f64(ref, ref.clone(), -126, 127, scaled) == 0.0


@pytest.mark.parametrize("compiled", [True, False])
def test_a_nan_element_is_not_measured_again_in_float64_but_a_float32_overflow_is(monkeypatch, compiled):
    if not compiled:
        monkeypatch.setattr(M, "_pair_sums", None)
    works = []
    real = M._max_ulp_ratio
    monkeypatch.setattr(
        M, "_max_ulp_ratio", lambda t, r, work, *a: works.append(work) or real(t, r, work, *a)
    )
    ref = np.zeros(100, np.float32)
    target = np.full(100, 4.0, np.float32)
    # |4 - 0| / 2**-126 = 2**128: beyond float32, exact in float64
    assert M.max_ulp_ratio(target, ref, -126, 127, False) == 2.0**128 and works == [np.float32, np.float64]
    works.clear()
    target[7] = math.nan
    assert M.max_ulp_ratio(target, ref, -126, 127, False) is None and works == [np.float32]


def test_bad_arguments_are_a_value_error():
    a = np.ones(8, np.float32)
    addr = a.ctypes.data
    for args in (
        (addr, 1, addr, 0, 8, -126, 127, 1.0),
        (addr, 0, addr, 0, 0, -126, 127, 1.0),
        (0, 0, addr, 0, 8, 1, 0, 1.0),
    ):
        with pytest.raises(ValueError):
            M._pair_sums.pair_sums(*args)
    with pytest.raises(ValueError):
        M._pair_sums.sum_squares(addr, 1, 8)
    for low, high in ((0.0, 1.0), (2.0, 1.0), (2.0**-1022, 1.0)):
        with pytest.raises(ValueError):
            M._pair_sums.max_ulp(addr, 0, addr, 0, 8, low, high)
    for kind, low, high in ((0, 2.0, 1.0), (4, 1.0, 2.0)):
        with pytest.raises(ValueError):
            M._pair_sums.max_ulp_f64(addr, kind, addr, 2, low, high)
