"""The compiled one-pass statistics (precision/_moments.c), both its AVX2 and its portable kernels, against
NumPy in float64 on the same elements; every bfloat16 and float16 bit pattern converted exactly; and
stats.cpu_row giving the same row with and without the kernel (NaN/Inf rows through torch's reductions).

The module is built by ``pip install -e .`` wherever a C compiler is; here a missing module is a failure,
not a skip, whenever ``cc`` exists (a broken build must not go unseen)."""

import math
import shutil

import numpy as np
import pytest
import torch

from ascend_tools.precision import stats

if shutil.which("cc") is None and stats._moments is None:
    pytest.skip("no C compiler: the package runs on torch's reductions", allow_module_level=True)

_moments = stats._moments
KINDS = {torch.float32: 0, torch.float64: 1, torch.bfloat16: 2, torch.float16: 3}
KERNELS = ("moments", "portable_moments")


def test_the_compiled_module_is_built():
    assert _moments is not None, "pip install -e . should have built ascend_tools/precision/_moments"


def _run(kernel, t):
    return getattr(_moments, kernel)(
        t.data_ptr(), KINDS[t.dtype], t.shape, t.stride(), stats._capacity(t, KINDS[t.dtype])
    )


def _reference(t: torch.Tensor):
    a = t.double().numpy().ravel()
    return float(a.max()), float(a.min()), float(a.sum()), float(np.dot(a, a)), float(np.abs(a).sum())


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", list(KINDS))
@pytest.mark.parametrize("n", [1, 2, 15, 16, 17, 255, 256, 257, 1000, 4099, 70000])
def test_moments_match_numpy(kernel, dtype, n):
    g = torch.Generator().manual_seed(n)
    t = (torch.randn(n, generator=g, dtype=torch.float64) * 3 + 0.5).to(dtype)
    mx, mn, total, sq = _run(kernel, t)
    rmx, rmn, rsum, rsq, rabs = _reference(t)
    assert (mx, mn) == (rmx, rmn)  # exact: max and min round nothing
    # float32 arithmetic within blocks of 256: error at most ~256 * 2**-24 of the sum of magnitudes
    tol = 1e-12 if dtype == torch.float64 else 2e-5
    assert abs(total - rsum) <= tol * rabs
    assert sq == pytest.approx(rsq, rel=tol)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_every_16_bit_pattern_converts_exactly(kernel, dtype):
    bits = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16)
    values = bits.view(dtype)
    finite = values[torch.isfinite(values)].contiguous()
    mx, mn, _, _ = _run(kernel, finite)
    rmx, rmn, _, _, _ = _reference(finite)
    assert (mx, mn) == (rmx, rmn)
    # the sums of bfloat16's largest values overflow float32 (the caller then uses torch): a moderate range
    moderate = finite[finite.abs() < 1e4].contiguous()
    _, _, total, _ = _run(kernel, moderate)
    _, _, rsum, _, rabs = _reference(moderate)
    assert abs(total - rsum) <= 2e-5 * rabs
    # each element alone: the conversion itself, subnormals and signed zeros included
    for i in range(0, finite.numel(), 997):
        one = finite[i : i + 1]
        got = _run(kernel, one)
        assert got[0] == float(one.double()) and got[1] == float(one.double())


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_elements_make_the_sum_non_finite(kernel, bad):
    for dtype in KINDS:
        t = torch.randn(1000).to(dtype)
        t[613] = bad
        _, _, total, sq = _run(kernel, t)
        assert not (math.isfinite(total) and math.isfinite(sq)), dtype


def test_bad_arguments_are_a_value_error():
    t = torch.ones(4)
    for args in ((t.data_ptr(), 7, (4,), (1,), 16), (t.data_ptr(), 0, (4,), (1, 1), 16)):
        with pytest.raises(ValueError):
            _moments.moments(*args)
    with pytest.raises(ValueError):
        _moments.moments(t.data_ptr(), 0, (0,), (1,), 16)  # empty: the caller gives no statistics


def test_nothing_beyond_the_storage_is_read():
    t = torch.ones(4, 4)
    assert _moments.moments(t.data_ptr(), 0, (4, 4), (4, 1), 64) is not None
    assert _moments.moments(t.data_ptr(), 0, (4, 4), (4, 1), 63) is None  # the last element's last byte
    assert _moments.moments(t.data_ptr(), 0, (4, 4), (1 << 62, 1), 64) is None  # offsets beyond any memory
    assert _moments.moments(0, 0, (4,), (1,), 0) is None  # no data at all
    t.untyped_storage().resize_(0)  # as FSDP frees a parameter's storage: shape kept, no bytes
    assert stats._compiled_values(t) is None
    with pytest.raises(RuntimeError):  # torch's reductions, which the caller's fail-open catches
        stats.cpu_row(t)


