"""Bus-bandwidth factors against the nccl-tests table and against published nccl-tests output lines."""

import math

import numpy as np
import pytest

from ascend_tools.profiling import bandwidth

# NVIDIA/nccl-tests doc/PERFORMANCE.md, "Summary" (+ src/gather.cu, src/scatter.cu, src/sendrecv.cu)
NCCL_TESTS = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "all_to_all": lambda n: (n - 1) / n,
    "gather": lambda n: (n - 1) / n,
    "scatter": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
    "send": lambda n: 1.0,
    "recv": lambda n: 1.0,
}


@pytest.mark.parametrize("op", sorted(NCCL_TESTS))
@pytest.mark.parametrize("n", [1, 2, 4, 8, 1024])
def test_factor_matches_the_nccl_tests_table(op, n):
    assert bandwidth.bus_factor(op, n) == pytest.approx(NCCL_TESTS[op](n))


def test_barrier_and_unknown_ops_have_no_bandwidth():
    assert math.isnan(bandwidth.bus_factor("barrier", 4))
    assert math.isnan(bandwidth.busbw("frobnicate", 1e6, 1e-3, 4))


def test_published_all_reduce_line():
    # nccl-tests all_reduce_perf, 16 H100 ranks: 1073741824 B in 6759.0 us -> algbw 158.86, busbw 297.86 GB/s
    assert bandwidth.algbw(1073741824, 6759.0e-6) == pytest.approx(158.86, abs=0.005)
    assert bandwidth.busbw("all_reduce", 1073741824, 6759.0e-6, 16) == pytest.approx(297.86, abs=0.005)


def test_published_sendrecv_line():
    # nccl-tests sendrecv_perf, 8 A100 ranks: 134217728 B in 1211.2 us -> algbw = busbw = 110.81 GB/s
    assert bandwidth.busbw("send", 134217728, 1211.2e-6, 8) == pytest.approx(110.81, abs=0.005)


def test_vectorised_factors_equal_the_scalar_ones():
    names = ["all_reduce", "barrier", "all_gather", "broadcast", "mystery"]
    ops = np.array([0, 1, 2, 3, 4, 0])
    n = np.array([2, 4, 8, 16, 4, 1])
    got = bandwidth.bus_factors(names, ops, n)
    want = [bandwidth.bus_factor(names[o], k) for o, k in zip(ops, n)]
    np.testing.assert_allclose(got, want, equal_nan=True)
