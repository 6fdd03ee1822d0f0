"""Every collective is seen, with S (bytes) as nccl-tests defines it, on real gloo ranks: called directly, from
c10d's object collectives, from DDP's C++ reducer (through the comm hook) and from FSDP 1 and 2."""

import os

import pytest
import torch
import torch.distributed as dist
from gloo_ranks import events, init, spawn

from ascend_tools.profiling.profiler import profile

pytestmark = pytest.mark.slow

K = 96  # elements per rank in the direct calls
F32 = 4


def direct_calls(rank: int, n: int, out: str) -> None:
    with profile(out, memory=False, hang_timeout=None):
        init(rank, n)
        x = torch.full((K,), float(rank + 1))
        dist.all_reduce(x)
        assert x[0].item() == n * (n + 1) / 2  # the wrapper returns the real result
        dist.all_gather_into_tensor(torch.empty(n * K), torch.ones(K))
        dist.all_gather([torch.empty(K) for _ in range(n)], torch.ones(K))
        dist.reduce_scatter_tensor(torch.empty(K), torch.ones(n * K))
        dist.reduce_scatter(torch.empty(K), [torch.ones(K) for _ in range(n)])
        dist.all_to_all_single(torch.empty(n * K), torch.ones(n * K))
        dist.all_to_all([torch.empty(K) for _ in range(n)], [torch.ones(K) for _ in range(n)])
        dist.broadcast(torch.ones(K, dtype=torch.float64), src=0)
        dist.reduce(torch.ones(K), dst=0)
        dist.gather(torch.ones(K), [torch.empty(K) for _ in range(n)] if rank == 0 else None, dst=0)
        dist.scatter(torch.empty(K), [torch.ones(K) for _ in range(n)] if rank == 0 else None, src=0)
        work = dist.all_reduce(torch.ones(K, dtype=torch.bfloat16), async_op=True)
        work.wait()
        dist.all_gather_object([None] * n, {"rank": rank})
        peer = (rank + 1) % n, (rank - 1) % n
        if rank % 2 == 0:
            dist.send(torch.ones(K), dst=peer[0])
            dist.recv(torch.empty(K), src=peer[1])
        else:
            dist.recv(torch.empty(K), src=peer[1])
            dist.send(torch.ones(K), dst=peer[0])
        got = torch.empty(K)
        ops = [
            dist.P2POp(dist.isend, torch.full((K,), float(rank)), peer[0]),
            dist.P2POp(dist.irecv, got, peer[1]),
        ]
        for req in dist.batch_isend_irecv(ops):
            req.wait()
        assert got[0].item() == peer[1]
        evens = dist.new_group([r for r in range(n) if r % 2 == 0])
        if rank % 2 == 0:
            dist.all_reduce(torch.ones(K), group=evens)
        dist.barrier()


def expected_direct(n: int):
    """(op, api, S) in call order, S from nccl-tests' definitions (README: all_gather/reduce_scatter S is the
    full output/input; all_to_all the full input; send/recv/broadcast/reduce the tensor)."""
    s = K * F32
    return [
        ("all_reduce", "all_reduce", s),
        ("all_gather", "all_gather_into_tensor", n * s),
        ("all_gather", "all_gather", n * s),
        ("reduce_scatter", "reduce_scatter_tensor", n * s),
        ("reduce_scatter", "reduce_scatter", n * s),
        ("all_to_all", "all_to_all_single", n * s),
        ("all_to_all", "all_to_all", n * s),
        ("broadcast", "broadcast", K * 8),
        ("reduce", "reduce", s),
        ("gather", "gather", n * s),
        ("scatter", "scatter", n * s),
        ("all_reduce", "all_reduce", K * 2),
    ]


