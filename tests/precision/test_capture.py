"""Capture: statistics against numpy, one host transfer per flush, op/module levels against an
independent dispatch mode, filters, tensor/hash modes, fail-open, killed writer."""

import copy
import json
import logging
import os
import signal
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
import torch
from fp16_scaler import fp16_scaled_training, npu_style_scaler_class
from polling import wait_for
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools.precision import capture, capture_session
from ascend_tools.precision import stats as stats_mod
from ascend_tools.precision.stats import tensor_stats
from ascend_tools.precision.store import OurDump

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _np_stats(a):
    a = np.asarray(a, dtype=np.float64)
    fin = a[np.isfinite(a)]
    return {
        "max": np.max(a),
        "min": np.min(a),
        "mean": np.mean(a),
        "norm": np.sqrt(np.sum(a * a)),
        "nan": int(np.isnan(a).sum()),
        "inf": int(np.isinf(a).sum()),
        "fin": fin,
    }


@pytest.mark.parametrize(
    "values,dtype,sat",
    [
        ([1.0, -2.5, 3.0, 0.25], torch.float32, 0),
        ([1.0, float("nan"), float("inf"), -3.0], torch.float32, 0),
        ([65504.0, -65504.0, 1.0, 2.0], torch.float16, 2),
        ([1.5, -0.75, 3.0e38], torch.bfloat16, 0),
        ([-2.5], torch.float32, 0),
        ([float("nan")], torch.float32, 0),
        ([float("-inf")], torch.bfloat16, 0),
        ([65504.0], torch.float16, 1),
    ],
)
@pytest.mark.parametrize("reads_free", [True, False], ids=["cpu-path", "device-path"])
def test_float_stats_match_numpy(values, dtype, sat, reads_free, monkeypatch):
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: reads_free)
    t = torch.tensor(values, dtype=dtype)
    got = tensor_stats(t)
    ref = _np_stats(t.float().numpy())
    for k in ("max", "min", "mean", "norm"):
        if np.isnan(ref[k]):
            assert np.isnan(getattr(got, k))
        else:
            assert getattr(got, k) == pytest.approx(ref[k], rel=1e-6)
    assert (got.nan, got.inf, got.sat) == (ref["nan"], ref["inf"], sat)


def test_int_bool_empty_stats():
    s = tensor_stats(torch.tensor([3, -1, 7]))
    assert (s.max, s.min, s.mean, s.nan, s.inf, s.sat) == (7.0, -1.0, 3.0, 0, 0, 0)
    assert s.norm == pytest.approx(np.sqrt(59))
    b = tensor_stats(torch.tensor([True, False, True, True]))
    assert (b.max, b.min, b.mean) == (1.0, 0.0, 0.75)
    assert tensor_stats(torch.empty(0, 3)) is None


def _tiny():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.GELU(), torch.nn.Linear(8, 3))


def test_one_host_transfer_per_flush(tmp_path, monkeypatch):
    """The accelerator path (CPU tensors treated as device tensors): statistics stay on the device
    until the flush moves them all at once."""
    calls = []
    real = stats_mod.to_host
    monkeypatch.setattr(stats_mod, "to_host", lambda t: calls.append(t.shape) or real(t))
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: False)
    # the first op through a dispatch mode imports torch._dynamo: over FLUSH_AFTER on a loaded machine
    monkeypatch.setattr(sys.modules["ascend_tools.precision.capture_session"], "FLUSH_AFTER", 3600.0)
    model, x = _tiny(), torch.randn(4, 6)
    with torch.no_grad(), capture(str(tmp_path), flush_every=10_000) as cap:
        model(x)
        n_ops = cap._next_id
        assert calls == []  # nothing moved while ops ran
    assert n_ops > 3 and len(calls) == 1


