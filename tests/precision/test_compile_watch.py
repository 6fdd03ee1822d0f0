"""torch.compile under a capture or a shadow: torch compiles nothing under a dispatch mode, so the compiled model
runs eagerly; its ops are recorded / checked, the session counts the compile calls, says so once, and puts
``torch.compile`` back when it ends."""

import json
import logging
import os
import subprocess
import sys
import textwrap

import torch

from ascend_tools.precision import capture, shadow

MODEL_OPS = ["aten::addmm", "aten::relu", "aten::addmm"]  # Linear, ReLU, Linear


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


def forward_ops(rank_dir: str) -> list:
    with open(os.path.join(rank_dir, "step0", "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [r["name"] for r in records if r["phase"] == "forward" and r["name"] in MODEL_OPS]


def test_a_model_compiled_under_the_capture_is_recorded_eagerly_and_the_calls_counted(tmp_path, caplog):
    original = torch.compile
    m = model()
    with caplog.at_level(logging.WARNING, logger="ascend_tools"), capture(str(tmp_path / "dump"), model=m):
        compiled = torch.compile(m)
        torch.compile(m)  # a second call: counted, not logged again
        compiled(torch.randn(3, 4)).sum().backward()
    assert torch.compile is original
    assert forward_ops(str(tmp_path / "dump" / "rank0")) == MODEL_OPS  # every op of the compiled model
    with open(tmp_path / "dump" / "rank0" / "meta.json") as f:
        assert json.load(f)["torch_compile_calls"] == 2
    assert sum("torch.compile was called" in r.getMessage() for r in caplog.records) == 1


def test_a_model_compiled_under_the_shadow_is_checked_and_the_report_says_so():
    m = model()
    with shadow(model=m) as sh:
        torch.compile(m)(torch.randn(3, 4)).sum().backward()
    names = [r.name for r in sh.results if r.phase == "forward"]
    assert [n for n in names if n in MODEL_OPS] == MODEL_OPS
    report = sh.report()
    assert report.data["summary"]["torch_compile_calls"] == 1
    assert any(label == "torch.compile" for label, _value in report.summary)


def test_without_a_compile_call_nothing_is_said(tmp_path):
    m = model()
    with capture(str(tmp_path / "dump"), model=m):
        m(torch.randn(3, 4)).sum().backward()
    with open(tmp_path / "dump" / "rank0" / "meta.json") as f:
        assert json.load(f)["torch_compile_calls"] == 0


def test_the_dump_cli_says_the_records_are_eager(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import torch
            m = torch.compile(torch.nn.Linear(4, 2))
            m(torch.randn(3, 4)).sum().backward()
            """
        )
    )
    out = tmp_path / "dump"
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", "dump", "-o", str(out), "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "torch.compile was called in 1 rank(s) while the capture was on" in proc.stderr


def record_modules(out: str, wrap) -> list:
    """(op, module) of every forward record of the model, wrapped by ``wrap`` inside a capture given no model."""
    m = model()
    with capture(out):
        wrap(m)(torch.randn(3, 4)).sum().backward()
    with open(os.path.join(out, "rank0", "step0", "records.jsonl")) as f:
        records = [json.loads(line) for line in f]
    return [(r["name"], r.get("module", "")) for r in records if r["phase"] == "forward"]


def compile_first_layer(m: torch.nn.Module) -> torch.nn.Module:
    m[0] = torch.compile(m[0])
    return m


def test_a_compiled_model_or_block_keeps_the_module_paths_of_the_model(tmp_path):
    plain = record_modules(str(tmp_path / "plain"), lambda m: m)
    assert ("aten::addmm", "0") in plain and ("aten::addmm", "2") in plain
    assert record_modules(str(tmp_path / "whole"), torch.compile) == plain  # not "_orig_mod.0"
    assert record_modules(str(tmp_path / "block"), compile_first_layer) == plain  # not "0._orig_mod"


def test_a_function_compiled_with_fullgraph_runs_eagerly_instead_of_raising(tmp_path):
    """``@torch.compile(fullgraph=True)`` (nanochat's optimizer steps): torch raises "found no compiled frames" under
    a dispatch mode; under the session it runs eagerly, its ops recorded, and the stance is put back after."""

    def axpy(x, y):
        return x * 2.0 + y

    x, y = torch.randn(5), torch.randn(5)
    with capture(str(tmp_path / "dump")) as cap:
        decorated = torch.compile(dynamic=False, fullgraph=True)(axpy)  # the decorator form: one call
        called = torch.compile(axpy, fullgraph=True)
        m = model()
        m.compile(fullgraph=True)  # nn.Module.compile goes through torch.compile
        got = [decorated(x, y), called(x, y)]
        m(torch.randn(3, 4))
    assert cap.compiles.calls == 3
    for value in got:
        torch.testing.assert_close(value, axpy(x, y))
    with open(tmp_path / "dump" / "rank0" / "step0" / "records.jsonl") as f:
        names = [json.loads(line)["name"] for line in f]
    assert names.count("aten::mul.Tensor") == 2 and names.count("aten::add.Tensor") == 2
    assert [n for n in names if n in MODEL_OPS] == MODEL_OPS
    assert torch._dynamo.eval_frame._stance.stance == "default"


def test_a_function_compiled_before_the_shadow_started_runs_under_it():
    @torch.compile(fullgraph=True)
    def scale(x):
        return x * 3.0

    with shadow() as sh:
        out = scale(torch.ones(4))
    torch.testing.assert_close(out, torch.full((4,), 3.0))
    assert [r.name for r in sh.results] == ["aten::mul.Tensor"]


def test_without_set_stance_fullgraph_is_dropped(tmp_path, monkeypatch):
    """torch < 2.6 has no ``torch.compiler.set_stance``: the calls the session sees compile without fullgraph."""
    monkeypatch.delattr(torch.compiler, "set_stance")
    seen = []
    monkeypatch.setattr(torch, "compile", lambda *a, **kw: seen.append(kw) or a[0])
    with capture(str(tmp_path / "dump")):
        torch.compile(model(), fullgraph=True, dynamic=False)
    assert seen == [{"fullgraph": False, "dynamic": False}]


def test_a_function_compiled_and_run_before_the_capture_runs_eagerly_under_it(tmp_path):
    """The capture's handler is not wrapped in ``torch._disable_dynamo`` (failopen_mode.py): code dynamo compiled
    before the capture started still runs, eagerly, with its ops recorded, and compiled again after it ends."""
    calls = []

    def backend(gm, example_inputs):
        calls.append(len(gm.graph.nodes))
        return gm.forward

    @torch.compile(backend=backend)
    def scale_add(x, y):
        return x * 3.0 + y

    x, y = torch.randn(4), torch.randn(4)
    scale_add(x, y)  # compiled now, before the capture
    assert len(calls) == 1
    with capture(str(tmp_path / "dump")):
        got = scale_add(x, y)
    torch.testing.assert_close(got, x * 3.0 + y)
    with open(tmp_path / "dump" / "rank0" / "step0" / "records.jsonl") as f:
        names = [json.loads(line)["name"] for line in f]
    assert names == ["aten::mul.Tensor", "aten::add.Tensor"]
    scale_add(x, y)
    assert len(calls) == 1  # the graph compiled before is used again: nothing recompiled
