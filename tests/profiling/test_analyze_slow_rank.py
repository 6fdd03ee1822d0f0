"""Slow-rank rule: a straggler delayed by 10% of the step is named; balanced runs with jitter are not flagged."""

import json

import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import SlowRankRule, run

COMPUTE = 0.01


def simulate(path, ranks, per_step, jitter, delay_share=0.0, straggler=1, steps=20, seed=0, **kw):
    """A run whose straggler arrives ``delay_share`` of a (balanced) step late, in all, every step."""
    step = (
        per_step * (COMPUTE + 0.8 * jitter) + COMPUTE
    )  # the balanced step: segments, their jitter, the tail
    synthetic.write_profile(
        str(path),
        ranks=ranks,
        collectives=per_step * steps,
        per_step=per_step,
        compute=COMPUTE,
        jitter=jitter,
        straggler=straggler if delay_share else None,
        delay=delay_share * step,
        seed=seed,
        **kw,
    )
    return run(str(path))


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("per_step", [1, 4])
def test_a_ten_percent_straggler_is_named(tmp_path, ranks, per_step):
    a = simulate(
        tmp_path, ranks, per_step, jitter=0.001, delay_share=0.10, straggler=ranks - 1, clock_skew=0.5
    )
    assert [s["rank"] for s in a.slow["slow_ranks"]] == [ranks - 1]
    s = a.slow["slow_ranks"][0]
    # its lateness is the injected delay (up to jitter), as a share of the (now longer) median step
    delay = 0.10 * (per_step * (COMPUTE + 0.8e-3) + COMPUTE)
    assert s["late_per_step_s"] == pytest.approx(delay, rel=0.25)
    assert len(s["by_step"]) == 19 and s["groups"][0]["group"] == "0"  # the warm-up step left out
    # msprof-analyze's signature: the straggler's collectives are the shortest (it never waits)
    g = s["groups"][0]
    assert g["collective_p50_s"] < g["others_collective_p50_s"]
    assert "arrived" in s["reason"]


@pytest.mark.parametrize("ranks", [2, 4])
@pytest.mark.parametrize("jitter", [0.002, 0.004])
def test_balanced_runs_are_not_flagged(tmp_path, ranks, jitter):
    for seed in range(8):
        a = simulate(tmp_path / f"s{seed}", ranks, per_step=2, jitter=jitter, seed=100 + seed)
        assert a.slow["slow_ranks"] == [], (seed, a.slow["groups"][0]["ranks"])


def test_straggler_in_one_tensor_parallel_group_only(tmp_path):
    """Per process group: rank 3 delays only its tp all_reduce, so only group tp1 names it."""
    synthetic.write_profile(str(tmp_path), ranks=4, collectives=40, per_step=2, tp=2, jitter=0.0005, seed=4)
    for rank, fields in ((3, ("t0", "t1")), (2, ("t1",))):  # rank 3 arrives 5 ms late, so both leave later
        path = tmp_path / f"rank{rank}" / "events.jsonl"
        out = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            if rec["k"] == "coll" and rec["gid"] == "tp1":
                for f in fields:
                    rec[f] += 0.005
            out.append(json.dumps(rec))
        path.write_text("\n".join(out) + "\n")
    a = run(str(tmp_path))
    # only tp1 names it (the edit also takes 5 ms of compute from ranks 2 and 3 between tp1 and the next
    # world collective, so in the world group ranks 0 and 1 do compute more: not what this test is about)
    slow = {g["group"]: [r["rank"] for r in g["ranks"] if r["slow"]] for g in a.slow["groups"]}
    assert slow["tp0"] == [] and slow["tp1"] == [3]
    assert "tp1" in [g["group"] for s in a.slow["slow_ranks"] if s["rank"] == 3 for g in s["groups"]]


def test_thresholds_are_parameters(tmp_path):
    synthetic.write_profile(
        str(tmp_path),
        ranks=2,
        collectives=20,
        per_step=1,
        jitter=0.0005,
        straggler=1,
        delay=0.002,
        compute=COMPUTE,
    )
    assert [s["rank"] for s in run(str(tmp_path)).slow["slow_ranks"]] == [1]  # ~9% of a ~22 ms step
    assert run(str(tmp_path), rule=SlowRankRule(min_share=0.15)).slow["slow_ranks"] == []


def test_too_few_steps_are_not_judged(tmp_path):
    """5 steps leave 4 after the warm-up step, fewer than min_windows (5): no verdict, however late the
    rank, and the group says how many windows it has and needs."""
    a = simulate(tmp_path, 2, per_step=1, jitter=0.0005, delay_share=0.5, steps=5)
    assert a.slow["slow_ranks"] == []
    g = a.slow["groups"][0]
    assert (g["judged"], g["windows"], g["windows_needed"]) == (False, 4, 5)
    assert g["ranks"][1]["verdict"] == "too few windows" and g["ranks"][1]["share_of_step"] > 0.3