class _Names(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        s = func._schema
        name = s.name + ("." + s.overload_name if s.overload_name else "")
        self.seen.append((name, torch._C._current_graph_task_id() != -1))
        return func(*args, **(kwargs or {}))


def _run(model, x):
    model(x).square().mean().backward()


def _records(path, step=0):
    return list(OurDump.find(str(path)).records(step))


def test_op_level_matches_independent_mode(tmp_path):
    model, x = _tiny(), torch.randn(4, 6)
    ref = _Names()
    with ref:
        _run(model, x)
    model.zero_grad()
    with capture(str(tmp_path)):
        _run(model, x)
    recs = _records(tmp_path)
    got = [(r.name, r.phase == "backward") for r in recs]
    assert got == ref.seen
    assert {r.phase for r in recs} == {"forward", "backward"}
    mm = [r for r in recs if r.name == "aten::addmm" and r.phase == "forward"]
    assert [r.call for r in mm] == [0, 1] and [r.module for r in mm] == ["0", "2"]
    assert [r.id for r in recs] == list(range(len(recs)))
    d = OurDump.find(str(tmp_path))
    assert any("test_capture.py" in f for f in d.stack(mm[0].stack))


def test_module_level_records_every_module(tmp_path):
    model, x = _tiny(), torch.randn(4, 6)
    with capture(str(tmp_path), level="module", model=model):
        _run(model, x)
    recs = _records(tmp_path)
    fwd = {r.name for r in recs if r.phase == "forward"}
    assert fwd == {n or "<root>" for n, _ in model.named_modules()}
    grads = {r.name for r in recs if r.name.endswith(".grad")}
    assert grads == {f"{n}.grad" for n, _ in model.named_parameters()}
    bwd = {r.name for r in recs if r.phase == "backward" and not r.name.endswith(".grad")}
    assert "2" in bwd and "<root>" in bwd
    out = next(r for r in recs if r.name == "2" and r.phase == "forward").outputs[0]
    assert out.shape == [4, 3] and out.stats is not None


def test_module_names_without_model(tmp_path):
    model, x = _tiny(), torch.randn(4, 6)
    with torch.no_grad(), capture(str(tmp_path), level="module"):
        model(x)
    assert [r.name for r in _records(tmp_path)] == ["0", "1", "2", "<root>"]


def test_filters_and_steps(tmp_path):
    model, x = _tiny(), torch.randn(4, 6)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with capture(str(tmp_path / "a"), ops=["linear"], scope=["2"], steps=[1]):
        for _ in range(3):
            _run(model, x)
            opt.step()
            opt.zero_grad()
    d = OurDump.find(str(tmp_path / "a"))
    assert d.steps() == [1]
    names = {(r.name, r.module) for r in d.records(1)}
    assert names and all(n in ("aten::addmm", "aten::mm") and m == "2" for n, m in names)
    with capture(str(tmp_path / "b"), sample=2) as cap:
        for _ in range(3):
            model(x)
        cap.step()
        model(x)
    d = OurDump.find(str(tmp_path / "b"))
    calls = [r.call for r in d.records(0) if r.name == "aten::addmm"]
    assert calls == [0, 2, 4]
    assert d.steps() == [0, 1]


def test_tensor_mode_roundtrip_bf16(tmp_path):
    lin = torch.nn.Linear(4, 4).to(torch.bfloat16)
    x = torch.randn(3, 4, dtype=torch.bfloat16)
    with torch.no_grad(), capture(str(tmp_path), mode="tensor"):
        y = lin(x)
    d = OurDump.find(str(tmp_path))
    rec = next(r for r in d.records(0) if r.name == "aten::addmm")
    out = d.load_tensor(rec.outputs[0], 0)
    assert out.dtype == torch.bfloat16 and torch.equal(out.view(torch.int16), y.view(torch.int16))
    assert rec.outputs[0].stats is not None


def test_hash_mode(tmp_path):
    def digests(x, where):
        with torch.no_grad(), capture(str(where), mode="hash"):
            torch.mul(x, 2)
        rec = next(r for r in OurDump.find(str(where)).records(0) if r.name == "aten::mul.Tensor")
        return rec.inputs[0].digest

    x = torch.randn(64)
    y = x.clone()
    y[7] = torch.nextafter(y[7], torch.tensor(float("inf")))
    a, b, c = digests(x, tmp_path / "a"), digests(x.clone(), tmp_path / "b"), digests(y, tmp_path / "c")
    assert a == b and a != c and len(a) == 32


def test_mixed_paths_in_one_flush_give_the_same_records(tmp_path, monkeypatch):
    """Tensors read at once (CPU) and tensors waiting for the flush's transfer (accelerator, simulated)
    in the same flush, with digests: every record equals the all-CPU run's."""
    model, x = _tiny(), torch.randn(4, 6)

    def run(where):
        with capture(str(where), mode="hash", flush_every=10_000):
            _run(model, x)
        model.zero_grad()
        return [(r.name, [(t.stats, t.digest) for t in r.inputs + r.outputs]) for r in _records(where)]

    plain = run(tmp_path / "cpu")
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: t.dim() != 2)  # matrices take the device path
    mixed = run(tmp_path / "mixed")
    assert [(n, [d for _, d in ts]) for n, ts in mixed] == [(n, [d for _, d in ts]) for n, ts in plain]
    assert all(t[1] for _, ts in plain for t in ts)
    for (_, a), (_, b) in zip(mixed, plain):
        for (sa, _), (sb, _) in zip(a, b):
            # the CPU path's norm is sqrt(dot) in float64, the device path's an fp32 vector_norm
            assert asdict(sa) == pytest.approx(asdict(sb), rel=1e-6)


