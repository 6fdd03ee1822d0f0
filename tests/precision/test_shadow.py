"""Shadow mode on small ops: what is compared and what is skipped, in-place ops, casts, filters,
fail-open, the report, the JSON lines, and ``ascend-doctor shadow`` end to end."""

import importlib
import json
import logging
import os
import sys

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ascend_tools.precision as precision
from ascend_tools.commands.common import exit_code
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.report import render

SH = importlib.import_module("ascend_tools.precision.shadow_session")
shadow = precision.shadow


def _mlp():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.SiLU(), torch.nn.Linear(16, 4))


def test_lazy_export_names_the_function_not_a_module():
    # the module has its own name (shadow_session), so importing it never shadows the function
    import ascend_tools.precision.shadow_session  # noqa: F401

    assert precision.shadow is SH.shadow and precision.Shadow is SH.Shadow
    with precision.shadow(ops=["mm"]) as sh:
        torch.randn(2, 3) @ torch.randn(3, 2)
    assert [r.name for r in sh.results] == ["aten::mm"]


def test_records_every_op_with_identity():
    model, x = _mlp(), torch.randn(4, 8)
    with shadow(model=model) as sh:
        model(x).pow(2).mean().backward()
    names = [(r.name, r.phase) for r in sh.results]
    assert ("aten::addmm", "forward") in names and ("aten::mm", "backward") in names
    addmm = [r for r in sh.results if r.name == "aten::addmm"]
    assert [r.call for r in addmm] == [0, 1] and [r.module for r in addmm] == ["0", "2"]
    assert addmm[0].input_shapes == [[16], [4, 8], [8, 16]]
    assert "test_shadow.py:" in addmm[0].site  # the first frame outside torch: this test
    assert all(r.level == "pass" for r in sh.results)
    assert [r.id for r in sh.results] == sorted(r.id for r in sh.results)
    own = {"aten::div.Scalar", "aten::mul.Tensor", "aten::mul.Scalar", "aten::add_.Tensor"}
    for r in sh.results:
        # correctly rounded ops (+ - * / sqrt) and exact ones are replayed in their own dtype, the rest in float64
        want = "float32" if r.name in own or SH.standards.standard_for(r.name) == "binary" else "float64"
        assert isinstance(r.metrics, SH.M.PairMetrics) and r.metrics.reference_dtype == want, r.name
    assert {r.name for r in sh.results} & own and {r.metrics.reference_dtype for r in sh.results} == {
        "float32",
        "float64",
    }


def _graph_step():
    """pytorch/examples' GAT in small: its data prepared with a matmul (feature scaling) before the model is
    built, then one training step whose layers run ``mm`` too."""
    torch.manual_seed(0)
    features = torch.rand(12, 6)
    features = torch.diag(1 / features.sum(1)) @ features
    model = torch.nn.Sequential(torch.nn.Linear(6, 8, bias=False), torch.nn.Linear(8, 3))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model(features).logsumexp(1).mean().backward()
    opt.step()


def test_ops_before_the_first_forward_are_init_and_named_as_the_capture_names_them(tmp_path):
    # shadow counted a data preparation's mm as forward call 0, so it named the model's first mm
    # aten::mm#forward#1, where the capture of the same script (its own init phase) has aten::mm#forward#0
    with shadow() as sh:
        _graph_step()
    with precision.capture(str(tmp_path)):
        _graph_step()
    from ascend_tools.precision.store import OurDump

    dump = OurDump.find(str(tmp_path))
    recorded = {(r.name, r.phase, r.call): r.module for r in dump.records(0)}
    assert recorded[("aten::mm", "init", 0)] == "" and recorded[("aten::mm", "forward", 0)] == "0"
    checked = [r for r in sh.results if r.step == 0]
    assert ("aten::mm", "init", 0) in {(r.name, r.phase, r.call) for r in checked}
    assert {r.phase for r in checked} == {"init", "forward", "backward", "optimizer"}
    for r in checked:  # every op shadow checked is the capture's record of that name, with its module
        assert recorded.get((r.name, r.phase, r.call)) == r.module, r.key


def test_in_place_op_sees_inputs_before_the_write():
    a = torch.randn(64)
    b = torch.randn(64)
    expect = a + b
    with shadow() as sh:
        a.add_(b)
    assert torch.equal(a, expect)  # the user's op ran once
    (rec,) = [r for r in sh.results if r.name == "aten::add_.Tensor"]
    assert rec.level == "pass" and rec.verdict.value <= 0.5  # reference saw a, not a + b


