"""trace.run_traced on small meta-device models, checked against the torch dispatcher and profiler."""

import importlib.util
import inspect

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools.opcheck import support, trace

VERSION = "2.14"


def _expand_2_14(op):
    return not support.has_npu_kernel(op, VERSION) and support.has_composite_explicit(op)


def _base(name):
    """``aten::empty.memory_format`` -> ``empty`` (the profiler names ops without their overload)."""
    return name.split("::")[-1].split(".")[0]


class _Recorder(TorchDispatchMode):
    """The plainest possible dispatch recorder: the reference the tracer is compared with."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(trace.op_name(func))
        return func(*args, **(kwargs or {}))


class CumMax(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(5, 5)

    def forward(self, x):
        values, _ = torch.cummax(self.lin(x), 0)
        return values


def _profiler_children(fn, name):
    """Names of the ops the CPU kernel of ``name`` dispatches (one level down), from torch.profiler."""
    with torch.autograd.profiler.profile() as prof:
        fn()
    top = next(e for e in prof.function_events if e.name == name and e.cpu_parent is None)
    return top, [c.name for c in top.cpu_children]


def test_cummax_is_expanded_into_its_composite_decomposition():
    # the dispatcher: cummax has no backend kernel of its own, only CompositeExplicitAutograd
    assert torch._C._dispatch_has_kernel_for_dispatch_key("aten::cummax", "CompositeExplicitAutograd")
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("aten::cummax", "CPU")
    x_cpu = torch.randn(4, 5)
    top, children = _profiler_children(lambda: torch.cummax(x_cpu, 0), "aten::cummax")
    grandchildren = [g.name for c in top.cpu_children for g in c.cpu_children]

    with torch.device("meta"):
        model, x = CumMax(), torch.randn(4, 5)
    result = trace.run_traced(model, lambda: model(x), expand=_expand_2_14)
    assert not result.error
    ops = [e.op for e in result.events]
    assert "aten::cummax" in ops
    via = [e for e in result.events if e.via == "aten::cummax"]
    assert via, "cummax was not expanded"
    # the same ops, in the same order, as the CPU profiler shows under aten::cummax
    assert [_base(e.op) for e in via] == [_base(n) for n in children]

    # cummax.out has no torch_npu 2.14 kernel either, so it is expanded too: its composite kernel calls
    # what the CPU profiler shows below cummax.out, aten::_cummax_helper, which has no meta kernel (the
    # trace keeps the children up to it) and does have a torch_npu kernel
    assert "aten::_cummax_helper" in grandchildren
    assert not support.has_npu_kernel("aten::cummax.out", VERSION)
    assert support.has_npu_kernel("aten::_cummax_helper", VERSION)
    assert not torch._C._dispatch_has_kernel_for_dispatch_key("aten::_cummax_helper", "Meta")
    deeper = [e.op for e in result.events if e.via == "aten::cummax.out"]
    assert [_base(n) for n in deeper] == [n.split("::")[-1] for n in grandchildren]
    helper = [e for e in result.events if e.op == "aten::_cummax_helper"]
    assert len(helper) == 1 and helper[0].via and helper[0].phase == "forward"
    # the trace went on after the failed expansion: the backward of cummax ran
    assert any(e.phase == "backward" for e in result.events)


def test_without_expand_cummax_is_one_event():
    with torch.device("meta"):
        model, x = CumMax(), torch.randn(4, 5)
    result = trace.run_traced(model, lambda: model(x), backward=False)
    assert [e.op for e in result.events if "cummax" in e.op] == ["aten::cummax"]
    assert not any(e.via for e in result.events if "cummax" in e.op)


class Relu(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 8)

    def forward(self, x):
        return torch.relu(self.lin(x))


def test_phases_forward_and_backward():
    with torch.device("meta"):
        model, x = Relu(), torch.randn(2, 8)
    # reference: what autograd runs for ReLU's backward, recorded on CPU
    cpu_model = Relu()
    rec = _Recorder()
    out = cpu_model(torch.randn(2, 8)).sum()
    with rec:
        out.backward()
    assert "aten::threshold_backward" in rec.ops

    result = trace.run_traced(model, lambda: model(x))
    assert not result.error
    phases = {}
    for e in result.events:
        phases.setdefault(e.op, set()).add(e.phase)
    assert phases["aten::threshold_backward"] == {"backward"}
    assert phases["aten::relu"] == {"forward"}
    assert phases["aten::addmm"] == {"forward"}

    fwd_only = trace.run_traced(model, lambda: model(x), backward=False)
    assert {e.phase for e in fwd_only.events} == {"forward"}
    assert "aten::threshold_backward" not in {e.op for e in fwd_only.events}


class MLP(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.up = torch.nn.Linear(dim, 2 * dim)
        self.down = torch.nn.Linear(2 * dim, dim)

    def forward(self, x):
        return self.down(torch.nn.functional.gelu(self.up(x)))


class Layer(torch.nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.norm = torch.nn.LayerNorm(dim)
        self.mlp = MLP(dim)

    def forward(self, x):
        return x + self.mlp(x=self.norm(x))  # keyword tensors, as Hugging Face layers pass them


class Inner(torch.nn.Module):
    def __init__(self, dim, n):
        super().__init__()
        self.proj_in = torch.nn.Linear(dim, dim)
        self.layers = torch.nn.ModuleList(Layer(dim) for _ in range(n))

    def forward(self, x):
        x = self.proj_in(x)
        for layer in self.layers:
            x = layer(x)
        return x


class Outer(torch.nn.Module):
    def __init__(self, dim=8, n=2):
        super().__init__()
        self.model = Inner(dim, n)

    def forward(self, x):
        return self.model(x)


def test_module_paths_forward_and_backward():
    with torch.device("meta"):
        model, x = Outer(), torch.randn(2, 8)
    names = dict(model.named_modules())
    assert "model.layers.1.mlp" in names and "model.layers.1.mlp.up" in names
    result = trace.run_traced(model, lambda: model(x))
    assert not result.error
    # every recorded path is a real submodule name (or the root)
    assert {e.module for e in result.events} <= set(names)

    fwd = [e for e in result.events if e.phase == "forward"]
    gelu = [e for e in fwd if e.op == "aten::gelu"]
    assert sorted(e.module for e in gelu) == ["model.layers.0.mlp", "model.layers.1.mlp"]
    mm = [e.module for e in fwd if e.op == "aten::addmm"]
    assert mm == [
        "model.proj_in",
        "model.layers.0.mlp.up",
        "model.layers.0.mlp.down",
        "model.layers.1.mlp.up",
        "model.layers.1.mlp.down",
    ]
    norms = [e.module for e in fwd if e.op == "aten::native_layer_norm"]
    assert norms == ["model.layers.0.norm", "model.layers.1.norm"]

    if importlib.util.find_spec("torch.utils.module_tracker") is None:
        return  # torch < 2.3 attributes backward ops to the root
    bwd = [e for e in result.events if e.phase == "backward"]
    gelu_bwd = [e.module for e in bwd if e.op == "aten::gelu_backward"]
    assert sorted(gelu_bwd) == ["model.layers.0.mlp", "model.layers.1.mlp"]
    ln_bwd = [e.module for e in bwd if e.op == "aten::native_layer_norm_backward"]
    assert sorted(ln_bwd) == ["model.layers.0.norm", "model.layers.1.norm"]
    # the first module's backward runs last; the modules called with keyword tensors were left by then
    first = [e.module for e in bwd if e.op == "aten::mm"][-1]
    assert first == "model.proj_in"


class Attn(torch.nn.Module):
    def forward(self, q, k, v):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def test_sdpa_is_one_parent_event_with_tagged_decomposition():
    with torch.device("meta"):
        q, k, v = (torch.randn(1, 2, 8, 16, requires_grad=True) for _ in range(3))
    model = Attn()
    # reference: what SDPA dispatches on meta tensors, recorded by a bare dispatch mode
    rec = _Recorder()
    with rec:
        F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert rec.ops and "aten::scaled_dot_product_attention" not in rec.ops  # CompositeImplicit: decomposed

    result = trace.run_traced(model, lambda: model(q, k, v))
    assert not result.error
    parents = [i for i, e in enumerate(result.events) if e.is_parent]
    assert len(parents) == 1
    p = parents[0]
    assert result.events[p].op == "aten::scaled_dot_product_attention"
    assert result.events[p].dtypes == ("float32",) * 3
    assert result.events[p].shapes == ((1, 2, 8, 16),) * 3
    children = [e.op for e in result.events if e.parent == p]
    assert children == rec.ops
    # the tagged events follow the parent directly, and nothing in backward is tagged
    assert [i for i, e in enumerate(result.events) if e.parent == p] == list(
        range(p + 1, p + 1 + len(children))
    )
    assert all(e.parent == -1 for e in result.events if e.phase == "backward")


class Item(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, x):
        y = torch.relu(self.lin(x))
        n = int(y.sum().item())
        return y * n


def test_item_on_meta_reads_one_and_is_reported_as_assumed():
    # reference: the op .item() dispatches to, recorded on a CPU tensor
    rec = _Recorder()
    t = torch.ones(2).sum()
    with rec:
        t.item()
    assert len(rec.ops) == 1
    item_op = rec.ops[0]

    with torch.device("meta"):
        model, x = Item(), torch.randn(2, 4)
    result = trace.run_traced(model, lambda: model(x))
    assert not result.error
    ops = [e.op for e in result.events]
    assert item_op in ops
    forward = ops[: ops.index(item_op) + 2]
    assert "aten::addmm" in forward and "aten::relu" in forward and forward[-1] == "aten::mul.Tensor"
    assert "aten::threshold_backward" in ops  # the trace went on into backward
    assert list(result.assumed) == [item_op]
    line = inspect.getsourcelines(Item.forward)[1] + 2  # n = int(y.sum().item())
    assert result.assumed[item_op].endswith(f"test_trace.py:{line} in forward")


def test_nonzero_on_meta_assumes_every_element_nonzero():
    """Mixtral's expert loop in transformers 4.x: ``for i in mask.nonzero(): experts[i](...)`` runs every
    expert once, as it would if every expert got a token."""

    class Experts(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.experts = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(3))

        def forward(self, x, hit):
            out = x
            for (i,) in hit.nonzero():
                out = out + self.experts[i](x)
            return out

    with torch.device("meta"):
        model, x, hit = Experts(), torch.randn(2, 4), torch.ones(3, dtype=torch.bool)
    result = trace.run_traced(model, lambda: model(x, hit), backward=False)
    assert not result.error
    forward = [e for e in result.events if e.phase == "forward"]
    assert sum(e.op == "aten::addmm" for e in forward) == 3
    assert set(result.assumed) == {"aten::nonzero", "aten::_local_scalar_dense"}


def test_scalar_loss_uses_output_loss_or_first_float():
    class Out:
        loss = torch.tensor(2.0, requires_grad=True)

    assert trace.scalar_loss(Out()) is Out.loss
    x = torch.ones(3, requires_grad=True)
    loss = trace.scalar_loss({"ids": torch.ones(2, dtype=torch.long), "y": x * 2})
    assert loss.detach().item() == pytest.approx(6.0)
    with pytest.raises(ValueError):
        trace.scalar_loss((torch.ones(2, dtype=torch.long),))


class _RotaryLike(torch.nn.Module):
    """What transformers 4.x's rotary embeddings do: autocast off, entered with the input's device type."""

    def forward(self, x):
        with torch.autocast(device_type=x.device.type, enabled=False):
            return x.float().sin()


def test_autocast_entered_on_the_meta_device_does_not_stop_the_trace():
    model = _RotaryLike()
    x = torch.empty(2, 3, device="meta", requires_grad=True)
    result = trace.run_traced(model, lambda: model(x), backward=True)
    assert not result.error
    assert [e.op for e in result.events if e.op in ("aten::sin", "aten::cos")] == ["aten::sin", "aten::cos"]
    assert torch.autocast is torch.amp.autocast_mode.autocast  # restored after the trace
