"""``Tensor.device`` on the fake node: ``cuda:N`` to the user's code, ``meta`` to every library.

Tensors the script put on the accelerator live on meta (``fake_accelerator.py`` says why), so without this
``x.device.type == "cuda"``, ``x.device == torch.device("cuda", 0)`` and ``str(x.device).startswith("cuda")``
in the user's code would take their non-accelerator path (pytorch/examples' ImageNet decides DDP wrapping from
``device.type == "cuda"``; model code calls flash-attn only ``if q.device.type == "cuda"``). torch,
transformers, accelerate and the rest keep seeing meta: their ``device.type == "meta"`` checks
(``init_empty_weights``, ``from_pretrained``, ``to_empty``) must keep working. Which code is the user's is
``user_code.is_users`` of the calling frame, cached per code object; the index is the node's current device.
"""

import sys
from typing import Any, Callable, Dict

import torch

from .user_code import is_users

#: the C getter the property wraps: torch.Tensor inherits it (from torch._C.TensorBase, _TensorBase before 2.3)
_DEVICE = next(vars(c)["device"] for c in torch.Tensor.__mro__[1:] if "device" in vars(c)).__get__


def device_property(current: Callable[[], int]) -> property:
    """The ``Tensor.device`` of a fake node whose current device index is ``current()``."""
    accelerators: Dict[int, torch.device] = {}

    def device(self: torch.Tensor) -> Any:
        seen = _DEVICE(self)
        if seen.type != "meta" or not is_users(sys._getframe(1).f_code):
            return seen
        index = current()
        shown = accelerators.get(index)
        if shown is None:
            shown = accelerators[index] = torch.device("cuda", index)
        return shown

    return property(device)
