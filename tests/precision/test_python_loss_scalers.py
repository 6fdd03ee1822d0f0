"""Loss scalers that update in Python *before* the optimizer step and skip it on NaN/Inf: Megatron-LM's
``DynamicGradScaler`` (the real file, tests/data/precision_corpus/megatron_grad_scaler) driven as Megatron's
``MixedPrecisionOptimizer`` drives it. An iteration whose step it skipped is a step of ``dump``, ``shadow`` and
``profile``, whether its module was imported before the session or during it (``scaler_watch.py``)."""

import importlib
import os
import sys

import pytest
import torch

from ascend_tools.precision import capture, shadow
from ascend_tools.profiling import profile

CORPUS = os.path.join(os.path.dirname(__file__), "..", "data", "precision_corpus", "megatron_grad_scaler")
MODULE = "megatron.core.optimizer.grad_scaler"


@pytest.fixture
def megatron_path():
    """The corpus on sys.path, and no megatron module imported before the test nor left after it."""

    def forget():
        for name in [n for n in sys.modules if n == "megatron" or n.startswith("megatron.")]:
            del sys.modules[name]

    forget()
    sys.path.insert(0, CORPUS)
    yield
    sys.path.remove(CORPUS)
    forget()


def cpu_scaler(cls):
    """A ``DynamicGradScaler`` as its ``__init__`` makes it (initial scale 2**19, min 1, growth 2, backoff 0.5,
    interval 1000, hysteresis 1), its tensors on the CPU (``__init__`` puts them on cuda)."""
    scaler = cls.__new__(cls)
    scaler._scale = torch.tensor([2.0**19])
    scaler.min_scale = torch.tensor([1.0])
    scaler.growth_factor = torch.tensor([2.0])
    scaler.backoff_factor = torch.tensor([0.5])
    scaler.growth_interval = 1000
    scaler.hysteresis = 1
    scaler._growth_tracker = 0
    scaler._hysteresis_tracker = 1
    return scaler


def megatron_training(session, import_before, iterations=4):
    """fp16 autocast; each iteration as ``MixedPrecisionOptimizer`` does it: unscale the gradients, ``found_inf``,
    ``grad_scaler.update(found_inf)``, and no ``optimizer.step()`` where it is set. Returns the steps skipped."""
    if import_before:
        module = importlib.import_module(MODULE)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    skipped = 0
    with session:
        if not import_before:  # torch first, Megatron later: the CLI's order
            module = importlib.import_module(MODULE)
        scaler = cpu_scaler(module.DynamicGradScaler)
        for _ in range(iterations):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = model(torch.randn(4, 8)).float().square().mean()
            (loss * scaler.scale).sum().backward()  # fp16 gradients overflow at the first three scales
            grads = [p.grad for p in model.parameters()]
            found_inf = any(not torch.isfinite(g).all() for g in grads)
            for g in grads:
                g.mul_(scaler.inv_scale)
            scaler.update(found_inf)
            if found_inf:
                skipped += 1
            else:
                opt.step()
            opt.zero_grad()
    return skipped


SESSIONS = {
    "dump": lambda tmp: capture(str(tmp / "dump")),
    "shadow": lambda tmp: shadow(),
    "profile": lambda tmp: profile(str(tmp / "prof"), comm=False, hang_timeout=None, memory=False),
}


@pytest.mark.parametrize("import_before", [True, False], ids=["imported-before", "imported-during"])
@pytest.mark.parametrize("tool", sorted(SESSIONS))
def test_an_iteration_megatrons_scaler_skipped_is_a_step(tmp_path, megatron_path, tool, import_before):
    session = SESSIONS[tool](tmp_path)
    skipped = megatron_training(session, import_before)
    assert 1 <= skipped < 4  # it skipped steps, and then stepped
    assert session.step_no == 4
    # the watch left the class as Megatron wrote it
    method = sys.modules[MODULE].DynamicGradScaler.__dict__["update"]
    assert not getattr(method, "_ascend_doctor_update", False)


def test_a_clear_flag_leaves_the_boundary_to_the_optimizer_step(tmp_path, megatron_path):
    """Megatron updates its scaler before the step: a clear flag is no boundary (one step per iteration, not two)."""
    module = importlib.import_module(MODULE)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture(str(tmp_path / "dump")) as cap:
        scaler = cpu_scaler(module.DynamicGradScaler)
        for _ in range(3):
            model(torch.randn(2, 4)).sum().backward()
            scaler.update(False)
            opt.step()
            opt.zero_grad()
    assert cap.step_no == 3