_BASE = torch.randn(2, 128, 8, 32, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    "make",
    [
        lambda: _BASE.transpose(1, 2),  # heads first: a permuted dense tensor, one run
        lambda: _BASE[..., :16].transpose(1, 2),  # rotary halves: rows of 16
        lambda: _BASE[..., 16:],
        lambda: _BASE[:, 5],
        lambda: _BASE.sum(-1, keepdim=True).expand(2, 128, 8, 32),  # expanded: every element repeated
        lambda: torch.randn(256).expand(2, 128, 256),
        lambda: torch.tensor(2.5).expand(3, 3),
        lambda: _BASE.to(torch.bfloat16).permute(3, 0, 2, 1),
        lambda: _BASE.double()[1:, 3:100:2].transpose(0, 2),
        lambda: _BASE.half()[:, :, :, 7:9],
    ],
)
def test_strided_layouts_match_numpy(kernel, make):
    t = make()
    mx, mn, total, sq = _run(kernel, t)
    rmx, rmn, rsum, rsq, rabs = _reference(t)
    assert (mx, mn) == (rmx, rmn)
    assert abs(total - rsum) <= 2e-5 * rabs and sq == pytest.approx(rsq, rel=2e-5)


def test_a_layout_without_unit_stride_is_left_to_torch():
    t = torch.randn(4, 6)
    assert _moments.moments(t.data_ptr(), 0, (4, 3), (6, 2), 96) is None  # every other column


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.randn(300, 77),
        lambda: torch.randn(4096, dtype=torch.bfloat16),
        lambda: torch.randn(513, dtype=torch.float16) * 100,
        lambda: torch.randn(33, 9, dtype=torch.float64),
        lambda: torch.randn(64, 64).t(),
        lambda: torch.randn(64, 64)[:, ::2],  # no unit stride: torch's reductions
        lambda: torch.tensor([1.0, float("nan"), 3.0] * 100),  # NaN: torch's reductions, max is NaN
        lambda: torch.tensor([65504.0, 1.0] * 300, dtype=torch.float16),  # saturated
    ],
)
def test_cpu_row_is_the_same_with_and_without_the_kernel(monkeypatch, make):
    t = make()
    with_kernel = stats.cpu_row(t)
    monkeypatch.setattr(stats, "_moments", None)
    without = stats.cpu_row(t)
    assert with_kernel[4:] == without[4:]  # nan, inf, sat counts
    for got, want in zip(with_kernel[:4], without[:4]):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-5, abs=1e-6)


# what a capture's record holds for a tensor: lines.row_json of cpu_row, whichever path wrote it
BODIES = [
    lambda: torch.randn(300, 77),
    lambda: torch.randn(4096, dtype=torch.bfloat16),
    lambda: torch.randn(513, dtype=torch.float16) * 100,
    lambda: torch.randn(33, 9, dtype=torch.float64) * 1e300,  # norm beyond float32, finite in float64
    lambda: torch.randn(64, 64).t(),
    lambda: torch.randn(8, 1, 16).expand(8, 5, 16),  # stride 0: sums repeated
    lambda: torch.tensor([-0.0, -0.0]),  # repr keeps the sign
    lambda: torch.tensor([1e-45, 3e38, 1e-7]),  # denormal, near float32's max
    lambda: torch.tensor([0.1, 0.2, 0.3]).double(),
    lambda: torch.randn(64, 64)[:, ::2],  # no unit stride: the row through torch
    lambda: torch.tensor([1.0, float("nan"), 3.0] * 100),  # NaN: the row through torch
    lambda: torch.tensor([1.0, float("-inf")]),
    lambda: torch.tensor([65504.0, 1.0] * 300, dtype=torch.float16),  # saturated
    lambda: torch.tensor([torch.finfo(torch.bfloat16).min, 0.0], dtype=torch.bfloat16),  # saturated, negative
    lambda: torch.tensor([3e38, 3e38] * 200),  # the float32 sum overflows: through torch
    lambda: torch.tensor([2.5]),  # one element: no kernel
    lambda: torch.empty(0, 4),
    lambda: torch.arange(10),  # integers: no kernel
    lambda: torch.zeros(3, dtype=torch.complex64),  # no statistics
]


@pytest.mark.parametrize("make", BODIES)
def test_cpu_body_is_row_json_of_cpu_row(make):
    from ascend_tools.precision.lines import row_json

    t = make()
    row = stats.cpu_row(t)
    assert stats.cpu_body(t) == (None if row is None else ',"stats":' + row_json(*row) + "}")


@pytest.mark.parametrize("dtype", list(KINDS))
def test_stats_body_writes_numbers_as_repr_and_leaves_special_rows_to_python(dtype):
    g = torch.Generator().manual_seed(7)
    t = (torch.randn(1000, generator=g, dtype=torch.float64) * 7).to(dtype)
    body = _moments.stats_body(
        t.data_ptr(), KINDS[dtype], t.shape, t.stride(), stats._capacity(t, KINDS[dtype])
    )
    mx, mn, total, sq = _run("moments", t)
    want = (
        f',"stats":{{"max":{mx!r},"min":{mn!r},"mean":{total / 1000!r},"norm":{math.sqrt(sq)!r},'
        '"nan":0,"inf":0,"sat":0}}'
    )
    assert body == want
    top = torch.finfo(dtype).max
    for special in (float("nan"), float("inf"), top, -top):
        u = t.clone()
        u[3] = special
        args = (u.data_ptr(), KINDS[dtype], u.shape, u.stride(), stats._capacity(u, KINDS[dtype]))
        assert _moments.stats_body(*args) is None, special
