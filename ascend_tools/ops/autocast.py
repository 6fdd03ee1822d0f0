"""The caller's ``torch.autocast`` state, on every torch the package supports (2.1+).

Mixed-precision training (HF ``Trainer(bf16=True)``, Accelerate ``mixed_precision="bf16"``, a hand-written
``torch.autocast`` block) keeps fp32 weights and runs matmuls in the autocast dtype. A fused op that reads a weight
itself (the fused linear cross-entropy reads ``lm_head.weight``) has to do the cast autocast would have done, and a
tier's self-check has to run outside it (it compares tiers in the dtype it was given).
"""

import contextlib
from typing import Any, ContextManager, Optional, Tuple

import torch


def autocast_dtype(device_type: str) -> Optional[torch.dtype]:
    """The dtype autocast runs matmuls in on ``device_type`` now, or None where it is off."""
    try:
        if torch.is_autocast_enabled(device_type):  # torch >= 2.4
            return torch.get_autocast_dtype(device_type)
        return None
    except (TypeError, AttributeError, RuntimeError):  # torch < 2.4: one function per device type
        pass
    if device_type == "cuda" and torch.is_autocast_enabled():
        return torch.get_autocast_gpu_dtype()
    if device_type == "cpu" and torch.is_autocast_cpu_enabled():
        return torch.get_autocast_cpu_dtype()
    npu: Any = getattr(torch, "npu", None)  # torch_npu's own, before the generic API
    if device_type == "npu" and hasattr(npu, "is_autocast_enabled") and npu.is_autocast_enabled():
        return npu.get_autocast_dtype()
    return None


def autocast_off(device_type: str) -> ContextManager[Any]:
    """Autocast disabled on ``device_type`` (a null context where it is off, or where autocast has no such
    device type: ``meta``)."""
    if autocast_dtype(device_type) is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


_CAST = (torch.float32, torch.float16, torch.bfloat16)  # what autocast casts (float64 is left as it is)


def autocast_inputs(device_type: str, *values: Any) -> Tuple[Any, ...]:
    """``values`` as autocast hands them to an op that runs in lower precision (``mm``, ``linear``, ``sdpa``): its
    floating tensors in the autocast dtype, the rest (and everything where autocast is off) as they are. An op
    that reads a weight itself, or runs in-place products that autocast does not cast, makes these casts and
    runs outside autocast (:func:`autocast_off`)."""
    low = autocast_dtype(device_type)
    if low is None:
        return values
    return tuple(v.to(low) if isinstance(v, torch.Tensor) and v.dtype in _CAST else v for v in values)
