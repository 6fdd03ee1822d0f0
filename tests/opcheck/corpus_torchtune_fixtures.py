"""A tiny Llama 3.2 in the layout torchtune's full-finetune recipes read (truth "fixtures", kind
``torchtune_llama3_2``): what ``tune download meta-llama/Llama-3.2-1B-Instruct`` leaves on disk, at toy sizes.
Written here, nothing downloaded:

- ``config.json`` and ``model.safetensors`` in Hugging Face's LlamaForCausalLM format (bf16, tied
  embeddings, no ``lm_head.weight``), which ``FullModelHFCheckpointer(model_type=LLAMA3_2)`` converts;
- ``original/tokenizer.model``, a tiktoken BPE file (``base64(token) rank`` lines): the 256 single bytes,
  then every prefix of the fixture's words with their leading space, so each word is reachable by merges;
- ``tokenizer.json`` whose ``added_tokens`` are Llama 3's special tokens renumbered after that vocabulary
  (the recipe's ``tokenizer.special_tokens_path``), so every id fits the toy model's embedding.

The sizes the recipe's model must be given on the command line are ``SIZES`` (see the torchtune_full truth).
"""

import base64
import json
from pathlib import Path
from typing import Any, Dict, List

#: the toy model: torchtune.models.llama3_2.llama3_2's arguments (Llama-3.2-1B: 128256, 16, 32, 8, 2048, 8192)
SIZES = {
    "vocab_size": 384,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "embed_dim": 64,
    "intermediate_dim": 128,
    "max_seq_len": 128,
}

#: the special tokens Llama3Tokenizer looks up by name (torchtune.models.llama3._tokenizer.SPECIAL_TOKENS)
SPECIAL_TOKENS = (
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
    "<|video|>",
)


def bpe_ranks() -> List[bytes]:
    """The tokens in rank order: single bytes, then the prefixes (two bytes and up) of " word"."""
    from corpus_fixtures import _WORDS

    tokens = [bytes([b]) for b in range(256)]
    seen = set(tokens)
    for word in _WORDS:
        text = (" " + word).encode()
        for end in range(2, len(text) + 1):
            if text[:end] not in seen:
                seen.add(text[:end])
                tokens.append(text[:end])
    return tokens


def _tokenizer(path: Path) -> None:
    ranks = bpe_ranks()
    (path / "original").mkdir(parents=True, exist_ok=True)
    lines = (f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(ranks))
    (path / "original" / "tokenizer.model").write_text("".join(lines))
    added = [
        {"id": len(ranks) + i, "content": name, "special": True} for i, name in enumerate(SPECIAL_TOKENS)
    ]
    assert len(ranks) + len(added) <= SIZES["vocab_size"]
    (path / "tokenizer.json").write_text(json.dumps({"added_tokens": added}, indent=1))


def _hf_state_dict(
    layers: int, dim: int, hidden: int, heads: int, kv_heads: int, vocab: int
) -> Dict[str, Any]:
    import torch

    head_dim = dim // heads
    shapes = {"model.embed_tokens.weight": (vocab, dim), "model.norm.weight": (dim,)}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes.update(
            {
                p + "self_attn.q_proj.weight": (heads * head_dim, dim),
                p + "self_attn.k_proj.weight": (kv_heads * head_dim, dim),
                p + "self_attn.v_proj.weight": (kv_heads * head_dim, dim),
                p + "self_attn.o_proj.weight": (dim, heads * head_dim),
                p + "mlp.gate_proj.weight": (hidden, dim),
                p + "mlp.up_proj.weight": (hidden, dim),
                p + "mlp.down_proj.weight": (dim, hidden),
                p + "input_layernorm.weight": (dim,),
                p + "post_attention_layernorm.weight": (dim,),
            }
        )
    gen = torch.Generator().manual_seed(0)
    return {
        k: (torch.ones(s) if len(s) == 1 else 0.02 * torch.randn(s, generator=gen)).to(torch.bfloat16)
        for k, s in shapes.items()
    }


def torchtune_llama3_2(path: Path, spec: Dict[str, Any]) -> None:
    """The checkpoint directory (config, weights, tokenizer); the weights are written where torch and
    safetensors are installed (the torchtune venv: only the trace reads them)."""
    path.mkdir(parents=True, exist_ok=True)
    _tokenizer(path)
    s = SIZES
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": s["vocab_size"],
        "hidden_size": s["embed_dim"],
        "intermediate_size": s["intermediate_dim"],
        "num_hidden_layers": s["num_layers"],
        "num_attention_heads": s["num_heads"],
        "num_key_value_heads": s["num_kv_heads"],
        "head_dim": s["embed_dim"] // s["num_heads"],
        "max_position_embeddings": s["max_seq_len"],
        "rope_theta": 500000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
    }
    (path / "config.json").write_text(json.dumps(config, indent=1))
    try:
        from safetensors.torch import save_file
    except ImportError:
        return
    weights = _hf_state_dict(
        s["num_layers"],
        s["embed_dim"],
        s["intermediate_dim"],
        s["num_heads"],
        s["num_kv_heads"],
        s["vocab_size"],
    )
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
