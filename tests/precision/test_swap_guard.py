"""A tensor swap (``torch.utils.swap_tensors``) under dump and shadow: torch refuses to swap a tensor with a weak
reference, and the sessions hold weak references to the tensors ops made and to parameters (their names). FSDP2's
``model.to_empty(device=...)`` of a model built on the meta device swaps every parameter with the tensor ``empty_like``
just made, and ``module.to(...)`` swaps under ``torch.__future__.set_swap_module_params_on_conversion(True)``: under
``ascend-doctor dump``, pytorch/examples' FSDP2 script died there (``RuntimeError: Cannot swap t2 because it has
weakref associated with it``); the user's training must go on, as without the session (swap_guard.py)."""

import json
import time

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.shadow_session import shadow


@pytest.fixture
def swap_on_conversion():
    """``module.to()`` and ``to_empty()`` swap parameters (what FSDP2's DTensor parameters always do)."""
    before = torch.__future__.get_swap_module_params_on_conversion()
    torch.__future__.set_swap_module_params_on_conversion(True)
    yield
    torch.__future__.set_swap_module_params_on_conversion(before)


def _train_step(model, dtype=torch.float32):
    model(torch.ones(2, 4, dtype=dtype)).sum().backward()


def _records(out, step):
    with open(out / "rank0" / f"step{step}" / "records.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_a_captured_model_can_be_converted_and_keeps_its_parameter_names(tmp_path, swap_on_conversion):
    swap = torch.utils.swap_tensors
    model = torch.nn.Linear(4, 3)
    with capture(str(tmp_path), level="op", mode="stats", model=model) as cap:
        _train_step(model)  # the capture now knows the weight and the tensors made from it
        cap.step()
        weight = model.weight
        model.to(torch.float64)  # a swap of every parameter with the converted one
        assert model.weight is weight and model.weight.dtype == torch.float64  # swapped, not replaced
        _train_step(model, torch.float64)
        cap.step()
    assert torch.utils.swap_tensors is swap  # torch's own again once the session is over
    assert cap.internal_errors == 0
    names = {(t["dtype"], t.get("name")) for r in _records(tmp_path, 1) for t in r["inputs"] if "name" in t}
    assert ("float64", "weight") in names and ("float64", "bias") in names


def test_a_meta_model_can_be_materialized_under_dump(tmp_path, swap_on_conversion):
    """FSDP2's start: build on the meta device, then ``to_empty`` (each parameter swapped with a new empty tensor,
    which the capture has just recorded) and the parameters' own initialization."""
    with capture(str(tmp_path), level="op", mode="stats") as cap:
        with torch.device("meta"):
            model = torch.nn.Linear(4, 3)
        model.to_empty(device="cpu")
        model.reset_parameters()
        _train_step(model)
    assert cap.internal_errors == 0 and model.weight.device.type == "cpu"


def test_a_shadowed_model_can_be_converted(swap_on_conversion):
    model = torch.nn.Linear(4, 3)
    with shadow(model=model) as sh:
        _train_step(model)
        model.to(torch.float64)
        _train_step(model, torch.float64)
    assert sh.internal_errors == 0 and sh.compared > 0
    assert not sh.culprits()


def test_a_model_converted_while_its_checks_are_still_running_is_converted(swap_on_conversion, monkeypatch):
    # the worker still checking the step's ops when the user converts the model (it failed so on a loaded machine):
    # a check holds its call's arguments, the parameters among them, and torch refuses to swap a tensor held
    # elsewhere ("Expected use_count of t1 to be 1 or 2 ... but got 3")
    from ascend_tools.precision import shadow_session

    check = shadow_session.Shadow._check

    def slow_check(self, job):
        time.sleep(0.05)
        check(self, job)

    monkeypatch.setattr(shadow_session.Shadow, "_check", slow_check)
    model = torch.nn.Linear(4, 3)
    with shadow(model=model) as sh:
        _train_step(model)
        model.to(torch.float64)
        _train_step(model, torch.float64)
    assert model.weight.dtype == torch.float64 and sh.internal_errors == 0
    assert {r.metrics.target_dtype for r in sh.results if r.name == "aten::mm"} == {"float32", "float64"}
