"""FSDP2 (``fully_shard``) in the check-ops child: it shards over the fake accelerator, meta parameters and all.

* Without a mesh, ``fully_shard`` builds one over ``torch._C._get_accelerator()`` (torch >= 2.6), which on
  this machine is the CPU: FSDP2 would then gather parameters into host buffers and hand host gradients to
  the (meta) parameters. While it builds that default mesh the accelerator is the fake node's ``cuda``, as
  ``torch.accelerator`` answers (``fake_accelerator.py``).
* ``fully_shard`` moves the module's parameters and buffers to that device by setting ``.data``, which
  cannot turn a host buffer (RoPE's ``inv_freq``) into a meta one: the fake accelerator's tensors are
  swapped onto meta first, as ``Module.to`` replaces them.
* FSDP2 waits for its all-gathers on the stream of its buffers' device module (``torch.<type>``): for
  meta buffers that is ``torch.cuda``, the fake node's.
* On the fake node every parameter lives on meta. FSDP2's first forward refuses a module whose sharded
  parameters are still on meta ("should be materialized from meta device before training"): that check is
  a no-op here, as Lightning's is (``lightning_fake.py``).
* A random op on a DTensor (``reset_parameters()`` of a sharded model: ``normal_``, ``uniform_``) makes DTensor
  set up its RNG tracker from the device's generator state (``torch.cuda.get_rng_state()``), which the fake
  node does not have and meta cannot hold. DTensor runs random ops on the local tensors without a tracker where
  the mesh's device has no RNG support (its CPU path): on meta that is the same trace, so the mesh says so.
* DTensor works out an op's output shape by running it on fake tensors of the mesh's device type; fake ``cuda``
  tensors abort on CPU-only torch (a random op's decomposition makes one), so on the fake node they are meta
  (the shapes, strides and dtypes are the same).
"""

import functools
from typing import Any, Callable

import torch

from . import patch_on_import
from .fake_accelerator import META, is_accelerator

#: the modules that hold FSDPParamGroup or import a default-mesh builder by name: torch >= 2.6, and the
#: ``_composable`` paths of torch 2.4-2.5
MODULES = (
    *(
        f"torch.distributed.{package}.{module}"
        for package in ("fsdp._fully_shard", "_composable.fsdp")
        for module in ("_fsdp_init", "_fsdp_param_group", "_fsdp_collectives", "_fsdp_state")
    ),
    "torch.distributed.fsdp._fully_shard._fully_shard",
    "torch.distributed._composable.fsdp.fully_shard",
    "torch.distributed._composable.replicate_with_fsdp",
)
#: DTensor's dispatch (torch >= 2.5: ``torch.distributed.tensor``; before, ``torch.distributed._tensor``) and where
#: it keeps the RNG-support check
DTENSOR_MODULES = tuple(
    f"torch.distributed.{package}.{module}"
    for package in ("tensor", "_tensor")
    for module in ("_dispatch", "_random", "random", "_op_schema")
)
DEFAULT_MESH = ("_init_default_mesh", "_init_default_fully_shard_mesh")


def _meta_is_materialised(self: Any) -> None:
    return None


def _on_the_accelerator(build: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(build)
    def build_on_the_accelerator(*args: Any, **kwargs: Any) -> Any:
        real = torch._C._get_accelerator
        torch._C._get_accelerator = lambda *a, **k: torch.device("cuda")
        try:
            return build(*args, **kwargs)
        finally:
            torch._C._get_accelerator = real

    return build_on_the_accelerator


def _swapped_onto_meta(move: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(move)
    def move_states_to_device(params: Any, buffers: Any, device: torch.device) -> Any:
        params, buffers = list(params), list(buffers)
        if is_accelerator(device):
            with torch.no_grad():
                for tensor in params + buffers:
                    if not tensor.is_meta and type(tensor) in (torch.Tensor, torch.nn.Parameter):
                        torch.utils.swap_tensors(tensor, type(tensor)(tensor.to(META)))
        return move(params, buffers, device)

    return move_states_to_device


def _meta_is_cuda(handle: Callable[[str], Any]) -> Callable[[str], Any]:
    def device_handle(device_type: str = "cuda") -> Any:
        return handle("cuda" if device_type == "meta" else device_type)

    return device_handle


def _patch(module: Any) -> None:
    if hasattr(module, "_get_device_handle"):
        module._get_device_handle = _meta_is_cuda(module._get_device_handle)
    if hasattr(module, "_move_states_to_device"):
        module._move_states_to_device = _swapped_onto_meta(module._move_states_to_device)
    group = getattr(module, "FSDPParamGroup", None)
    if group is not None and hasattr(group, "_validate_no_meta_params"):
        group._validate_no_meta_params = _meta_is_materialised
    for name in DEFAULT_MESH:
        if hasattr(module, name):
            setattr(module, name, _on_the_accelerator(getattr(module, name)))


def _no_rng_support(mesh: Any) -> bool:
    return False


def _meta_for_the_node(rebuild: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @functools.wraps(rebuild)
    def rebuild_tensor(spec: Any) -> Any:
        meta = getattr(spec, "tensor_meta", None)
        if meta is None or not is_accelerator(spec.mesh.device_type):
            return rebuild(spec)
        return torch.empty_strided(meta.shape, meta.stride, dtype=meta.dtype, device=META)

    return rebuild_tensor


def _patch_dtensor(module: Any) -> None:
    if hasattr(module, "is_rng_supported_mesh"):
        module.is_rng_supported_mesh = _no_rng_support
    if hasattr(module, "_rebuild_tensor_from_dtensor_meta"):
        module._rebuild_tensor_from_dtensor_meta = _meta_for_the_node(
            module._rebuild_tensor_from_dtensor_meta
        )


def install() -> None:
    patch_on_import.install(
        {**dict.fromkeys(MODULES, _patch), **dict.fromkeys(DTENSOR_MODULES, _patch_dtensor)}
    )