def test_internal_error_fails_open_and_logs_once(tmp_path, monkeypatch, caplog):
    def boom(x):
        raise RuntimeError("stats exploded")

    monkeypatch.setattr(stats_mod, "_row", boom)
    monkeypatch.setattr(stats_mod, "_cpu_values", boom)
    monkeypatch.setattr(capture_session, "cpu_body", boom)
    model, x = _tiny(), torch.randn(4, 6)
    expect = model(x)
    with caplog.at_level(logging.WARNING, logger="ascend_tools"), capture(str(tmp_path)):
        got = model(x)
        got.sum().backward()
    assert torch.equal(got, expect)
    assert sum("stats exploded" in r.getMessage() for r in caplog.records) == 1


KILLED = r"""
import sys, time, torch
sys.path.insert(0, {root!r})
from ascend_tools.precision import capture, capture_session
x = torch.randn(8, 8)
with capture({out!r}, flush_every=16):
    for i in range(10 ** 6):
        x = torch.tanh(x @ x)
        if i == 200:
            print("ready", flush=True)
"""


def _complete_lines(path):
    try:
        with open(path, "rb") as f:
            return f.read().count(b"\n")
    except FileNotFoundError:
        return 0


def test_killed_writer_leaves_readable_prefix(tmp_path):
    out = str(tmp_path / "d")
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(root=ROOT, out=out)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"ready"
    records = os.path.join(out, "rank0", "step0", "records.jsonl")
    assert wait_for(lambda: _complete_lines(records) >= 400), "the writer flushed nothing in 30 s"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    recs = _records(out)
    assert len(recs) >= 400
    assert [r.id for r in recs] == list(range(len(recs)))
    with open(os.path.join(out, "rank0", "meta.json")) as f:
        assert json.load(f)["schema"] == "ascend-doctor/dump/1"


def test_optimizer_ops_have_their_own_phase(tmp_path):
    """The ops of optimizer.step() are phase "optimizer", compared against an independent mode that
    sees the first step of a twin model and optimizer."""
    model, x = _tiny(), torch.randn(4, 6)
    twin = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, foreach=False)
    with capture(str(tmp_path)):
        _run(model, x)
        opt.step()
    recs = _records(tmp_path)
    phases = [r.phase for r in recs]
    first = phases.index("optimizer")
    assert set(phases[first:]) == {"optimizer"} and set(phases[:first]) == {"forward", "backward"}
    twin_opt = torch.optim.SGD(twin.parameters(), lr=0.1, momentum=0.9, foreach=False)
    _run(twin, x)
    ref = _Names()
    with ref:
        twin_opt.step()
    assert [r.name for r in recs[first:]] == [n for n, _ in ref.seen if not n.startswith("profiler::")]


