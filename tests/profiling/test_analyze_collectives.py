"""Collectives table and p2p matrix against what the simulation did: counts, bytes, bus bandwidth."""

from collections import Counter

import numpy as np
import pytest

from ascend_tools.profiling import synthetic
from ascend_tools.profiling.analyze import run
from ascend_tools.profiling.analyze.collectives import bucket_label, bucket_of

BUSBW = 25.0  # GB/s the simulated network delivers


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    path = tmp_path_factory.mktemp("prof")
    # no latency, no exit jitter: every transfer takes exactly S x factor / busbw after the last arrival
    truth = synthetic.write_profile(
        str(path),
        ranks=4,
        collectives=120,
        per_step=6,
        tp=2,
        p2p=True,
        busbw=BUSBW,
        latency=0.0,
        exit_jitter=0.0,
        clock_skew=0.3,
        seed=2,
    )
    return truth, run(str(path))


def test_counts_and_bytes_per_op(analysed):
    truth, a = analysed
    calls, records = Counter(), Counter()
    for ev in truth.events:
        # a tp all_reduce is one call per tp group (2 here); every rank records every event it takes part in
        calls[ev.op] += {"world": 1, "tp": 2, "p2p": 4}[ev.group]
        records[ev.op] += 4
    rows = a.collectives
    for op in calls:
        mine = [r for r in rows if r["op"] == op]
        assert sum(r["calls"] for r in mine) == calls[op]
        assert sum(r["records"] for r in mine) == records[op]
    for op, nbytes in truth.bytes_by_op.items():
        assert sum(r["bytes_total"] for r in rows if r["op"] == op) == nbytes


def test_buckets_are_powers_of_two():
    sizes = np.array([0, 1, 1023, 1024, 2047, 2048, 1 << 20])
    assert bucket_of(sizes).tolist() == [-1, 0, 9, 10, 10, 11, 20]
    assert bucket_label(10) == "1 KiB–2 KiB" and bucket_label(-1) == "0 B"


def test_bus_bandwidth_is_the_simulated_one(analysed):
    """Large messages only: epoch-second floats resolve ~0.2 us, a 1 KiB transfer takes 60 ns here."""
    _, a = analysed
    rows = [r for r in a.collectives if r["bytes_min"] >= 8 << 20 and r["op"] not in ("send", "recv")]
    assert {r["op"] for r in rows} == {
        "all_reduce",
        "all_gather",
        "reduce_scatter",
        "all_to_all",
        "broadcast",
    }
    for r in rows:
        assert r["busbw_p50_GBps"] == pytest.approx(BUSBW, rel=1e-3), r


def test_per_group_rows(analysed):
    truth, a = analysed
    tp = [r for r in a.collectives_by_group if r["group"].startswith("tp")]
    per_step = Counter(ev.op for ev in truth.events if ev.group == "tp")["all_reduce"]
    assert sorted(r["group"] for r in tp) == ["tp0", "tp1"]
    assert all(r["calls"] == per_step and r["records"] == 2 * per_step for r in tp)
    assert all(r["busbw_p50_GBps"] == pytest.approx(BUSBW, rel=1e-3) for r in tp)


def test_p2p_matrix(analysed):
    truth, a = analysed
    assert {(r["src"], r["dst"]): r["bytes"] for r in a.p2p} == truth.p2p_bytes


def test_p2p_survives_a_lost_side(tmp_path):
    truth = synthetic.write_profile(str(tmp_path), ranks=3, collectives=12, per_step=4, p2p=True)
    path = tmp_path / "rank0" / "events.jsonl"  # rank 0's sends are lost: rank 1's recvs still count them
    path.write_text(
        "".join(line for line in path.read_text().splitlines(keepends=True) if '"send"' not in line)
    )
    a = run(str(tmp_path))
    assert {(r["src"], r["dst"]): r["bytes"] for r in a.p2p} == truth.p2p_bytes
