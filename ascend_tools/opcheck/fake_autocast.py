"""CUDA autocast on the fake node: ``torch.autocast("cuda", dtype=torch.bfloat16)`` applied to meta tensors.

The script's accelerator tensors live on meta, and autocast never touches meta tensors, so without this a
mixed-precision script (``torch.autocast("cuda")``, ``torch.cuda.amp.autocast()``, Accelerate's and Trainer's
``--bf16``/``--fp16``, which enter it) would be traced in float32. :class:`FakeCudaAutocast` reads the
state autocast keeps (``torch.is_autocast_enabled("cuda")``, its dtype: nesting and ``enabled=False`` are
honoured by autocast itself) and casts the floating meta inputs of each listed op as CUDA autocast would
(``cuda_autocast_ops.py``). The casts are made above autograd, as real autocast's are, so the backward runs in
the forward's dtypes. Gradient checkpointing records the autocast state of its inputs' device type and
re-enters it for the recomputation in the backward, where the autograd engine runs without torch function
modes: :func:`fake_cuda_autocast` makes torch's checkpoint take meta inputs for ``cuda`` ones and pushes the
mode for a CUDA region entered with none active, so the recomputation casts as its forward did.

Where it differs from CUDA autocast (docs/check-ops.md, limits): a TorchFunctionMode sees the outermost
Python-level call only, so the ops inside a composite written in Python (``F.normalize``,
``F.multi_head_attention_forward``) are not cast one by one; overloads are not told apart; there is no cast
cache (each use of a weight casts it again: the same ops, more of them).
"""

import contextlib
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from torch.overrides import TorchFunctionMode
from torch.utils import checkpoint

from .cuda_autocast_ops import Policy, policy_of

_LOWER_FLOATS = (torch.float16, torch.bfloat16)


_ANY_ENABLED = getattr(torch._C, "_is_any_autocast_enabled", lambda: True)


def cuda_autocast_dtype() -> Optional[torch.dtype]:
    """The dtype of the enabled CUDA autocast region the script is in, None outside one."""
    if not _ANY_ENABLED():
        return None
    try:
        enabled = torch._C.is_autocast_enabled("cuda")
        return torch._C.get_autocast_dtype("cuda") if enabled else None
    except TypeError:  # torch < 2.4: the queries without a device are CUDA's
        return torch._C.get_autocast_gpu_dtype() if torch._C.is_autocast_enabled() else None


def _on_accelerator(t: Any) -> bool:
    """A floating tensor on the fake accelerator (meta) that autocast may cast (float64 never is)."""
    return isinstance(t, torch.Tensor) and t.is_meta and t.is_floating_point() and t.dtype != torch.float64


def _map_tensors(fn: Callable[[torch.Tensor], torch.Tensor], args: Any, kwargs: Dict[str, Any]) -> Any:
    """``fn`` over the eligible tensors of the arguments and of list/tuple arguments (TensorList)."""

    def one(a: Any) -> Any:
        if _on_accelerator(a):
            return fn(a)
        if isinstance(a, (list, tuple)) and any(_on_accelerator(x) for x in a):
            return type(a)(fn(x) if _on_accelerator(x) else x for x in a)
        return a

    return tuple(one(a) for a in args), {k: one(v) for k, v in kwargs.items()}


def _tensors(args: Any, kwargs: Dict[str, Any]) -> Any:
    for a in (*args, *kwargs.values()):
        if isinstance(a, (list, tuple)):
            yield from (x for x in a if _on_accelerator(x))
        elif _on_accelerator(a):
            yield a


def _cast(dtype: torch.dtype, only: Tuple[torch.dtype, ...] = ()) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda t: t.to(dtype) if t.dtype != dtype and (not only or t.dtype in only) else t


def autocast_arguments(policy: Policy, lower: torch.dtype, args: Any, kwargs: Dict[str, Any]) -> Any:
    """The arguments an op with ``policy`` runs with under CUDA autocast to ``lower``."""
    if policy is Policy.LOWER:
        return _map_tensors(_cast(lower), args, kwargs)
    if policy is Policy.FP32:
        return _map_tensors(_cast(torch.float32, _LOWER_FLOATS), args, kwargs)
    if policy is Policy.FP32_DTYPE:
        first = next(_tensors(args, kwargs), None)
        if kwargs.get("dtype") is None and first is not None and first.dtype in _LOWER_FLOATS:
            kwargs = dict(kwargs, dtype=torch.float32)
        return args, kwargs
    if policy is Policy.PROMOTE:
        widest = torch.float32 if any(t.dtype == torch.float32 for t in _tensors(args, kwargs)) else lower
        return _map_tensors(_cast(widest), args, kwargs)
    raise RuntimeError(  # Policy.BANNED: CUDA autocast's own refusal
        "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast "
        "(use binary_cross_entropy_with_logits / BCEWithLogitsLoss)"
    )


def _checkpoint_device_type(original: Callable[..., str]) -> Callable[..., str]:
    def infer(*args: Any) -> str:
        device_type = original(*args)
        return "cuda" if device_type == "meta" else device_type

    return infer


class FakeCudaAutocast(TorchFunctionMode):
    """Applies CUDA autocast's cast policy to meta tensors while a CUDA autocast region is enabled."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        policy = policy_of(getattr(func, "__name__", ""))
        if policy is not None:
            lower = cuda_autocast_dtype()
            if lower is not None and next(_tensors(args, kwargs), None) is not None:
                args, kwargs = autocast_arguments(policy, lower, args, kwargs)
        return func(*args, **kwargs)


def _region_pushes(mode: FakeCudaAutocast, region: Any) -> Tuple[Callable[..., Any], Callable[..., Any]]:
    """``autocast.__enter__``/``__exit__`` that push ``mode`` for a CUDA region entered where no torch
    function mode is active: the autograd engine runs the backward without them, and a checkpoint's
    recomputation enters the forward's autocast there."""
    original_enter, original_exit = region.__enter__, region.__exit__

    def enter(self: Any) -> Any:
        entered = original_enter(self)
        self._pushes_fake_autocast = self.device == "cuda" and torch._C._len_torch_function_stack() == 0
        if self._pushes_fake_autocast:
            TorchFunctionMode.__enter__(mode)
        return entered

    def exit(self: Any, *exc: Any) -> Any:
        if getattr(self, "_pushes_fake_autocast", False):
            TorchFunctionMode.__exit__(mode, *exc)
        return original_exit(self, *exc)

    return enter, exit


@contextlib.contextmanager
def fake_cuda_autocast() -> Iterator[FakeCudaAutocast]:
    """The mode, active; and, for gradient checkpointing, torch's checkpoint taking meta inputs for
    ``cuda`` ones (it records and re-enters the autocast state of its inputs' device type) and the mode
    pushed again for the recomputation in the backward."""
    mode = FakeCudaAutocast()
    region = torch.amp.autocast_mode.autocast
    patches: List[Tuple[Any, str, Any]] = list(
        zip((region, region), ("__enter__", "__exit__"), _region_pushes(mode, region))
    )
    infer = getattr(checkpoint, "_infer_device_type", None)  # torch >= 2.1
    if infer is not None:
        patches.append((checkpoint, "_infer_device_type", _checkpoint_device_type(infer)))
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        with mode:
            yield mode
    finally:
        for owner, name, value in reversed(saved):
            setattr(owner, name, value)
