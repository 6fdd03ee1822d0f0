"""Functional collectives (``torch.ops._c10d_functional``, what DTensor issues) are recorded like torch.distributed's
calls: entered when issued, completed at their first wait, S as nccl-tests defines it; the ops stay what torch
and DTensor look up; an output never waited for is no hang. One gloo rank in this process."""

import os
import time

import pytest
import torch
import torch.distributed as dist
import torch.distributed._functional_collectives as funcol

from ascend_tools.profiling.profiler import profile

pytestmark = pytest.mark.slow

K = 64


@pytest.fixture
def world1(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _profile(tmp_path):
    return profile(str(tmp_path / "prof"), memory=False, hang_timeout=None)


def test_each_functional_collective_is_one_record_completed_at_its_wait(tmp_path, world1):
    group = dist.group.WORLD
    with _profile(tmp_path) as prof:
        x = torch.arange(K, dtype=torch.float32)
        reduced = funcol.all_reduce(x, "sum", group)
        assert [c["api"] for c in prof.comm.inflight()] == ["_c10d_functional.all_reduce"]
        assert torch.equal(funcol.wait_tensor(reduced), x)  # the op's own result
        assert prof.comm.inflight() == []
        gathered = funcol.all_gather_tensor(torch.ones(K, dtype=torch.bfloat16), 0, group)
        scattered = funcol.reduce_scatter_tensor(torch.ones(K), "sum", 0, group)
        moved = funcol.all_to_all_single(torch.ones(K, dtype=torch.float64), None, None, group)
        sent = funcol.broadcast(torch.ones(K), 0, group)
        for t in (gathered, scattered, moved, sent):
            funcol.wait_tensor(t)
        dist.all_reduce(torch.ones(K))  # a torch.distributed call: the next seq of the same group
        recs = prof.comm.recent_records()
    got = [(r["op"], r["api"].split(".")[-1], r["dtype"], r["bytes"], r["seq"], r["async"]) for r in recs]
    assert got == [
        ("all_reduce", "all_reduce", "float32", 4 * K, 0, True),
        ("all_gather", "all_gather_into_tensor", "bfloat16", 2 * K, 1, True),  # n x input, n = 1
        ("reduce_scatter", "reduce_scatter_tensor", "float32", 4 * K, 2, True),
        ("all_to_all", "all_to_all_single", "float64", 8 * K, 3, True),
        ("broadcast", "broadcast", "float32", 4 * K, 4, True),
        ("all_reduce", "all_reduce", "float32", 4 * K, 5, False),
    ]
    assert all(r["t1"] >= r["t0"] and r["via"] == "funcol" for r in recs[:5])


def test_the_ops_stay_the_ones_torch_looks_up_and_come_back_after(tmp_path, world1):
    ns = torch.ops._c10d_functional
    before = ns.all_reduce, ns.all_reduce.default, ns.wait_tensor.default
    with _profile(tmp_path):
        assert ns.all_reduce is not before[0]
        assert isinstance(ns.all_reduce, torch._ops.OpOverloadPacket)  # what torch.compile puts in a graph
        assert (ns.all_reduce.default, ns.wait_tensor.default) == before[1:]  # DTensor's keys
        assert ns.all_reduce.overloads() == before[0].overloads()
    assert (ns.all_reduce, ns.all_reduce.default) == before[:2]


def test_an_output_never_waited_for_is_entered_but_no_hang(tmp_path, world1):
    """The watchdog reads the in-flight list: an output nobody waits for (torch warns of it at exit) holds no
    rank, so it must not fire, while a hang's dump still lists it as entered (waited_at null)."""
    with profile(str(tmp_path / "prof"), memory=False, hang_timeout=0.3) as prof:
        out = torch.ops._c10d_functional.all_reduce(torch.ones(K), "sum", "0")
        (call,) = prof.comm.inflight()
        assert call["waited_at"] is None and call["seq"] == 0
        time.sleep(1.5)  # five timeouts; the watchdog polls several times a second
        torch.ops._c10d_functional.wait_tensor(torch.ones(K))  # a wait on something never issued: nothing
        assert prof.comm.recent_records() == []
        torch.ops._c10d_functional.wait_tensor(out)
        (rec,) = prof.comm.recent_records()
        assert "waited_at" not in rec and rec["t1"] - rec["t0"] >= 1.5
    assert not os.path.exists(tmp_path / "prof" / "rank0" / "hang")
