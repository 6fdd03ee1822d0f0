"""``Parameter.is_meta`` on the fake node: False to the user's code for a parameter that held host data.

The fake node registers every parameter on meta (``fake_accelerator.py``), including the weights a script
loads itself from a checkpoint into a module built on meta (``model.load_state_dict(sd, assign=True)``,
mistral-finetune). On the user's node those are host tensors, and scripts check it: mistral-finetune treats
a module whose parameters are all still meta after loading as a LoRA layer to initialise, and refuses any
other. So a parameter the fake node moved to meta from the host is marked, and the user's code
(``user_code.is_users``) sees it as not meta; parameters created on meta stay meta to everyone, and
libraries (FSDP's materialisation check, accelerate) keep seeing meta.
"""

import sys
from typing import Any

import torch

from .user_code import is_users

#: the C getter the property wraps (on torch._C.TensorBase, _TensorBase before torch 2.3)
_IS_META = next(vars(c)["is_meta"] for c in torch.Tensor.__mro__[1:] if "is_meta" in vars(c)).__get__
_FROM_HOST = "_checkops_from_host"


def moved_from_host(param: torch.nn.Parameter) -> torch.nn.Parameter:
    """``param`` (host data) as a meta parameter that the user's code sees as not meta."""
    moved = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
    setattr(moved, _FROM_HOST, True)
    return moved


def _is_meta(self: torch.Tensor) -> Any:
    seen = _IS_META(self)
    if seen and getattr(self, _FROM_HOST, False) and is_users(sys._getframe(1).f_code):
        return False
    return seen


is_meta_property = property(_is_meta)
