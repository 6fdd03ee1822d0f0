"""Fusion-pattern finding: on tiny Hugging Face Llama models (eager and SDPA attention), on Huawei's own
rule file, and on hand-built op streams."""

import os
import re

import pytest
import torch

from ascend_tools.opcheck import patterns, support, trace, verdicts
from ascend_tools.opcheck.trace import OpEvent

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RULES_YAML = os.path.join(
    os.path.dirname(REPO), "shared", "data", "msprobe", "msprof_analyze_timeline_fusion_ops.yaml"
)
LAYERS = 3
VERSION = "2.14"


def _tiny_llama(impl):
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=128,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=LAYERS,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    config._attn_implementation = impl
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
        ids = torch.zeros((1, 8), dtype=torch.long)
    model.train()
    assert model.config._attn_implementation == impl
    result = trace.run_traced(model, lambda: model(input_ids=ids, labels=ids), backward=False)
    assert not result.error
    stream = verdicts.npu_stream(result.events, VERSION)
    return model, stream, patterns.find([e for e in stream if not e.via])


@pytest.fixture(scope="module")
def eager():
    return _tiny_llama("eager")


@pytest.fixture(scope="module")
def sdpa():
    return _tiny_llama("sdpa")


def _modules_of(model, class_suffix):
    return sorted(n for n, m in model.named_modules() if type(m).__name__.endswith(class_suffix))


def _by_op(matches):
    out = {}
    for m in matches:
        out.setdefault(m.fused_op, []).append(m)
    return out


def _check_common(model, matches):
    found = _by_op(matches)
    rms = found.get("torch_npu.npu_rms_norm", [])
    norms = _modules_of(model, "RMSNorm")
    assert len(norms) == 2 * LAYERS + 1
    assert len(rms) == 2 * LAYERS + 1
    assert sorted(m.module for m in rms) == norms
    rope = found.get("torch_npu.npu_rotary_mul", [])
    assert len(rope) == 2 * LAYERS  # q and k
    assert sorted({m.module for m in rope}) == [f"model.layers.{i}.self_attn" for i in range(LAYERS)]
    swiglu = found.get("torch_npu.npu_swiglu", [])
    assert len(swiglu) == LAYERS
    assert sorted(m.module for m in swiglu) == _modules_of(model, "MLP")
    # a match never shares an event with another one
    members = [i for m in matches for i in m.events]
    assert len(members) == len(set(members))


def test_eager_llama_attention_is_a_fusion_candidate(eager):
    model, stream, matches = eager
    _check_common(model, matches)
    attn = _by_op(matches).get("torch_npu.npu_fusion_attention", [])
    assert sorted(m.module for m in attn) == [f"model.layers.{i}.self_attn" for i in range(LAYERS)]
    for m in attn:
        ops = [patterns.short_name(stream[i].op) for i in m.events]
        assert ops[0] == "matmul" and ops[-1] == "matmul" and "softmax" in ops
        assert m.label == "attention"
    # eager attention calls no SDPA
    assert not any(e.is_parent and e.op == "aten::scaled_dot_product_attention" for e in stream)


def test_sdpa_llama_attention_is_fused_already(sdpa):
    model, stream, matches = sdpa
    _check_common(model, matches)
    assert "torch_npu.npu_fusion_attention" not in _by_op(matches)
    # what the NPU runs: one SDPA per layer, a kernel torch_npu has
    assert support.has_npu_kernel("aten::scaled_dot_product_attention", VERSION)
    fused = [e for e in stream if e.op == "aten::scaled_dot_product_attention"]
    assert sorted(e.module for e in fused) == [f"model.layers.{i}.self_attn" for i in range(LAYERS)]
    assert not any(e.parent != -1 for e in stream)  # its decomposition is not in the NPU stream


def test_summarize_folds_layers(sdpa):
    _, _, matches = sdpa
    rows = {r["fused_op"]: r for r in patterns.summarize(matches)}
    rms = rows["torch_npu.npu_rms_norm"]
    assert rms["count"] == 2 * LAYERS + 1 and rms["pattern"] == "RMSNorm"
    last = LAYERS - 1
    assert rms["modules"] == sorted(
        [
            f"model.layers.[0-{last}].input_layernorm",
            f"model.layers.[0-{last}].post_attention_layernorm",
            "model.norm",
        ]
    )
    assert rows["torch_npu.npu_swiglu"]["modules"] == [f"model.layers.[0-{last}].mlp"]


# --- Huawei's rule file ------------------------------------------------------------------------------


def _yaml_rules():
    if not os.path.exists(RULES_YAML):
        pytest.skip(f"{RULES_YAML} absent: CI keeps ../shared beside the clone")
    import yaml  # the dev extra installs pyyaml

    with open(RULES_YAML, encoding="utf-8") as f:
        entries = yaml.safe_load(f)
    out = []
    for entry in entries:
        for action in ((entry.get("operator_rules") or {}).get("aten") or {}).values():
            for fused, chains in (action or {}).items():
                out.extend((fused, chain) for chain in chains)
    assert out
    return out