def test_uninitialised_memory_gets_no_statistics(tmp_path):
    """torch.empty's values are whatever the memory held: recorded with dtype and shape only, also where
    the next op reads it; the op that fills it has its statistics."""
    with capture(str(tmp_path)):
        buf = torch.empty(64, 64)
        buf.copy_(torch.ones(64, 64))
        buf.add_(1)
    recs = {r.name: r for r in _records(tmp_path)}
    empty, copy_ = recs["aten::empty.memory_format"], recs["aten::copy_"]
    assert empty.outputs[0].stats is None and empty.outputs[0].shape == [64, 64]
    assert copy_.inputs[0].stats is None and copy_.inputs[1].stats.max == 1.0
    assert copy_.outputs[0].stats.mean == 1.0 and recs["aten::add_.Tensor"].outputs[0].stats.mean == 2.0


def test_a_raising_optimizer_step_does_not_relabel_the_next_forward(tmp_path):
    class Failing(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})

        @torch.no_grad()
        def step(self, closure=None):
            for group in self.param_groups:
                for p in group["params"]:
                    p.add_(p.grad, alpha=-0.1)
            raise RuntimeError("step failed")

    model, x = _tiny(), torch.randn(4, 6)
    opt = Failing(model.parameters())
    with capture(str(tmp_path)) as cap:
        _run(model, x)
        with pytest.raises(RuntimeError):
            opt.step()
        cap.step()
        step = cap.step_no
        _run(model, x)
    assert {r.phase for r in _records(tmp_path)} == {"forward", "backward", "optimizer"}
    assert {r.phase for r in _records(tmp_path, step=step)} == {"forward", "backward"}


def test_a_stats_only_reference_still_gets_the_targets_own_replay(tmp_path):
    """Against statistics only, a passing statistic does not prove the op made no error: the target's ops are
    replayed on its own tensors, and an injected fault is proven by that replay."""
    from ascend_tools.precision.compare import compare_dumps
    from ascend_tools.precision.faults import Fault, FaultInjector

    model, x = _tiny(), torch.randn(4, 6)
    with capture(str(tmp_path / "ref"), mode="stats"):
        _run(model, x)
    model.zero_grad()
    with (
        FaultInjector(Fault("aten::addmm", call=1, scale=1e-5)),
        capture(str(tmp_path / "tgt"), mode="tensor"),
    ):
        _run(model, x)
    data = compare_dumps(str(tmp_path / "tgt"), str(tmp_path / "ref")).data
    assert data["culprits"] and data["culprits"][0]["name"] == "aten::addmm#forward#1"


def test_an_optimizer_that_steps_another_is_one_optimizer_phase_and_one_step(tmp_path):
    """Global optimizer hooks fire for both steps (pre outer, pre inner, post inner, post outer): the outer
    step's own ops after the inner one are still optimizer ops, and the step advances once."""

    class Wrapper(torch.optim.SGD):
        def __init__(self, params, inner):
            super().__init__(params, lr=0.1)
            self.inner = inner

        @torch.no_grad()
        def step(self, closure=None):
            self.inner.step()
            for group in self.param_groups:
                for p in group["params"]:
                    p.mul_(0.5)

    model, x = _tiny(), torch.randn(4, 6)
    params = list(model.parameters())
    opt = Wrapper(params[:2], torch.optim.SGD(params[2:], lr=0.1))
    with capture(str(tmp_path)) as cap:
        _run(model, x)
        opt.step()
        assert cap.step_no == 1
    recs = _records(tmp_path)
    assert [r.phase for r in recs if r.name == "aten::mul_.Tensor" or r.name == "aten::mul_.Scalar"] == [
        "optimizer"
    ] * 2


