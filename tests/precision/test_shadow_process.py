"""Shadow's checks in a process of their own (``shadow_process.py``): the records are those the training process
would make itself, faults are named the same way, and whatever happens to the check process (killed, an op that
raises between the two halves of its job, a full arena, a fork, an argument the pipe does not carry) the training
goes on and every check is either made or counted."""

import logging
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from ascend_tools.precision import shadow_process, shadow_session
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_process import Slot, mark, unmark

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the check process is POSIX only")


@pytest.fixture
def started_at_once(monkeypatch):
    """The check process started with the shadow, which waits until it is ready (the default starts it after
    the first step and checks here until then)."""
    monkeypatch.setattr(shadow_process, "START_AT_STEP", 0)


class Block(torch.nn.Module):
    """Attention, an MLP and an RMS norm: matrix products (rows picked), attention (heads picked), pointwise
    ops, reductions; AdamW adds the in-place ops whose written inputs go to the arena before they run."""

    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(32, 96)
        self.up = torch.nn.Linear(32, 64)
        self.down = torch.nn.Linear(64, 32)
        self.norm = torch.nn.RMSNorm(32) if hasattr(torch.nn, "RMSNorm") else torch.nn.LayerNorm(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, _ = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, 4, 8).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, 32)
        h = self.norm(x + a)
        return h + self.down(F.silu(self.up(h)))


def _train(process, steps=2, fault=None, **options):
    torch.manual_seed(0)
    model = Block()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 48, 32)
    losses = []
    injector = FaultInjector(fault) if fault else None
    if injector:
        injector.__enter__()
    try:
        with shadow_session.shadow(model=model, process=process, **options) as sh:
            for _ in range(steps):
                loss = model(x).square().mean()
                loss.backward()
                opt.step()
                opt.zero_grad()
                losses.append(loss.item())
    finally:
        if injector:
            injector.__exit__(None, None, None)
    return sh, losses


def _key(r):
    return (r.step, r.id, r.name, r.phase, r.call, r.module, r.site, r.rows, r.cols, r.input_shapes, r.level)


def test_the_check_process_makes_the_records_the_training_process_would(started_at_once, monkeypatch):
    here, here_losses = _train(False)
    replays = []
    real_replay = shadow_session.Shadow._replay
    monkeypatch.setattr(
        shadow_session.Shadow, "_replay", lambda self, job: replays.append(job) or real_replay(self, job)
    )
    there, there_losses = _train(True)
    assert there_losses == here_losses  # the training itself is untouched
    assert there.compared == here.compared > 100 and there.checked_in_process == there.compared
    assert replays == []  # not one check was replayed in the training process
    mine, theirs = here.results, there.results
    assert [_key(r) for r in theirs] == [_key(r) for r in mine]
    assert {r.name for r in theirs} >= {
        "aten::addmm",
        "aten::mm",
        "aten::_scaled_dot_product_flash_attention_for_cpu",
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward",
        "aten::addcdiv_",
        "aten::lerp_.Scalar",
    }
    assert any(r.rows for r in theirs)  # rows picked and sent, not whole tensors
    for a, b in zip(mine, theirs):
        # (a float64 GEMM of a contiguous copy and of a transposed view may differ in their last bits)
        assert b.verdict.value == pytest.approx(a.verdict.value, rel=1e-6, abs=1e-12), (a.name, a.id)
    assert dict(there.skipped) == dict(here.skipped) and there.not_replayable == here.not_replayable


def test_a_fault_is_named_first_by_the_check_process_and_a_clean_run_names_none(started_at_once):
    clean, _ = _train(True)
    assert clean.culprits() == [] and clean.checked_in_process == clean.compared
    # 1% on every element of one backward matrix product
    fault = Fault("aten::mm", call=3, phase="backward", scale=0.01, fraction=1.0)
    faulty, _ = _train(True, fault=fault)
    first = faulty.first_culprit()
    assert first is not None and (first.name, first.phase, first.call) == ("aten::mm", "backward", 3)
    assert faulty.checked_in_process == faulty.compared


def test_a_killed_check_process_costs_checks_not_the_training(started_at_once, caplog):
    here, expected = _train(False, steps=4)
    torch.manual_seed(0)
    model = Block()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 48, 32)
    losses = []
    with caplog.at_level(logging.WARNING, logger="ascend_tools"), shadow_session.shadow(model=model) as sh:
        for i in range(4):
            if i == 2:
                sh._process._proc.kill()
            loss = model(x).square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(loss.item())
    assert losses == expected
    # every check is made or counted: the ones the process took with it, the others here after its death
    lost = sh.skipped["check process died"]
    assert sh.compared + lost == here.compared and lost > 0
    assert 0 < sh.checked_in_process < sh.compared
    assert sum(1 for r in caplog.records if "check process" in r.getMessage()) == 1
    assert sh.internal_errors == 0