def test_in_place_on_float64_does_not_touch_user_tensor():
    a = torch.randn(32, dtype=torch.float64)
    b = torch.randn(32, dtype=torch.float64)
    expect = a * b
    with shadow() as sh:
        a.mul_(b)
    assert torch.equal(a, expect)
    assert [r.level for r in sh.results if r.name == "aten::mul_.Tensor"] == ["pass"]


def test_cast_to_bf16_is_exact_and_softmax_fp16_not_flagged():
    x = torch.randn(8, 32)
    with shadow() as sh:
        x.to(torch.bfloat16)
        x.half().softmax(-1)
    casts = [r for r in sh.results if r.name == "aten::_to_copy"]
    assert casts and all(r.level == "pass" for r in casts)
    assert casts[0].metrics.target_dtype == "bfloat16" and casts[0].verdict.value == 0.0
    (soft,) = [r for r in sh.results if r.name == "aten::_softmax"]
    assert soft.level == "pass" and soft.metrics.target_dtype == "float16"


def test_half_to_float_cleared_for_the_reference():
    op = SH._Op(torch.ops.aten._softmax.default, None)
    x = torch.randn(2, 3, dtype=torch.float64)
    args, _ = SH._ref_call(op, (x, -1, True), {}, {id(x): x}, True)
    assert args[2] is False
    args, _ = SH._ref_call(op, (x, -1, True), {}, {id(x): x}, False)
    assert args[2] is True


def test_skips_random_views_and_factories():
    x = torch.randn(4, 8)
    with shadow() as sh:
        torch.nn.functional.dropout(x, 0.5, training=True)
        x.t().reshape(32)
        torch.empty(3)
        torch.zeros(5)
    names = {r.name for r in sh.results}
    assert not names & {
        "aten::native_dropout",
        "aten::bernoulli_.float",
        "aten::t",
        "aten::view",
        "aten::empty.memory_format",
    }
    assert sh.skipped["random"] >= 1 and sh.skipped["view"] >= 2 and sh.skipped["uninitialised"] >= 1
    assert sh.skipped["no tensor input"] >= 1  # zeros: a factory


@pytest.mark.parametrize(
    "kwargs,check",
    [
        ({"ops": ["matmul"]}, lambda rs: {r.name for r in rs} == {"aten::addmm", "aten::mm"}),
        ({"ops": ["aten::mm"]}, lambda rs: {r.name for r in rs} == {"aten::mm"}),
        ({"ops": "silu"}, lambda rs: {r.name for r in rs} == {"aten::silu"}),
        ({"scope": ["2"]}, lambda rs: rs and {r.module for r in rs} == {"2"}),
        ({"sample": 2, "ops": ["addmm"]}, lambda rs: [r.call for r in rs] == [0]),
        (
            {"max_numel": 100},
            lambda rs: rs and all(sum(torch.Size(s).numel() for s in r.input_shapes) <= 100 for r in rs),
        ),
    ],
)
def test_filters(kwargs, check):
    model, x = _mlp(), torch.randn(4, 8)
    with shadow(model=model, **kwargs) as sh:
        model(x).sum().backward()
    assert check(sh.results), [(r.key, r.module) for r in sh.results]


def test_steps_follow_optimizer():
    model = _mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with shadow(steps=[1], ops=["addmm"]) as sh:
        for _ in range(3):
            model(torch.randn(2, 8)).sum().backward()
            opt.step()
            opt.zero_grad()
    assert {r.step for r in sh.results} == {1} and [r.call for r in sh.results] == [0, 1]


def test_fail_open_logs_once(monkeypatch, caplog):
    def boom(*a, **k):
        raise RuntimeError("compare exploded")

    monkeypatch.setattr(SH, "judge_output", boom)
    model, x = _mlp(), torch.randn(4, 8)
    expect = model(x)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"), shadow() as sh:
        got = model(x)
        got.sum().backward()
    assert torch.equal(got, expect)
    assert sh.internal_errors > 1 and sh.results == []
    lines = [r for r in caplog.records if r.name == "ascend_tools"]
    assert len(lines) == 1 and "compare exploded" in lines[0].getMessage()


