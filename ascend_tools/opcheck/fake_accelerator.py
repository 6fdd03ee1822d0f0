"""A fake CUDA node for the user's script: ``torch.cuda`` answers as N GPUs, and ``cuda`` tensors live on meta.

What the script asks for on the accelerator (``.cuda()``, ``.to("cuda:1")``, ``device="cuda"`` in a factory
call) goes to the **meta** device: shapes and dtypes, no storage. Parameters go to meta as they are
registered (as accelerate's ``init_empty_weights`` does), so a 7B model built on the "CPU" costs no memory
and no random initialisation. Data the script loads stays real until it is moved to the accelerator.

Why meta, not FakeTensors on ``cuda``: FakeTensorMode can hold a ``cuda`` FakeTensor on CPU-only torch, but
the first op with autograd on it aborts the process (a C++ DeviceGuard for CUDA: "PyTorch is not linked
with support for cuda devices", torch 2.13). So the user's own code is shown ``cuda:N`` where the tensor is
on meta (``user_device.py``), and CUDA autocast is emulated on meta (``fake_autocast.py``). Everything here is
patched for the check-ops child only, never in training.
"""

import contextlib
import importlib.util
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, Iterator, List, Tuple

import torch
from torch.overrides import TorchFunctionMode

from .host_parameters import is_meta_property, moved_from_host
from .user_device import device_property, get_device_patches

GIB = 1 << 30
#: what the fake node's devices report (an 80 GB Ampere-class part: bf16, TF32, flash-attn 2 capable)
DEVICE_NAME = "NVIDIA A100-SXM4-80GB (ascend-doctor fake)"
DEVICE_MEMORY = 80 * GIB
CAPABILITY = (8, 0)
#: ``torch.cuda.nccl.version()`` on the fake node (what torch 2.x CUDA wheels bundle; bf16 all-reduce needs >= 2.10)
NCCL_VERSION = (2, 21, 5)
#: ``torch.version.cuda`` of the fake node where neither torch nor torchvision names one
CUDA_VERSION = "12.4"
META = torch.device("meta")


class FakeNode:
    """The node's state: device count and the current device."""

    def __init__(self, devices: int) -> None:
        # CUDA_VISIBLE_DEVICES=0 python train.py: the script sees one of the node's devices
        visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
        self.devices = min(devices, len(visible)) if visible else devices
        self.current = int(os.environ.get("LOCAL_RANK", "0") or 0) % max(devices, 1)

    def set_device(self, device: Any) -> None:
        if isinstance(device, (str, torch.device)):
            device = torch.device(device).index
        self.current = int(device or 0)

    def properties(self, device: Any = None) -> Any:
        return SimpleNamespace(
            name=DEVICE_NAME,
            total_memory=DEVICE_MEMORY,
            major=CAPABILITY[0],
            minor=CAPABILITY[1],
            multi_processor_count=108,
            is_integrated=False,
            is_multi_gpu_board=False,
            L2_cache_size=40 << 20,
            uuid="ascend-doctor-fake",
        )


def is_accelerator(arg: Any) -> bool:
    """``"cuda"``, ``"cuda:1"``, ``torch.device("cuda", 1)``, and a bare index (``x.to(local_rank)``,
    ``device=0``: PyTorch reads an int device as the accelerator's)."""
    if isinstance(arg, torch.device):
        return arg.type == "cuda"
    if isinstance(arg, int) and not isinstance(arg, bool):
        return True
    return isinstance(arg, str) and arg.split(":")[0] == "cuda"


def _to_meta(arg: Any) -> Any:
    return META if is_accelerator(arg) else arg


#: the tensor factories whose result lands on the device of the tensor they are called on
_NEW_FACTORIES = frozenset({"new_zeros", "new_ones", "new_full", "new_empty", "new_tensor"})


def _in_module_constructor() -> bool:
    frame: Any = sys._getframe(2)
    while frame is not None:
        if frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), torch.nn.Module):
            return True
        frame = frame.f_back
    return False