def _train_three_steps(path, in_backward):
    """Three steps of one model and data, its parameters stepped by AdamW after backward, or by one AdamW per
    parameter from a gradient hook inside backward (GaLore's per-layer optimizers, torchtune's optimizer_in_bwd,
    LOMO)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    params = list(model.parameters())
    opts = {p: torch.optim.AdamW([p], lr=1e-2, foreach=False) for p in params}
    whole = torch.optim.AdamW(params, lr=1e-2, foreach=False)

    def hook(p):
        opts[p].step()
        opts[p].zero_grad()

    class InBackward(torch.optim.Optimizer):
        """torchtune's OptimizerInBackward: its step() is a no-op the recipe still calls after backward."""

        def __init__(self):
            super().__init__(params, {})

        def step(self, closure=None):
            pass

    if in_backward:
        for p in params:
            p.register_post_accumulate_grad_hook(hook)
        whole = InBackward()
    gen = torch.Generator().manual_seed(1)
    with capture(str(path)) as cap:
        for _ in range(3):
            model(torch.randn(4, 8, generator=gen)).square().mean().backward()
            whole.step()
            whole.zero_grad()
    return cap


def test_optimizers_stepped_inside_backward_make_one_step_per_backward(tmp_path):
    """Each hook's ``optimizer.step()`` ended a step: three iterations read as twelve steps, and the optimizer's
    ops, run by the autograd engine, as backward ops (the rules that hold for optimizer ops missed them). The same
    training with the optimizer stepped after backward is the expectation."""
    after = _train_three_steps(tmp_path / "after", in_backward=False)
    inside = _train_three_steps(tmp_path / "inside", in_backward=True)
    assert after.step_no == inside.step_no == 3
    for step in range(3):
        want = sorted((r.name, r.phase) for r in _records(tmp_path / "after", step) if r.phase != "init")
        got = sorted((r.name, r.phase) for r in _records(tmp_path / "inside", step) if r.phase != "init")
        assert [x for x in got if x[1] == "optimizer"] == [x for x in want if x[1] == "optimizer"]
        assert {p for _, p in got} == {"forward", "backward", "optimizer"}


class SuperCallingScaler(torch.amp.GradScaler):
    """A subclass whose update() calls torch's (one update: one step, not two)."""

    def update(self, new_scale=None):
        self.updates = getattr(self, "updates", 0) + 1
        super().update(new_scale)


PRE_MADE = npu_style_scaler_class()  # made before any session started


@pytest.mark.parametrize(
    "scaler_class",
    [None, npu_style_scaler_class, lambda: PRE_MADE, lambda: SuperCallingScaler],
    ids=["torch", "npu-style-made-in-the-session", "npu-style-made-before", "calls-super"],
)
def test_a_step_the_loss_scaler_skipped_is_still_a_step(tmp_path, scaler_class):
    """Steps count optimizer.step() calls, which a skipped step makes none of: the skipped iterations and the next
    one were one step, and every later step was another iteration than the reference's of the same number."""
    cap = capture(str(tmp_path))
    skipped = fp16_scaled_training(cap, scaler_class=scaler_class)
    assert 1 <= skipped < 4  # the scaler did skip steps, and then stepped
    assert cap.step_no == 4
    for step in range(4):
        forward = [r for r in _records(tmp_path, step) if r.phase == "forward" and r.name == "aten::addmm"]
        assert len(forward) == 2  # one forward of the two Linear layers per step


class _Scale(torch.nn.Module):
    """A module kept outside the model's tree and shared by every layer (as transformers 5's hub-kernel
    ``apply_rotary_pos_emb`` is)."""

    def forward(self, x):
        return x * 2


_SHARED_SCALE = _Scale()


class _Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        return _SHARED_SCALE(self.lin(x))


def test_module_level_leaves_modules_outside_the_tree_to_their_caller(tmp_path):
    model = torch.nn.Sequential(_Layer(), _Layer())
    with torch.no_grad(), capture(str(tmp_path), level="module"):
        model(torch.randn(2, 4))
        _SHARED_SCALE(torch.randn(2, 4))  # called with nothing running: a root of its own
    names = [r.name for r in _records(tmp_path)]
    expected = [n for n, _ in model.named_modules() if n.count(".") == 1]  # 0.lin, 1.lin
    assert names == [expected[0], "0", expected[1], "1", "<root>", "<root>"]


