"""Clock alignment recovers known per-rank clock offsets from the exit times of blocking collectives."""

import json

import numpy as np

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import clocks, run
from ascend_tools.profiling.analyze.instances import group_instances
from ascend_tools.profiling.analyze.reader import read_profile

EXIT_JITTER = 20e-6


def test_offsets_are_recovered(tmp_path):
    truth = synthetic.write_profile(
        str(tmp_path),
        ranks=4,
        collectives=60,
        per_step=6,
        clock_skew=2.0,
        tp=2,
        exit_jitter=EXIT_JITTER,
        seed=3,
    )
    assert np.ptp(truth.offsets) > 0.5  # the clocks really are seconds apart
    a = run(str(tmp_path))
    # offset of rank r = its clock minus rank 0's; exits coincide up to the exit jitter
    np.testing.assert_allclose(a.clock.offsets, truth.offsets - truth.offsets[0], atol=4 * EXIT_JITTER)
    assert a.clock.reference == 0 and not a.clock.unaligned
    assert a.clock.residual_p99 < 4 * EXIT_JITTER


def test_aligned_arrivals_match_the_simulation(tmp_path):
    """After alignment, a step's start on every rank is the simulated (offset-free) time, up to jitter."""
    truth = synthetic.write_profile(
        str(tmp_path), ranks=3, collectives=20, per_step=5, clock_skew=1.0, seed=5
    )
    raw = read_profile(str(tmp_path))
    raw_span = np.ptp(raw.steps.t0[raw.steps.step == 0])
    a = run(str(tmp_path))
    aligned_span = np.ptp(a.profile.steps.t0[a.profile.steps.step == 0])
    assert raw_span > 0.1 and aligned_span < 1e-3
    assert a.profile.offsets is not None and np.allclose(a.profile.offsets, truth.offsets, atol=1e-4)


def test_tensor_parallel_groups_alone_cannot_align_across_groups(tmp_path):
    """Without the world group, ranks 2-3 share no collective with rank 0: they are reported unaligned."""
    synthetic.write_profile(str(tmp_path), ranks=4, collectives=30, per_step=5, clock_skew=1.0, tp=2)
    for r in range(4):
        path = tmp_path / f"rank{r}" / "events.jsonl"
        kept = [
            line
            for line in path.read_text().splitlines()
            if json.loads(line).get("gid") in (None, f"tp{r // 2}")
        ]
        path.write_text("\n".join(kept) + "\n")
    profile = read_profile(str(tmp_path))
    fit = clocks.fit(profile, group_instances(profile))
    assert fit.reference == 0 and fit.via[1][0] == "tp0"
    assert fit.unaligned == [2, 3]


def test_async_and_rooted_collectives_do_not_vote(tmp_path):
    """Only blocking all-to-all-dependent collectives are used: a broadcast whose root leaves early, or an
    async all_reduce seen complete late, must not move the offsets."""
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=36, per_step=6, seed=1)
    path = tmp_path / "rank1" / "events.jsonl"
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("op") == "broadcast" or (rec.get("op") == "all_reduce" and rec["seq"] % 2 == 0):
            rec["t1"] += 5.0  # way off
            rec["async"] = rec["op"] == "all_reduce"
        out.append(json.dumps(rec))
    path.write_text("\n".join(out) + "\n")
    a = run(str(tmp_path))
    assert abs(a.clock.offsets[1]) < 1e-3
