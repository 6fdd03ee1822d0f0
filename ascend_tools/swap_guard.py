"""Tensor swaps (``torch.utils.swap_tensors``) while a session holds weak references to the tensors.

torch refuses to swap a tensor that has any weak reference (``RuntimeError: Cannot swap t2 because it has weakref
associated with it``). A capture holds weak references to the tensors ops made and read (to know them again) and
to parameters (their names); shadow's module names too. FSDP2's usual start, a model built on the meta device and
then ``model.to_empty(device=...)``, swaps every parameter with the tensor an op has just made, and so does
``module.to(...)`` under ``torch.__future__.set_swap_module_params_on_conversion(True)``: under ``ascend-doctor
dump`` pytorch/examples' FSDP2 script died there.

While a session runs, ``torch.utils.swap_tensors`` first asks it to let go of its weak references to the two tensors
(``_release_tensors(t1, t2)``, which returns what to do after the swap, or None); then torch's own function swaps
them as it would without the session. ``t1`` keeps its identity (the module's parameter, now with the new content):
what the session knew of it as a tensor is dropped (its values changed), what it knew of it as a parameter (its
name) is given back after the swap.
"""

from typing import Any, Callable, List, Optional, Tuple

import torch.utils

_sessions: List[Any] = []  # sessions with _release_tensors and _fail, in the order they started
_original: List[Callable[..., Any]] = []  # torch's swap_tensors while the wrapper is in its place


def hold(session: Any) -> None:
    """``session`` is running: swaps ask it to release its weak references first."""
    if session in _sessions:
        return
    _sessions.append(session)
    swap = getattr(torch.utils, "swap_tensors", None)  # torch >= 2.3
    if swap is not None and not _original:
        _original.append(swap)
        torch.utils.swap_tensors = _swap_tensors


def let_go(session: Any) -> None:
    """``session`` has ended; the last one puts torch's function back."""
    if session in _sessions:
        _sessions.remove(session)
    if not _sessions and _original:
        if torch.utils.swap_tensors is _swap_tensors:  # (another tool may have wrapped ours since)
            torch.utils.swap_tensors = _original[0]
        _original.clear()


def _swap_tensors(t1: Any, t2: Any) -> None:
    """torch's ``swap_tensors``, after every running session has let go of its weak references to ``t1`` and ``t2``."""
    after: List[Tuple[Callable[[], None], Any]] = []
    for session in list(_sessions):
        try:
            then: Optional[Callable[[], None]] = session._release_tensors(t1, t2)
        except Exception as exc:
            session._fail(exc)
            continue
        if then is not None:
            after.append((then, session))
    try:
        _original[0](t1, t2)
    finally:
        for then, session in after:
            try:
                then()
            except Exception as exc:
                session._fail(exc)
