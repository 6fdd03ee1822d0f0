"""What torchtune's single-device full-finetune recipe needs of the check-ops child (issue 12, corpus
``torchtune_full``): its optimizer in the backward pass, a CUDA-only optimizer named in its YAML config, and
a scaled RoPE that defers its cache on meta. Tiny stand-ins for torchtune's code are built here (torchtune
is not a dependency of the project); the corpus trace runs the real recipe."""

import importlib
import sys
import textwrap

import pytest
import torch

from ascend_tools.opcheck import fake_accelerator, standins, step_trace


def _in_backward_optimizers(model: torch.nn.Module) -> None:
    """torchtune.modules.optim.OptimizerInBackward: one AdamW per parameter, stepped from its
    post-accumulate-grad hook."""
    for p in model.parameters():
        opt = torch.optim.AdamW([p], lr=1e-3)

        def step(param: torch.Tensor, opt: torch.optim.Optimizer = opt) -> None:
            opt.step()
            opt.zero_grad()

        p.register_post_accumulate_grad_hook(step)


def test_an_optimizer_stepped_in_backward_ends_the_step_with_the_backward_pass():
    """Every parameter's update is traced, and the whole backward: the first parameter's step (the last
    layer's) no longer stops the trace before the first layer's gradients."""
    with fake_accelerator.fake_node(1), step_trace.StepTrace().active() as trace:
        model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.SiLU(), torch.nn.Linear(8, 2)).cuda()
        _in_backward_optimizers(model)
        loss = model(torch.ones(3, 4).cuda()).sum()
        with pytest.raises(step_trace.StepDone):
            loss.backward()
    ops = [e.op for e in trace.ops.events]
    assert trace.phase == "done" and trace.optimizer == "AdamW"
    lerp = "aten::_foreach_lerp_.Scalar"  # AdamW's exp_avg update (foreach, as on CUDA), once per parameter
    assert ops.count(lerp) == 4
    assert "aten::silu_backward" in ops  # the backward went past the last layer
    assert ops.index("aten::silu_backward") < max(i for i, op in enumerate(ops) if op == lerp)
    assert {e.phase for e in trace.ops.events if e.op == lerp} == {"optimizer"}


def test_a_gradient_hook_sends_tensors_to_the_gradients_device():
    """GaLore's projector, stepped from a post-accumulate-grad hook, moves its projection matrix to
    ``grad.device.type`` ("cuda" to the user's code): the backward pass runs without the fake node's
    function mode (``Tensor.backward`` went through it), so the hook gets it back."""
    moved = []

    def hook(param: torch.Tensor) -> None:
        moved.append(torch.ones(2, 2).to(param.grad.device.type))

    with fake_accelerator.fake_node(1):
        model = torch.nn.Linear(4, 2).cuda()
        model.weight.register_post_accumulate_grad_hook(hook)
        model(torch.ones(3, 4).cuda()).sum().backward()
    assert [t.device.type for t in moved] == ["meta"]


def test_a_cuda_only_optimizer_named_in_the_config_is_stood_in_for_when_a_library_imports_it(tmp_path):
    """torchtune's config.instantiate imports ``bitsandbytes.optim`` by string from site-packages; the
    user named it in the YAML, so the stand-in answers (a library's own probe still finds it absent)."""
    from ascend_tools.opcheck import config_components

    (tmp_path / "cfg.yaml").write_text(
        "optimizer:\n  _component_: bitsandbytes.optim.PagedAdamW8bit\n  lr: 2e-5\n"
    )
    args = [
        "--config",
        "cfg.yaml",
        "loss._component_=torchtune.modules.loss.LinearCrossEntropyLoss",
        "seed=1",
    ]
    named = config_components.named_paths(args, str(tmp_path))
    assert named == {"bitsandbytes.optim.PagedAdamW8bit", "torchtune.modules.loss.LinearCrossEntropyLoss"}
    assert config_components.names_module(named, "bitsandbytes")
    assert not config_components.names_module(named, "bitsandbytes.nn")

    site = tmp_path / "site-packages" / "configlib"  # an installed library: its imports are not the user's
    site.mkdir(parents=True)
    (site / "__init__.py").write_text(
        "import importlib\ndef component(path):\n"
        "    module, _, name = path.rpartition('.')\n"
        "    return getattr(importlib.import_module(module), name)\n"
    )
    sys.path.insert(0, str(site.parent))
    finder = standins.StandInFinder(standins.Recorder(), named=sorted(named))
    sys.meta_path.append(finder)
    try:
        cls = importlib.import_module("configlib").component("bitsandbytes.optim.PagedAdamW8bit")
        opt = cls([torch.nn.Parameter(torch.ones(2))], lr=2e-5)
        assert isinstance(opt, torch.optim.AdamW)
        with pytest.raises(ImportError):
            importlib.import_module("configlib").component("flash_attn.flash_attn_func")
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(site.parent))
        for name in [
            n for n in sys.modules if n.split(".")[0] in ("configlib", "bitsandbytes", "flash_attn")
        ]:
            del sys.modules[name]


