"""A consolidated Mistral checkpoint for mistralai/mistral-finetune (truth "fixtures" kind
``mistral_consolidated``): the folder ``model_id_or_path`` names, as Mistral's downloads ship it.

``finetune/wrapped_model.py`` reads ``params.json`` (dim, n_layers, head_dim, hidden_dim, n_heads,
n_kv_heads, norm_eps, vocab_size) and loads ``consolidated.safetensors`` into its ``Transformer`` itself
(``load_state_dict(..., assign=True)``, strict), so every tensor of the model is written, by the names
and shapes of ``model/transformer.py``. It refuses a vocabulary under 32,768 (MistralTokenizer.v3's), so
the two embedding matrices dominate the file: 8.4 MB in bf16 at dim 64.
"""

import json
from pathlib import Path
from typing import Any, Dict

import torch

PARAMS = {
    "dim": 64,
    "n_layers": 2,
    "head_dim": 16,
    "hidden_dim": 128,
    "n_heads": 4,
    "n_kv_heads": 2,
    "norm_eps": 1e-5,
    "vocab_size": 32768,
    "rope_theta": 1000000.0,
}


def _shapes(p: Dict[str, Any]) -> Dict[str, tuple]:
    dim, hidden, vocab = p["dim"], p["hidden_dim"], p["vocab_size"]
    q, kv = p["n_heads"] * p["head_dim"], p["n_kv_heads"] * p["head_dim"]
    shapes = {"tok_embeddings.weight": (vocab, dim), "norm.weight": (dim,), "output.weight": (vocab, dim)}
    for i in range(p["n_layers"]):
        layer = {
            "attention.wq.weight": (q, dim),
            "attention.wk.weight": (kv, dim),
            "attention.wv.weight": (kv, dim),
            "attention.wo.weight": (dim, q),
            "feed_forward.w1.weight": (hidden, dim),
            "feed_forward.w2.weight": (dim, hidden),
            "feed_forward.w3.weight": (hidden, dim),
            "attention_norm.weight": (dim,),
            "ffn_norm.weight": (dim,),
        }
        shapes.update({f"layers.{i}.{name}": shape for name, shape in layer.items()})
    return shapes


def mistral_consolidated(path: Path, spec: Dict[str, Any]) -> None:
    """params.json and consolidated.safetensors (bf16, as Mistral ships them; norms 1, weights ~N(0, 0.02))."""
    from safetensors.torch import save_file

    params = dict(PARAMS, **spec.get("params", {}))
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.json").write_text(json.dumps(params, indent=1))
    gen = torch.Generator().manual_seed(0)
    tensors = {
        name: (torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * 0.02).to(
            torch.bfloat16
        )
        for name, shape in _shapes(params).items()
    }
    save_file(tensors, str(path / "consolidated.safetensors"))
