"""A loss scaler's ``update()``: the end of an iteration whose optimizer step the scaler may have skipped.

A session's steps advance at each ``optimizer.step()``; an fp16 scaler skips that call where the scaled gradients hold
NaN/Inf (an fp16 run's first steps, while the scale calibrates), and the session learns of the iteration's end from
the scaler's update instead (``StepSession._scale_updated``). torch's GradScaler updates through
``aten::_amp_update_scale_``, which a dispatch mode sees; torch_npu's ``torch.npu.amp.GradScaler``
(``torch_npu/npu/amp/grad_scaler.py``) overrides ``update()`` and changes its scale in Python (``_npu_update_scale``:
``mul_``, ``add_``, ``zero_`` on the scale and growth tracker), so an fp16 run on an NPU merged each skipped iteration
into the next step, and every later step was another iteration than the reference's of the same number.

While a session runs, the ``update`` of torch's GradScaler and of each subclass (those defined before and those
defined after the session started: torch_npu is imported after torch, and under the CLI after the session began) is
wrapped; the end of its outermost call is told to every live session, and the ``_amp_update_scale_`` inside it is
then not told again (:func:`in_update`). The profiler, which has no dispatch mode, learns of skipped steps so too.
"""

import logging
import weakref
from typing import Any, Callable, List, Optional, Tuple

log = logging.getLogger("ascend_tools")

_sessions: Any = weakref.WeakSet()  # live sessions to tell (StepSession)
_wrapped: List[Tuple[type, Callable[..., Any]]] = []  # (class, its own update before ours)
_roots: List[Tuple[type, Optional[Any]]] = []  # (root class, its own __init_subclass__ before ours)
_depth = 0  # update() calls running (a subclass's update that calls super().update() is one update)


class Handle:
    """What :func:`watch` returns; ``remove()`` stops telling the session (the hooks go with the last one)."""

    def __init__(self, session: Any) -> None:
        self._session = weakref.ref(session)

    def remove(self) -> None:
        session = self._session()
        if session is not None:
            _sessions.discard(session)
        if not _sessions:
            _uninstall()


def watch(session: Any) -> Handle:
    """Tell ``session`` (its ``_scale_updated()``, ``_fail(exc)`` on an error) of every scaler update from now on."""
    if not _roots:
        _install()
    _sessions.add(session)
    return Handle(session)


def in_update() -> bool:
    """Whether a wrapped ``update()`` is running (its ``_amp_update_scale_`` is told when it returns)."""
    return _depth > 0


def _root_classes() -> List[type]:
    """torch's GradScaler (``torch.amp``, torch >= 2.3), else ``torch.cuda.amp``'s, the base class before."""
    try:
        from torch.amp.grad_scaler import GradScaler

        return [GradScaler]
    except ImportError:
        pass
    try:
        from torch.cuda.amp.grad_scaler import GradScaler as CudaGradScaler

        return [CudaGradScaler]
    except ImportError:
        return []


def _install() -> None:
    for root in _root_classes():
        own = root.__dict__.get("__init_subclass__")
        _roots.append((root, own))
        root.__init_subclass__ = classmethod(_subclass_created)  # type: ignore[assignment]
        for cls in [root, *_subclasses(root)]:
            _wrap(cls)


def _uninstall() -> None:
    while _wrapped:
        cls, update = _wrapped.pop()
        if getattr(cls.__dict__.get("update"), "_ascend_doctor_update", False):
            cls.update = update  # type: ignore[attr-defined]
    while _roots:
        root, own = _roots.pop()
        if own is not None:
            root.__init_subclass__ = own  # type: ignore[method-assign]
        elif "__init_subclass__" in root.__dict__:
            del root.__init_subclass__


def _subclasses(cls: type) -> List[type]:
    out: List[type] = []
    subs: List[type] = cls.__subclasses__()
    for sub in subs:
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def _subclass_created(cls: type, **kwargs: Any) -> None:
    """The roots' ``__init_subclass__`` while sessions run: the new class's own ``update`` is wrapped too."""
    for root, own in _roots:
        if issubclass(cls, root):
            if own is not None:
                own.__get__(None, cls)(**kwargs)
            else:
                parent: Any = super(root, cls)
                parent.__init_subclass__(**kwargs)
            break
    try:
        _wrap(cls)
    except Exception as exc:  # never stop the user's class from being made
        log.debug("scaler watch: %s: %s", type(exc).__name__, exc)


def _wrap(cls: type) -> None:
    own = cls.__dict__.get("update")
    if own is None or getattr(own, "_ascend_doctor_update", False) or not callable(own):
        return

    def update(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _depth
        _depth += 1
        try:
            out = own(self, *args, **kwargs)
        finally:
            _depth -= 1
        if _depth == 0:
            _tell()
        return out

    update._ascend_doctor_update = True  # type: ignore[attr-defined]
    update.__wrapped__ = own  # type: ignore[attr-defined]
    update.__name__ = getattr(own, "__name__", "update")
    update.__doc__ = getattr(own, "__doc__", None)
    _wrapped.append((cls, own))
    cls.update = update  # type: ignore[attr-defined]


def _tell() -> None:
    for session in list(_sessions):
        try:
            session._scale_updated()
        except Exception as exc:
            session._fail(exc)
