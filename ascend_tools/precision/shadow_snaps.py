"""Shadow's copies of the tensors its ops read and write, shared while the tensor is unchanged.

The training thread must copy what a checked op reads before the op runs (an in-place op overwrites it)
and what it writes after (a later op may overwrite that). Most inputs are earlier ops' outputs or
parameters, unchanged since they were last copied: :class:`SnapCache` hands the same :class:`Snap` to every
op that reads the tensor until the tensor is written. A copy on the training thread is a same-dtype
clone (a memcpy); its float64 copy is made once, on the worker, by :meth:`Snap.wide`.

A snap stays valid while its tensor object is alive, its version counter has not moved (every write
through autograd's view/in-place tracking bumps it, views share it) and no op seen by the shadow has
written its storage (:meth:`SnapCache.written`: a ``.data`` alias has a version counter of its own).
The cache holds at most ``budget`` bytes of copies; the oldest are dropped first.
"""

import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

_F64 = torch.float64


class Snap:
    """One tensor's values at one moment, in a private CPU copy. ``dtype`` and ``shape`` are the
    tensor's; :meth:`wide` (worker only) turns a floating copy into float64 once (exact) and keeps it."""

    __slots__ = ("_narrow", "dtype", "shape", "tensor")

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self.dtype = tensor.dtype
        self.shape = tensor.shape
        self._narrow = tensor.is_floating_point() and tensor.dtype != _F64

    def wide(self) -> torch.Tensor:
        """The copy, floating ones in float64."""
        if self._narrow:
            self.tensor = self.tensor.to(_F64)
            self._narrow = False
        return self.tensor


def version(t: torch.Tensor) -> Optional[int]:
    """``t``'s version counter; None for an inference tensor (it has none: never shared)."""
    try:
        return t._version
    except RuntimeError:
        return None


def _mourner(dead: List[int], key: int) -> Callable[[Any], None]:
    """The weak reference callback that queues ``key`` when its tensor dies."""
    return lambda _: dead.append(key)


class SnapCache:
    """Snaps by tensor, used on the training thread only (a tensor may die on the worker, which holds the
    op's arguments: its entry is queued in ``_dead`` and dropped by the training thread)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes = 0
        # id(tensor) -> (weak reference, expected version, storage address, snap, bytes)
        self._entries: Dict[int, Tuple[Any, int, int, Snap, int]] = {}
        self._by_storage: Dict[int, List[int]] = {}
        self._dead: List[int] = []

    def get(self, t: torch.Tensor) -> Optional[Snap]:
        entry = self._entries.get(id(t))
        if entry is None:
            return None
        if entry[0]() is t and entry[1] == version(t):
            return entry[3]
        self._drop(id(t))
        return None

    def put(self, t: torch.Tensor, snap: Snap, bumps: int = 0) -> None:
        """Keep ``snap`` for ``t``; ``bumps``: 1 when the running op writes ``t`` (its version counter moves
        once the op returns, after the shadow has seen it)."""
        while self._dead:
            self._drop(self._dead.pop())
        v = version(t)
        if v is None or self.budget <= 0:
            return
        key = id(t)
        if key in self._entries:
            self._drop(key)
        size = snap.tensor.nbytes
        storage = t.untyped_storage().data_ptr()
        self._entries[key] = (
            weakref.ref(t, _mourner(self._dead, key)),
            v + bumps,
            storage,
            snap,
            size,
        )
        self._by_storage.setdefault(storage, []).append(key)
        self.bytes += size
        while self.bytes > self.budget and self._entries:
            self._drop(next(iter(self._entries)))

    def written(self, t: torch.Tensor) -> None:
        """An op is about to write ``t``: no snap of its storage holds its values any more."""
        for key in self._by_storage.pop(t.untyped_storage().data_ptr(), ()):
            self._drop(key)

    def clear(self) -> None:
        for key in list(self._entries):
            self._drop(key)

    def _drop(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.bytes -= entry[4]
        keys = self._by_storage.get(entry[2])
        if keys is not None and key in keys:  # (written() took the list out first)
            keys.remove(key)
            if not keys:
                del self._by_storage[entry[2]]