def _shortest_chain(rule):
    """The shortest op sequence a rule accepts, written by hand from the rule syntax."""
    ops = []
    for token in rule.replace(" ", "").split("-"):
        m = re.fullmatch(r"\((\w+)(?:\|\w+)*\)(?:\{(\d+),\d+\})?|(\w+)", token)
        name = m.group(1) or m.group(3)
        ops += [name] * (int(m.group(2)) if m.group(2) is not None else 1)
    return ops


def _longest_chain(rule):
    ops = []
    for token in rule.replace(" ", "").split("-"):
        m = re.fullmatch(r"\((\w+)(?:\|\w+)*\)(?:\{\d+,(\d+)\})?|(\w+)", token)
        name = m.group(1) or m.group(3)
        ops += [name] * (int(m.group(2)) if m.group(2) is not None else 1)
    return ops


def test_every_aten_rule_of_the_msprof_yaml_compiles_and_matches_its_own_chain():
    for fused, rule in _yaml_rules():
        regex = patterns.compile_rule(rule)
        for chain in (_shortest_chain(rule), _longest_chain(rule)):
            text = "".join(patterns.short_name(f"aten::{op}") + "," for op in chain)
            if not text:
                continue
            assert regex.fullmatch(text), (fused, rule, text)


def test_compile_rule_rejects_garbage():
    with pytest.raises(ValueError):
        patterns.compile_rule("matmul-(soft+max)")
    with pytest.raises(ValueError):
        patterns.compile_rule("AdamW.step")


# --- hand-built streams ------------------------------------------------------------------------------


def _stream(*ops, module="m"):
    return [
        OpEvent(op=f"aten::{op}", phase="forward", module=module, dtypes=("float32",), shapes=((2, 4),))
        for op in ops
    ]


RMS = ("pow.Tensor_Scalar", "mean.dim", "add.Scalar", "rsqrt", "mul.Tensor")


def test_layout_ops_do_not_break_a_chain():
    ops = (
        "pow.Tensor_Scalar",
        "view",
        "mean.dim",
        "_to_copy",
        "add.Scalar",
        "transpose.int",
        "rsqrt",
        "expand",
        "mul.Tensor",
    )
    stream = _stream(*ops)
    (match,) = patterns.find(stream)
    assert match.fused_op == "torch_npu.npu_rms_norm"
    assert match.chain == "pow-mean-add-rsqrt-mul"
    # the match holds the compute ops only, as positions in the stream
    assert [stream[i].op for i in match.events] == [f"aten::{o}" for o in RMS]


def test_a_compute_op_breaks_a_chain():
    stream = _stream("pow.Tensor_Scalar", "mean.dim", "add.Scalar", "exp", "rsqrt", "mul.Tensor")
    matches = patterns.find(stream)
    # rsqrt-mul alone is still the minimum RMSNorm chain; the pow-mean-add prefix is not part of it
    assert [m.chain for m in matches] == ["rsqrt-mul"]


def test_backward_events_are_ignored():
    stream = _stream(*RMS)
    for e in stream:
        e.phase = "backward"
    assert patterns.find(stream) == []


def test_two_rules_for_one_fused_op_count_once():
    # (chunk)-silu-mul (Huawei's) and silu-(matmul){0,1}-mul (ours) both match this chain
    stream = _stream("split.Tensor", "silu", "mul.Tensor")
    matches = patterns.find(stream)
    assert len(matches) == 1
    assert matches[0].fused_op == "torch_npu.npu_swiglu"
    assert matches[0].events == (0, 1, 2)
    assert patterns.summarize(matches)[0]["count"] == 1


def test_overlapping_chains_share_no_event():
    # RoPE (chunk-neg-cat-mul-mul-add) and RMSNorm (add-rsqrt-mul) could both claim the add
    stream = _stream(
        "split.Tensor", "neg", "cat", "mul.Tensor", "mul.Tensor", "add.Tensor", "rsqrt", "mul.Tensor"
    )
    matches = patterns.find(stream)
    members = [i for m in matches for i in m.events]
    assert len(members) == len(set(members))
    assert sum(1 for i in members if stream[i].op == "aten::add.Tensor") == 1


def test_consecutive_chains_and_modules():
    stream = _stream(*RMS, module="model.layers.0.norm") + _stream(*RMS, module="model.layers.1.norm")
    stream += _stream("mm", "add.Tensor", "_safe_softmax", "bmm", module="model.layers.1.attn")
    matches = patterns.find(stream)
    assert [(m.fused_op, m.module) for m in matches] == [
        ("torch_npu.npu_rms_norm", "model.layers.0.norm"),
        ("torch_npu.npu_rms_norm", "model.layers.1.norm"),
        ("torch_npu.npu_fusion_attention", "model.layers.1.attn"),
    ]
    assert matches[2].chain == "matmul-add-softmax-matmul"
    rows = patterns.summarize(matches)
    assert rows[0]["count"] == 2 and rows[0]["modules"] == ["model.layers.[0-1].norm"]


def test_chain_spanning_modules_gets_their_common_ancestor():
    stream = _stream("pow.Tensor_Scalar", "mean.dim", module="a.b.c") + _stream(
        "add.Scalar", "rsqrt", "mul.Tensor", module="a.b.d"
    )
    (match,) = patterns.find(stream)
    assert match.module == "a.b"