def test_module_level_after_a_forward_that_raised(tmp_path):
    class Fails(torch.nn.Module):
        def forward(self, x):
            return _SHARED_SCALE(x).view(-1, 7)  # raises inside the model, after _SHARED_SCALE left

    model = torch.nn.Sequential(_Layer(), Fails())
    with torch.no_grad(), capture(str(tmp_path), level="module"):
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 4))
        _SHARED_SCALE(torch.randn(2, 4))  # nothing runs now: recorded as a root
    names = [r.name for r in _records(tmp_path)]
    assert names == ["0.lin", "0", "<root>"]


def test_a_checkpoint_loaded_under_the_capture_keeps_its_storages_out_of_the_records(tmp_path):
    """``torch.load`` rebuilds each tensor with ``set_(storage, offset, size, stride)``: the record keeps the
    storage's size and device, not its ``repr`` (every byte listed: an 8 MB checkpoint took 30 s to load under
    ``dump`` and wrote a 44 MB line; nanochat's tokenizer tensor showed it)."""
    weights = {"w": torch.randn(300_000), "b": torch.arange(7, dtype=torch.int64)}
    torch.save(weights, tmp_path / "ck.pt")
    with capture(str(tmp_path / "dump")):
        loaded = torch.load(tmp_path / "ck.pt")
        torch.nn.functional.linear(torch.randn(2, 7), torch.randn(3, 7)).sum()
    assert torch.equal(loaded["w"], weights["w"]) and torch.equal(loaded["b"], weights["b"])
    sets = [r for r in _records(tmp_path / "dump") if r.name.startswith("aten::set_.source_Storage")]
    got = sorted(r.args["args"][1]["storage"]["nbytes"] for r in sets)
    assert got == sorted(t.untyped_storage().nbytes() for t in weights.values()) == [56, 1_200_000]
    assert all(r.args["args"][1]["storage"]["device"] == "cpu" for r in sets)
    lines = (tmp_path / "dump" / "rank0" / "step0" / "records.jsonl").read_text().splitlines()
    assert max(map(len, lines)) < 2000


def test_an_argument_of_no_known_form_keeps_a_bounded_repr():
    from ascend_tools.precision import store

    class Long:
        def __repr__(self):
            return "x" * 10_000

    text = store.encode_arg(Long(), [])["repr"]
    assert text == "x" * store.REPR_MAX + "..."
    with pytest.raises(ValueError, match="replayable"):
        store.decode_args({"args": [store.encode_arg(store.StorageArg(8, "cpu"), [])]}, [])


class _Inner(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 6))

    def forward(self, x):
        return torch.nn.functional.linear(x, self.w)


class _Outer(torch.nn.Module):
    """Model code of its own two frames deep: the stack cache's key is the same from any caller."""

    def __init__(self):
        super().__init__()
        self.inner = _Inner()

    def forward(self, x):
        return self.inner(x)


def _evaluate(model, x):
    with torch.no_grad():
        return model(x)


def _train(model, x):
    model(x).square().mean().backward()


def test_an_evaluation_and_the_training_forward_keep_their_own_callers(tmp_path):
    """The same model code reached from an evaluation under no_grad, then from training (nanoGPT's estimate_loss,
    nanochat's evaluate_bpb, both before the first training forward of step 0): each record names its own
    caller; the stack cache named the evaluation for every training record."""
    model, x = _Outer(), torch.randn(4, 6)
    with capture(str(tmp_path)):
        _evaluate(model, x)
        _train(model, x)
    d = OurDump.find(str(tmp_path))
    callers = [
        [f.split(" in ")[-1] for f in d.stack(r.stack)]
        for r in d.records(0)
        if r.name == "aten::mm" and r.phase == "forward"
    ]
    assert len(callers) == 2
    assert "_evaluate" in callers[0] and "_train" not in callers[0]
    assert "_train" in callers[1] and "_evaluate" not in callers[1]
