"""Shadow's float64 checks on a background thread (precision/shadow_worker.py) and the ops it does not re-run
(exact copies and constants: no arithmetic a kernel could get wrong); and the checks of CPU ops inline, on the
training thread, by default."""

import importlib
import threading
import time

import pytest
import torch

import ascend_tools.precision as precision
from ascend_tools.precision.faults import Fault, FaultInjector

SH = importlib.import_module("ascend_tools.precision.shadow_session")
W = importlib.import_module("ascend_tools.precision.shadow_worker")
shadow = precision.shadow
# the thread's tests: CPU ops' checks go to it, as a device op's do
pytestmark = pytest.mark.usefixtures("checks_on_the_worker")


def _count_replays(monkeypatch):
    """The op names the worker replayed in float64, and the threads it ran on."""
    replayed, threads = [], set()
    original = SH.Shadow._check

    def check(self, job):
        replayed.append(job[0].op.name)
        threads.add(threading.get_ident())
        return original(self, job)

    monkeypatch.setattr(SH.Shadow, "_check", check)
    return replayed, threads


def test_copies_and_constants_are_not_replayed_and_arithmetic_is(monkeypatch):
    replayed, threads = _count_replays(monkeypatch)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    with shadow() as sh:
        c = a.clone()  # aten::clone
        d = a.t().contiguous()  # aten::t (a view) then aten::clone
        z = torch.zeros_like(a)  # aten::zeros_like
        z.fill_(2.0)  # aten::fill_.Scalar
        z.zero_()  # aten::zero_
        e = torch.mm(c, b)  # aten::mm
        f = d + e  # aten::add.Tensor
    assert replayed == ["aten::mm", "aten::add.Tensor"]
    assert [r.name for r in sh.results] == replayed and sh.compared == 2
    assert sh.skipped["exact copy"] == 2 and sh.skipped["constant"] == 3 and sh.skipped["view"] == 1
    assert threads and threading.get_ident() not in threads  # the replays ran on the worker
    assert torch.equal(f, a.t() + a @ b)


def test_an_output_overwritten_right_after_its_op_is_judged_as_the_op_made_it():
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    with shadow() as sh:
        for _ in range(40):  # more ops than the worker's queue holds
            y = torch.mm(a, b)
            y.mul_(3.0)  # overwrites the mm's output before the worker gets to it
    levels = {(r.name, r.level) for r in sh.results}
    assert levels == {("aten::mm", "pass"), ("aten::mul_.Tensor", "pass")}
    assert len(sh.results) == 80
    assert [r.id for r in sh.results] == sorted(r.id for r in sh.results)  # execution order


def test_a_faulty_mm_is_still_the_one_culprit_and_inputs_are_copied_before_in_place_ops():
    a, b = torch.randn(32, 32), torch.randn(32, 32)
    with FaultInjector(Fault("aten::mm", call=1, kind="perturb", scale=0.5, fraction=0.2)), shadow() as sh:
        x = a.clone()
        for _ in range(3):
            x.add_(torch.mm(x, b) * 1e-3)
    assert [c.key for c in sh.culprits()] == ["aten::mm#init#1"]  # no module ran: phase init
    assert all(r.level == "pass" for r in sh.results if r.name == "aten::add_.Tensor")


def _slow_checks(monkeypatch, seconds):
    """Checks that take ``seconds`` each (the worker falls behind), and the threads they ran on."""
    threads = []
    original = SH.Shadow._check

    def check(self, job):
        threads.append(threading.get_ident())
        time.sleep(seconds)
        return original(self, job)

    monkeypatch.setattr(SH.Shadow, "_check", check)
    return threads


def _twelve_ops(threads):
    """Twelve 64x64 fp32 ops under shadow: whether the training thread ran a check before the block's end."""
    a = torch.randn(64, 64)
    with shadow() as sh:
        for _ in range(12):
            a = a * 1.0001
        before_drain = list(threads)
    assert sh.compared == 12
    return threading.get_ident() in before_drain