def test_injected_fault_and_report():
    model, x = _mlp(), torch.randn(4, 8)
    with FaultInjector(Fault("aten::addmm", call=1)) as inj, shadow(model=model) as sh:
        model(x).sum().backward()
    assert inj.hit == "aten::addmm#forward#1"
    assert [r.key for r in sh.culprits()] == [inj.hit]
    report = sh.report()
    data = json.loads(render(report, "json"))
    assert data["schema"] == "ascend-doctor/shadow/1"
    top = data["culprits"][0]
    assert (top["name"], top["op"], top["module"], top["phase"]) == (inj.hit, "aten::addmm", "2", "forward")
    assert top["introduced_error"] > 10 and top["cosine"] is not None and top["max_abs_err"] > 0
    assert data["summary"]["culprits"] == 1 and data["first_culprit"]["name"] == inj.hit
    assert len(data["records"]) == len(sh.results)
    html = render(report, "html")
    assert "<svg" in html and "backward" in html and "aten::addmm#forward#1" in html
    assert exit_code(report, "error") == 1 and exit_code(report, "never") == 0


def test_json_lines_round_trip(tmp_path):
    model, x = _mlp(), torch.randn(4, 8)
    with FaultInjector(Fault("aten::mm", call=0, phase="backward")), shadow(out=str(tmp_path)) as sh:
        model(x).sum().backward()
    records, metas = SH.read_results(str(tmp_path))
    assert [r.to_json() for r in records] == [r.to_json() for r in sh.results]
    assert metas[0]["compared"] == len(records) and metas[0]["verdicts"]["error"] == 1
    report = SH.build_report(records, metas)
    assert report.data["culprits"][0]["name"] == "aten::mm#backward#0"


def test_cli_end_to_end(tmp_path, run_verb):
    out = tmp_path / "report.json"
    proc = run_verb(
        "shadow",
        "-f",
        "json",
        "-o",
        out,
        "--records",
        tmp_path / "rec",
        "--steps",
        "1",
        "--",
        sys.executable,
        "SCRIPT",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["schema"] == "ascend-doctor/shadow/1" and data["culprits"] == []
    assert data["summary"]["compared"] > 5 and data["summary"]["steps"] == [1]
    assert {r["phase"] for r in data["records"]} == {"forward", "backward", "optimizer"}
    assert os.path.exists(tmp_path / "rec" / "rank0.jsonl")
    proc = run_verb("shadow", "--ops", "addmm", "--", sys.executable, "SCRIPT", "3")
    assert proc.returncode == 3
    assert "ascend-doctor shadow: the command failed (exit 3) after " in proc.stderr
    proc = run_verb("shadow", "--steps", "x")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1


class _FastDivide(TorchDispatchMode):
    """A fast-math division kernel, as some devices' are: ``a / b`` as ``a`` times a reciprocal good to
    bfloat16's 8 bits. Entered before the shadow, so it sits below it (the device run)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.div.Tensor:
            a, b = args
            return a * (1.0 / b).to(torch.bfloat16).to(b.dtype)
        return func(*args, **(kwargs or {}))


def test_correctly_rounded_ops_are_judged_in_their_own_dtype():
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(512, generator=g), torch.rand(512, generator=g) + 0.5
    with _FastDivide(), shadow() as sh:
        q = a / b
        a + b
        torch.add(a, b, alpha=0.5)  # a + 0.5 * b rounds twice: float64 as before
    div, add, add_half = sh.results
    assert [r.metrics.reference_dtype for r in sh.results] == ["float32", "float32", "float64"]
    assert add.level == "pass" and add_half.level == "pass"
    # the fault's error, measured independently against the float64 quotient, in float32 ULPs
    exact = a.double() / b.double()
    ulp = torch.exp2(torch.floor(torch.log2(exact.abs())) - 23)
    want = float(((q.double() - exact).abs() / ulp).max())
    assert div.level == "error" and want > 100
    assert abs(div.metrics.max_ulp_err - want) <= 0.5  # the float32 reference is float64's, rounded


def test_a_bf16_op_gets_compare_s_float32_truth_and_a_faulty_one_is_still_named():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(64, 256, generator=g), torch.randn(256, 64, generator=g)
    fault = Fault("aten::mm", call=2, kind="perturb", scale=1.05, fraction=0.1)
    with FaultInjector(fault), shadow() as sh:
        a @ b  # float32: a float64 truth
        a.bfloat16() @ b.bfloat16()  # bf16 out of bf16 inputs: float32, as compare's replay.reference_dtype
        a.bfloat16() @ b.bfloat16()  # mm call 2: faulted below the shadow
    mms = [r for r in sh.results if r.name == "aten::mm"]
    assert [r.metrics.reference_dtype for r in mms] == ["float64", "float32", "float32"]
    assert [r.level for r in mms] == ["pass", "pass", "error"]
    assert [r.key for r in sh.culprits()] == ["aten::mm#init#2"]  # no module ran: phase init


def test_ops_that_make_meta_tensors_are_skipped_not_failed():
    """transformers' from_pretrained (and accelerate's init_empty_weights) moves real tensors to the meta device:
    CPU inputs, a meta output with no data to copy (before: an internal error per op)."""
    x = torch.randn(4, 8)
    with shadow() as sh:
        y = x.to("meta")
        z = torch.empty_like(x, device="meta").normal_()
        (x * 2).sum()
    assert y.is_meta and z.is_meta
    assert sh.internal_errors == 0
    assert sh.skipped["not a plain tensor"] == 1  # the _to_copy (empty_like: uninitialised; normal_: random)
    assert [r.key.split("#")[0] for r in sh.results] == ["aten::mul.Tensor", "aten::sum"]  # checked as before


def test_an_optimizer_the_dispatcher_does_not_see_leaves_the_checks_their_inputs():
    """An optimizer that writes the parameters unseen (through NumPy, as a fused kernel called from C++ does): the
    checks still queued when it starts (the backward's last matmuls read the weights) judge the values their op
    read. Before: a weight gradient's ``mm`` in backward an error at most steps, ~1e7 scaled ULP off its replay."""
    from test_capture_identity import NumpyWriteSGD

    torch.manual_seed(0)
    # wide enough that the worker's float64 replays lag behind the step: checks are still queued at the optimizer
    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.SiLU(), torch.nn.Linear(1024, 256))
    x = torch.randn(512, 256)
    opt = NumpyWriteSGD(model.parameters())
    with shadow(model=model) as sh:
        for _ in range(3):
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    assert {r.step for r in sh.results} == {0, 1, 2} and any(r.phase == "backward" for r in sh.results)
    assert [(r.key, r.verdict.reason) for r in sh.results if r.level == "error"] == []


