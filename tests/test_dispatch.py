"""ModulePath: forward from the module stack, backward from the module whose forward made the autograd node,
checked against known answers for a two-block model (which module runs each op, and the order in which the
autograd engine runs the nodes)."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools.dispatch import ModulePath, op_name


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.up = torch.nn.Linear(4, 8)
        self.down = torch.nn.Linear(8, 4)

    def forward(self, hidden=None):  # called with a keyword tensor, as Hugging Face does
        return self.down(torch.tanh(self.up(hidden)))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = Block()
        self.b = Block()

    def forward(self, x):
        return self.b(hidden=self.a(hidden=x)).square().sum()


class Seen(TorchDispatchMode):
    """(op, phase, module) for every op; the module from ModulePath."""

    def __init__(self, paths):
        super().__init__()
        self.paths, self.seen = paths, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        node = torch._C._current_autograd_node()
        self.seen.append(
            (
                op_name(func),
                "backward" if node is not None else "forward",
                self.paths.current(),
                node.name() if node is not None else "",
            )
        )
        return func(*args, **(kwargs or {}))


def _run(model, x, n_forward=1, name=True):
    with ModulePath() as paths, Seen(paths) as mode:
        if name:
            paths.name_modules(model)
        loss = sum(model(x) for _ in range(n_forward))
        loss.backward()
    return mode.seen


def test_backward_ops_get_the_module_of_their_forward():
    torch.manual_seed(0)
    model, x = Net(), torch.randn(3, 4)
    seen = _run(model, x)
    fwd_tanh = [m for op, ph, m, _ in seen if op == "aten::tanh" and ph == "forward"]
    assert fwd_tanh == ["a", "b"]
    # TanhBackward0 runs tanh_backward: the module of the tanh that made it, b's first (backward order)
    assert [m for op, ph, m, _ in seen if op == "aten::tanh_backward"] == ["b", "a"]
    # the addmm of each Linear makes AddmmBackward0, whose mm ops belong to that Linear
    bwd_mm = [m for op, ph, m, node in seen if op == "aten::mm" and node == "AddmmBackward0"]
    assert set(bwd_mm) == {"a.up", "a.down", "b.up", "b.down"} and bwd_mm[:2] == ["b.down", "b.down"]
    # the loss ops outside any block belong to the root
    assert {m for op, ph, m, node in seen if node in ("SumBackward0", "PowBackward0")} == {""}


def test_two_forwards_then_one_backward():
    """Gradient accumulation in one graph: each forward's nodes keep their own module."""
    torch.manual_seed(0)
    model, x = Net(), torch.randn(3, 4)
    seen = _run(model, x, n_forward=2)
    # the engine runs the second forward's chain (higher sequence numbers) first, each chain b then a
    assert [m for op, ph, m, _ in seen if op == "aten::tanh_backward"] == ["b", "a", "b", "a"]
    bwd_mm = [m for op, ph, m, node in seen if op == "aten::mm" and node == "AddmmBackward0"]
    assert bwd_mm[:7] == bwd_mm[7:] == ["b.down", "b.down", "b.up", "b.up", "a.down", "a.down", "a.up"]


def test_names_without_a_root_and_a_raising_forward():
    class Boom(torch.nn.Module):
        def forward(self, x):
            raise ValueError("no")

    torch.manual_seed(0)
    model, x = Net(), torch.randn(3, 4)
    with ModulePath() as paths:
        with pytest.raises(ValueError):
            Boom()(x)
        assert paths.current() == ""  # the raising module was left
        with Seen(paths) as mode:
            model(x)
    assert {m for op, ph, m, _ in mode.seen if op == "aten::addmm"} == {"a.up", "a.down", "b.up", "b.down"}


def test_forget_and_hooks_removed():
    model, x = Net(), torch.randn(3, 4)
    paths = ModulePath()
    with paths:
        with Seen(paths):
            model(x)
        assert paths._by_seq
        paths.forget()
        assert not paths._by_seq
    with Seen(paths) as mode:
        model(x)
    assert {m for _, _, m, _ in mode.seen} == {""}  # after exit no module is entered any more
