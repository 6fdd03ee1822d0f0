"""The dispatch mode of every tool that runs inside the user's training (capture's OpRecordMode, shadow's ShadowMode).

A subclass says what to do before and after an op (:meth:`FailOpenMode.before`, :meth:`FailOpenMode.after`);
this class makes sure that neither can break the op: an exception in either is handed to the owner's
``_fail`` (``failopen.FailOpen``: counted, logged once) and the user's op runs and returns its own result.
While the owner's ``_off`` is set (outside the recorded steps, or while the tool itself runs torch code), or
while the package runs its own computation in the user's step (``dispatch.OWN_OPS``: a fused op's self-check),
ops pass straight through. Ops the handlers issue do not come back here (a mode is off inside its own handler).
A loss scaler's update (``aten::_amp_update_scale_``, where no GradScaler ``update()`` that ``scaler_watch.py`` wraps
calls it) is told to the owner, recorded steps or not: it ends an iteration whose optimizer step the scaler may have
skipped (``StepSession._scale_updated``).
"""

from typing import Any, Dict, Optional

import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils._python_dispatch import TorchDispatchMode

from ..dispatch import OWN_OPS as _OWN_OPS
from ..dispatch import PLAIN_TENSORS as _PLAIN
from ..scaler_watch import in_update

_UPDATE_SCALE = torch.ops.aten._amp_update_scale_.default
# FakeTensorMode's slot among the infra modes, which run below every user mode (torch >= 2.1; None before)
_FAKE_MODE_KEY = getattr(getattr(torch._C, "_TorchDispatchModeKey", None), "FAKE", None)
_KINDS: Dict[type, str] = {}  # tensor type -> "plain" | "wrapper" | "fake"


def subclass_kind(cls: type) -> str:
    """What a type a dispatch mode is handed is: ``wrapper``, a subclass that runs its ops on inner plain tensors
    (``__tensor_flatten__``: DTensor, funcol's AsyncCollectiveTensor); ``fake``, a FakeTensor (DTensor works out
    an op's output shape by running it on those: tracing, no computation); else ``plain``."""
    kind = _KINDS.get(cls)
    if kind is None:
        if cls in _PLAIN:
            kind = "plain"
        elif issubclass(cls, FakeTensor):
            kind = "fake"
        else:
            kind = "wrapper" if hasattr(cls, "__tensor_flatten__") else "plain"
        _KINDS[cls] = kind
    return kind


def through_subclass(types: Any) -> Optional[str]:
    """``wrapper`` or ``fake`` where one of ``types`` is (see :func:`subclass_kind`), or where a FakeTensorMode is on
    (a factory op of DTensor's shape propagation has no tensor argument to tell: its ``empty_strided`` would
    be recorded with a FakeTensor for output), else None."""
    for t in types:
        kind = subclass_kind(t)
        if kind != "plain":
            return kind
    if _FAKE_MODE_KEY is not None and torch._C._get_dispatch_mode(_FAKE_MODE_KEY) is not None:
        return "fake"
    return None


class FailOpenMode(TorchDispatchMode):
    """``owner``: has ``_off`` (bool) and ``_fail(exc)``. :meth:`before` returns what :meth:`after` needs, or
    None to leave the op alone after it has run.

    ``through_subclasses``: an op on a wrapper subclass (DTensor: FSDP2's optimizer, every op of tensor parallel)
    is handed to the subclass (``NotImplemented``), whose ops on its plain local tensors then come through this
    mode one by one; an op on FakeTensors (DTensor's shape propagation) runs unseen. Else the op is seen as the
    subclass's, and what the subclass runs below it is not (a mode is off inside its own handler)."""

    through_subclasses = False

    def __init__(self, owner: Any) -> None:
        super().__init__()
        self.owner = owner

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        """Not wrapped in ``torch._disable_dynamo`` (what recent torch does to a mode's ``__torch_dispatch__``): the
        wrapper costs ~0.8 us an op (two eval-frame swaps and a lookup, ~1.5% of the bench's capture step), and it
        guards against dynamo compiling the handler, which never happens here: torch compiles nothing while
        a non-infra mode is on the stack, and the session sets the compiler's stance to ``force_eager`` besides
        (``compile_watch.py``)."""
        return False

    def before(self, func: Any, args: Any, kwargs: Dict[str, Any]) -> Any:
        return None

    def after(self, token: Any, func: Any, args: Any, kwargs: Dict[str, Any], out: Any) -> None:
        pass

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        owner = self.owner
        if kwargs is None:
            kwargs = {}
        if self.through_subclasses and not owner._off:
            kind = through_subclass(types)
            if kind == "wrapper":
                return NotImplemented
            if kind == "fake":
                return func(*args, **kwargs)
        if owner._off or _OWN_OPS[0]:  # (the package's own ops: a fused op's self-check, dispatch.OWN_OPS)
            out = func(*args, **kwargs)
        else:
            token = None
            try:
                token = self.before(func, args, kwargs)
            except Exception as exc:
                owner._fail(exc)
            out = func(*args, **kwargs)
            if token is not None:
                try:
                    self.after(token, func, args, kwargs, out)
                except Exception as exc:
                    owner._fail(exc)
        if func is _UPDATE_SCALE and not in_update():  # inside a GradScaler.update(): told when it returns
            try:
                owner._scale_updated()
            except Exception as exc:
                owner._fail(exc)
        return out
