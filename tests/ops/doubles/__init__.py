"""Test-only doubles of torch_npu ops, written from the documented semantics in
``../shared/data/torch_npu/fused_op_docs/`` (never from the implementation): each checks the documented
argument rules and computes the documented result in plain PyTorch, so a tier's argument mapping runs on
the CPU. ``fake_torch_npu(**ops)`` builds a stand-in ``torch_npu`` module holding the given ops."""

import types
from typing import Any


def fake_torch_npu(**ops: Any) -> types.ModuleType:
    mod = types.ModuleType("torch_npu")
    mod.__version__ = "0.0.0+test-double"
    for name, fn in ops.items():
        setattr(mod, name, fn)
    return mod
