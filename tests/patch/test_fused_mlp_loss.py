"""The SwiGLU MLP and fused linear cross-entropy patches, family by family (tiny models from configs).

For every family the patch serves: a training step with labels (padding in the mask and ``-100`` labels)
gives the unpatched model's loss and every parameter's gradient (fp32: rtol 1e-5, atol 1e-6 on the loss,
atol 1e-5 on gradients, which differ only by the chunked sums' order; bf16: rtol/atol 2e-2) without
returning logits; ``num_items_in_batch`` (what ``Trainer`` passes) is honoured; evaluation without labels
returns the same logits and ``generate`` the same tokens as the unpatched model; the MLP classes the row
names run our forward and Gemma's GELU MLP is left to HF. The families added after the first six (phi3, mixtral,
qwen3_moe, deepseek_v3, qwen2_moe, olmo2, granite, smollm3, glm4) also converge like the unpatched model over 20
AdamW steps (fp32), every op patched.
"""

import importlib
import importlib.util
import inspect

import pytest
import torch
import transformers
from test_convergence import train
from test_patch import CONFIGS, tiny_config

import ascend_tools.patch as patch
from ascend_tools.patch import hf

patch.revert()

FIRST = ["llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2"]
ADDED = [
    *("phi3", "mixtral", "qwen3_moe", "deepseek_v3", "qwen2_moe", "olmo2", "granite", "smollm3", "glm4"),
    *("ministral", "seed_oss", "helium", "ernie4_5", "hunyuan_v1_dense", "exaone4", "olmo3"),
    *("hunyuan_v1_moe", "dots1", "arcee", "apertus"),
]
FAMILIES = [
    f
    for f in FIRST + ADDED
    if f in CONFIGS and importlib.util.find_spec("transformers.models." + f) is not None
]
NEW_FAMILIES = [f for f in ADDED if f in FAMILIES]


@pytest.fixture(autouse=True)
def clean():
    patch.revert()
    yield
    patch.revert()


def build(family, patched, dtype=torch.float32):
    if patched:
        hf.patch_all(("swiglu", "linear_cross_entropy"))
    else:
        patch.revert()
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(tiny_config(family)).to(dtype)


def batch():
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(1, 128, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    labels = ids.masked_fill(mask == 0, -100)
    labels[0, 3] = -100  # predicted from a pad position
    return ids, mask, labels


def step(model, **extra):
    ids, mask, labels = batch()
    model.train()
    out = model(input_ids=ids, attention_mask=mask, labels=labels, **extra)
    out.loss.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("family", FAMILIES)
def test_train_step_matches_unpatched(family, dtype):
    ref_out, ref_grads = step(build(family, patched=False, dtype=dtype))
    out, grads = step(build(family, patched=True, dtype=dtype))
    assert out.logits is None and ref_out.logits is not None
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out.loss.float(), ref_out.loss.float(), **tol)
    assert grads.keys() == ref_grads.keys()
    gtol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=2e-2, atol=2e-2)
    for name in grads:
        torch.testing.assert_close(grads[name].float(), ref_grads[name].float(), **gtol, msg=name)


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_num_items_in_batch_as_trainer_passes_it(family):
    ref_out, ref_grads = step(build(family, patched=False), num_items_in_batch=torch.tensor(7))
    out, grads = step(build(family, patched=True), num_items_in_batch=torch.tensor(7))
    torch.testing.assert_close(out.loss, ref_out.loss, rtol=1e-5, atol=1e-6)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5, msg=name)


MOE = [f for f in ("mixtral", "qwen3_moe", "qwen2_moe") if f in FAMILIES]  # HF adds a router balancing loss


