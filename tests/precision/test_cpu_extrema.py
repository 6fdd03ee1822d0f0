"""Max and min of CPU tensors (stats._max_min, the capture's stats-mode path): exact, for every layout and
dtype the capture meets, against NumPy's of a float64 copy; fp32/fp64 read without torch.aminmax."""

import math

import numpy as np
import pytest
import torch

from ascend_tools.precision import stats
from ascend_tools.precision.stats import cpu_row


def _cases():
    g = torch.Generator().manual_seed(7)
    base = torch.randn(24, 40, generator=g)
    nan = base.clone()
    nan[3, 5] = float("nan")
    inf = base.clone()
    inf[0, 0], inf[1, 1] = float("inf"), float("-inf")
    return [
        base,
        base.t(),  # a transpose (no copy)
        base[::3, 1::2],  # a strided slice
        base.view(2, 12, 40).permute(2, 0, 1),
        base.expand(3, 24, 40),  # stride 0
        torch._neg_view(base),  # a negative view: its memory holds the values negated
        nan,
        nan.t(),
        inf,
        base.double(),
        base.to(torch.bfloat16),
        base.half(),
        (base * 100).to(torch.int64),
        base > 0,
        torch.full((5, 7), -3.5),
    ]


@pytest.mark.parametrize("t", _cases(), ids=lambda t: f"{t.dtype}-{tuple(t.shape)}-{t.stride()}")
def test_max_min_are_exact(t):
    a = t.double().numpy() if not t.is_neg() else (-t._neg_view()).double().numpy()
    mx, mn = cpu_row(t)[:2]
    if np.isnan(a).any():
        assert math.isnan(mx) and math.isnan(mn)
    else:
        assert (mx, mn) == (float(a.max()), float(a.min()))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fp32_fp64_extrema_need_no_aminmax(monkeypatch, dtype):
    def no_aminmax(*args, **kwargs):
        raise AssertionError("torch.aminmax called")

    monkeypatch.setattr(torch, "aminmax", no_aminmax)
    t = torch.arange(-6, 18, dtype=dtype).reshape(4, 6).t()
    assert cpu_row(t)[:2] == (17.0, -6.0)
    assert stats.tensor_stats(t.contiguous()).max == 17.0


def test_a_tensor_that_requires_grad():
    w = torch.tensor([[1.0, -2.0], [4.0, 0.5]], requires_grad=True)
    assert cpu_row(w)[:2] == (4.0, -2.0)


def test_statistics_leave_the_storage_resizable():
    # FSDP2 frees a parameter's storage with resize_(0) after each forward (Tensor.numpy() forbids it)
    for t in (torch.randn(6, 4), torch.randn(6, 4).t(), torch.randn(6, dtype=torch.float64)):
        cpu_row(t)
        t.untyped_storage().resize_(0)
        assert t.untyped_storage().nbytes() == 0