def _host_mask(func: Any, args: Any, kwargs: Dict[str, Any]) -> bool:
    """``self.weight.new_zeros(n, dtype=torch.bool)`` in a module's constructor (loralib's MergedLinear builds
    its ``lora_ind`` mask so): on the user's node the weight is still on the host there, and the mask keeps
    the values it is then given, to index the accelerator's activations. The fake node registers the weight
    on meta, where the mask would have no values and ``x[mask]`` no size; a non-floating tensor made from a
    meta parameter inside a constructor stays on the host instead."""
    dtype = kwargs.get("dtype")
    return (
        getattr(func, "__name__", "") in _NEW_FACTORIES
        and "device" not in kwargs
        and isinstance(dtype, torch.dtype)
        and not (dtype.is_floating_point or dtype.is_complex)
        and bool(args)
        and isinstance(args[0], torch.nn.Parameter)
        and args[0].device == META
        and _in_module_constructor()
    )


class AcceleratorAsMeta(TorchFunctionMode):
    """Every torch call that names the accelerator as a device (``device=`` of a factory, the positional
    device of ``Tensor.to``) gets ``meta`` instead (and an index mask built in a constructor stays on the
    host: :func:`_host_mask`)."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if "device" in kwargs:
            kwargs = dict(kwargs, device=_to_meta(kwargs["device"]))
        elif _host_mask(func, args, kwargs):
            kwargs = dict(kwargs, device="cpu")
        if getattr(func, "__name__", "") == "to":
            args = tuple(_to_meta(a) for a in args)
        return func(*args, **kwargs)


def _tensor_cuda(
    self: torch.Tensor, device: Any = None, non_blocking: bool = False, **_: Any
) -> torch.Tensor:
    return self.to(META)


def _is_cuda(self: torch.Tensor) -> bool:
    """``x.is_cuda`` of a tensor the script put on the accelerator (meta here): model code asserts it
    (flash-attn's fused cross-entropy) or branches on it to take its accelerator path."""
    return self.device.type in ("cuda", "meta")


def _pinned(self: torch.Tensor, device: Any = None) -> torch.Tensor:
    """``pin_memory()`` needs a real accelerator; on the fake node the host tensor stays as it is."""
    return self


def _module_to(original: Callable[..., Any]) -> Callable[..., Any]:
    """``Module.to(local_rank)`` / ``.to("cuda")``: Module.to parses its device before any torch call the
    mode sees (a bare index then asks for a real accelerator), so the device is mapped here."""

    def to(self: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if "device" in kwargs:
            kwargs = dict(kwargs, device=_to_meta(kwargs["device"]))
        return original(self, *(_to_meta(a) for a in args), **kwargs)

    return to


def _register_parameter_on_meta(original: Callable[..., None]) -> Callable[..., None]:
    def register_parameter(self: torch.nn.Module, name: str, param: Any) -> None:
        if isinstance(param, torch.nn.Parameter) and param.device != META:
            param = moved_from_host(param)
        original(self, name, param)

    return register_parameter


def _one_replica(original: Callable[..., None]) -> Callable[..., None]:
    """``nn.DataParallel`` on the fake node runs its module once, as on one GPU (no device_ids): replicas
    on meta would be checked against ``cuda:0`` and refused."""

    def __init__(self: Any, module: Any, *args: Any, **kwargs: Any) -> None:
        original(self, module, *args, **kwargs)
        self.device_ids = []

    return __init__


def _hook_on_the_node(original: Callable[..., Any]) -> Callable[..., Any]:
    """A post-accumulate-grad hook runs inside the backward pass, which the fake node's function mode
    handed on (``Tensor.backward`` went through it, and a mode is off while it handles a call): the hook
    gets the mode back, so the optimizer a hook steps (GaLore's per-layer optimizers, torchtune's
    optimizer_in_bwd) can still send a tensor to ``grad.device`` ("cuda")."""

    def register(self: torch.Tensor, hook: Callable[[torch.Tensor], None]) -> Any:
        def on_the_node(param: torch.Tensor) -> None:
            with AcceleratorAsMeta():
                hook(param)

        return original(self, on_the_node)

    return register


def _scaler_step(self: Any, optimizer: Any, optimizer_state: Any, *args: Any, **kwargs: Any) -> Any:
    """``GradScaler.step``'s inner step: meta gradients have no values, so the inf check (an ``.item()``
    the trace reads as 1) would skip every step; the traced step is a finite one."""
    return optimizer.step(*args, **kwargs)


def _grad_scalers() -> List[Any]:
    """The GradScaler classes that define the step (torch.amp's from 2.3, torch.cuda.amp's before)."""
    classes = [getattr(torch.amp, "GradScaler", None), torch.cuda.amp.GradScaler]
    return [c for c in classes if c is not None and "_maybe_opt_step" in vars(c)]


def cuda_version() -> str:
    """``torch.version.cuda`` on the fake node. CPU-only torch says None, which libraries read as "no CUDA
    build" (transformers' ``--tf32`` check raises, pytorch/examples' bf16 gate says no). A CUDA torch keeps
    its own; with CPU torch, a CUDA-built torchvision (``0.28.0+cu130``) checks at import that torch's
    major version matches its own, so the node answers that one."""
    if torch.version.cuda:
        return torch.version.cuda
    spec = importlib.util.find_spec("torchvision")
    folder = (spec.submodule_search_locations or [""])[0] if spec else ""
    version_file = Path(folder, "version.py")
    text = version_file.read_text() if folder and version_file.is_file() else ""
    match = re.search(r"\+cu(\d+)(\d)\b", text)
    return f"{match[1]}.{match[2]}" if match else CUDA_VERSION


def _with_meta(devices: Callable[[], List[str]]) -> Callable[[], List[str]]:
    return lambda: [*devices(), "meta"]


def _returns(value: Any) -> Callable[..., Any]:
    """A new function per patched name: torch._dynamo refuses one object under two torch names."""
    return lambda *args, **kwargs: value


def _accelerator_answers(node: FakeNode) -> Dict[str, Any]:
    """``torch.accelerator`` (device-generic scripts) names the fake node's ``cuda``."""
    from .fake_streams import current_stream

    return {
        "is_available": _returns(True),
        "current_accelerator": lambda check_available=False: torch.device("cuda"),
        "device_count": lambda: node.devices,
        "current_device_index": lambda: node.current,
        "current_device_idx": lambda: node.current,
        "set_device_index": lambda device: node.set_device(device),
        "set_device_idx": lambda device: node.set_device(device),
        "current_stream": lambda device=None: current_stream(device),
        "synchronize": _returns(None),
        "empty_cache": _returns(None),
        "memory_allocated": _returns(0),
        "max_memory_allocated": _returns(0),
    }


def _patches(node: FakeNode) -> List[Tuple[Any, str, Any]]:
    """(owner, attribute, replacement) for everything the fake node changes."""

    def mem_get_info(device: Any = None) -> Tuple[int, int]:
        return DEVICE_MEMORY, DEVICE_MEMORY

    cuda = torch.cuda
    answers: Dict[str, Any] = {
        "is_available": _returns(True),
        "is_initialized": _returns(True),
        "device_count": lambda: node.devices,
        "current_device": lambda: node.current,
        "set_device": node.set_device,
        "get_device_properties": node.properties,
        "get_device_name": lambda device=None: DEVICE_NAME,
        "get_device_capability": lambda device=None: CAPABILITY,
        "is_bf16_supported": _returns(True),
        "is_tf32_supported": _returns(True),
        "synchronize": _returns(None),
        "empty_cache": _returns(None),
        "init": _returns(None),
        "manual_seed": _returns(None),
        "manual_seed_all": _returns(None),
        "seed": _returns(None),
        "seed_all": _returns(None),
        "ipc_collect": _returns(None),
        "mem_get_info": mem_get_info,
        "memory_allocated": _returns(0),
        "max_memory_allocated": _returns(0),
        "memory_reserved": _returns(0),
        "max_memory_reserved": _returns(0),
        "memory_cached": _returns(0),
        "max_memory_cached": _returns(0),
        "reset_peak_memory_stats": _returns(None),
        "reset_max_memory_allocated": _returns(None),
        "reset_accumulated_memory_stats": _returns(None),
        "memory_stats": lambda *a, **k: {},
        "memory_summary": lambda *a, **k: "(ascend-doctor fake CUDA node: no memory is allocated)",
        "set_per_process_memory_fraction": _returns(None),
        "get_arch_list": lambda: ["sm_80", "sm_90"],
    }
    patches: List[Tuple[Any, str, Any]] = [(cuda, k, v) for k, v in answers.items()]
    if hasattr(cuda, "memory"):
        patches += [
            (cuda.memory, k, answers[k]) for k in ("mem_get_info", "memory_allocated") if k in answers
        ]
    from . import fake_streams

    patches += fake_streams.patches(cuda, torch.Tensor)
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is not None:
        patches += [
            (accelerator, k, v) for k, v in _accelerator_answers(node).items() if hasattr(accelerator, k)
        ]
    from torch.optim import optimizer as optimizer_module
    from torch.utils import _foreach_utils as foreach_utils

    fused_devices = _with_meta(foreach_utils._get_fused_kernels_supported_devices)
    foreach_devices = _with_meta(foreach_utils._get_foreach_kernels_supported_devices)
    patches += [
        # optimizers pick their kernels by their parameters' device, which torch's own code sees as meta: meta
        # stands for the accelerator here, so fused=True is accepted and the default is foreach, as on CUDA and
        # NPU (the _foreach_* ops an NPU runs, not the per-parameter ops of the CPU)
        (foreach_utils, "_get_fused_kernels_supported_devices", fused_devices),
        (optimizer_module, "_get_fused_kernels_supported_devices", fused_devices),
        (foreach_utils, "_get_foreach_kernels_supported_devices", foreach_devices),
        (optimizer_module, "_get_foreach_kernels_supported_devices", foreach_devices),
        (torch.version, "cuda", cuda_version()),
        # the node's nccl world is the fake process group (script_child); bf16 gates ask for NCCL and its version
        (torch.distributed, "is_nccl_available", _returns(True)),
        (importlib.import_module("torch.cuda.nccl"), "version", _returns(NCCL_VERSION)),
        (torch.Tensor, "cuda", _tensor_cuda),
        (torch.Tensor, "pin_memory", _pinned),
        (torch.Tensor, "is_cuda", property(_is_cuda)),
        (torch.Tensor, "device", device_property(lambda: node.current)),
        (torch.Tensor, "is_meta", is_meta_property),
        *get_device_patches(lambda: node.current),
        *((scaler, "_maybe_opt_step", _scaler_step) for scaler in _grad_scalers()),
        (torch.nn.DataParallel, "__init__", _one_replica(torch.nn.DataParallel.__init__)),
        (
            torch.Tensor,
            "register_post_accumulate_grad_hook",
            _hook_on_the_node(torch.Tensor.register_post_accumulate_grad_hook),
        ),
        (torch.nn.Module, "to", _module_to(torch.nn.Module.to)),
        (
            torch.nn.Module,
            "register_parameter",
            _register_parameter_on_meta(torch.nn.Module.register_parameter),
        ),
    ]
    return patches


@contextlib.contextmanager
def fake_node(devices: int = 8) -> Iterator[FakeNode]:
    """Patch torch for the fake node and send the accelerator to meta while active."""
    node = FakeNode(devices)
    patches = _patches(node)
    saved = [(owner, name, getattr(owner, name, None)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        with AcceleratorAsMeta():
            yield node
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
