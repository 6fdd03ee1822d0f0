"""Llama-2-7B, built from its config with random weights: the shape a team ports first.

    ascend-doctor check-ops ascend_tools/examples/llama_7b.py

check-ops builds it on the meta device (no weights are allocated) and traces one training step.
Running this file directly builds a 2-layer version and runs it on the CPU.
"""

from typing import Any, Dict

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# meta-llama/Llama-2-7b-hf config.json
LLAMA2_7B: Dict[str, Any] = dict(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    hidden_act="silu",
    tie_word_embeddings=False,
)
BATCH, SEQ_LEN = 1, 512


def build_model(num_hidden_layers: int = LLAMA2_7B["num_hidden_layers"]) -> torch.nn.Module:
    config = LlamaConfig(**dict(LLAMA2_7B, num_hidden_layers=num_hidden_layers))
    return LlamaForCausalLM(config)


def example_inputs() -> dict:
    input_ids = torch.randint(0, LLAMA2_7B["vocab_size"], (BATCH, SEQ_LEN))
    return {"input_ids": input_ids, "labels": input_ids}


if __name__ == "__main__":
    model = build_model(num_hidden_layers=2)
    out = model(**example_inputs())
    out.loss.backward()
    print("loss", float(out.loss))
