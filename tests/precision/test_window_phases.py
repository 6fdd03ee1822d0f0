"""The phase of the ops between a step's last backward and its ``optimizer.step()``, in a capture and in shadow.

Gradient clipping (``clip_grad_norm_``) runs after the backward, outside every module: its ops are the
optimizer's, as check-ops labels them (``tests/opcheck/test_step_phases.py``) and as they are inside DeepSpeed's
and Megatron's optimizer steps. An op in that window that a next forward follows (the next micro-batch's input,
under gradient accumulation) stays ``forward``, as do the window's ops where no ``optimizer.step()`` comes. Call
numbers count on in the phase an op ends up in. The expected op names are those a plain dispatch mode sees
``clip_grad_norm_`` and ``SGD.step`` run on copies of the same model.
"""

import json
from collections import Counter
from typing import List

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools.precision import capture, shadow
from ascend_tools.precision.shadow_session import Shadow


class _Names(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.names: List[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


def _records(root, step: int) -> list:
    path = root / "rank0" / f"step{step}" / "records.jsonl"
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == "op"]


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def _step(model: torch.nn.Module, opt: torch.optim.Optimizer, clip: bool = True, step: bool = True) -> None:
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    for _ in range(2):  # gradient accumulation
        (model(x).sum() / 2).backward()
        x = torch.flip(x, [0])  # the next micro-batch's input (after the last backward too)
    if clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    if step:
        opt.step()
        opt.zero_grad()


def _expected_window() -> List[str]:
    """The op names after the last backward: the flip, clip_grad_norm_'s ops, SGD's, seen by a plain mode."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (model(torch.randn(4, 8)).sum()).backward()
    seen, x = _Names(), torch.randn(4, 8)
    with seen:
        torch.flip(x, [0])
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return [n for n in seen.names if n.startswith("aten::")]  # (not the optimizer's record_function)


def _after_last_backward(records) -> list:
    last = max(i for i, r in enumerate(records) if r["phase"] == "backward")
    return records[last + 1 :]


def _calls_count_on(records) -> None:
    seen: Counter = Counter()
    for r in records:
        key = (r["name"], r["phase"])
        assert r["call"] == seen[key], (r["name"], r["phase"], r["call"], seen[key])
        seen[key] += 1


def test_capture_labels_clipping_the_optimizers(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture(str(tmp_path / "d"), level="op", model=model):
        _step(model, opt)
        _step(model, opt)
    records = _records(tmp_path / "d", 1)
    tail = _after_last_backward(records)
    expected = _expected_window()
    assert [r["name"] for r in tail[: len(expected)]] == expected
    assert {r["phase"] for r in tail} == {"optimizer"}, [(r["name"], r["phase"]) for r in tail]
    # the flip between the two backwards is the second forward's input
    first_bwd_end = next(i for i, r in enumerate(records) if r["phase"] == "backward")
    flips = [r for r in records if r["name"] == "aten::flip"]
    assert [r["phase"] for r in flips] == ["forward", "optimizer"]
    assert records.index(flips[0]) > first_bwd_end
    _calls_count_on(records)


def test_window_without_an_optimizer_step_stays_forward(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture(str(tmp_path / "d"), level="op", model=model) as cap:
        _step(model, opt, step=False)  # clipped, no optimizer.step(): the script's own step() ends it
        cap.step()
        _step(model, opt)
    step0 = _records(tmp_path / "d", 0)
    tail = _after_last_backward(step0)
    assert tail and {r["phase"] for r in tail} == {"forward"}
    _calls_count_on(step0)


def test_window_records_wait_past_a_flush_threshold(tmp_path):
    """A flush due inside the window (here after every record) leaves the window's records to relabel."""
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture(str(tmp_path / "d"), level="op", model=model, flush_every=1):
        _step(model, opt)
    tail = _after_last_backward(_records(tmp_path / "d", 0))
    assert tail and {r["phase"] for r in tail} == {"optimizer"}


def test_shadow_labels_clipping_the_optimizers(tmp_path):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    out = tmp_path / "sh"
    with shadow(model=model, out=str(out)) as sh:
        _step(model, opt)
    by_id = sorted((r for r in sh.results if r.step == 0), key=lambda r: r.id)
    clip_norms = [r for r in by_id if "norm" in r.name]
    assert clip_norms and {r.phase for r in clip_norms} == {"optimizer"}
    flips = [r for r in by_id if r.name == "aten::flip"]
    assert [r.phase for r in flips] == ["forward", "optimizer"]
    keys = [r.key for r in by_id]
    assert len(keys) == len(set(keys))
    assert _written(out) == {(r.id, r.phase, r.call) for r in by_id}


def test_shadow_without_kept_records_writes_them_relabelled(tmp_path):
    """As under the CLI (``keep=False``): only the lines written, the same as a kept run's."""
    written = {}
    for keep in (True, False):
        model = _model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with Shadow(model=model, out=str(tmp_path / str(keep)), keep=keep):
            _step(model, opt)
        written[keep] = _written(tmp_path / str(keep))
    assert written[False] == written[True]
    assert {phase for _, phase, _ in written[False]} >= {"forward", "backward", "optimizer"}


def _written(out) -> set:
    lines = [json.loads(line) for f in sorted(out.rglob("*.jsonl")) for line in f.read_text().splitlines()]
    return {(w["id"], w["phase"], w["call"]) for w in lines if "phase" in w and w.get("step") == 0}


def test_a_failing_relabel_never_fails_the_optimizer_step(tmp_path, monkeypatch):
    """The relabel runs inside the user's ``optimizer.step()`` (its pre-hook): an error there is the capture's."""
    from ascend_tools.precision.capture_session import Capture

    def broken(self):
        raise RuntimeError("relabel broke")

    monkeypatch.setattr(Capture, "_window_is_optimizer", broken)
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture(str(tmp_path / "d"), level="op", model=model) as cap:
        _step(model, opt)
    assert cap.internal_errors == 1
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()))  # the step ran
    tail = _after_last_backward(_records(tmp_path / "d", 0))
    assert tail and "forward" in {r["phase"] for r in tail}  # written as they were: forward
    _calls_count_on(_records(tmp_path / "d", 0))


def test_a_step_the_scaler_skipped_has_its_unscale_in_the_optimizer_phase(tmp_path):
    """fp16 with a GradScaler whose first scales overflow: ``scaler.step`` unscales (outside every module, after
    the backward) and then skips ``optimizer.step()``. Its unscale is the optimizer's in a skipped step as in a
    taken one, so that a skipped step of the target and a taken one of the reference label it alike."""
    from fp16_scaler import fp16_scaled_training

    cap = capture(str(tmp_path / "d"), level="op")
    skipped = fp16_scaled_training(cap)
    assert 1 <= skipped < 4
    unscale = "aten::_amp_foreach_non_finite_check_and_unscale_"
    phases = []
    for step in range(4):
        records = _records(tmp_path / "d", step)
        phases.append({r["phase"] for r in records if r["name"] == unscale})
        _calls_count_on(records)
    assert phases == [{"optimizer"}] * 4
