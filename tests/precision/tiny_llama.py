"""The two-layer Llama (hidden 32, 4 heads, 2 kv heads, vocab 64, eager attention) of the capture tests under
torch.distributed, built from a config with seed 0: the same weights in every process and run."""

import torch
import transformers


def build(attn_implementation: str = "eager") -> transformers.LlamaForCausalLM:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=64,
        attn_implementation=attn_implementation,
    )
    return transformers.LlamaForCausalLM(config)
