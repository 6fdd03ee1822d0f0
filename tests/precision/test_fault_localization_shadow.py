"""Shadow mode names the faulty op call first on tiny Hugging Face Llama and Qwen2 models, one fault at a
time: a forward matmul perturbed, the attention softmax computed in fp16 with saturation, a backward
matmul perturbed. The fault injector is entered *before* the shadow, so it sits below it: the device run
carries the fault and the float64 reference (run with every mode disabled) does not."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from ascend_tools.precision import shadow
from ascend_tools.precision.faults import Fault, FaultInjector, naive_fp16_softmax

FAMILIES = {"llama": (LlamaConfig, LlamaForCausalLM), "qwen2": (Qwen2Config, Qwen2ForCausalLM)}
SEQ = 16
#: q/k weights x16: attention logits up to ~24 (about 0.1 unscaled), beyond log(65504) ~ 11.1
QK_SCALE = 16.0


def build(family, qk_scale=1.0):
    """hidden 64, 2 layers, 4 heads, 2 kv heads, vocab 256, fp32, eager attention (so aten::bmm and
    aten::_softmax run). ``qk_scale`` multiplies the q/k projection weights: the attention logits grow
    by its square, so that exp(logit) exceeds fp16's 65504 and the saturating fp16 softmax differs."""
    torch.manual_seed(0)
    cfg_cls, model_cls = FAMILIES[family]
    cfg = cfg_cls(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        max_position_embeddings=64,
        attn_implementation="eager",
    )
    model = model_cls(cfg)
    if qk_scale != 1.0:
        with torch.no_grad():
            for layer in model.model.layers:
                layer.self_attn.q_proj.weight.mul_(qk_scale)
                layer.self_attn.k_proj.weight.mul_(qk_scale)
    ids = torch.randint(0, 256, (1, SEQ), generator=torch.Generator().manual_seed(1))
    return model, ids


def train_step(model, ids):
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.loss.detach()


FAULTS = {
    "forward_mm": (Fault("aten::mm", call=3, kind="perturb", scale=0.5, fraction=0.1), 1.0),
    "forward_bmm": (Fault("aten::bmm", call=1, kind="perturb", scale=0.5, fraction=0.1), 1.0),
    "softmax_fp16_saturate": (Fault("aten::_softmax", call=1, kind="fp16_saturate"), QK_SCALE),
    "backward_mm": (
        Fault("aten::mm", call=5, phase="backward", kind="perturb", scale=0.5, fraction=0.1),
        1.0,
    ),
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("fault_name", sorted(FAULTS))
def test_faulty_call_ranked_first(family, fault_name):
    fault, qk_scale = FAULTS[fault_name]
    model, ids = build(family, qk_scale)
    with FaultInjector(fault) as inj, shadow(model=model) as sh:
        train_step(model, ids)
    assert inj.hit == f"{fault.op}#{fault.phase}#{fault.call}"
    found = sh.culprits()
    assert found, "no culprit"
    top = found[0]
    assert (top.name, top.phase, top.call) == (fault.op, fault.phase, fault.call)
    assert top.key == inj.hit
    assert sh.first_culprit().key == inj.hit
    assert top.verdict.level == "error" and top.ratio > 10
    assert len(found) == 1  # every other op is judged on its own (already wrong) inputs: no cascade
    if fault.phase == "forward":
        assert top.module.startswith("model.layers.") and top.site  # where the model code issued it
    report = sh.report()
    assert report.data["culprits"][0]["name"] == inj.hit
    assert report.data["culprits"][0]["op"] == fault.op


class _SoftmaxInputs(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._softmax.default:
            self.inputs.append(args[0].detach().clone())
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_scaled_logits_make_fp16_saturate(family):
    """The softmax fault saturates only with the q/k scaling: unscaled, the naive fp16 softmax merely
    rounds (error ~1e-4); scaled, exp(logit) passes 65504 and whole rows flatten (error ~1)."""
    for scale, lo, hi in ((1.0, 0.0, 1e-3), (QK_SCALE, 0.5, 1.0)):
        model, ids = build(family, scale)
        with _SoftmaxInputs() as grab:
            train_step(model, ids)
        x = grab.inputs[1]
        err = float((naive_fp16_softmax(x, -1) - torch.softmax(x, -1)).abs().max())
        assert lo <= err <= hi, (scale, err)


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("baseline,qk_scale", [(True, 1.0), (False, 1.0), (False, QK_SCALE)])
def test_clean_run_has_no_error_and_is_untouched(family, baseline, qk_scale):
    """fp32 device vs float64 reference: nothing judged "error", even without the same-dtype baseline
    and with the large logits of the softmax test; the loss and every gradient are bitwise those of a
    run without the shadow."""
    model, ids = build(family, qk_scale)
    loss_bare = train_step(model, ids)
    grads_bare = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    with shadow(model=model, baseline=baseline) as sh:
        loss = train_step(model, ids)
    assert sh.culprits() == []
    assert sh.compared > 200 and sh.internal_errors == 0
    assert {r.phase for r in sh.results} == {"forward", "backward"}
    assert torch.equal(loss, loss_bare)
    for p, g in zip(model.parameters(), grads_bare):
        assert torch.equal(p.grad, g)
