"""Op-level capture under FSDP2 (``fully_shard``) on two real gloo ranks, compared against the same model
trained unwrapped on one process.

FSDP2 all-gathers each layer's parameters into buffers it re-allocates (``storage.resize_``) before every
forward and backward and frees after: the records must read the gathered values (never a stale or
uninitialised buffer), name the parameters, and the pair must list no culprit; a faulty kernel on rank 0
must still be its first culprit. Both ranks get the same batch, so every rank's forward and backward equal the
reference's (the reduce-scatter averages two equal gradients)."""

import contextlib
import os
import sys

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.store import OurDump

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "profiling"))
from gloo_ranks import init, spawn
from tiny_llama import build

fsdp = pytest.importorskip("torch.distributed.fsdp")
if not hasattr(fsdp, "fully_shard"):  # torch < 2.6
    pytest.skip("no FSDP2 (torch.distributed.fsdp.fully_shard) in this torch", allow_module_level=True)

FAULT = Fault("aten::mm", call=5, kind="perturb")


def train_step(model, out, fault=None, mode="tensor"):
    """One AdamW step captured at op level, without ``model=`` (as under the CLI)."""
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    injector = FaultInjector(fault) if fault else None
    with injector or contextlib.nullcontext(), capture(out, level="op", mode=mode, stack=False):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()
    return injector.hit if injector else None


def fsdp_rank(rank, n, out):
    from torch.distributed.device_mesh import init_device_mesh

    init(rank, n)
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (n,))
    for name, fault, mode in (
        ("clean", None, "tensor"),
        ("fault", FAULT if rank == 0 else None, "tensor"),
        ("stats", None, "stats"),
    ):
        model = build()
        for layer in model.model.layers:
            fsdp.fully_shard(layer, mesh=mesh)
        fsdp.fully_shard(model, mesh=mesh)
        hit = train_step(model, f"{out}/{name}", fault, mode)
        assert fault is None or hit == "aten::mm#forward#5", hit


@pytest.fixture(scope="module")
def dumps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fsdp")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_step(build(), str(tmp / "ref"))
        train_step(build(), str(tmp / "ref-stats"), mode="stats")
    finally:
        torch.set_num_threads(threads)
    spawn(fsdp_rank, 2, str(tmp))
    return tmp


def first_reads(path):
    """Each named parameter's first read in forward: name -> its tensor as the op read it."""
    dump = OurDump.find(str(path))
    found = {}
    for rec in dump.records(0):
        for info in rec.inputs:
            if rec.phase == "forward" and info.name and info.name not in found:
                found[info.name] = dump.load_tensor(info, 0)
    return found


@pytest.mark.parametrize("rank", [0, 1])
def test_clean_fsdp_run_against_the_unwrapped_one_lists_no_culprit(dumps, rank):
    report = compare_dumps(str(dumps / "clean" / f"rank{rank}"), str(dumps / "ref" / "rank0"))
    summary = report.data["summary"]
    assert report.data["culprits"] == [] and summary["suspects"] == 0, report.data["culprits"][:3]
    assert summary["verdicts"]["error"] == 0 and summary["verdicts"]["pass"] > 500


@pytest.mark.parametrize("rank", [0, 1])
def test_clean_fsdp_run_in_statistics_lists_no_culprit(dumps, rank):
    """Statistics are shared between tensors at the same address (``tensor_entry.place``): a parameter whose
    storage FSDP2 freed must not lend its statistics to a new tensor allocated where it was."""
    report = compare_dumps(str(dumps / "stats" / f"rank{rank}"), str(dumps / "ref-stats" / "rank0"))
    summary = report.data["summary"]
    assert report.data["culprits"] == [] and summary["suspects"] == 0, report.data["culprits"][:3]
    assert summary["verdicts"]["error"] == 0 and summary["verdicts"]["pass"] > 500


@pytest.mark.parametrize("rank", [0, 1])
def test_every_parameter_is_read_gathered_and_named(dumps, rank):
    """Each parameter's first forward read is the whole gathered weight, named with its path, equal to the
    unwrapped run's (the sharded or a freed buffer would differ in shape or values)."""
    ref = first_reads(dumps / "ref" / "rank0")
    got = first_reads(dumps / "clean" / f"rank{rank}")
    assert ref.keys() == {name for name, _ in build().named_parameters()}
    assert got.keys() == ref.keys()
    for name, tensor in ref.items():
        assert torch.equal(got[name], tensor), name


def test_a_faulty_kernel_on_rank0_is_its_first_culprit(dumps):
    report = compare_dumps(str(dumps / "fault" / "rank0"), str(dumps / "ref" / "rank0"))
    culprits = report.data["culprits"]
    assert culprits and culprits[0]["name"] == "aten::mm#forward#5" and culprits[0]["verdict"] == "error"


def test_saving_a_cpu_tensor_leaves_its_storage_resizable(tmp_path):
    """numpy() pins a storage's size for good; FSDP2 frees an unsharded parameter with ``resize_(0)``."""
    x = torch.randn(4, 4)
    with capture(str(tmp_path), mode="tensor"):
        x.mul(2)
    x.untyped_storage().resize_(0)
    assert x.untyped_storage().nbytes() == 0


def shadow_rank(rank, n, out):
    """One AdamW step of the FSDP2 model under the shadow, clean, then with a faulty forward mm on rank 0: the
    records go to ``out/{name}/rank{rank}.jsonl``. FSDP2 resizes the gathered parameters' storages (no op the
    shadow sees) while its checks may still hold them."""
    from torch.distributed.device_mesh import init_device_mesh

    from ascend_tools.precision import shadow

    init(rank, n)
    torch.set_num_threads(1)
    mesh = init_device_mesh("cpu", (n,))
    ids = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    for name, fault in (("clean", None), ("fault", FAULT if rank == 0 else None)):
        model = build()
        for layer in model.model.layers:
            fsdp.fully_shard(layer, mesh=mesh)
        fsdp.fully_shard(model, mesh=mesh)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        injector = FaultInjector(fault) if fault else contextlib.nullcontext()
        with injector, shadow(out=f"{out}/{name}"):
            for _ in range(2):
                model(input_ids=ids, labels=ids).loss.backward()
                opt.step()
                opt.zero_grad()


def test_shadow_under_fsdp2_judges_the_gathered_parameters(tmp_path):
    from ascend_tools.precision.shadow_session import read_results

    spawn(shadow_rank, 2, str(tmp_path))
    clean, _ = read_results(str(tmp_path / "clean"))
    for rank in (0, 1):
        mine = [r for r in clean if r.rank == rank]
        assert len(mine) > 300 and [r.key for r in mine if r.level == "error"] == [], rank
    records, _ = read_results(str(tmp_path / "fault"))
    culprits = [r.key for r in records if r.level == "error"]
    assert [(r.rank, r.key) for r in records if r.level == "error"][:1] == [(0, "aten::mm#forward#5")], (
        culprits
    )
