"""ModulePath: forward from the module stack, backward from the module whose forward made the autograd node,
checked against known answers for a two-block model (which module runs each op, and the order in which the
autograd engine runs the nodes), for modules outside the model's tree (a singleton, one kept in a list) and,
from the Python frames, for Hugging Face Llama's ``apply_rotary_pos_emb``."""

import sys

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


class Twice(torch.nn.Module):
    """A function made a module, as Hugging Face's ``kernels`` does: one instance, no parent."""

    def forward(self, x):
        return torch.sin(x) * 2


TWICE = Twice()


class Gate(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.sigmoid(self.inner(x))


class Layer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(4, 4)
        self.gates = [Gate()]  # a plain list: not a child, so not named

    def forward(self, x):
        return self.gates[0](TWICE(self.proj(x)))


class Layers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([Layer(), Layer()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x.sum()


def test_modules_outside_the_tree_belong_to_their_caller():
    """A singleton called from two layers counts to each layer in turn, forward and backward, and so does a
    module kept in a list, its child included."""
    torch.manual_seed(0)
    seen = _run(Layers(), torch.randn(3, 4))
    assert [m for op, ph, m, _ in seen if op == "aten::sin"] == ["layers.0", "layers.1"]
    # SinBackward0 runs cos: the last layer's first
    assert [m for op, ph, m, _ in seen if op == "aten::cos"] == ["layers.1", "layers.0"]
    # each layer: its proj, then the gate's inner Linear, which counts to the layer
    fwd_addmm = [m for op, ph, m, _ in seen if op == "aten::addmm"]
    assert fwd_addmm == ["layers.0.proj", "layers.0", "layers.1.proj", "layers.1"]
    assert [m for op, ph, m, _ in seen if op == "aten::sigmoid_backward"] == ["layers.1", "layers.0"]
    bwd_mm = {m for op, ph, m, node in seen if op == "aten::mm" and node == "AddmmBackward0"}
    assert bwd_mm == set(fwd_addmm)


def test_a_module_called_with_nothing_running_is_a_root():
    """At top level the singleton is a root, and inside a layer it is not, whichever it met first; an unnamed
    root's modules are named from it."""
    torch.manual_seed(0)
    model, x = Layers(), torch.randn(3, 4, requires_grad=True)
    with ModulePath() as paths, Seen(paths) as mode:
        paths.name_modules(model)
        loss = TWICE(x).sum() + model(x) + TWICE(x).sum()
        loss.backward()
        Gate()(x)
    seen = mode.seen
    assert [m for op, ph, m, _ in seen if op == "aten::sin"] == ["", "layers.0", "layers.1", ""]
    assert sorted(m for op, ph, m, _ in seen if op == "aten::cos") == ["", "", "layers.0", "layers.1"]
    assert [m for op, ph, m, _ in seen if op == "aten::addmm"][-1] == "inner"


def _callers(frame, names):
    """The ``self`` of each frame running a function called one of ``names``, innermost first."""
    out = []
    while frame is not None:
        if frame.f_code.co_name in names:
            out.append(frame.f_locals.get("self"))
        frame = frame.f_back
    return out


class SeenRope(Seen):
    """Seen, plus whether each forward op runs in ``apply_rotary_pos_emb`` and the attention module whose
    forward called it (from the Python frames)."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        frame = sys._getframe()
        rope = bool(_callers(frame, {"apply_rotary_pos_emb"}))
        attention = next(
            (s for s in _callers(frame, {"forward"}) if type(s).__name__ == "LlamaAttention"), None
        )
        out = super().__torch_dispatch__(func, types, args, kwargs)
        self.seen[-1] += (rope, attention)
        return out


def test_hugging_face_rope_belongs_to_its_attention():
    """transformers 5 with ``kernels`` makes ``apply_rotary_pos_emb`` a module outside the model: its ops
    (and their backward) count to the attention module that calls it."""
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    names = {m: n for n, m in model.named_modules()}
    ids = torch.randint(0, 64, (1, 6))
    with ModulePath() as paths, SeenRope(paths) as mode:
        paths.name_modules(model)
        model(input_ids=ids, labels=ids).loss.backward()
    rope = [(op, m, names[attention]) for op, ph, m, node, is_rope, attention in mode.seen if is_rope]
    assert {op for op, _, _ in rope} >= {"aten::mul.Tensor", "aten::neg", "aten::cat", "aten::slice.Tensor"}
    assert [m for _, m, _ in rope] == [expected for _, _, expected in rope]
    assert {m for _, m, _ in rope} == {"model.layers.0.self_attn", "model.layers.1.self_attn"}
    # rotate_half's neg is Llama's only one: NegBackward0 counts to the same modules
    fwd_neg = sorted(m for op, m, _ in rope if op == "aten::neg")
    assert sorted(m for op, ph, m, node, *_ in mode.seen if node == "NegBackward0") == fwd_neg


@pytest.mark.parametrize("reentrant", [True, False])
def test_backward_ops_under_activation_checkpointing_get_their_module(reentrant):
    """Each block checkpointed (``torch.utils.checkpoint``, as Hugging Face's ``gradient_checkpointing_enable``
    does, reentrant by default in transformers 4.x): the forward runs again inside backward. The recomputed ops
    and the backward ops of the nodes they make belong to the block's modules, as without checkpointing."""
    from torch.utils.checkpoint import checkpoint

    class Checkpointed(Net):
        def forward(self, x):
            h = checkpoint(self.a, x, use_reentrant=reentrant)
            return checkpoint(self.b, h, use_reentrant=reentrant).square().sum()

    torch.manual_seed(0)
    model, x = Checkpointed(), torch.randn(3, 4, requires_grad=True)
    seen = _run(model, x)
    assert [m for op, ph, m, _ in seen if op == "aten::tanh_backward"] == ["b", "a"]
    bwd_mm = [m for op, ph, m, node in seen if op == "aten::mm" and node == "AddmmBackward0"]
    assert set(bwd_mm) == {"a.up", "a.down", "b.up", "b.down"}
    # the recomputed forward ops (run while the engine runs the checkpoint's node) name their module too
    recomputed = [m for op, ph, m, _ in seen if op == "aten::tanh" and ph == "backward"]
    assert recomputed == ["b", "a"]


class Trainer:
    """Holds a policy and a frozen copy, as TRL's DPOTrainer holds ``model`` and ``ref_model``."""

    def __init__(self):
        torch.manual_seed(0)
        self.model = Net()
        self.ref_model = Net()


def _addmm_modules(run):
    trainer = Trainer()
    x = torch.randn(3, 4)
    with ModulePath() as paths, Seen(paths) as mode:
        run(trainer, x)
    return [m for op, ph, m, _ in mode.seen if op == "aten::addmm" and ph == "forward"]


def test_a_second_model_with_the_same_module_names_is_named_by_what_holds_it():
    """DPO's policy and reference model, a distillation's student and teacher: before, both were named from ""
    (``a.up`` for either model's layer), and a culprit in the reference model named the policy's module."""

    def step(trainer, x):
        trainer.model(x)
        with torch.no_grad():
            trainer.ref_model(x)

    names = _addmm_modules(step)
    assert names == ["a.up", "a.down", "b.up", "b.down"] + [
        f"ref_model.{n}" for n in ("a.up", "a.down", "b.up", "b.down")
    ]


def test_a_second_model_held_by_no_name_is_root_n_and_a_loss_module_keeps_its_names():
    trainer = Trainer()
    models = [trainer.model, trainer.ref_model]  # a list: no dict holds them by name
    del trainer
    criterion = torch.nn.Linear(4, 4)  # a module that runs outside the model: its own names, no clash
    x = torch.randn(3, 4)
    with ModulePath() as paths, Seen(paths) as mode:
        models[0](x)
        criterion(x)
        models[1](x)
        models[0](x)
    seen = [m for op, ph, m, _ in mode.seen if op == "aten::addmm"]
    assert seen[4] == "" and seen[5:9] == ["root3.a.up", "root3.a.down", "root3.b.up", "root3.b.down"]
    assert seen[9:] == seen[:4] == ["a.up", "a.down", "b.up", "b.down"]  # the first model keeps its names
