"""``ascend_tools.patch``: the model plumbing, on tiny Hugging Face models built from configs.

For each family: after ``apply(model)``, and separately after patching before building, the modules
and functions are ours (introspection), ``status()`` lists them, the logits match the unpatched model
from the same weights (fp32: rtol/atol 1e-5; bf16: 2e-2), padding is honoured (a left-padded row's real
positions match the unpadded HF run, whatever the pad tokens are), and ``revert`` restores HF's own
objects. Plus: ``ASCEND_TOOLS_PATCH=0``, no transformers, ``ASCEND_TOOLS_PATCH_OPS``, idempotence,
fail-open on a renamed class, an explicit ``attn_implementation`` kept, and ``patch-status``.
"""

import importlib
import importlib.util
import json
import logging
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import transformers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import ascend_tools.patch as patch  # noqa: E402
from ascend_tools.patch import attention_interface, hf  # noqa: E402

patch.revert()  # the import patched everything: leave the rest of the session unpatched


def _attention_table(family):
    """Whether this transformers' modeling module of ``family`` picks its attention class from a table
    (``QWEN2MOE_ATTENTION_CLASSES`` in 4.x) instead of the attention interface: no attention of ours there."""
    mod = importlib.import_module(hf.FAMILIES[family].module)
    return any(name.endswith("_ATTENTION_CLASSES") for name in vars(mod))


def _has(family):
    return importlib.util.find_spec("transformers.models." + family) is not None


