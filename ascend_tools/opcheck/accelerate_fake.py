"""Accelerate in the check-ops child: FSDP2's parameter matching on meta parameters.

``Accelerator.prepare`` with FSDP2 swaps the optimizer's parameters for the sharded ones, matching each to
the model's by ``_get_parameter_id``: the data pointer, through torchao's float8 weight wrapper (which
``AORecipeKwargs`` puts around each Linear weight after the optimizer was built) to the tensor it wraps.
Meta parameters, all of them here (``fake_accelerator.py``), match by identity instead, and the wrapper's
identity is not the weight's: the optimizer's parameters "couldn't be switched". Here a meta parameter's key
is the identity of the innermost tensor it wraps (``_tensor``), as the real key is its data pointer.
"""

from typing import Any, Callable

import torch

from . import patch_on_import


def _parameter_id(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def parameter_id(param: Any) -> Any:
        if not param.is_meta:
            return original(param)
        while isinstance(getattr(param, "_tensor", None), torch.Tensor):
            param = param._tensor
        return id(param)

    return parameter_id


def _patch(module: Any) -> None:
    if hasattr(module, "_get_parameter_id"):  # older accelerate matched FSDP2 parameters by data_ptr()
        module._get_parameter_id = _parameter_id(module._get_parameter_id)


def install() -> None:
    patch_on_import.install({"accelerate.accelerator": _patch})
