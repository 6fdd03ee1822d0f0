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

DeepSpeed's and Megatron's loss scalers (:data:`PYTHON_SCALERS`) are no GradScaler: their optimizers call the
scaler's update with the NaN/Inf flag *before* the optimizer step, and return without one where it is set. Their
update method is wrapped where its module is imported (now, or later through :class:`_ScalerModules` on
``sys.meta_path``), and a set flag ends the iteration (``StepSession._step_skipped``); a clear one leaves it to the
``optimizer.step()`` that follows.
"""

import importlib.abc
import importlib.machinery
import logging
import sys
import weakref
from typing import Any, Callable, List, Optional, Sequence, Tuple

log = logging.getLogger("ascend_tools")

_sessions: Any = weakref.WeakSet()  # live sessions to tell (StepSession)
_wrapped: List[
    Tuple[type, Callable[..., Any], str]
] = []  # (class, its own method before ours, the method's name)
_roots: List[Tuple[type, Optional[Any]]] = []  # (root class, its own __init_subclass__ before ours)
_depth = 0  # update() calls running (a subclass's update that calls super().update() is one update)
_finder: List["_ScalerModules"] = []  # on sys.meta_path while sessions run

#: (module, class, method) of loss scalers that update in Python before the optimizer step; the method's first
#: argument is whether the gradients held NaN/Inf (the step is then skipped)
PYTHON_SCALERS = (
    ("deepspeed.runtime.fp16.loss_scaler", "DynamicLossScaler", "update_scale"),  # FP16_Optimizer, ZeRO 1-3
    ("megatron.core.optimizer.grad_scaler", "DynamicGradScaler", "update"),  # Megatron-LM core, MindSpeed
    ("megatron.optimizer.grad_scaler", "DynamicGradScaler", "update"),  # Megatron-LM before core
)
_SCALER_MODULES = {module for module, _cls, _method in PYTHON_SCALERS}


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
    """Tell ``session`` of every scaler update from now on: its ``_scale_updated()`` (a GradScaler's update returned),
    ``_step_skipped()`` (a Python scaler's update was given a set NaN/Inf flag), ``_fail(exc)`` on an error."""
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
    for name in _SCALER_MODULES:
        module = sys.modules.get(name)
        if module is not None:
            _wrap_python_scalers(module)
    _finder.append(_ScalerModules())
    sys.meta_path.insert(0, _finder[0])


def _uninstall() -> None:
    while _finder:
        finder = _finder.pop()
        if finder in sys.meta_path:
            sys.meta_path.remove(finder)
    while _wrapped:
        cls, own, method = _wrapped.pop()
        if getattr(cls.__dict__.get(method), "_ascend_doctor_update", False):
            setattr(cls, method, own)
    while _roots:
        root, init_subclass = _roots.pop()
        if init_subclass is not None:
            root.__init_subclass__ = init_subclass  # type: ignore[method-assign]
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


def _updated(args: Sequence[Any], kwargs: Any) -> Optional[str]:
    """A GradScaler's update returned: the iteration ended (its own ``found_inf`` is read by the session)."""
    return "_scale_updated"


def _skipped(args: Sequence[Any], kwargs: Any) -> Optional[str]:
    """A Python scaler's update returned: its step was skipped where its first argument, the NaN/Inf flag
    (``overflow``, ``found_inf``: a bool, or a one-element tensor), says so; not where it cannot be read as one (the
    training goes on, its step boundary left to the optimizer)."""
    flag = args[0] if args else next(iter(kwargs.values()), False)
    try:
        return "_step_skipped" if bool(flag) else None
    except Exception as exc:  # a tensor of several elements: not a flag this watch knows
        log.debug("scaler watch: an update's flag %s: %s", type(exc).__name__, exc)
        return None


def _wrap(
    cls: type, method: str = "update", event: Callable[[Sequence[Any], Any], Optional[str]] = _updated
) -> None:
    """Wrap ``cls``'s own ``method`` so that the outermost call, once it returns, tells the sessions what
    ``event`` makes of its arguments (:func:`_updated`, :func:`_skipped`)."""
    own = cls.__dict__.get(method)
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
            what = event(args, kwargs)
            if what is not None:
                _tell(what)
        return out

    update._ascend_doctor_update = True  # type: ignore[attr-defined]
    update.__wrapped__ = own  # type: ignore[attr-defined]
    update.__name__ = getattr(own, "__name__", method)
    update.__doc__ = getattr(own, "__doc__", None)
    _wrapped.append((cls, own, method))
    setattr(cls, method, update)


def _wrap_python_scalers(module: Any) -> None:
    for name, cls_name, method in PYTHON_SCALERS:
        cls = getattr(module, cls_name, None) if module.__name__ == name else None
        if isinstance(cls, type):
            _wrap(cls, method, _skipped)


class _ScalerModules(importlib.abc.MetaPathFinder):
    """Wraps the scalers of a module of :data:`PYTHON_SCALERS` once it has run: the finders after this one find it,
    and its loader's ``exec_module`` (a loader instance of its own) wraps after running it."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _SCALER_MODULES:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None) if finder is not self else None
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        # a file loader is an instance per module (a zip importer serves many: left alone, the scalers of a module
        # loaded through one are wrapped at the next session's start)
        if not isinstance(
            spec.loader, (importlib.machinery.SourceFileLoader, importlib.machinery.SourcelessFileLoader)
        ):
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            try:
                _wrap_python_scalers(module)
            except Exception as exc:  # never stop the import
                log.debug("scaler watch: %s: %s: %s", fullname, type(exc).__name__, exc)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _tell(what: str) -> None:
    for session in list(_sessions):
        try:
            getattr(session, what)()
        except Exception as exc:
            session._fail(exc)