# the families whose RoPE and attention are ours too: on an old transformers, those it has (qwen3 needs >= 4.51)
# and whose attention the attention interface picks
FAMILIES = [
    f
    for f in [
        "llama",
        "mistral",
        "qwen2",
        "qwen3",
        "gemma",
        "gemma2",
        "qwen2_moe",
        "olmo2",
        "granite",
        "smollm3",
        "ministral",
        "seed_oss",
        "hunyuan_v1_dense",
        "exaone4",
        "olmo3",
        "hunyuan_v1_moe",
        "dots1",
        "arcee",
        "apertus",
    ]
    if _has(f) and not _attention_table(f)
]
TABLE_FAMILIES = [f for f in ["qwen2_moe"] if _has(f) and _attention_table(f)]
CONFIGS = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": 4}),
    "qwen2": ("Qwen2Config", {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 1}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "gemma": ("GemmaConfig", {"head_dim": 16, "hidden_activation": "gelu_pytorch_tanh"}),
    "gemma2": (
        "Gemma2Config",
        {
            "head_dim": 16,
            "query_pre_attn_scalar": 16,
            "sliding_window": 4,
            "attn_logit_softcapping": 50.0,
            "final_logit_softcapping": 30.0,
        },
    ),
}
CONFIGS.update(
    {
        "qwen2_moe": (
            "Qwen2MoeConfig",
            {
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 32,
                "shared_expert_intermediate_size": 48,
                "mlp_only_layers": [0],
                "use_sliding_window": True,
                "sliding_window": 4,
                "max_window_layers": 1,
            },
        ),
        "olmo2": ("Olmo2Config", {"pad_token_id": 0, "eos_token_id": 2}),
        "ministral": (
            "MinistralConfig",
            {"head_dim": 16, "layer_types": ["sliding_attention", "full_attention"], "sliding_window": 4},
        ),
        # its projections' biases on
        "seed_oss": (
            "SeedOssConfig",
            {"head_dim": 16, "attention_bias": True, "attention_out_bias": True, "pad_token_id": 0},
        ),
        # its multipliers away from 1, the logits' divisor too
        "granite": (
            "GraniteConfig",
            {
                "attention_multiplier": 0.2,
                "embedding_multiplier": 2.0,
                "residual_multiplier": 0.5,
                "logits_scaling": 4.0,
            },
        ),
        "hunyuan_v1_dense": ("HunYuanDenseV1Config", {"head_dim": 16, "pad_token_id": 0, "eos_token_id": 2}),
        # layer 0 local (a sliding window and RoPE), layer 1 global (no RoPE: NoPE)
        "exaone4": (
            "Exaone4Config",
            {"head_dim": 16, "sliding_window": 4, "sliding_window_pattern": 2, "pad_token_id": 0},
        ),
        "olmo3": (
            "Olmo3Config",
            {
                "layer_types": ["sliding_attention", "full_attention"],
                "sliding_window": 4,
                "pad_token_id": 0,
                "eos_token_id": 2,
            },
        ),
        # a shared MLP beside the routed experts
        "hunyuan_v1_moe": (
            "HunYuanMoEV1Config",
            {"head_dim": 16, "num_experts": 4, "moe_topk": 2, "pad_token_id": 0, "eos_token_id": 2},
        ),
        # layer 0 dense, layer 1 MoE with a shared expert; layer 0 full attention, layer 1 a sliding window
        "dots1": (
            "Dots1Config",
            {
                "head_dim": 16,
                "n_routed_experts": 4,
                "n_shared_experts": 1,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 32,
                "first_k_dense_replace": 1,
                "layer_types": ["full_attention", "sliding_attention"],
                "sliding_window": 4,
                "pad_token_id": 0,
            },
        ),
        # their MLPs (ReLU², xIELU) stay HF's
        "arcee": ("ArceeConfig", {"head_dim": 16, "pad_token_id": 0}),
        "apertus": ("ApertusConfig", {"head_dim": 16, "pad_token_id": 0}),
        # layer 1 without RoPE (NoPE), layer 0 with it and a sliding window
        "smollm3": (
            "SmolLM3Config",
            {
                "no_rope_layers": [1, 0],
                "use_sliding_window": True,
                "sliding_window": 4,
                "pad_token_id": 0,
                "bos_token_id": 1,
                "eos_token_id": 2,
            },
        ),
    }
)
# families patched for the MLP and the loss only (see tests/patch/test_fused_mlp_loss.py)
CONFIGS.update(
    {
        "helium": ("HeliumConfig", {"head_dim": 16, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}),
        # its projections' biases on
        "ernie4_5": ("Ernie4_5Config", {"head_dim": 16, "use_bias": True, "pad_token_id": 0}),
        "glm4": ("Glm4Config", {"head_dim": 16, "pad_token_id": 0, "eos_token_id": [1, 2]}),
        "phi3": ("Phi3Config", {"pad_token_id": 0, "partial_rotary_factor": 0.5}),
        "mixtral": ("MixtralConfig", {"num_local_experts": 4, "num_experts_per_tok": 2}),
        "qwen3_moe": (
            "Qwen3MoeConfig",
            {
                "head_dim": 16,
                "num_experts": 4,
                "num_experts_per_tok": 2,
                "moe_intermediate_size": 32,
                "mlp_only_layers": [0],
            },
        ),
        "deepseek_v3": (
            "DeepseekV3Config",
            {
                "n_routed_experts": 4,
                "num_experts_per_tok": 2,
                "n_shared_experts": 1,
                "moe_intermediate_size": 32,
                "first_k_dense_replace": 1,
                "n_group": 1,
                "topk_group": 1,
                "kv_lora_rank": 16,
                "q_lora_rank": None,
                "qk_rope_head_dim": 8,
                "qk_nope_head_dim": 8,
                "v_head_dim": 16,
                "num_key_value_heads": 4,  # MLA: one key/value head per query head
            },
        ),
    }
)
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.bfloat16: dict(rtol=2e-2, atol=2e-2)}
SEQ, PAD = 10, 3


def tiny_config(family, **extra):
    name, kw = CONFIGS[family]
    args = dict(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        attention_dropout=0.0,
    )
    args.update(kw, **extra)
    return getattr(transformers, name)(**args)


def build(family, state=None, dtype=torch.float32, **kwargs):
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family), **kwargs)
    if state is not None:
        model.load_state_dict(state)
    return model.to(dtype).eval()


