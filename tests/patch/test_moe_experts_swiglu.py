"""Every MoE expert's SwiGLU runs the swiglu op: transformers 5's fused 3-D experts through their
``_apply_gate`` hook (grouped_mm / batched_mm, routing left to HF), transformers 4's Mixtral expert MLP
(``w2(silu(w1 x) * w3 x)``) through its forward. Loss and gradients against the unpatched model are in
``test_fused_mlp_loss.py``; here: the op is really reached, once per MoE layer with every routed row, and
gives HF's experts output and gradients exactly (the reference tier runs HF's kernels)."""

import importlib

import pytest
import torch
import transformers
from test_fused_mlp_loss import FAMILIES, batch
from test_patch import tiny_config

import ascend_tools.ops.swiglu as swiglu_ops
import ascend_tools.patch as patch
from ascend_tools.patch import hf, swiglu_mlp

# transformers 4.x keeps routed experts as MLP modules (patched as MLP classes): no fused 3-D experts there
FUSED_EXPERTS = int(transformers.__version__.split(".")[0]) >= 5
needs_fused_experts = pytest.mark.skipif(
    not FUSED_EXPERTS,
    reason="transformers 4.x has no fused experts (its expert MLPs are covered as MLP classes)",
)

MOE_LAYERS = {
    "mixtral": 2,
    "qwen3_moe": 1,
    "deepseek_v3": 1,
    "qwen2_moe": 1,
    "hunyuan_v1_moe": 2,
    "dots1": 1,
}  # tiny configs: 2 layers, all MoE or the first dense
MOE = [f for f in MOE_LAYERS if f in FAMILIES]


@pytest.fixture(autouse=True)
def clean():
    patch.revert()
    yield
    patch.revert()


def experts_of(model):
    return [m for m in model.modules() if type(m).__name__.endswith("Experts")]


@needs_fused_experts
@pytest.mark.parametrize("impl", ["grouped_mm", "batched_mm"])
@pytest.mark.parametrize("family", MOE)
def test_every_moe_layer_gates_its_routed_rows_with_the_op(family, impl, monkeypatch):
    calls = []

    def counting(gate, up):
        calls.append(tuple(gate.shape))
        return torch.nn.functional.silu(gate) * up

    monkeypatch.setattr(swiglu_ops, "swiglu", counting)
    hf.patch_all(("swiglu",))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family), experts_implementation=impl)
    if not experts_of(model):
        pytest.skip("this transformers keeps experts as MLP modules (covered by the MLP classes)")
    ids, mask, _ = batch()
    model(input_ids=ids, attention_mask=mask)
    cfg = model.config
    routed_rows = ids.numel() * cfg.num_experts_per_tok
    expert_width = getattr(cfg, "moe_intermediate_size", None) or cfg.intermediate_size
    assert calls.count((routed_rows, expert_width)) == MOE_LAYERS[family]


@pytest.mark.parametrize("family", MOE)
def test_experts_output_and_grads_equal_hfs(family):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family))
    experts = experts_of(model)
    if not experts:
        pytest.skip("this transformers keeps experts as MLP modules (covered by the MLP classes)")
    mod = experts[0]
    g = torch.Generator().manual_seed(3)
    x = torch.randn(24, model.config.hidden_size, generator=g)
    index = torch.stack([torch.randperm(4, generator=g)[:2] for _ in range(24)])
    weights = torch.rand(24, 2, generator=g)

    def run():
        mod.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        out = mod(xx, index, weights)
        out.square().sum().backward()
        return out.detach(), xx.grad, mod.gate_up_proj.grad.clone(), mod.down_proj.grad.clone()

    ref = run()
    hf.patch_all(("swiglu",))
    assert hf.is_ours(type(mod).__dict__["_apply_gate"])
    for got, want in zip(run(), ref):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    patch.revert()
    assert not hf.is_ours(type(mod).__dict__["_apply_gate"])


class W123Expert(torch.nn.Module):
    """transformers 4.x's MixtralBlockSparseTop2MLP layout (w1 gate, w3 up, w2 down)."""

    def __init__(self, act):
        super().__init__()
        self.w1 = torch.nn.Linear(8, 16, bias=False)
        self.w3 = torch.nn.Linear(8, 16, bias=False)
        self.w2 = torch.nn.Linear(16, 8, bias=False)
        self.act_fn = act

    def forward(self, x):
        raise AssertionError("HF's forward is not expected here")


def test_transformers4_mixtral_expert_forward_is_the_swiglu_formula():
    torch.manual_seed(0)
    expert = W123Expert(torch.nn.SiLU())
    forward = swiglu_mlp.make_w123_mlp_forward(W123Expert.forward, swiglu_ops.swiglu)
    x = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    expert.double()
    out = forward(expert, x)
    want = x @ expert.w1.weight.T
    want = expert.w2(torch.sigmoid(want) * want * (x @ expert.w3.weight.T))
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    (g_out,) = torch.autograd.grad(out.sum(), x)
    (g_want,) = torch.autograd.grad(want.sum(), x)
    torch.testing.assert_close(g_out, g_want, rtol=1e-12, atol=1e-12)
    with pytest.raises(AssertionError, match="HF's forward"):  # GELU gating is left to HF
        forward(W123Expert(torch.nn.GELU()), torch.randn(2, 8))


@needs_fused_experts
@pytest.mark.parametrize("family", MOE)
def test_patch_status_counts_the_experts(family):
    hf.patch_all(("swiglu",))
    row = next(r for r in patch.status()["families"] if r["family"] == family)
    fam = hf.FAMILIES[family]
    mod = importlib.import_module(fam.module)
    experts = [n for n in fam.fused_experts_classes + fam.w123_mlp_classes if hasattr(mod, n)]
    assert row["swiglu"] and experts
    assert all(hf.is_ours(getattr(mod, name).__dict__[attr]) for name, attr, _ in hf.swiglu_targets(mod, fam))
