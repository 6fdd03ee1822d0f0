"""The parts of the slow-rank rule against independent answers: Student's t tail against published
critical values, the collective-sequence period of known schedules, and compute between collectives on a
hand-written 2-rank DDP step whose every gap is known."""

import json
import math

import numpy as np
import pytest

from ascend_tools.profiling.analyze import run
from ascend_tools.profiling.analyze.slow_rank import _median_without_each
from ascend_tools.profiling.analyze.steps import per_rank
from ascend_tools.profiling.analyze.ttest import one_sided_p, t_tail
from ascend_tools.profiling.analyze.windows import labels, period

# one-sided critical values t(p, dof) from the standard tables (e.g. NIST/SEMATECH e-Handbook, 1.3.6.7.2)
CRITICAL = [
    (1, 0.05, 6.314),
    (2, 0.001, 22.327),
    (4, 0.001, 7.173),
    (4, 0.05, 2.132),
    (9, 0.001, 4.297),
    (10, 0.05, 1.812),
    (30, 0.01, 2.457),
    (100, 0.001, 3.174),
]


@pytest.mark.parametrize("dof, p, t", CRITICAL)
def test_t_tail_at_the_tables_critical_values(dof, p, t):
    assert t_tail(t, dof) == pytest.approx(p, rel=2e-3)
    assert t_tail(-t, dof) == pytest.approx(1 - p, rel=2e-3)


def test_one_sided_p_is_the_t_statistics_tail():
    x = np.array([1.0, 2.0, 3.0, 4.0, 6.0])
    t = x.mean() / (x.std(ddof=1) / math.sqrt(len(x)))  # 3.2/(1.924/2.236) = 3.719
    assert one_sided_p(x) == pytest.approx(t_tail(t, 4))
    assert 0.01 < one_sided_p(x) < 0.025  # t(0.01, 4) = 3.747, t(0.025, 4) = 2.776 (tables)
    assert one_sided_p(np.array([2.0, 2.0, 2.0])) == 0.0 and one_sided_p(np.array([-1.0, -1.0])) == 1.0
    assert one_sided_p(np.array([5.0])) == 1.0  # one value says nothing of the spread


def test_period_of_a_ddp_schedule():
    """An initial broadcast, 6 steps of (bucket 1, bucket 2 async, loss all_reduce), a final barrier."""
    bcast, b1, b2, loss, barrier = 1, 2, 3, 4, 5
    sig = np.array([bcast] + [b1, b2, loss] * 6 + [barrier])
    assert period(sig) == (3, 1, 19)
    lab, p = labels(sig)
    assert p == 3 and lab.tolist() == [-1] + [w for w in range(6) for _ in range(3)] + [-1]


def test_period_of_one_collective_per_step_and_of_no_repeat():
    assert period(np.full(12, 7)) == (1, 0, 12)
    assert period(np.arange(12)) == (1, 0, 12)  # no repeat: every collective is a window
    lab, p = labels(np.array([1, 2, 3, 1, 2, 3, 1, 2]))  # a last partial period is no window
    assert p == 3 and lab.tolist() == [0, 0, 0, 1, 1, 1, -1, -1]


def _coll(seq, op, nbytes, t0, t1, is_async, step):
    return {
        "k": "coll",
        "gid": "0",
        "seq": seq,
        "op": op,
        "api": op,
        "dtype": "float32",
        "bytes": nbytes,
        "n": 2,
        "peer": None,
        "t0": t0,
        "t1": t1,
        "dev_ms": None,
        "async": is_async,
        "step": step,
        "sid": None,
        "via": "ddp" if is_async else None,
    }


def write_ddp(path, steps=3, delay=0.3):
    """Each step: rank 0 computes 1.0 s, rank 1 1.0 + ``delay`` s, then issue the async bucket
    all-reduce (done 0.01 s after the last issue); 0.02 s later the loss all_reduce (0.01 s)."""
    start = 1_700_000_000.0
    for rank in (0, 1):
        lines = [{"k": "group", "gid": "0", "ranks": [0, 1], "backend": "gloo"}]
        t = start
        for s in range(steps):
            issue = {0: t + 1.0, 1: t + 1.0 + delay}
            done = issue[1] + 0.01
            lines.append(_coll(2 * s, "all_reduce", 1 << 20, issue[rank], done, True, s))
            lines.append(_coll(2 * s + 1, "all_reduce", 4, done + 0.02, done + 0.03, False, s))
            lines.append({"k": "step", "step": s, "t0": t, "t1": done + 0.03})
            t = done + 0.03
        d = path / f"rank{rank}"
        d.mkdir(parents=True)
        meta = {"schema": "ascend-doctor/profile/1", "rank": rank, "world_size": 2, "hostname": "h", "pid": 1}
        (d / "meta.json").write_text(json.dumps(dict(meta, started_at=start, closed_at=t)))
        (d / "events.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))


def test_the_punctual_ranks_async_wait_is_wait_not_compute(tmp_path):
    """Rank 0 waits 0.3 s in the bucket all-reduce for rank 1 each step: its compute is 1.0 s before the
    issue plus the 0.01 s transfer after rank 1's issue (overlapped: the rank could work) plus 0.02 s
    before the loss all_reduce, against rank 1's 1.3 + 0.01 + 0.02 s; its 0.3 s of wait is wait (with the
    old breakdown both ranks read 1.33 s of compute)."""
    write_ddp(tmp_path)
    a = run(str(tmp_path))
    rows = {r["rank"]: r for r in per_rank(a.steps)}
    assert rows[0]["compute_s"] == pytest.approx(1.03, abs=1e-6)
    assert rows[1]["compute_s"] == pytest.approx(1.33, abs=1e-6)
    assert rows[0]["wait_s"] == pytest.approx(0.30, abs=1e-6) and rows[1]["wait_s"] == pytest.approx(
        0, abs=1e-6
    )
    assert rows[0]["exposed_comm_s"] == pytest.approx(0.01, abs=1e-6)  # the loss all_reduce
    # per window (steps 1 and 2), the slow-rank rule sees the same compute
    g = {r["rank"]: r for r in a.slow["groups"][0]["ranks"]}
    assert g[1]["compute_per_step_s"] == pytest.approx(1.33, abs=1e-6)
    assert g[0]["compute_per_step_s"] == pytest.approx(1.03, abs=1e-6)
    assert g[1]["compute_excess_per_step_s"] == pytest.approx(0.30, abs=1e-6)


@pytest.mark.parametrize("m", [2, 3, 4, 7, 10])
def test_median_of_the_others_is_numpys(m):
    values = np.random.default_rng(m).normal(size=m).round(1)  # ties included
    want = [np.median(np.delete(values, i)) for i in range(m)]
    np.testing.assert_allclose(_median_without_each(values), want)