def batch():
    """Row 0 left-padded by PAD tokens, row 1 full; position_ids count real tokens only."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, 128, (2, SEQ), generator=g)
    mask = torch.ones(2, SEQ, dtype=torch.long)
    mask[0, :PAD] = 0
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, pos


def logits(model, ids, mask=None, pos=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, position_ids=pos).logits.float()


def hf_originals(family):
    fam = hf.FAMILIES[family]
    mod = importlib.import_module(fam.module)
    return {
        "forward": {n: getattr(mod, n).__dict__["forward"] for n in fam.norm_classes},
        "rope": getattr(mod, fam.rope_fn),
    }


@pytest.fixture(autouse=True)
def clean():
    patch.revert()
    yield
    patch.revert()


@pytest.fixture(scope="module")
def originals():
    patch.revert()  # in case an earlier import patched
    return {f: hf_originals(f) for f in FAMILIES}


def assert_is_hf(family, originals):
    now = hf_originals(family)
    assert now["rope"] is originals[family]["rope"]
    for n, fwd in originals[family]["forward"].items():
        assert now["forward"][n] is fwd, n
    assert "ascend_fused" not in transformers.modeling_utils.ALL_ATTENTION_FUNCTIONS
    assert not attention_interface.default_installed()


def assert_close_real(actual, expected, dtype):
    """Compare at real (unpadded) positions: row 0 from PAD on, row 1 whole."""
    torch.testing.assert_close(actual[0, PAD:], expected[0, PAD:], **TOL[dtype])
    torch.testing.assert_close(actual[1], expected[1], **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_apply_to_built_model(family, dtype, originals):
    ref = build(family, dtype=dtype)
    model = build(family, state=ref.state_dict(), dtype=dtype)
    hf_attn = model.config._attn_implementation
    ids, mask, pos = batch()
    want = logits(ref, ids, mask, pos)

    assert patch.apply(model) is model
    fam = hf.FAMILIES[family]
    mod = importlib.import_module(fam.module)
    norm_classes = tuple(getattr(mod, n) for n in fam.norm_classes)
    norms = {name: m for name, m in model.named_modules() if isinstance(m, norm_classes)}
    assert norms and all(hf.is_ours(m.__dict__.get("forward")) for m in norms.values())
    if family == "qwen3":
        assert any(name.endswith("q_norm") for name in norms) and any(
            name.endswith("k_norm") for name in norms
        )
    assert hf.is_ours(getattr(mod, fam.rope_fn))
    assert model.config._attn_implementation == "ascend_fused"
    assert attention_interface.registered()["attention_interface"]
    st = patch.status()
    assert [m for m in st["models"] if m["families"] == [family] and m["norm_instances"] == len(norms)]
    assert [r for r in st["families"] if r["family"] == family and r["rope"]]

    assert_close_real(logits(model, ids, mask, pos), want, dtype)

    patch.apply(model)  # idempotent
    assert model.config._attn_implementation == "ascend_fused"

    patch.revert(model)
    assert not any("forward" in m.__dict__ for m in norms.values())
    assert model.config._attn_implementation == hf_attn
    patch.revert()
    assert_is_hf(family, originals)
    torch.testing.assert_close(logits(model, ids, mask, pos), want, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_patch_before_build(family, originals):
    ref = build(family)
    ids, mask, pos = batch()
    want = logits(ref, ids, mask, pos)

    done = hf.patch_all()
    fam = hf.FAMILIES[family]
    fused = ["swiglu"] * bool(fam.mlp_classes or fam.gate_up_mlp_classes) + ["linear_cross_entropy"]
    assert done[family] == ["rms_norm", "rope", "attention", *fused]
    model = build(family, state=ref.state_dict())
    assert model.config._attn_implementation == "ascend_fused"
    fam = hf.FAMILIES[family]
    mod = importlib.import_module(fam.module)
    for n in fam.norm_classes:
        assert hf.is_ours(getattr(mod, n).__dict__["forward"])
    assert hf.is_ours(getattr(mod, fam.rope_fn))
    row = next(r for r in patch.status()["families"] if r["family"] == family)
    assert row["rms_norm"] and row["rope"] and row["attention_default"]
    assert_close_real(logits(model, ids, mask, pos), want, torch.float32)

    # an explicit choice is never overridden
    assert build(family, attn_implementation="eager").config._attn_implementation == "eager"

    patch.revert()
    assert_is_hf(family, originals)
    assert model.config._attn_implementation == ref.config._attn_implementation  # back to HF's own default
    torch.testing.assert_close(logits(model, ids, mask, pos), want, rtol=0, atol=0)


NORM_FAMILIES = [f for f in hf.FAMILIES if f in CONFIGS and _has(f)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("family", NORM_FAMILIES)
def test_every_norm_rounds_as_hfs_bit_for_bit(family, dtype):
    """Each RMSNorm of the family (the q/k norms too), with weights away from their init (ones, or gemma's zeros:
    there the two casting orders round alike), gives HF's own forward's bits in half precision: the row's
    ``casting`` and ``offset`` are the family's (a logits tolerance does not tell the two orders apart)."""
    mod = importlib.import_module(hf.FAMILIES[family].module)
    hf_forward = {n: getattr(mod, n).__dict__["forward"] for n in hf.FAMILIES[family].norm_classes}
    model = build(family, dtype=dtype)
    g = torch.Generator().manual_seed(2)
    norms = [m for m in model.modules() if type(m).__name__ in hf_forward]
    with torch.no_grad():
        for m in norms:
            m.weight.copy_(1 + 0.5 * torch.randn(m.weight.shape, generator=g))
    patch.apply(model)
    assert norms and all(hf.is_ours(m.__dict__.get("forward")) for m in norms)
    for m in norms:
        x = (3 * torch.randn(2, 5, m.weight.shape[-1], generator=g)).to(dtype)
        with torch.no_grad():
            torch.testing.assert_close(m(x), hf_forward[type(m).__name__](m, x), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_every_rope_call_gives_hfs_bits(family, dtype, monkeypatch):
    """Every call the family's attention makes to the patched RoPE, on its real q, k, cos and sin (fp32 cos/sin
    where the family keeps them so: OLMo 2/3), returns HF's own function's bits and dtypes."""
    fam = hf.FAMILIES[family]
    mod = importlib.import_module(fam.module)
    hf_rope = getattr(mod, fam.rope_fn)
    model = build(family, dtype=dtype)
    patch.apply(model)
    ours = getattr(mod, fam.rope_fn)
    assert hf.is_ours(ours)
    calls = []

    def both(q, k, cos, sin, *args, **kwargs):
        got, want = ours(q, k, cos, sin, *args, **kwargs), hf_rope(q, k, cos, sin, *args, **kwargs)
        calls.append(cos.dtype)
        for a, b in zip(got, want):
            assert a.dtype == b.dtype
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        return got

    monkeypatch.setattr(mod, fam.rope_fn, both)
    ids, mask, pos = batch()
    logits(model, ids, mask, pos)
    assert calls


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_is_honoured(family):
    """The patched model, on a left-padded row, matches the unpadded HF run at the real positions,
    whatever the pad tokens are; i.e. the mask our attention receives carries the padding."""
    ref = build(family)
    hf.patch_all()
    model = build(family, state=ref.state_dict())
    assert model.config._attn_implementation == "ascend_fused"
    seen = []
    real_attention = attention_interface._op

    def spy():
        fn = real_attention()

        def wrapped(q, k, v, attention_mask=None, **kw):
            seen.append(attention_mask)
            return fn(q, k, v, attention_mask=attention_mask, **kw)

        return wrapped

    ids, mask, pos = batch()
    attention_interface._op = spy
    try:
        got = logits(model, ids, mask, pos)
        other = ids.clone()
        other[0, :PAD] = (other[0, :PAD] + 7) % 128  # different pad tokens
        got_other = logits(model, other, mask, pos)
    finally:
        attention_interface._op = real_attention
    assert seen and all(m is not None for m in seen)
    for (
        m
    ) in seen:  # no query attends to a pad key (bool: True = attend; < 4.53: additive, dtype-min = masked)
        pad_keys = m[0, ..., :PAD]
        assert (
            not pad_keys.any() if m.dtype == torch.bool else (pad_keys <= torch.finfo(m.dtype).min / 2).all()
        )
    unpadded = logits(ref, ids[:1, PAD:])  # HF, unpatched, no padding at all
    torch.testing.assert_close(got[0, PAD:], unpadded[0], **TOL[torch.float32])
    # a mixture of experts routes the pad tokens too, and its experts' products over other sets of rows round the
    # real tokens' last bits otherwise (HF's own model: 3e-8 on the tiny Qwen2-MoE)
    exact = dict(rtol=0, atol=0) if not hf.FAMILIES[family].fused_experts_classes else TOL[torch.float32]
    torch.testing.assert_close(got_other[0, PAD:], got[0, PAD:], **exact)


@pytest.mark.parametrize("family", TABLE_FAMILIES)
def test_a_family_with_a_table_of_attention_classes_keeps_its_attention(family):
    """transformers 4.x's Qwen2-MoE builds its attention from a table keyed by the implementation's name:
    defaulting it to ours made ``from_config`` fail (``KeyError: 'ascend_fused'``). Its norms, RoPE, MLPs
    and loss are ours; its attention stays HF's."""
    ref = build(family)
    done = hf.patch_all()
    assert done[family] == ["rms_norm", "rope", "swiglu", "linear_cross_entropy"]
    model = build(family, state=ref.state_dict())
    assert model.config._attn_implementation == ref.config._attn_implementation
    patch.apply(model)
    assert model.config._attn_implementation == ref.config._attn_implementation
    ids, mask, pos = batch()
    assert_close_real(logits(model, ids, mask, pos), logits(ref, ids, mask, pos), torch.float32)


@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_no_padding_no_mask(family):
    """Without padding, HF's sdpa mask function returns None where plain causal is exact; our
    attention then runs causal (and the result still matches HF)."""
    ref = build(family)
    hf.patch_all()
    model = build(family, state=ref.state_dict())
    ids = batch()[0][:, :4]  # shorter than the sliding window: the mask is skipped
    torch.testing.assert_close(logits(model, ids), logits(ref, ids), **TOL[torch.float32])


def test_idempotent_import_and_patch(originals):
    hf.patch_all()
    first = hf_originals("llama")
    importlib.reload(patch)  # runs the on-import patch again
    hf.patch_all()
    assert hf_originals("llama") == first  # same objects: not wrapped twice
    assert hf._ORIGINALS[(hf.FAMILIES["llama"].module, "apply_rotary_pos_emb")] is originals["llama"]["rope"]
    patch.revert()
    assert_is_hf("llama", originals)


def test_ops_env_chooses_ops(monkeypatch, originals):
    monkeypatch.setenv("ASCEND_TOOLS_PATCH_OPS", "rms_norm,rope")
    hf.patch_all(hf.ops_from_env())
    mod = importlib.import_module(hf.FAMILIES["llama"].module)
    assert hf.is_ours(mod.LlamaRMSNorm.__dict__["forward"]) and hf.is_ours(mod.apply_rotary_pos_emb)
    assert not attention_interface.registered()["attention_interface"]
    assert build("llama").config._attn_implementation == "sdpa"
    monkeypatch.setenv("ASCEND_TOOLS_PATCH_OPS", "rope")
    assert hf.ops_from_env() == ("rope",)


def test_fail_open_on_a_renamed_class(monkeypatch, caplog):
    bogus = hf.Family("bogus", hf.FAMILIES["llama"].module, ("LlamaRMSNormRenamed",), "variance_epsilon")
    monkeypatch.setitem(hf.FAMILIES, "bogus", bogus)
    monkeypatch.setattr(hf, "_LOGGED", set())
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        done = hf.patch_all()
        hf.patch_all()
    assert "bogus" not in done and done["llama"] == list(hf.OPS)
    lines = [r for r in caplog.records if "bogus" in r.getMessage()]
    assert len(lines) == 1 and "LlamaRMSNormRenamed" in lines[0].getMessage()
    assert patch.status()["errors"]["bogus"].startswith("AttributeError")


def test_unsupported_model_is_left_alone(caplog):
    cfg = transformers.GPT2Config(vocab_size=128, n_embd=32, n_layer=1, n_head=2, n_positions=32)
    model = transformers.GPT2LMHeadModel(cfg)
    hf.patch_all()
    assert transformers.GPT2LMHeadModel(cfg).config._attn_implementation != "ascend_fused"
    with caplog.at_level(logging.WARNING, logger="ascend_tools"):
        assert patch.apply(model) is model
    assert model.config._attn_implementation != "ascend_fused"


def _run(code, **env):
    full_env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=120
    )


