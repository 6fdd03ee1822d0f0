"""An op call's non-tensor arguments, kept for its record (and a later replay) without its tensors."""

from typing import Any, Dict, List

import torch

from . import store


def _strip(value: Any, out: List[torch.Tensor]) -> Any:
    """``value`` with each tensor moved to ``out`` and replaced by ``store.TENSOR_SLOT``, in the order
    ``store.encode_call`` numbers tensors. What is left holds no tensor and is encoded by the writer."""
    if isinstance(value, torch.Tensor):
        out.append(value)
        return store.TENSOR_SLOT
    if isinstance(value, (list, tuple)):
        n = len(out)
        items = [_strip(v, out) for v in value]
        return value if len(out) == n else items
    if isinstance(value, dict):
        n = len(out)
        d = {k: _strip(v, out) for k, v in value.items()}
        return value if len(out) == n else d
    return value


def split_call(args: Any, kwargs: Dict[str, Any], out: List[torch.Tensor]) -> tuple:
    """``(args, kwargs)`` without their tensors (see :func:`_strip`), the tensors appended to ``out``."""
    slot = store.TENSOR_SLOT
    stripped = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
            stripped.append(slot)
        elif isinstance(a, (list, tuple, dict)):
            stripped.append(_strip(a, out))
        else:
            stripped.append(a)
    if kwargs:
        kwargs = {k: _strip(v, out) for k, v in kwargs.items()}
    return stripped, kwargs