@pytest.mark.parametrize("n", [2, 4])
def test_direct_collectives_counts_bytes_and_groups(tmp_path, n):
    out = str(tmp_path / "prof")
    spawn(direct_calls, n, out)
    for rank in range(n):
        recs = [r for r in events(out, rank) if r["gid"] == events(out, rank, "group")[0]["gid"]]
        got = [(r["op"], r["api"], r["bytes"]) for r in recs[:12]]
        assert got == expected_direct(n)
        coll = [r for r in recs if r["op"] not in ("send", "recv")]
        assert [r["seq"] for r in coll] == list(range(len(coll)))  # per-group sequence, from 0, no gaps
        # p2p (send/recv, then batch_isend_irecv): counted per direction and peer, apart from the group's sequence
        assert sorted(r["seq"] for r in recs if r["op"] in ("send", "recv")) == [0, 0, 1, 1]
        assert all(r["n"] == n and r["t1"] >= r["t0"] for r in recs)
        assert [r["async"] for r in recs[:12]] == [False] * 11 + [True]
        assert recs[11]["dtype"] == "bfloat16" and recs[7]["dtype"] == "float64"
        obj = [r for r in recs if r["via"] == "all_gather_object"]
        assert len(obj) == 2 and {r["op"] for r in obj} == {"all_gather"}  # sizes, then the pickled bytes
        p2p = [(r["op"], r["peer"], r["async"]) for r in recs if r["op"] in ("send", "recv")]
        assert sorted(p2p) == sorted(
            [
                ("send", (rank + 1) % n, False),
                ("recv", (rank - 1) % n, False),
                ("send", (rank + 1) % n, True),
                ("recv", (rank - 1) % n, True),
            ]
        )
        assert recs[-1]["op"] == "barrier" and recs[-1]["bytes"] == 0
        groups = events(out, rank, "group")
        assert groups[0]["ranks"] == list(range(n))
        sub = [r for r in events(out, rank) if r["gid"] != groups[0]["gid"]]
        if rank % 2 == 0:
            assert [g["ranks"] for g in groups[1:]] == [list(range(0, n, 2))]
            assert len(sub) == 1 and sub[0]["seq"] == 0 and sub[0]["n"] == len(range(0, n, 2))
        else:
            assert sub == []
        stacks = {s["sid"]: s["frames"] for s in events(out, rank, "stack")}
        assert any(
            "direct_calls" in f for f in stacks[recs[0]["sid"]][-1:]
        )  # the caller, library frames left out


def ddp_training(rank: int, n: int, out: str, user_hook: bool) -> None:
    with profile(out, memory=False, hang_timeout=None):
        init(rank, n)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        calls = []
        if user_hook:
            from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

            def counting_hook(state, bucket):
                calls.append(bucket.index())
                return allreduce_hook(state, bucket)

            ddp.register_comm_hook(None, counting_hook)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(3):
            ddp(torch.randn(4, 64)).sum().backward()
            opt.step()
            opt.zero_grad()
        if user_hook:
            assert calls, "the user's hook was replaced instead of chained"


@pytest.mark.parametrize("user_hook", [False, True])
def test_ddp_bucket_allreduces_are_seen(tmp_path, user_hook):
    out = str(tmp_path / "prof")
    spawn(ddp_training, 2, out, user_hook)
    param_bytes = (64 * 64 + 64 + 64 * 8 + 8) * F32
    for rank in range(2):
        recs = [r for r in events(out, rank) if r["via"] == "ddp"]
        assert {r["op"] for r in recs} == {"all_reduce"}
        assert {r["step"] for r in recs} == {0, 1, 2}
        for step in range(3):
            buckets = [r["bytes"] for r in recs if r["step"] == step]
            assert sum(buckets) == param_bytes  # every gradient byte is all-reduced once per step
        assert [s["step"] for s in events(out, rank, "step")] == [0, 1, 2]


def fsdp_training(rank: int, n: int, out: str, version: int) -> None:
    with profile(out, memory=False, hang_timeout=None):
        init(rank, n)
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64))
        if version == 1:
            from torch.distributed.fsdp import FullyShardedDataParallel

            model = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
        else:
            from torch.distributed.fsdp import fully_shard

            for layer in (model[0], model[2]):
                fully_shard(layer)
            fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        for _ in range(2):
            model(torch.randn(4, 64)).sum().backward()
            opt.step()
            opt.zero_grad()


@pytest.mark.parametrize("version", [1, 2])
def test_fsdp_all_gathers_and_reduce_scatters_are_seen(tmp_path, version):
    out = str(tmp_path / "prof")
    spawn(fsdp_training, 2, out, version)
    param_bytes = 2 * (64 * 64 + 64) * F32
    for rank in range(2):
        recs = events(out, rank)
        assert recs and all(r["via"] == "fsdp" for r in recs)
        for step in range(2):
            ag = sum(r["bytes"] for r in recs if r["step"] == step and r["op"] == "all_gather")
            rs = sum(r["bytes"] for r in recs if r["step"] == step and r["op"] == "reduce_scatter")
            assert rs == param_bytes  # each gradient reduce-scattered once; S = the full (unsharded) input
            assert (
                ag >= param_bytes
            )  # forward gathers every parameter at least once (FSDP2 again in backward)