CHECK_PATCHED = textwrap.dedent("""
    import transformers.models.llama.modeling_llama as m
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    print("patched" if hasattr(m.LlamaRMSNorm.forward, "_ascend_tools_patch") else "hf",
          "ascend_fused" in ALL_ATTENTION_FUNCTIONS)
""")


def test_env_switch_disables_import():
    code = "import ascend_tools.patch\n" + CHECK_PATCHED
    off = _run(code, ASCEND_TOOLS_PATCH="0")
    assert off.returncode == 0, off.stderr
    assert off.stdout.split() == ["hf", "False"]
    on = _run(code, ASCEND_TOOLS_PATCH="1")
    assert on.returncode == 0, on.stderr
    assert on.stdout.split() == ["patched", "True"]


def test_without_transformers_one_info_line():
    code = textwrap.dedent("""
        import logging, sys
        sys.modules["transformers"] = None
        logging.basicConfig(level=logging.DEBUG, format="LOG %(name)s %(levelname)s %(message)s")
        import ascend_tools.patch as p
        print("status", p.status()["transformers"])
    """)
    r = _run(code)
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("LOG ascend_tools")]
    assert len(lines) == 1, r.stderr
    assert "INFO" in lines[0] and "transformers is not installed" in lines[0]
    assert "status None" in r.stdout


