"""Shadow's same-dtype baseline covers in-place ops: a clean fp16 SGD step (``add_`` on fp16 parameters, which
rounds ``p - lr * g`` to fp16 once more than the float64 replay) is no error, while a wrong ``add_`` still is."""

import importlib

import torch

from ascend_tools.precision.faults import Fault, FaultInjector

SH = importlib.import_module("ascend_tools.precision.shadow_session")


def fp16_sgd_step(fault=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.SiLU(), torch.nn.Linear(64, 8)).half()
    opt = torch.optim.SGD(model.parameters(), lr=0.37, momentum=0.9, foreach=False)
    x = torch.randn(16, 32).half()
    injector = FaultInjector(fault) if fault else None
    if injector is not None:
        injector.__enter__()
    try:
        with SH.shadow(model=model) as sh:
            for _ in range(2):
                model(x).float().pow(2).mean().backward()
                opt.step()
                opt.zero_grad()
    finally:
        if injector is not None:
            injector.__exit__(None, None, None)
    return sh


def test_clean_fp16_sgd_has_no_error():
    sh = fp16_sgd_step()
    in_place = [r for r in sh.results if r.name.endswith("_.Tensor") and r.phase == "optimizer"]
    assert in_place, sorted({r.name for r in sh.results})
    assert [(r.key, r.verdict.reason) for r in sh.results if r.level == "error"] == []


def test_a_wrong_in_place_add_is_still_an_error():
    sh = fp16_sgd_step(Fault("aten::add_.Tensor", call=3, phase="forward", scale=0.5, fraction=0.3))
    errors = [r for r in sh.results if r.level == "error"]
    assert errors and errors[0].name == "aten::add_.Tensor", [(r.key, r.verdict.reason) for r in errors]
