"""Capture records name the right thing: a parameter cast or reloaded inside the capture is read afresh (never
its pre-cast record), parameters and their gradients carry their paths, module paths are full without
``model=`` (a submodule run alone first does not keep its short names), ops before the first forward are
phase ``init``, and a step holding only ``loss.item()`` after the last ``optimizer.step()`` is not written."""

import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.store import OurDump


class Block(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = torch.nn.LayerNorm(8)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        return x + self.proj(self.norm(x))


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([Block() for _ in range(3)])
        self.head = torch.nn.Linear(8, 2)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def records(path, step=0):
    return list(OurDump.find(str(path)).records(step))


def train(model, steps=1, dtype=torch.float32):
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(0)).to(dtype)
    for _ in range(steps):
        loss = model(x).float().pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    return loss


@pytest.mark.parametrize("cast", ["to", "half", "load_state_dict", "data_slice", "data_inplace"])
def test_a_parameter_changed_inside_the_capture_is_read_afresh(tmp_path, cast):
    """Every tensor record of a parameter holds the values the op read (an independent copy taken
    just before the optimizer step), named with its path."""
    with capture(str(tmp_path), mode="tensor"):
        torch.manual_seed(0)
        model = Net()
        if cast == "to":
            model.to(torch.bfloat16)
        elif cast == "half":
            model.half()
        elif cast == "load_state_dict":
            model.load_state_dict({k: v * 2 for k, v in model.state_dict().items()})
        else:
            # writes through a .data alias, whose version counter is not the parameter's: Hugging Face's
            # resize_token_embeddings copies the old rows into the new embedding's .data; old-style optimizers
            # update p.data in place
            with torch.no_grad():
                for p in model.parameters():
                    if cast == "data_slice":
                        p.data[:] = torch.full_like(p, 0.25)
                    else:
                        p.data.mul_(2)
        dtype = next(model.parameters()).dtype
        x = torch.randn(4, 8).to(dtype)
        model(x).float().pow(2).mean().backward()
        expected = {n: p.detach().clone() for n, p in model.named_parameters()}
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        torch.optim.SGD(model.parameters(), lr=0.1).step()
    dump = OurDump.find(str(tmp_path))
    # (the copies above, taken between the backward and the step outside every module, are the optimizer's too)
    opt = [
        r
        for r in records(tmp_path)
        if r.phase == "optimizer" and r.name not in ("aten::detach", "aten::clone")
    ]
    assert len(opt) == len(expected)
    for rec in opt:
        param, grad = rec.inputs[0], rec.inputs[1]
        assert param.name in expected and grad.name == param.name + ".grad"
        assert param.dtype == str(dtype).replace("torch.", "")
        assert torch.equal(dump.load_tensor(param, 0), expected[param.name])
        assert torch.equal(dump.load_tensor(grad, 0), grads[param.name])


def assert_forward_reads(path, before):
    """Each parameter's first forward read in steps 1 and 2 has the statistics of ``before[step]`` (NumPy copies)."""
    for step in (1, 2):
        seen = {}
        for rec in records(path, step):
            if rec.phase == "forward":
                for info in rec.inputs:
                    if info.name and not info.name.endswith(".grad"):
                        seen.setdefault(info.name, info.stats)
        assert set(seen) == set(before[step])
        for name, stats in seen.items():
            value = before[step][name]
            assert stats.max == pytest.approx(float(value.max()), rel=1e-6), (step, name)
            assert stats.mean == pytest.approx(float(value.mean()), rel=1e-5, abs=1e-7), (step, name)


def test_statistics_follow_a_data_alias_optimizer_across_steps(tmp_path):
    """Stats mode keeps a parameter's statistics into the next step while it is unwritten; an optimizer that
    updates ``p.data`` in place (no version bump of ``p``) must not leave the next forward reading the old ones.
    Expected: NumPy's statistics of a copy of each parameter taken just before that forward."""
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(4, 8)
    before = []
    with capture(str(tmp_path), mode="stats") as cap:
        for _ in range(3):
            before.append({n: p.detach().clone().numpy() for n, p in model.named_parameters()})
            model(x).pow(2).mean().backward()
            with torch.no_grad():
                for p in model.parameters():
                    p.data.add_(p.grad, alpha=-0.5)
                    p.grad = None
            cap.step()
    assert_forward_reads(tmp_path, before)