def test_patch_status_cli():
    from click.testing import CliRunner

    from ascend_tools.cli import main

    hf.patch_all()
    model = patch.apply(build(FAMILIES[-1]))
    r = CliRunner().invoke(main, ["patch-status", "--format", "json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["schema"] == "ascend-doctor/patch-status/1"
    assert {f["family"] for f in doc["families"]} >= set(FAMILIES)
    assert [m for m in doc["models"] if m["model"] == type(model).__name__]
    assert {t["op"] for t in doc["tiers"]} == set(hf.OPS)
    for fmt in ("table", "markdown", "html"):
        r = CliRunner().invoke(main, ["patch-status", "--format", fmt])
        assert r.exit_code == 0, r.output
        assert FAMILIES[-1] in r.output


def test_liger_style_table():
    assert set(FAMILIES) <= set(patch.PATCH_FUNCTIONS)
    assert patch.PATCH_FUNCTIONS["gemma3_text"] is patch.PATCH_FUNCTIONS["gemma3"]
    off = {"rope": False, "attention": False, "swiglu": False, "linear_cross_entropy": False}
    assert patch.PATCH_FUNCTIONS["llama"](rms_norm=True, **off) == ["rms_norm"]
    assert patch.PATCH_FUNCTIONS["llama"] is hf.patch_llama