@pytest.mark.parametrize("family", MOE)
def test_a_moe_asked_for_its_router_logits_keeps_the_load_balancing_loss(family):
    """HF adds ``router_aux_loss_coef * aux_loss`` to a loss it computes from labels: the routers' gradient toward
    balanced experts. The patched forward computes the loss itself and must add it too (it did not: the
    loss was the cross-entropy alone)."""
    ref_out, ref_grads = step(build(family, patched=False), output_router_logits=True)
    out, grads = step(build(family, patched=True), output_router_logits=True)
    assert ref_out.aux_loss is not None and out.logits is None
    torch.testing.assert_close(out.aux_loss, ref_out.aux_loss)
    torch.testing.assert_close(out.loss, ref_out.loss, rtol=1e-5, atol=1e-6)
    routers = [n for n in ref_grads if n.endswith("gate.weight") and ".experts" not in n]
    assert routers and grads.keys() == ref_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-5, atol=1e-5, msg=name)


@pytest.mark.parametrize("family", ["llama", *MOE])
def test_return_dict_false_gives_hfs_tuple_without_the_logits(family):
    """HF's tuple leaves out the fields that are None: the patched forward's is HF's own less the logits, every
    other element in its order (the MoE's aux loss second)."""
    ids, mask, labels = batch()
    extra = {"output_router_logits": True} if family in MOE else {}
    outs = []
    for patched in (False, True):
        model = build(family, patched=patched).train()
        outs.append(model(input_ids=ids, attention_mask=mask, labels=labels, return_dict=False, **extra))
    ref, out = outs
    assert isinstance(out, tuple)
    want = [x for x in ref if not (isinstance(x, torch.Tensor) and x.dim() == 3 and x.shape[-1] == 128)]
    assert len(want) == len(ref) - 1 == len(out)  # the logits (batch x tokens x vocab) alone left out
    assert [type(x) for x in out] == [type(x) for x in want]
    for got, expected in zip(out, want):
        if isinstance(expected, torch.Tensor):
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_eval_logits_and_generate_are_unchanged(family):
    ids, mask, labels = batch()
    results = []
    for patched in (False, True):
        model = build(family, patched=patched).eval()
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            gen = model.generate(
                input_ids=ids[1:], attention_mask=mask[1:], max_new_tokens=4, do_sample=False, pad_token_id=0
            )
        results.append((out.logits, out.loss, gen))
    (ref_logits, ref_loss, ref_gen), (logits, loss, gen) = results
    assert logits is not None  # eval with labels keeps HF's path: metrics need the logits
    torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert torch.equal(gen, ref_gen)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_patched_causal_lm_forward_keeps_hfs_signature(family):
    """``generate`` and ``Trainer`` read the forward's parameters (``logits_to_keep``, ``position_ids``, the
    dataset columns to keep); 4.x Phi-3 passes ``logits_to_keep=None`` to a forward that does not name it."""
    mod = importlib.import_module(hf.FAMILIES[family].module)
    cls = getattr(mod, hf.FAMILIES[family].causal_lm_classes[0])
    expected = inspect.signature(cls.forward)
    hf.patch_all(("linear_cross_entropy",))
    assert hf.is_ours(cls.__dict__["forward"])
    assert inspect.signature(cls.forward) == expected
    assert "logits_to_keep" in expected.parameters


@pytest.mark.parametrize("family", FAMILIES)
def test_the_rows_classes_run_our_forward(family):
    hf.patch_all(("swiglu", "linear_cross_entropy"))
    fam = hf.FAMILIES[family]
    mod = importlib.import_module(fam.module)
    for name in fam.mlp_classes + fam.gate_up_mlp_classes + fam.causal_lm_classes:
        assert hf.is_ours(getattr(mod, name).__dict__["forward"]), name
    row = next(r for r in patch.status()["families"] if r["family"] == family)
    assert row["linear_cross_entropy"] and row["swiglu"] == bool(hf.swiglu_targets(mod, fam))
    if family == "gemma":  # GELU-tanh gating is no SwiGLU: HF's MLP stays
        assert not hf.is_ours(mod.GemmaMLP.__dict__["forward"])
    patch.revert()
    for name in fam.mlp_classes + fam.gate_up_mlp_classes + fam.causal_lm_classes:
        assert not hf.is_ours(getattr(mod, name).__dict__["forward"]), name


