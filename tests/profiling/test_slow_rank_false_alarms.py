"""The slow-rank rule's false alarms and power, measured on simulated runs (synthetic.py writes the
on-disk format; deterministic seeds). Figures in docs/analyze.md."""

import numpy as np
import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import run


def strip_steps(path, ranks):
    """Leave the profile without step marks (a script without optimizer.step() or prof.step())."""
    for r in range(ranks):
        f = path / f"rank{r}" / "events.jsonl"
        f.write_text("".join(x for x in f.read_text().splitlines(keepends=True) if '"k": "step"' not in x))


def balanced(seed, path):
    """Settings cycle over 2–5 ranks, 1–4 collectives per step, 6–20 steps, 1–20 ms of half-normal jitter
    per collective on 10 or 30 ms of compute, with and without step marks."""
    ranks, per_step, steps = 2 + seed % 4, 1 + seed % 4, 6 + seed % 15
    jitter, compute = (0.001, 0.003, 0.005, 0.01, 0.02)[seed % 5], (0.01, 0.03)[seed % 2]
    synthetic.write_profile(
        str(path), ranks=ranks, collectives=per_step * steps, per_step=per_step, compute=compute, jitter=jitter,
        seed=10_000 + seed,
    )  # fmt: skip
    if seed % 3 == 0:
        strip_steps(path, ranks)
    return run(str(path))


def test_at_most_one_false_slow_rank_in_200_balanced_runs(tmp_path):
    false_slow, suspects = [], 0
    for seed in range(200):
        a = balanced(seed, tmp_path / str(seed))
        false_slow += [(seed, s["rank"]) for s in a.slow["slow_ranks"]]
        suspects += len(a.slow["suspects"])
        assert all(g["judged"] for g in a.slow["groups"])  # ≥ 5 windows in every run
    assert len(false_slow) <= 1, false_slow
    assert suspects <= 5  # named as "may be slow" (info): measured 2 in these 200, docs/analyze.md


@pytest.mark.parametrize("ranks", [3, 4])
def test_a_five_percent_straggler_is_named_in_12_unmarked_steps(tmp_path, ranks):
    """+5% of the step on the last rank, 12 steps of 1 or 3 collectives, no step marks, 0.5–2 ms of jitter
    per collective on 30 ms of compute: named in at least 28 of 30 runs, never a wrong rank (the sign
    test named it in none of the one-collective runs: its 5% threshold sat above the measured 4.4–4.8%)."""
    named = []
    for seed in range(30):
        per_step, jitter = (1, 3)[seed % 2], (0.0005, 0.001, 0.002)[seed % 3]
        step = per_step * (0.03 + 0.8 * jitter) + 0.03
        path = tmp_path / str(seed)
        synthetic.write_profile(
            str(path), ranks=ranks, collectives=12 * per_step, per_step=per_step, compute=0.03, jitter=jitter,
            straggler=ranks - 1, delay=0.05 * step, seed=seed,
        )  # fmt: skip
        strip_steps(path, ranks)
        got = [s["rank"] for s in run(str(path)).slow["slow_ranks"]]
        assert set(got) <= {ranks - 1}, (seed, got)
        named.append(got == [ranks - 1])
    assert np.sum(named) >= 28, np.flatnonzero(~np.array(named))