def test_an_op_that_raises_leaves_its_job_to_be_freed(started_at_once):
    """An in-place op puts what it writes into the arena before it runs; if it raises, its check never finishes:
    the next job commits it empty, and the checks after it complete (drain does not wait for it)."""
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    with shadow_session.shadow() as sh:
        y = a @ b
        with pytest.raises(RuntimeError):
            y.add_(torch.randn(5, 5))  # shapes that do not broadcast: raises inside the op
        z = (y * 2.0) @ b.t()
        assert len(sh.results) == 3  # (waits for the checks so far: returns)
    assert [r.name for r in sh.results] == ["aten::mm", "aten::mul.Tensor", "aten::mm"]
    assert sh.checked_in_process == 3 and torch.equal(z, (a @ b * 2.0) @ b.t())


def test_a_small_arena_wraps_around_and_loses_nothing(started_at_once, monkeypatch):
    here, _ = _train(False)
    monkeypatch.setattr(shadow_process, "ARENA_BYTES", 96 << 10)  # smaller than one step's parts, many times
    there, _ = _train(True)
    assert [_key(r) for r in there.results] == [_key(r) for r in here.results]
    # a call whose parts exceed half the arena is checked in the training process, never lost
    assert 0 < there.checked_in_process < there.compared
    assert "too large for the check process" not in there.skipped


def test_arguments_the_pipe_does_not_carry_are_checked_here(started_at_once, monkeypatch):
    sendable = tuple(t for t in shadow_process._SENDABLE if t is not float)
    monkeypatch.setattr(shadow_process, "_SENDABLE", sendable)
    x = torch.randn(64, 8)
    with shadow_session.shadow() as sh:
        y = x * 3.5  # aten::mul.Tensor with a float: not sent
        z = y @ x.t()  # aten::mm: sent
    assert [(r.name, r.level) for r in sh.results] == [("aten::mul.Tensor", "pass"), ("aten::mm", "pass")]
    assert sh.checked_in_process == 1 and torch.equal(z, (x * 3.5) @ x.t())


def test_marked_arguments_come_back_as_the_same_tensors():
    a, b = torch.randn(2), torch.randn(3)
    args = (a, [b, a], 2.5, None, torch.float16, {"k": b})
    marked = mark(args, {id(a): 0, id(b): 1})
    assert marked == (Slot(0), [Slot(1), Slot(0)], 2.5, None, torch.float16, {"k": Slot(1)})
    back = unmark(marked, [a, b])
    assert back[0] is a and back[1][0] is b and back[1][1] is a and back[5]["k"] is b
    with pytest.raises(TypeError):
        mark((a, object()), {id(a): 0})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_forked_child_checks_in_itself_and_leaves_the_pipe_alone(started_at_once):
    a, b = torch.randn(64, 32), torch.randn(32, 16)
    with shadow_session.shadow() as sh:
        y = a @ b
        pid = os.fork()
        if pid == 0:  # a DataLoader worker: inherits the mode, not the check process
            code = 1
            try:
                torch.set_num_threads(
                    1
                )  # (as a DataLoader worker does: OpenMP's pool does not survive a fork)
                z = y @ b.t()
                code = 0 if not sh._process.usable() and torch.equal(z, y @ b.t()) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        w = y.relu()
    assert os.WEXITSTATUS(status) == 0
    assert [r.name for r in sh.results] == ["aten::mm", "aten::relu"] and sh.checked_in_process == 2
    assert torch.equal(w, (a @ b).relu())


def test_the_default_starts_the_check_process_after_the_first_step(monkeypatch):
    started = []
    monkeypatch.setattr(shadow_session, "CheckProcess", lambda *a, **k: started.append(a) or None)
    model = Block()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(2, 48, 32)
    for env, expected in (("1", 1), ("0", 0)):
        monkeypatch.setenv("ASCEND_DOCTOR_SHADOW_PROCESS", env)
        started.clear()
        with shadow_session.shadow(model=model) as sh:
            for _ in range(3):
                model(x).sum().backward()
                opt.step()
                opt.zero_grad()
                if not started:  # (the first step's checks are made here: a one-step session pays nothing)
                    assert sh.compared > 0
        assert len(started) == expected
    assert shadow_process.wanted(True) == (os.name == "posix") and shadow_process.wanted(False) is False


def test_the_cli_passes_the_choice(run_verb, tmp_path):
    for choice in ("on", "off"):
        records = tmp_path / choice
        result = run_verb(
            "shadow", "--check-process", choice, "--records", records, "--", sys.executable, "SCRIPT"
        )
        assert result.returncode == 0, result.stderr
        meta = (records / "rank0.meta.json").read_text()
        assert f'"process": {"true" if choice == "on" else "false"}' in meta
