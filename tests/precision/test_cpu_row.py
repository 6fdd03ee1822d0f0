"""stats.cpu_row (a CPU tensor's statistics without entry objects, the capture's stats-mode path) and
lines.row_json against NumPy in float64, and no autograd graph for a tensor that requires grad."""

import json
import math

import numpy as np
import pytest
import torch

from ascend_tools.precision.lines import row_json
from ascend_tools.precision.stats import cpu_row


@pytest.mark.parametrize(
    "values,dtype,sat",
    [
        ([1.0, -2.5, 3.0, 0.25], torch.float32, 0),
        ([1.0, float("nan"), float("inf"), -3.0], torch.float32, 0),
        ([65504.0, -65504.0, 1.0, 2.0], torch.float16, 2),
        ([1.5, -0.75, 3.0e38], torch.bfloat16, 0),
        ([[1.0, 2.0], [3.0, -4.0]], torch.float64, 0),
        ([3, -7, 2], torch.int64, 0),
        ([float("-inf")], torch.float32, 0),
    ],
)
def test_cpu_row_matches_numpy(values, dtype, sat):
    t = torch.tensor(values, dtype=dtype)
    a = t.double().numpy().ravel()
    mx, mn, mean, norm, nan, inf, got_sat = cpu_row(t)
    assert (nan, inf, got_sat) == (int(np.isnan(a).sum()), int(np.isinf(a).sum()), sat)
    for got, want in ((mx, np.max(a)), (mn, np.min(a)), (mean, np.mean(a))):
        assert (math.isnan(got) and math.isnan(want)) or got == pytest.approx(want, rel=1e-6)
    if np.isfinite(a).all():
        assert norm == pytest.approx(math.sqrt(float(np.sum(a * a))), rel=1e-6)
    text = json.loads(row_json(mx, mn, mean, norm, nan, inf, got_sat))  # NaN/Infinity as json writes them
    assert list(text) == ["max", "min", "mean", "norm", "nan", "inf", "sat"]
    assert text["nan"] == nan and (text["max"] == mx or math.isnan(mx))


def test_cpu_row_of_an_empty_or_complex_tensor_is_none():
    assert cpu_row(torch.empty(0)) is None and cpu_row(torch.zeros(2, dtype=torch.complex64)) is None


def test_cpu_row_records_no_autograd_node():
    w = torch.randn(8, requires_grad=True)
    before = torch.autograd._get_sequence_nr()
    row = cpu_row(w)  # as a module hook calls it: grad enabled
    assert torch.autograd._get_sequence_nr() == before
    assert row[0] == pytest.approx(float(w.max()))