def test_optimizers_stepped_inside_backward_are_optimizer_ops_of_one_step_per_backward():
    """Per-parameter optimizers stepped from gradient hooks (torchtune's optimizer_in_bwd, GaLore per layer): their
    ops are the optimizer's, and each backward is one step (each hook's step() ended one: 4 steps an iteration)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opts = {p: torch.optim.SGD([p], lr=0.1) for p in model.parameters()}

    def hook(p):
        opts[p].step()
        opts[p].zero_grad()

    for p in model.parameters():
        p.register_post_accumulate_grad_hook(hook)
    with precision.shadow(model=model) as sh:
        for _ in range(2):
            model(torch.randn(4, 8)).square().mean().backward()
    assert sh.step_no == 2
    updates = [r for r in sh.results if r.name == "aten::add_.Tensor"]  # SGD's p.add_(grad, alpha=-lr)
    assert [(r.phase, r.step) for r in updates] == [("optimizer", 0)] * 4 + [("optimizer", 1)] * 4


@pytest.mark.parametrize("npu_style", [False, True], ids=["torch", "torch_npu-style"])
def test_a_step_the_loss_scaler_skipped_is_still_a_step(npu_style):
    from fp16_scaler import fp16_scaled_training, npu_style_scaler_class

    sh = precision.shadow()
    assert fp16_scaled_training(sh, scaler_class=npu_style_scaler_class if npu_style else None) >= 1
    assert sh.step_no == 4


def test_calls_over_max_numel_are_counted_and_the_report_says_how_large():
    """Calls over the limit that no block bounds (a product whose parts, all of its rows and columns here, are over
    it; one whose output is) go unchecked: the report must say so and how large, not only count them among the
    skipped (a product over the limit is checked on a block: test_shadow_blocks.py)."""
    a, b, c, d, e = (
        torch.randn(4, 8),
        torch.randn(8, 16),
        torch.randn(20, 2),
        torch.randn(2, 20),
        torch.randn(4, 4),
    )
    for limit in (100, SH.DEFAULT_MAX_NUMEL):
        with shadow(max_numel=limit) as sh:
            torch.mm(a, b)  # inputs 32 + 128 elements
            torch.mm(c, d)  # inputs 80, output 400
            torch.add(e, 1)  # 16 and 16
        summary = dict(sh.report().summary)
        if limit == 100:
            assert (sh.skipped["max_numel"], sh.largest_skipped) == (2, 400)
            assert [r.name for r in sh.results] == ["aten::add.Tensor"]
            assert summary["too large"].startswith(
                "2 op calls over --max-numel (100 elements) not checked, the largest 400: raise it"
            )
        else:
            assert len(sh.results) == 3 and "too large" not in summary
