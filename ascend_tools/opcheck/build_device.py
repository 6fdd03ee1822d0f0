"""Keep a model file's constructor on the trace's device (meta, or fake CPU under ``--autocast``).

Model code written for GPUs moves things to CUDA while it builds (``self.to("cuda")``, ``.cuda()``,
``torch.zeros(n, device="cuda")``) and uses the legacy constructors (``torch.Tensor(n, m)``,
``torch.FloatTensor(n, m)``, ``torch.cuda.FloatTensor``) that ignore ``with torch.device("meta")`` and
allocate real CPU memory. While building, :func:`on_trace_device` follows such moves as no-ops (a dtype
given with them still applies) and makes the legacy constructors allocate on the trace's device. The
static scan reports the CUDA calls themselves.
"""

import contextlib
from typing import Any, Iterator, List, Tuple

import torch
from torch.overrides import TorchFunctionMode

LEGACY_TYPES = {
    "FloatTensor": torch.float32,
    "DoubleTensor": torch.float64,
    "HalfTensor": torch.float16,
    "BFloat16Tensor": torch.bfloat16,
    "LongTensor": torch.int64,
    "IntTensor": torch.int32,
    "ShortTensor": torch.int16,
    "CharTensor": torch.int8,
    "ByteTensor": torch.uint8,
    "BoolTensor": torch.bool,
}


def _is_cuda(device: Any) -> bool:
    try:
        return device is not None and torch.device(device).type == "cuda"
    except (RuntimeError, TypeError):
        return False


class _CudaAsTraceDevice(TorchFunctionMode):
    """``Tensor.cuda()`` and ``Tensor.to(cuda)`` keep the tensor where it is; ``device=cuda`` kwargs of
    factories become the trace's device."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func is torch.Tensor.cuda:
            return args[0]
        if func is torch.Tensor.to:
            device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args[1:], **kwargs)
            if _is_cuda(device):
                return args[0] if dtype is None else func(args[0], dtype, non_blocking=non_blocking)
        elif _is_cuda(kwargs.get("device")):
            kwargs["device"] = self.device
        return func(*args, **kwargs)


_MODULE_TO = torch.nn.Module.to
# torch < 2.3 names it _TensorBase
_TENSOR_BASE = getattr(torch._C, "TensorBase", None) or torch._C._TensorBase


def _module_cuda(self: torch.nn.Module, device: Any = None) -> torch.nn.Module:
    return self


def _module_to(self: torch.nn.Module, *args: Any, **kwargs: Any) -> torch.nn.Module:
    """``Module.to`` without a CUDA device (under fake tensors, moving a parameter onto itself fails)."""
    device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
    if not _is_cuda(device):
        return _MODULE_TO(self, *args, **kwargs)
    return self if dtype is None else _MODULE_TO(self, dtype, non_blocking=non_blocking)


def _legacy(dtype: torch.dtype, args: Tuple[Any, ...]) -> torch.Tensor:
    """What ``torch.XTensor(*args)`` makes, on the current default device: sizes give an uninitialised
    tensor, a sequence gives its data, no argument an empty tensor."""
    if len(args) == 1 and isinstance(args[0], torch.Size):
        args = tuple(args[0])
    if all(isinstance(a, int) for a in args):
        return torch.empty(args, dtype=dtype)
    if len(args) == 1 and isinstance(args[0], torch.Tensor):
        return args[0]
    return torch.tensor(args[0], dtype=dtype)


def _legacy_type(name: str, dtype: torch.dtype, original: Any) -> Any:
    """A stand-in for ``torch.<name>`` whose calls allocate through :func:`_legacy` and whose
    ``isinstance`` checks still answer as the original's."""

    class Meta(type):
        def __instancecheck__(cls, obj: Any) -> bool:
            return isinstance(obj, original)

        def __call__(cls, *args: Any, **kwargs: Any) -> Any:
            return _legacy(dtype, args)

    return Meta(name, (), {})


def _tensor_new(*args: Any, **kwargs: Any) -> Any:
    """``torch.Tensor.__new__`` while building. The wildcard signature is deliberate: torch._dynamo,
    when first imported, checks that ``Tensor.__new__``'s signature matches its polyfill or is ``(*args,
    **kwargs)``."""
    cls, args = args[0], args[1:]
    if cls is torch.Tensor and not kwargs:
        return _legacy(torch.get_default_dtype(), args)
    return _TENSOR_BASE.__new__(cls, *args, **kwargs)


@contextlib.contextmanager
def on_trace_device(device: str) -> Iterator[None]:
    """While active, CUDA moves are no-ops and legacy constructors allocate on the trace's device;
    ``device`` is what ``device="cuda"`` factory arguments become ("meta", or "cpu" under fake tensors)."""
    saved: List[Tuple[Any, str, Any]] = []
    for module in (torch, torch.cuda):
        for name, dtype in LEGACY_TYPES.items():
            original = getattr(module, name, None)
            if original is not None:
                saved.append((module, name, original))
                setattr(module, name, _legacy_type(name, dtype, original))
    saved += [(torch.nn.Module, "cuda", torch.nn.Module.cuda), (torch.nn.Module, "to", _MODULE_TO)]
    torch.nn.Module.cuda = _module_cuda  # type: ignore[method-assign,assignment]
    torch.nn.Module.to = _module_to  # type: ignore[method-assign,assignment]
    own_new = vars(torch.Tensor).get("__new__")  # None: inherited from torch._C.TensorBase
    torch.Tensor.__new__ = staticmethod(_tensor_new)  # type: ignore[method-assign]
    try:
        with _CudaAsTraceDevice(device):
            yield
    finally:
        if own_new is None:
            del torch.Tensor.__new__
        else:
            torch.Tensor.__new__ = own_new  # type: ignore[method-assign]
        for module, name, original in saved:
            setattr(module, name, original)
