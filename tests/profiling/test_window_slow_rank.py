"""The slow-rank rule on always-on windows (window_slow_rank.py), measured on simulated timings fed through
the recorder's aggregation (always_on.Window): false alarms on balanced runs, power on a +5% straggler."""

from types import SimpleNamespace

import numpy as np

from ascend_tools.profiling import always_on
from ascend_tools.profiling.analyze import window_slow_rank
from ascend_tools.profiling.analyze.slow_rank import SlowRankRule


def simulate(seed, ranks, blocks, compute, jitter, straggler=None, extra=0.0, skew=1.0):
    """Blocking all_reduces back to back: rank r computes ``compute`` (× (1 + ``extra``) on the straggler)
    plus half-normal jitter, then arrives; everyone leaves 50 µs after the last arrival. Each rank's clock is
    off by up to ``skew`` s. Returns the profile as window_slow_rank.find reads it (one window per block)."""
    rng = np.random.default_rng(seed)
    offsets = rng.uniform(-skew, skew, ranks)
    work = np.full(ranks, compute)
    if straggler is not None:
        work[straggler] *= 1 + extra
    windows = {r: [always_on.Window(0)] for r in range(ranks)}
    release = np.full(ranks, 1.8e9)
    for seq in range(blocks * always_on.ARRIVAL_BLOCK):
        arrive = release + work + np.abs(rng.normal(0.0, jitter, ranks))
        leave = arrive.max() + 50e-6 + np.abs(rng.normal(0.0, 20e-6, ranks))
        for r in range(ranks):
            if seq and seq % always_on.ARRIVAL_BLOCK == 0:
                windows[r].append(always_on.Window(len(windows[r])))
            windows[r][-1].add(
                {
                    "k": "coll", "gid": "0", "seq": seq, "op": "all_reduce", "bytes": 4096, "n": ranks,
                    "peer": None, "async": False, "t0": arrive[r] + offsets[r], "t1": leave[r] + offsets[r],
                    "gap": float(arrive[r] - release[r]) if seq else None,
                }
            )  # fmt: skip
        release = leave
    ranks_info = {
        r: SimpleNamespace(host="sim", windows=[w.record(0.0, None) for w in ws]) for r, ws in windows.items()
    }
    return SimpleNamespace(ranks=ranks_info)


def test_at_most_one_false_slow_rank_in_200_balanced_runs():
    false_slow, suspects = [], 0
    for seed in range(200):
        ranks, blocks = 2 + seed % 4, 6 + seed % 5
        jitter, compute = (0.0005, 0.001, 0.003, 0.01)[seed % 4], (0.005, 0.03)[seed % 2]
        slow = window_slow_rank.find(simulate(seed, ranks, blocks, compute, jitter), SlowRankRule())
        assert all(g["judged"] for g in slow["groups"])
        false_slow += [(seed, s["rank"]) for s in slow["slow_ranks"]]
        suspects += len(slow["suspects"])
    assert len(false_slow) <= 1, false_slow
    assert suspects <= 10, suspects


def test_a_five_percent_compute_straggler_is_named_in_six_blocks():
    named = []
    for seed in range(30):
        ranks = 3 + seed % 2
        slow = window_slow_rank.find(
            simulate(seed, ranks, 6, 0.01, (0.0005, 0.001)[seed % 2], straggler=ranks - 1, extra=0.05),
            SlowRankRule(),
        )
        got = [s["rank"] for s in slow["slow_ranks"]]
        assert set(got) <= {ranks - 1}, (seed, got)
        named.append(got == [ranks - 1])
        if got:
            assert "compute" in slow["slow_ranks"][0]["signals"]
    assert sum(named) >= 28, sum(named)
