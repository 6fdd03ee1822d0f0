"""Capture and shadow on a patched model (``import ascend_tools.patch`` in the script, as the porting guide has it).

A fused op's tier self-checks on its first call, inside the user's first forward: its ops (the tier and the
reference on a small input, forward and backward, in float64 too) are the package's, not the model's. Recorded,
they made step 0 of every patched run longer than the others (188 forward and 46 backward records more on the tiny
Llama of tests/patch), a different set on each device (each has other tiers to check), and compare's alignment reads ops one run
has and the other has not as candidates. Two identical steps must give the same records.
"""

from collections import Counter

import pytest
import tiny_llama
import torch
from test_capture_identity import records

from ascend_tools.ops import registry
from ascend_tools.patch import hf, revert
from ascend_tools.precision import capture, shadow

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture
def patched_model(monkeypatch):
    monkeypatch.setattr(registry._STATE, "checks", {})  # every tier checks itself again, in the first step
    revert()
    hf.patch_all()
    yield tiny_llama.build("ascend_fused")  # the patched attention (hf.patch_all registers it)
    revert()


def train(model, steps=2):
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    ids = torch.randint(1, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad()


def _step_ops(path, step):
    return [(r.name, r.phase) for r in records(path, step) if r.phase in ("forward", "backward")]


def test_the_self_checks_of_the_first_step_are_not_recorded(tmp_path, patched_model):
    with capture(str(tmp_path / "dump"), level="op", mode="stats", model=patched_model):
        train(patched_model)
    checks = registry.status()
    assert checks and all(c.ok for c in checks)  # the checks ran, in step 0, and passed
    assert _step_ops(tmp_path / "dump", 0) == _step_ops(tmp_path / "dump", 1)


def test_shadow_does_not_check_the_self_checks(patched_model):
    """Shadow's checked ops of two identical steps: the same but for what its worker thread's timing decides (a
    check dropped where a later op wrote its tensor first: one op here and there); the self-checks were ~230."""
    with shadow(model=patched_model) as sh:
        train(patched_model)
    assert registry.status()
    per_step = {0: Counter(), 1: Counter()}
    for rec in sh.results:
        if rec.phase in ("forward", "backward"):
            per_step[rec.step][rec.name, rec.phase] += 1
    assert per_step[1]
    extra = per_step[0] - per_step[1]
    assert sum(extra.values()) <= 3, extra