@pytest.fixture()
def world1(tmp_path):
    """A one-rank gloo group in this process (no spawn)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_fails_open_when_recording_breaks(tmp_path, world1, caplog):
    prof = profile(str(tmp_path / "prof"), memory=False, hang_timeout=None)
    with prof:

        def broken(_rec):
            raise RuntimeError("disk full")

        prof.comm.emit = broken
        x = torch.ones(4)
        dist.all_reduce(x)
        dist.all_reduce(x)
    assert torch.equal(x, torch.ones(4))
    assert prof.comm.internal_errors == 2
    assert sum("not recorded" in r.message for r in caplog.records) == 1  # logged once


def test_uninstall_restores_torch_distributed(tmp_path, world1):
    before = (
        dist.all_reduce,
        dist.distributed_c10d.all_gather,
        torch.nn.parallel.DistributedDataParallel.__init__,
    )
    with profile(str(tmp_path / "prof"), memory=False, hang_timeout=None):
        assert dist.all_reduce is not before[0] and dist.distributed_c10d.all_gather is not before[1]
    after = (
        dist.all_reduce,
        dist.distributed_c10d.all_gather,
        torch.nn.parallel.DistributedDataParallel.__init__,
    )
    assert after == before


def test_a_destroyed_group_is_freed_while_profiling(tmp_path):
    """The profiler holds no group: a destroyed group goes with the user's last reference, its gloo threads
    stopped then. Held to interpreter exit, they aborted spawned ranks now and then ("terminate called
    without an active exception", SIGABRT)."""
    import gc
    import weakref

    with profile(str(tmp_path / "prof"), memory=False, hang_timeout=None) as prof:
        dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
        sub = dist.new_group([0])
        dist.all_reduce(torch.ones(4))
        dist.all_reduce(torch.ones(4), group=sub)
        with pytest.warns(UserWarning, match="does not belong"):  # what new_group gives a non-member
            dist.all_reduce(torch.ones(4), group=dist.distributed_c10d.GroupMember.NON_GROUP_MEMBER)
        assert prof.comm.internal_errors == 0 and len(prof.comm.recent_records()) == 2
        groups = [weakref.ref(dist.group.WORLD), weakref.ref(sub)]
        del sub
        dist.destroy_process_group()
        gc.collect()
        assert [g() for g in groups] == [None, None]


def test_inflight_until_async_work_completes(tmp_path, world1):
    with profile(str(tmp_path / "prof"), memory=False, hang_timeout=None) as prof:
        work = dist.all_reduce(torch.ones(1 << 16), async_op=True)
        work.wait()
        work.get_future().wait()
        assert prof.comm.inflight() == []
        rec = prof.comm.recent_records()[-1]
        assert rec["async"] and rec["t1"] >= rec["t0"]
    assert os.path.exists(tmp_path / "prof" / "rank0" / "meta.json")


class FakeEvent:
    """The part of torch.cuda.Event / torch.npu.Event the interceptor uses: record(), query(), elapsed_time().
    Device time is simulated: an event completes when the test says so."""

    clock = 0.0

    def __init__(self):
        self.done = False
        self.at = None

    def record(self):
        FakeEvent.clock += 1.5
        self.at = FakeEvent.clock

    def query(self):
        return self.done

    def elapsed_time(self, end):
        return end.at - self.at


def test_device_timing_waits_for_the_end_event_without_a_sync(tmp_path, world1, monkeypatch):
    from ascend_tools import backend
    from ascend_tools.profiling.comm import CommInterceptor

    events = []

    def make_event(enable_timing=True):
        events.append(FakeEvent())
        return events[-1]

    monkeypatch.setattr(backend, "event", make_event)
    records = []
    comm = CommInterceptor(records.append, lambda: 7)
    comm._device = True  # as on NPU/CUDA
    comm.install()
    try:
        dist.all_reduce(torch.ones(8))
    finally:
        comm.uninstall()
    start, end = events
    assert [r["k"] for r in records] == ["group", "stack"]  # the coll record waits for its end event
    assert [c["op"] for c in comm.inflight()] == ["all_reduce"]  # still in flight for the hang watchdog
    comm.resolve()
    assert [r["k"] for r in records] == ["group", "stack"]
    end.done = True
    comm.resolve()
    coll = records[-1]
    assert coll["k"] == "coll" and coll["dev_ms"] == end.at - start.at and coll["step"] == 7
    assert "_ev" not in coll and comm.inflight() == []


@pytest.mark.parametrize("package,via", [("deepspeed", "deepspeed"), ("megatron", "megatron")])
def test_collectives_an_engine_issues_are_tagged_with_it(tmp_path, world1, package, via):
    """DeepSpeed's engine (through ``deepspeed.comm``) and Megatron issue their collectives from their own files: the
    record says so, as for DDP and FSDP. (By hand with DeepSpeed 0.19.8, ZeRO-3 on two gloo ranks: its 28 all-gathers,
    5 reduce-scatters, 5 all-reduces, 16 broadcasts and 3 barriers of 5 steps, all ``via: "deepspeed"``.)"""
    import importlib.util

    source = tmp_path / package / "comm" / "torch_backend.py"
    source.parent.mkdir(parents=True)
    source.write_text(
        "import torch.distributed as dist\n\ndef all_reduce(t):\n    return dist.all_reduce(t)\n"
    )
    spec = importlib.util.spec_from_file_location(f"{package}_comm_for_test", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with profile(str(tmp_path / "prof"), memory=False, hang_timeout=None) as prof:
        module.all_reduce(torch.ones(4))
        dist.all_reduce(torch.ones(4))  # the script's own
        recs = prof.comm.recent_records()
    assert [r["via"] for r in recs] == [via, None]
