"""Every output of a multi-output op is judged: a wrong ``grad_weight`` (the second output of
``native_layer_norm_backward``) must be named by compare, by replay, though the first output is right."""

import json

import numpy as np
import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.faults import Fault, FaultInjector

FAULT = Fault("aten::native_layer_norm_backward", call=0, phase="backward", output=1, scale=0.5, fraction=0.3)


def run(path, fault=None):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LayerNorm(32), torch.nn.Linear(32, 4))
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    injector = FaultInjector(fault) if fault else None
    if injector is not None:
        injector.__enter__()
    try:
        with capture(str(path), mode="tensor", model=model):
            model(x).pow(2).mean().backward()
    finally:
        if injector is not None:
            injector.__exit__(None, None, None)
    assert fault is None or injector.hit == "aten::native_layer_norm_backward#backward#0"
    return str(path)


def test_a_wrong_second_output_is_found(tmp_path):
    target, ref = run(tmp_path / "target", FAULT), run(tmp_path / "ref")
    report = compare_dumps(target, ref)
    top = report.data["culprits"][0]
    assert (top["kind"], top["name"]) == ("kernel", "aten::native_layer_norm_backward#backward#0")
    assert top["verdict"] == "error"
    clean = compare_dumps(run(tmp_path / "clean"), ref)
    assert clean.data["culprits"] == []


def test_a_kernels_scratch_output_is_not_judged(tmp_path):
    """oneDNN's LSTM layer returns a uint8 workspace after its values, bytes of no meaning that differ between two
    clean runs (found on pytorch/examples' word_language_model ``--model LSTM``: an error per layer call)."""

    def lstm(path):
        torch.manual_seed(0)
        model = torch.nn.LSTM(8, 16, num_layers=2)
        with capture(str(path), mode="tensor", model=model):
            model(torch.randn(5, 3, 8))[0].sum().backward()
        with open(path / "rank0" / "step0" / "records.jsonl") as f:
            return [json.loads(line) for line in f if '"aten::mkldnn_rnn_layer"' in line]

    a, b = lstm(tmp_path / "a"), lstm(tmp_path / "b")
    if not a:
        pytest.skip("this torch runs nn.LSTM on the CPU without oneDNN's mkldnn_rnn_layer")

    def path(run, rec, k):
        return tmp_path / run / "rank0" / "step0" / rec["outputs"][k]["file"]

    def load(run, rec, k):
        return np.load(path(run, rec, k))

    # the scratch differs between two runs (often, not always: it is whatever the allocator handed out), here in
    # every byte: run b's is the complement of run a's
    for x, y in zip(a, b):
        scratch = load("a", x, 3)
        assert scratch.dtype == np.uint8
        np.save(path("b", y, 3), np.invert(scratch))
    assert all(np.array_equal(load("a", x, 0), load("b", y, 0)) for x, y in zip(a, b))  # the values do not
    summary = compare_dumps(str(tmp_path / "b"), str(tmp_path / "a")).data["summary"]
    assert (
        summary["verdicts"]["error"] == 0 and summary["verdicts"]["warning"] == 0 and summary["culprits"] == 0
    )