class NumpyWriteSGD(torch.optim.Optimizer):
    """Updates each parameter through a NumPy view of its memory: no op the dispatcher sees, no version bump, as a
    fused optimizer kernel called from C++ does (apex's and DeepSpeed's FusedAdam launch theirs on ``data_ptr()``)."""

    def __init__(self, params):
        super().__init__(params, {"lr": 0.5})

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.detach().numpy()[...] -= group["lr"] * p.grad.numpy()


def test_statistics_after_an_optimizer_the_dispatcher_does_not_see(tmp_path):
    """Steps counted by ``optimizer.step()``: the parameters it held are written by the step, whatever runs it, so
    the next forward reads their new values. Expected: NumPy's statistics of copies taken before each forward."""
    torch.manual_seed(0)
    model = Net()
    x = torch.randn(4, 8)
    opt = NumpyWriteSGD(model.parameters())
    before = []
    with capture(str(tmp_path), mode="stats"):
        for _ in range(3):
            before.append({n: p.detach().clone().numpy() for n, p in model.named_parameters()})
            model(x).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
    assert_forward_reads(tmp_path, before)


def test_full_module_paths_without_model_after_a_submodule_ran_alone(tmp_path):
    """No ``model=``: ``model.layers[1].proj`` run alone first (a warm-up) must not leave its ops named
    ``proj`` once the whole model runs; ops and module records name ``layers.N.…``."""
    torch.manual_seed(0)
    model, x = Net(), torch.randn(4, 8)
    with capture(str(tmp_path / "op")), capture(str(tmp_path / "module"), level="module"):
        model.layers[1](x)
        train(model)
    ops = [r for r in records(tmp_path / "op") if r.phase in ("forward", "backward")]
    warm = next(i for i, r in enumerate(ops) if r.module.startswith("layers.0"))
    later = {r.module for r in ops[warm:]}
    assert {"layers.0.norm", "layers.1.proj", "layers.2.proj", "head"} <= later
    assert not {m for m in later if m and not m.startswith(("layers.", "head"))}, later
    mods = [r.name for r in records(tmp_path / "module") if r.phase == "forward"]
    assert mods[:3] == ["norm", "proj", "<root>"]  # the warm-up itself: a root
    assert "layers.1.proj" in mods[3:] and "proj" not in mods[3:]
    grads = {r.name for r in records(tmp_path / "module") if r.name.endswith(".grad")}
    assert "layers.1.proj.weight.grad" in grads and "proj.weight.grad" not in grads


def test_ops_before_the_first_forward_are_init_and_a_trailing_item_is_no_step(tmp_path):
    with capture(str(tmp_path)):
        torch.manual_seed(0)
        model = Net()
        loss = train(model, steps=2)
        loss.item()
    dump = OurDump.find(str(tmp_path))
    assert dump.steps() == [0, 1]
    step0 = records(tmp_path, 0)
    phases = [r.phase for r in step0]
    first_forward = phases.index("forward")
    assert set(phases[:first_forward]) == {"init"} and "init" not in phases[first_forward:]
    init_ops = {r.name.split("::")[1].split(".")[0] for r in step0[:first_forward]}
    assert {"empty", "uniform_"} <= init_ops  # nn.Linear's reset_parameters
    assert "init" not in {r.phase for r in records(tmp_path, 1)}


@pytest.mark.parametrize("level", ["op", "mix"])
def test_a_model_replaced_inside_the_capture_is_freed_and_its_successor_keeps_the_names(tmp_path, level):
    """pytorch/examples' word_language_model trains, saves, then ``model = torch.load(f)`` and evaluates: the
    capture must not keep the first model alive (on a device that is its memory, for the rest of the run), and
    the model that replaced it is named as it was (``layers.0.norm``), not as a second model beside it
    (``model.layers.0.norm``), so its parameters pair with the first reads of the same names."""
    import copy
    import gc
    import weakref

    torch.manual_seed(0)
    x = torch.randn(4, 8)
    with capture(str(tmp_path), level=level):
        model = Net()
        train(model)
        first = weakref.ref(model)
        model = copy.deepcopy(model)  # what torch.load(f) of the saved model gives
        gc.collect()
        assert first() is None
        with torch.no_grad():
            model(x)
    after = [r for r in records(tmp_path, 1) if r.kind == "op"]  # step 1: after the optimizer's step
    assert {r.module for r in after} >= {"layers.0.norm", "layers.2.proj", "head"}
    assert not [r.module for r in after if r.module.startswith("model")]
    names = {i.name for r in after for i in r.inputs if i.name}
    assert "layers.1.proj.weight" in names and "head.bias" in names