def test_a_non_silu_activation_runs_hfs_forward():
    hf.patch_all(("swiglu",))
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama", hidden_act="gelu"))
    patch.revert()
    torch.manual_seed(0)
    ref = transformers.AutoModelForCausalLM.from_config(tiny_config("llama", hidden_act="gelu"))
    ids = batch()[0]
    hf.patch_all(("swiglu",))
    with torch.no_grad():
        torch.testing.assert_close(model(input_ids=ids).logits, ref(input_ids=ids).logits, rtol=0, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_new_families_converge_like_unpatched(family):
    torch.manual_seed(0)
    ref_losses, ref_logits, ref_params = train(build(family, patched=False))
    hf.patch_all()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family)).float()
    losses, final, params = train(model)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]
    torch.testing.assert_close(final, ref_logits, rtol=1e-5, atol=5e-3)
    for name in params:
        torch.testing.assert_close(params[name], ref_params[name], rtol=1e-5, atol=5e-3, msg=name)


@pytest.mark.parametrize(
    "quant", [dict(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float32), dict(load_in_8bit=True)], ids=str
)
def test_a_quantized_head_trains_through_hfs_forward(tmp_path, quant):
    """transformers quantizes ``lm_head`` too where ``llm_int8_skip_modules`` is given without it (MoE QLoRA
    recipes list their routers): its weight is then packed 4-bit codes (``(V * H / 2, 1)`` uint8) or int8, and the
    fused loss, which reads the weight as a ``(V, H)`` matrix, raised in the user's step. HF's forward runs
    there: the loss and gradients are the unpatched model's."""
    pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(tiny_config("llama")).save_pretrained(tmp_path)
    config = transformers.BitsAndBytesConfig(llm_int8_skip_modules=["mlp.gate"], **quant)

    def quantized(patched):
        patch.revert()
        if patched:
            hf.patch_all(("swiglu", "linear_cross_entropy"))
        model = transformers.AutoModelForCausalLM.from_pretrained(
            tmp_path, quantization_config=config, device_map="cpu"
        )
        assert model.lm_head.weight.dtype in (torch.uint8, torch.int8)
        # LoRA-style: the norms train, the quantized weights do not
        for name, p in model.named_parameters():
            p.requires_grad_(p.is_floating_point() and "norm" in name)
        return step(model)

    ref_out, ref_grads = quantized(False)
    out, grads = quantized(True)
    torch.testing.assert_close(out.loss, ref_out.loss, rtol=0, atol=0)
    assert out.logits is not None  # HF's forward ran
    assert grads.keys() == ref_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-6, atol=1e-7, msg=name)


class _QuantizedHead(torch.nn.Linear):
    """The shape of bitsandbytes' quantized heads, for machines without bitsandbytes (the test above runs the real
    ones where it is installed): an ``nn.Linear`` subclass whose ``weight`` is packed 4-bit codes
    (``Linear4bit``: ``(V * H / 2, 1)`` uint8) or int8 (``Linear8bitLt``: ``(V, H)``), dequantized in forward."""

    def __init__(self, head, packed):
        super().__init__(head.in_features, head.out_features, bias=False)
        self.dense = head.weight.detach().clone()
        shape = (head.out_features * head.in_features // 2, 1) if packed else tuple(head.weight.shape)
        self.weight = torch.nn.Parameter(
            torch.zeros(shape, dtype=torch.uint8 if packed else torch.int8), False
        )

    def forward(self, x):
        return x @ self.dense.t()


@pytest.mark.parametrize("packed", [True, False], ids=["4bit", "int8"])
def test_a_head_whose_weight_is_not_its_matrix_runs_hfs_forward(packed):
    def quantized(patched):
        model = build("llama", patched=patched)
        model.lm_head = _QuantizedHead(model.lm_head, packed)
        return step(model)

    ref_out, ref_grads = quantized(False)
    out, grads = quantized(True)
    assert out.logits is not None  # HF's forward ran
    torch.testing.assert_close(out.loss, ref_out.loss, rtol=0, atol=0)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-6, atol=1e-7, msg=name)
