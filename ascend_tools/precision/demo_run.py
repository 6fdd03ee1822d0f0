"""The precision part of ``ascend-doctor demo``: a known fault, found.

A tiny Llama (built from a config, random weights) runs one training step twice: in float32 as the
reference, and in bfloat16 with one injected fault (a perturbed matmul in the MLP of layer 1) as the target.
Both are captured in tensor mode; ``compare`` must name the faulty call, and nothing else, while most op
outputs differ from the reference by bf16 rounding.
"""

import contextlib
import os
from typing import Any, Dict, Tuple

import torch

from ..report import Report
from .capture_session import capture
from .compare import compare_dumps
from .faults import Fault, FaultInjector

FAULT = Fault("aten::mm", call=12, kind="perturb", scale=0.5, fraction=0.1)


def tiny_llama() -> Tuple[Any, Any, Dict[str, torch.Tensor]]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
    )
    # what the ``attn_implementation`` keyword sets; 5.x's typed config signature no longer lists it
    config._attn_implementation = "eager"
    return LlamaForCausalLM, config, LlamaForCausalLM(config).state_dict()


def train_step(path: str, dtype: torch.dtype, fault: Any = None) -> Any:
    """Capture one forward+backward of the tiny Llama in ``dtype`` into ``path``; the injected
    call's key when ``fault`` fired."""
    model_cls, config, state = tiny_llama()
    model = model_cls(config)
    model.load_state_dict(state)
    model.to(dtype)
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    injector = FaultInjector(fault) if fault is not None else None
    # the fault sits below the capture, as a faulty kernel on the device would
    with (
        injector or contextlib.nullcontext(),
        capture(path, level="op", mode="tensor", model=model, stack=True),
    ):
        model(input_ids=ids, labels=ids).loss.backward()
    return injector.hit if injector is not None else None


def run(out_dir: str) -> Tuple[Report, str]:
    """Dump both runs under ``out_dir`` and compare them: (the report, the injected call's key)."""
    reference, target = os.path.join(out_dir, "reference-fp32"), os.path.join(out_dir, "target-bf16")
    train_step(reference, torch.float32)
    hit = train_step(target, torch.bfloat16, FAULT)
    return compare_dumps(target, reference), hit