def test_the_training_thread_helps_once_the_waiting_copies_exceed_their_bytes(monkeypatch):
    threads = _slow_checks(monkeypatch, 0.01)
    monkeypatch.setattr(W, "MAX_PENDING_BYTES", 3 * 64 * 64 * 4)  # three 64x64 fp32 outputs
    assert _twelve_ops(threads)  # inside the loop: the byte limit, not the end-of-block drain


def test_below_both_limits_the_training_thread_never_runs_a_check_before_the_step_ends(monkeypatch):
    assert not _twelve_ops(_slow_checks(monkeypatch, 0.005))


def test_the_worker_thread_ends_with_the_block():
    with shadow() as sh:
        torch.randn(4, 4) @ torch.randn(4, 4)
        assert any(t.name == "ascend-doctor-shadow" for t in threading.enumerate())
    assert not any(t.name == "ascend-doctor-shadow" for t in threading.enumerate())
    assert sh.compared == 1


def test_culprits_inside_the_block_wait_for_the_pending_checks():
    a, b = torch.randn(16, 16), torch.randn(16, 16)
    with FaultInjector(Fault("aten::mm", call=3, kind="perturb", scale=0.5, fraction=0.2)), shadow() as sh:
        for _ in range(4):
            torch.mm(a, b)
        assert [c.key for c in sh.culprits()] == ["aten::mm#init#3"]
        assert sh.first_culprit().key == "aten::mm#init#3" and len(sh.results) == 4


def test_a_training_thread_ahead_of_the_worker_runs_checks_itself_in_order(monkeypatch):
    threads = []
    original = SH.Shadow._check

    def slow_check(self, job):
        threads.append(threading.get_ident())
        time.sleep(0.002)  # the worker falls behind: the queue fills up
        return original(self, job)

    monkeypatch.setattr(SH.Shadow, "_check", slow_check)
    a, b = torch.randn(16, 16), torch.randn(16, 16)
    with shadow() as sh:
        for _ in range(60):
            torch.mm(a, b)
        assert len(sh.culprits()) == 0  # drains: the checks ran with no mode on this thread (none shadowed)
        assert sh.compared == 60
    assert threading.get_ident() in threads and len(set(threads)) == 2
    assert [r.call for r in sh.results] == list(range(60))


_RUNNING = []  # the shadow of the test below, as a forked DataLoader worker inherits it


class _Computing(torch.utils.data.Dataset):
    """Items made with more ops than the worker's queue holds (a forked child inherits the dispatch mode, not
    the worker thread); each says how many checks its ops got done in that process by the time it returns."""

    def __len__(self):
        return 4

    def __getitem__(self, i):
        before = _RUNNING[0].compared if _RUNNING else 0
        x = torch.full((8,), float(i))
        for _ in range(3 * W.MAX_PENDING):
            x = x * 1.5 + 1.0
        return x, (_RUNNING[0].compared if _RUNNING else 0) - before


def test_a_forked_dataloader_worker_checks_inline_and_never_waits_for_the_thread():
    want = [_Computing()[i][0] for i in range(4)]
    loader = torch.utils.data.DataLoader(
        _Computing(), batch_size=None, num_workers=2, timeout=120, multiprocessing_context="fork"
    )
    with shadow() as sh:
        _RUNNING.append(sh)
        try:
            got = list(loader)  # a hang would end in the loader's timeout error
        finally:
            _RUNNING.clear()
        got[0][0] * 2.0
    assert len(got) == 4 and all(torch.equal(g, w) for (g, _), w in zip(got, want))
    # every op of the child checked before the item returned: inline, nothing left in a queue no thread runs
    assert [checked for _, checked in got] == [2 * 3 * W.MAX_PENDING] * 4
    assert sh.compared >= 1 and sh.culprits() == []  # the parent's own op, on its thread


def test_by_default_a_cpu_ops_check_runs_on_the_training_thread_and_no_thread_starts(monkeypatch):
    monkeypatch.undo()  # the default INLINE_CPU
    replayed, threads = _count_replays(monkeypatch)
    with shadow() as sh:
        torch.mm(torch.randn(8, 8), torch.randn(8, 8))
        assert replayed == ["aten::mm"]  # before the block ends: at once
        assert not any(t.name == "ascend-doctor-shadow" for t in threading.enumerate())
    assert threads == {threading.get_ident()} and sh.compared == 1
