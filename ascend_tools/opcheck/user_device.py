"""``Tensor.device`` on the fake node: ``cuda:N`` to the user's code, ``meta`` to every library; and
``Tensor.get_device()`` likewise: N to the user's code, -1 (a host tensor's answer) to libraries.

Tensors the script put on the accelerator live on meta (``fake_accelerator.py`` says why), so without this
``x.device.type == "cuda"``, ``x.device == torch.device("cuda", 0)`` and ``str(x.device).startswith("cuda")``
in the user's code would take their non-accelerator path (pytorch/examples' ImageNet decides DDP wrapping from
``device.type == "cuda"``; model code calls flash-attn only ``if q.device.type == "cuda"``). torch,
transformers, accelerate and the rest keep seeing meta: their ``device.type == "meta"`` checks
(``init_empty_weights``, ``from_pretrained``, ``to_empty``) must keep working. Which code is the user's is
``user_code.is_users`` of the calling frame, cached per code object; the index is the node's current device.
``x.get_device()`` says -1 for meta (as for the CPU): ``torch.cuda.set_device(x.get_device())`` would fail and
``if x.get_device() == -1`` (a common "on the CPU?" test) would take the host path, so it follows the same rule.
"""

import sys
from typing import Any, Callable, Dict, List, Tuple

import torch

from .user_code import is_users

#: the C getter the property wraps: torch.Tensor inherits it (from torch._C.TensorBase, _TensorBase before 2.3)
_DEVICE = next(vars(c)["device"] for c in torch.Tensor.__mro__[1:] if "device" in vars(c)).__get__
#: the C methods the fake node replaces (``torch.get_device(x)`` is the function form of the same query)
_GET_DEVICE = torch.Tensor.get_device
_TORCH_GET_DEVICE = torch.get_device


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


def _get_device(
    query: Callable[[torch.Tensor], int], current: Callable[[], int]
) -> Callable[[torch.Tensor], int]:
    def get_device(self: torch.Tensor) -> int:
        if self.is_meta and is_users(sys._getframe(1).f_code):
            return current()
        return query(self)

    return get_device


def get_device_patches(current: Callable[[], int]) -> List[Tuple[Any, str, Any]]:
    """(owner, name, replacement) for ``Tensor.get_device`` and ``torch.get_device`` of a fake node whose
    current device index is ``current()``."""
    return [
        (torch.Tensor, "get_device", _get_device(_GET_DEVICE, current)),
        (torch, "get_device", _get_device(_TORCH_GET_DEVICE, current)),
    ]
