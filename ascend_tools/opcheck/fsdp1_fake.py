"""FSDP (``FullyShardedDataParallel``, FSDP1) in the check-ops child, where every parameter is on meta.

Meta stands for the fake accelerator (``fake_accelerator.py``), so a module FSDP wraps is already on its
device, as on the user's node:

* FSDP takes its compute device from the parameters and refuses a different ``device_id`` ("Inconsistent
  compute device and `device_id` on rank 0: meta vs cuda:0", as HF Trainer's ``--fsdp full_shard`` passes
  it through accelerate): a meta module computes on meta, which stands for the ``device_id``, and meta's
  device handle (streams, ``current_device``) is the fake ``torch.cuda``.
* FSDP moves a host module to ``device_id`` by setting each tensor's ``.data``, which cannot turn a host
  tensor into a meta one: the module is moved with ``Module.to``, which replaces them (onto meta here).
* FSDP materialises a meta module (``to_empty`` + ``reset_parameters``), replacing its parameters: not here.
* ``device_id=torch.cuda.current_device()`` (an index): FSDP makes ``torch.device(index)``, which names
  the current accelerator and needs a real one; on the fake node the index names a ``cuda`` device.
* accelerate then remaps the optimizer's parameters that FSDP1 replaced, looking meta parameters up by name,
  the wrapped model's names under the unwrapped ones (KeyError ``..._fsdp_wrapped_module...``): on the real
  node the parameters are not meta and nothing is remapped, so nothing is here.
"""

import inspect
from typing import Any, Callable, Dict, Tuple

import torch

from . import patch_on_import
from .fake_accelerator import META, is_accelerator


def _on_meta(module: Any, ignored_params: Any) -> bool:
    """Whether FSDP's first own parameter of ``module`` is on meta; a unit with none (mistral-finetune's LoRA
    wrap policy wraps LoRA's parameterless Dropout) computes on the current device: meta."""
    from torch.distributed.fsdp._init_utils import _get_orig_params  # loaded: FSDP is calling us

    param = next(_get_orig_params(module, ignored_params), None)
    return param is None or param.device == META


def _compute_device(original: Callable[..., torch.device]) -> Callable[..., torch.device]:
    def get_compute_device(
        module: Any, ignored_params: Any, device_from_device_id: Any, *args: Any, **kwargs: Any
    ) -> torch.device:
        if device_from_device_id is not None and _on_meta(module, ignored_params):
            return META
        return original(module, ignored_params, device_from_device_id, *args, **kwargs)

    return get_compute_device


def _no_materialization(original: Callable[..., Tuple[bool, bool]]) -> Callable[..., Tuple[bool, bool]]:
    def need_to_materialize_module(module: Any, ignored_params: Any, *args: Any) -> Tuple[bool, bool]:
        is_meta, deferred = original(module, ignored_params, *args)
        return (False, deferred) if is_meta and _on_meta(module, ignored_params) else (is_meta, deferred)

    return need_to_materialize_module


def _moved_by_module_to(original: Callable[..., None]) -> Callable[..., None]:
    def move_module_to_device(module: Any, ignored_params: Any, ignored_buffers: Any, device: Any) -> None:
        if device is not None and is_accelerator(device):
            module.to(device)
            return
        original(module, ignored_params, ignored_buffers, device)

    return move_module_to_device


def _patch_fsdp(module: Any) -> None:
    module._move_module_to_device = _moved_by_module_to(module._move_module_to_device)
    module._get_compute_device = _compute_device(module._get_compute_device)
    module._need_to_materialize_module = _no_materialization(module._need_to_materialize_module)


def _indexed_device_id(original: Callable[..., None]) -> Callable[..., None]:
    signature = inspect.signature(original)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        device_id = bound.arguments.get("device_id")
        if isinstance(device_id, int):
            bound.arguments["device_id"] = torch.device("cuda", device_id)
        original(*bound.args, **bound.kwargs)

    return __init__


def _patch_fsdp_class(module: Any) -> None:
    fsdp = module.FullyShardedDataParallel
    fsdp.__init__ = _indexed_device_id(fsdp.__init__)


def _patch_device_handle(module: Any) -> None:
    handle = module._FSDPDeviceHandle
    original = handle.from_device.__func__

    def from_device(cls: Any, device: torch.device) -> Any:
        return original(cls, torch.device("cuda") if device == META else device)

    handle.from_device = classmethod(from_device)


def _patch_accelerate(module: Any) -> None:
    accelerator = module.Accelerator
    original = getattr(accelerator, "_get_parameters_to_remap", None)
    if original is None:  # an accelerate without this step
        return

    def get_parameters_to_remap(self: Any, *args: Any) -> Dict[str, Any]:
        if self.distributed_type == module.DistributedType.FSDP and not self.is_fsdp2:
            return {}
        return original(self, *args)

    accelerator._get_parameters_to_remap = get_parameters_to_remap


def install() -> None:
    patch_on_import.install(
        {
            "torch.distributed.fsdp._common_utils": _patch_device_handle,
            "torch.distributed.fsdp._init_utils": _patch_fsdp,
            "torch.distributed.fsdp.fully_sharded_data_parallel": _patch_fsdp_class,
            "accelerate.accelerator": _patch_accelerate,
        }
    )