#: torchtune.models.llama3_1._position_embeddings.Llama3ScaledRoPE, reduced to what the patch relies on
_ROPE = """
import torch
class Llama3ScaledRoPE(torch.nn.Module):
    def __init__(self, dim, max_seq_len=4096, base=10_000):
        super().__init__()
        self.dim, self.base, self.max_seq_len = dim, base, max_seq_len
        self.is_cache_built = False
        self.rope_init()

    def rope_init(self):
        freqs = 1.0 / (self.base ** (torch.arange(0, self.dim, 2)[: (self.dim // 2)].float() / self.dim))
        if freqs.is_meta:
            return
        self.register_buffer("theta", freqs, persistent=False)
        self.build_rope_cache(self.max_seq_len)
        self.is_cache_built = True

    def build_rope_cache(self, max_seq_len):
        seq_idx = torch.arange(max_seq_len, dtype=self.theta.dtype, device=self.theta.device)
        idx_theta = torch.einsum("i, j -> ij", seq_idx, self.theta).float()
        self.register_buffer("cache", torch.stack([torch.cos(idx_theta), torch.sin(idx_theta)], dim=-1), persistent=False)
"""


def test_a_scaled_rope_built_on_the_fake_device_has_its_cache(tmp_path, monkeypatch):
    from ascend_tools.opcheck import torchtune_fake

    pkg = tmp_path / "torchtune" / "models" / "llama3_1"
    pkg.mkdir(parents=True)
    for d in (pkg.parent.parent, pkg.parent, pkg):
        (d / "__init__.py").write_text("")
    (pkg / "_position_embeddings.py").write_text(textwrap.dedent(_ROPE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    torchtune_fake.install()
    try:
        from torchtune.models.llama3_1._position_embeddings import Llama3ScaledRoPE

        with fake_accelerator.fake_node(1), torch.device("cuda"):
            rope = Llama3ScaledRoPE(dim=16, max_seq_len=32)
        assert rope.is_cache_built
        assert rope.cache.shape == (32, 8, 2) and rope.cache.dtype == torch.float32 and rope.cache.is_meta
        real = Llama3ScaledRoPE(dim=16, max_seq_len=32)  # on the host the original builds it itself
        assert real.cache.shape == (32, 8, 2) and not real.cache.is_meta
    finally:
        for name in [n for n in sys.modules if n.split(".")[0] == "torchtune"]:
            del sys.modules[name]


def test_torchtunes_own_scaled_rope_on_the_fake_device(monkeypatch):
    """The same with torchtune itself (its venv: tests/data/checkops_corpus/make_venv_torchtune.sh)."""
    embeddings = pytest.importorskip("torchtune.models.llama3_1._position_embeddings")
    from ascend_tools.opcheck import torchtune_fake

    monkeypatch.setattr(embeddings.Llama3ScaledRoPE, "rope_init", embeddings.Llama3ScaledRoPE.rope_init)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    torchtune_fake.install()
    with fake_accelerator.fake_node(1), torch.device("cuda"):
        rope = embeddings.Llama3ScaledRoPE(dim=16, max_seq_len=32)
        out = rope(torch.ones(2, 5, 4, 16))
    assert rope.cache.shape == (32, 8, 2) and out.shape == (2, 5, 4, 16) and out.is_meta
