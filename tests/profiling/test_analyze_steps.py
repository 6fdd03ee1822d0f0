"""Per-rank step breakdown: compute + exposed comm + wait = step time; the wait lands on the punctual ranks."""

import numpy as np
import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import run
from ascend_tools.profiling.analyze.steps import per_rank

COMPUTE, PER_STEP = 0.01, 4


@pytest.fixture(scope="module")
def straggled(tmp_path_factory):
    path = tmp_path_factory.mktemp("prof")
    # rank 2 arrives 8 ms late per step in all (2 ms before each of its 4 collectives)
    truth = synthetic.write_profile(
        str(path),
        ranks=3,
        collectives=40,
        per_step=PER_STEP,
        compute=COMPUTE,
        jitter=0.0,
        straggler=2,
        delay=0.008,
        clock_skew=0.5,
        latency=0.0,
        seed=1,
    )
    return truth, run(str(path))


def test_parts_add_up_to_the_step(straggled):
    _, a = straggled
    t = a.steps
    np.testing.assert_allclose(t.compute + t.exposed + t.wait, t.duration, atol=1e-9)
    assert (t.compute >= 0).all() and (t.exposed >= 0).all() and (t.wait >= 0).all()


def test_the_punctual_ranks_wait_for_the_straggler(straggled):
    truth, a = straggled
    rows = {r["rank"]: r for r in per_rank(a.steps)}
    assert set(rows) == {0, 1, 2} and all(r["steps"] == 9 for r in rows.values())  # 10, less the warm-up
    for r in (0, 1):  # they wait 2 ms at each of the 4 collectives of a step
        assert rows[r]["wait_s"] == pytest.approx(0.008, abs=1e-4)
    assert rows[2]["wait_s"] == pytest.approx(0.0, abs=1e-4)
    # everyone's step lasts as long; the straggler spends the difference computing (or sleeping)
    assert rows[2]["compute_s"] - rows[0]["compute_s"] == pytest.approx(0.008, abs=1e-4)
    assert rows[0]["step_time_p50_s"] == pytest.approx(float(np.median(truth.step_times)), rel=1e-3)


def test_async_collectives_are_overlapped_not_exposed(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=20, per_step=4, jitter=0.0)
    path = tmp_path / "rank0" / "events.jsonl"
    path.write_text(path.read_text().replace('"async": false', '"async": true'))
    rows = {r["rank"]: r for r in per_rank(run(str(tmp_path)).steps)}
    assert rows[0]["exposed_comm_s"] == 0 and rows[0]["overlapped_comm_s"] > 0
    assert 0 <= rows[0]["overlapped_wait_s"] <= rows[0]["overlapped_comm_s"]
    # its only wait is the async one (from its issue to the other rank's), taken out of compute
    assert rows[0]["wait_s"] == pytest.approx(rows[0]["overlapped_wait_s"], abs=1e-9)
    assert rows[1]["overlapped_comm_s"] == 0 and rows[1]["exposed_comm_s"] > 0


def test_no_step_records_no_breakdown(tmp_path):
    synthetic.write_profile(str(tmp_path), ranks=2, collectives=10, per_step=5)
    for r in range(2):
        path = tmp_path / f"rank{r}" / "events.jsonl"
        path.write_text(
            "".join(x for x in path.read_text().splitlines(keepends=True) if '"k": "step"' not in x)
        )
    a = run(str(tmp_path))
    assert per_rank(a.steps) == [] and np.isnan(a.steps.median_step())
