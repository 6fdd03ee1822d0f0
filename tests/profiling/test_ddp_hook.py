"""The timing comm hook the profiler installs on a DDP instance with none: the same gradients as DDP without a
hook (real gloo ranks), no division pass over the buckets on a one-rank group, and no record_function marker
of its own in the step."""

import pytest
import torch
import torch.distributed as dist
from gloo_ranks import events, init, spawn

from ascend_tools.profiling.profiler import profile

pytestmark = pytest.mark.slow


def build() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))


def train(model: torch.nn.Module, rank: int) -> torch.Tensor:
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(rank)
    for _ in range(3):
        ddp(torch.randn(4, 64, generator=gen)).square().sum().backward()
        opt.step()
        opt.zero_grad()
    return torch.cat([p.detach().flatten() for p in ddp.parameters()])


def same_gradients(rank: int, n: int, out: str) -> None:
    init(rank, n)
    bare = train(build(), rank)  # DDP's own reduction: divided while copied into the bucket, then summed
    with profile(out, memory=False, hang_timeout=None):
        profiled = train(build(), rank)
    assert torch.equal(profiled, bare)  # bit for bit: x * (1/2) and x / 2 round alike


def test_profiled_ddp_gives_the_gradients_of_bare_ddp(tmp_path):
    out = str(tmp_path / "prof")
    spawn(same_gradients, 2, out)
    for rank in range(2):
        assert sum(r["via"] == "ddp" for r in events(out, rank)) >= 3  # the hook did run: ≥ 2 buckets a step


@pytest.fixture()
def world1(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_profiler_adds_no_record_function_markers(tmp_path, world1, monkeypatch):
    """The markers a step enters (DDP's forward, the optimizer's step and zero_grad: torch's own) are the same
    with the profiler on: it adds none for a trace nobody records."""
    entered = []
    enter = torch.autograd.profiler.record_function.__enter__
    monkeypatch.setattr(
        torch.autograd.profiler.record_function, "__enter__", lambda rf: entered.append(rf.name) or enter(rf)
    )
    train(build(), 0)
    bare, entered[:] = list(entered), []
    with profile(str(tmp_path / "prof"), hang_timeout=None):
        train(build(), 0)
    assert bare and sorted(entered) == sorted(bare)


def test_one_rank_group_skips_the_division(tmp_path, world1, monkeypatch):
    divided = []
    div_ = torch.Tensor.div_
    monkeypatch.setattr(
        torch.Tensor, "div_", lambda t, *a, **k: divided.append(t.numel()) or div_(t, *a, **k)
    )
    bare = train(build(), 0)
    assert divided == []  # DDP without a hook divides inside its C++ copy
    out = str(tmp_path / "prof")
    with profile(out, memory=False, hang_timeout=None) as prof:
        profiled = train(build(), 0)
        assert prof.comm.inflight() == []  # every bucket's completion recorded (by the hook's callback)
    assert divided == [] and torch.equal(profiled, bare)
    buckets = [r for r in events(out, 0) if r["via"] == "ddp"]
    assert len(buckets) >= 3 and all(r["async"] and r["t1"] >= r["t0"] for r in buckets)
