"""check-ops on tiny Hugging Face models built from config.json (random init, no download), one per family."""

import json

import pytest
import torch
import transformers
from click.testing import CliRunner
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools.cli import main

LAYERS = 2
SEQ = "8"
DECODER = dict(
    vocab_size=256,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=LAYERS,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
)
FAMILIES = {
    # name: (config class, kwargs, architecture, uses RMSNorm)
    "llama": ("LlamaConfig", DECODER, "LlamaForCausalLM", True),
    "qwen2": ("Qwen2Config", DECODER, "Qwen2ForCausalLM", True),
    "mistral": ("MistralConfig", DECODER, "MistralForCausalLM", True),
    "gemma": ("GemmaConfig", dict(DECODER, head_dim=16), "GemmaForCausalLM", True),
    "gpt2": (
        "GPT2Config",
        dict(vocab_size=256, n_embd=32, n_layer=LAYERS, n_head=2, n_positions=64),
        "GPT2LMHeadModel",
        False,
    ),
    "bert": (
        "BertConfig",
        dict(
            vocab_size=256,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=LAYERS,
            num_attention_heads=2,
            max_position_embeddings=64,
        ),
        "BertForMaskedLM",
        False,
    ),
}
STATUSES = {"npu", "cpu_fallback", "composite", "unsupported", "host"}


class _Recorder(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        schema = func._schema
        self.ops.append(schema.name if not schema.overload_name else f"{schema.name}.{schema.overload_name}")
        return func(*args, **(kwargs or {}))


@pytest.fixture(scope="module")
def embedding_backward_op():
    """The op autograd runs for nn.Embedding's backward, recorded on the CPU by a bare dispatch mode."""
    emb = torch.nn.Embedding(10, 4)
    out = emb(torch.tensor([[1, 2, 3]])).sum()
    rec = _Recorder()
    with rec:
        out.backward()
    found = [op for op in rec.ops if "embedding" in op]  # schema names: "aten::..."
    assert len(found) == 1, rec.ops
    return found[0]


def _config_dir(tmp_path, family):
    cls, kwargs, arch, _ = FAMILIES[family]
    raw = getattr(transformers, cls)(**kwargs).to_dict()
    raw["architectures"] = [arch]
    d = tmp_path / family
    d.mkdir()
    (d / "config.json").write_text(json.dumps(raw), encoding="utf-8")
    return d


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family(tmp_path, family, embedding_backward_op):
    target = _config_dir(tmp_path, family)
    result = CliRunner().invoke(
        main, ["check-ops", str(target), "--seq-len", SEQ, "-f", "json", "--fail-on", "never"]
    )
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "ascend-doctor/check-ops/1"
    assert doc["model"].startswith(FAMILIES[family][2])
    assert doc["trace"]["complete"] is True, doc["trace"]["stopped"]
    assert doc["trace"]["seq_len"] == int(SEQ)
    ops = {r["op"]: r for r in doc["ops"]}
    assert all(r["status"] in STATUSES for r in doc["ops"])

    matmuls = [op for op in ("aten::mm", "aten::addmm") if op in ops]
    assert matmuls
    for op in matmuls:
        assert ops[op]["status"] == "npu", ops[op]
    if family == "gpt2":  # Conv1D is addmm
        assert "aten::addmm" in ops
    else:
        assert "aten::mm" in ops or "aten::addmm" in ops

    emb = ops.get(embedding_backward_op)
    assert emb is not None, sorted(ops)
    assert emb["phases"] == ["backward"]

    rms = [p for p in doc["patterns"] if p["fused_op"] == "torch_npu.npu_rms_norm"]
    if FAMILIES[family][3]:
        assert sum(p["count"] for p in rms) == 2 * LAYERS + 1
    else:
        assert rms == []
        assert "aten::native_layer_norm" in ops
