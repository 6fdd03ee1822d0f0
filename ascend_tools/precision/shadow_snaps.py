"""Shadow's snapshots of the tensors its ops read and write, shared while the tensor is unchanged.

The worker judges an op after the training thread has moved on, so it needs what the op read (an in-place op
overwrites it) and what it wrote (a later op may overwrite that) as they were. A CPU tensor is not copied:
its :class:`Snap` holds the tensor itself ("live") and is copied only when an op the shadow sees is about
to write its storage while a check still needs it (:meth:`SnapCache.written`: copy on write; a check that is
reading it at that moment is waited for). A device tensor is copied to the CPU at once. Most inputs are
earlier ops' outputs or parameters, unchanged since they were last taken: :class:`SnapCache` hands the same
snap to every op that reads the tensor until the tensor is written. Its float64 twin is made once, on the
worker, by :meth:`Snap.wide`, for the ops that are not replayed in their own dtype.

One write path does not go through the dispatch mode: ``UntypedStorage.resize_`` (FSDP2 frees each
unsharded parameter's storage with ``resize_(0)`` and allocates it again before the next all-gather). While a
cache is live (:func:`watch_resizes`), that method is wrapped so that a resize first copies the live snaps a
check holds on that storage, as :meth:`SnapCache.written` does: a check never reads freed memory.

A snap stays valid while its tensor object is alive, its version counter has not moved (every write
through autograd's view/in-place tracking bumps it, views share it) and no op seen by the shadow has
written its storage (:meth:`SnapCache.written`: a ``.data`` alias has a version counter of its own). A write
the shadow cannot see (through NumPy or ``data_ptr``) is caught by the version counter where it moves one
(:meth:`SnapCache.enter` says so and the check is dropped), and not at all where it does not. The cache holds
at most ``budget`` bytes of snaps; the oldest are dropped first.
"""

import threading
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import _disable_current_modes

from ..dispatch import PLAIN_TENSORS as _PLAIN

_F64 = torch.float64
_CPU = torch.device("cpu")
#: live snaps tracked by storage before the ones no check holds any more are let go
_LIVE_PRUNE = 4096


class Snap:
    """One tensor's values at one moment (``dtype`` and ``shape`` are the tensor's): ``tensor`` in its own
    dtype, either the user's CPU tensor itself (``live``, at the version counts ``versions``) or a private CPU
    copy.
    :meth:`wide` (checks only) makes a floating snap's float64 (or float32) twin once (exact) and keeps it: ops
    replayed in their own dtype read ``tensor``, the others the twin. ``holders`` (checks that will read it) and
    ``readers`` (checks reading it now) are guarded by the :class:`SnapCache`'s condition."""

    __slots__ = (
        "_narrow",
        "_wide",
        "dtype",
        "holders",
        "live",
        "owner",
        "readers",
        "shape",
        "spoiled",
        "tensor",
        "tracked",
        "versions",
    )

    def __init__(
        self, tensor: torch.Tensor, versions: Optional[Tuple[int, int]] = None, owner: Any = None
    ) -> None:
        self.tensor = tensor
        # a live snap's tensor as the user holds it, weakly (its version counter: inside the dispatch mode a
        # detached alias gets a counter of its own; the tensor itself would keep its autograd graph alive)
        self.owner = weakref.ref(owner) if owner is not None else None
        self.dtype = tensor.dtype
        self.shape = tensor.shape
        self.live = versions is not None
        self.versions = versions  # a live snap's version counter now and once the running op has returned
        self.holders = 0
        self.readers = 0
        self.tracked = False  # in its cache's live snaps by storage (training thread)
        self.spoiled = False  # copied on write after an unseen write had already changed it
        self._narrow = tensor.is_floating_point() and tensor.dtype != _F64
        self._wide: Optional[torch.Tensor] = None

    def wide(self, dtype: torch.dtype = _F64) -> torch.Tensor:
        """The values, floating ones in ``dtype`` (float64, or float32 for a float32 reference: a float32
        snap is ``tensor`` itself then), made once per dtype; an integer or float64 snap: ``tensor``."""
        if not self._narrow or dtype == self.dtype:
            return self.tensor
        wide = self._wide
        if wide is None or wide.dtype != dtype:
            wide = self.tensor.to(dtype)
            if self._wide is None or dtype == _F64:  # the float64 twin is kept over a float32 one
                self._wide = wide
        return wide

    def wide_part(
        self, take: Callable[[torch.Tensor], torch.Tensor], dtype: torch.dtype = _F64
    ) -> torch.Tensor:
        """``take`` of :meth:`wide`'s values (rows of it: ``shadow_rows.py``), widened after it is taken unless
        the twin is made already: widening all of a large operand to check a part of it costs more than the
        part's check."""
        if not self._narrow or dtype == self.dtype or (self._wide is not None and self._wide.dtype == dtype):
            return take(self.wide(dtype))
        return take(self.tensor).to(dtype)


def version(t: torch.Tensor) -> Optional[int]:
    """``t``'s version counter; None for an inference tensor (it has none: never shared)."""
    try:
        return t._version
    except RuntimeError:
        return None


def _unwritten(snap: Snap) -> bool:
    """A live snap's version counter is where it was taken (or one on, for the op that wrote it, whose
    check may start before autograd bumps the counter on the way out)."""
    owner = snap.owner() if snap.owner is not None else None
    if owner is None:  # gone: no write through it, and views of it share the storage, which written() tracks
        return True
    low, high = snap.versions or (0, 0)
    return low <= (version(owner) or 0) <= high


def _mourner(dead: List[int], key: int) -> Callable[[Any], None]:
    """The weak reference callback that queues ``key`` when its tensor dies."""
    return lambda _: dead.append(key)


_watchers: "weakref.WeakSet[SnapCache]" = weakref.WeakSet()
_resize: List[Any] = []  # UntypedStorage.resize_ as it was before watch_resizes wrapped it


def _resize_watched(storage: Any, size: int) -> Any:
    # only a CPU storage can back a live snap (a device's are copied at once); a device's resize may come from
    # another thread (its autograd engine's), which must not touch the caches the training thread keeps
    if _watchers and storage.device.type == "cpu":
        with _disable_current_modes():  # the copies are the shadow's, not the user's ops
            for cache in list(_watchers):
                try:
                    cache.storage_written(storage.data_ptr())
                except Exception:  # never break the resize; counted, and the shadow says so at its end
                    cache.failed_resizes += 1
    return _resize[0](storage, size)


def watch_resizes(cache: "SnapCache") -> None:
    """Wrap ``torch.UntypedStorage.resize_`` (once, whatever the number of caches) so that ``cache`` copies
    its held live snaps of a storage before it is resized."""
    if not _resize:
        _resize.append(torch.UntypedStorage.resize_)
        torch.UntypedStorage.resize_ = _resize_watched  # type: ignore[method-assign,assignment]
    _watchers.add(cache)


def unwatch_resizes(cache: "SnapCache") -> None:
    """Undo :func:`watch_resizes` for ``cache``; the last one puts the method back."""
    _watchers.discard(cache)
    if not _watchers and _resize:
        torch.UntypedStorage.resize_ = _resize.pop()  # type: ignore[method-assign]


class SnapCache:
    """Snaps by tensor, used on the training thread (a tensor may die on the worker, which holds the op's
    arguments: its entry is queued in ``_dead`` and dropped by the training thread); :meth:`enter` and
    :meth:`leave` are for the checks, on either thread."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.bytes = 0
        # id(tensor) -> (weak reference, expected version, storage address, snap, bytes)
        self._entries: Dict[int, Tuple[Any, int, int, Snap, int]] = {}
        self._by_storage: Dict[int, List[int]] = {}
        self._dead: List[int] = []
        self._live: Dict[int, List[Snap]] = {}  # storage address -> live snaps of it
        self._cond = threading.Condition(threading.Lock())
        self.failed_resizes = 0  # storage resizes whose live snaps could not be copied first

    def take(self, t: torch.Tensor, bumps: int = 0) -> Snap:
        """A new snap of ``t`` as it is now: live for a CPU tensor with a version counter (``bumps``: 1 when
        the running op writes ``t``, whose counter moves once the op returns), else a CPU copy."""
        v = version(t) if t.device.type == "cpu" else None
        if v is None:
            return Snap(t.detach().to(device=_CPU, copy=True))
        snap = Snap(t.detach(), (v, v + bumps), t)
        self._track(snap)
        return snap

    def hold(self, snaps: Iterable[Snap]) -> None:
        """A check will read ``snaps`` (training thread, when it takes them for an op)."""
        snaps = list(snaps)
        for snap in snaps:
            if snap.live and not snap.tracked:
                self._track(snap)
        with self._cond:
            for snap in snaps:
                snap.holders += 1

    def _track(self, snap: Snap) -> None:
        if len(self._live) >= _LIVE_PRUNE:
            self._prune()
        self._live.setdefault(snap.tensor.untyped_storage().data_ptr(), []).append(snap)
        snap.tracked = True

    def enter(self, snaps: Iterable[Snap]) -> bool:
        """A check starts reading ``snaps`` (which it holds): no copy on write waits until :meth:`leave`.
        False when a live one was written unseen since it was taken (the check cannot judge the op)."""
        with self._cond:
            for snap in snaps:
                snap.readers += 1
        return all(not snap.spoiled and (not snap.live or _unwritten(snap)) for snap in snaps)

    def leave(self, snaps: Iterable[Snap], entered: bool = True) -> None:
        """A check is done with ``snaps`` (``entered``: it read them), or will not run."""
        with self._cond:
            for snap in snaps:
                snap.holders -= 1
                if entered:
                    snap.readers -= 1
            self._cond.notify_all()

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
        """An op is about to write ``t``: no snap of its storage holds its values any more. Live ones a check
        still holds are copied first (after the checks reading them now are done). A tensor subclass without a
        storage of its own (DTensor, whose optimizer updates FSDP2 runs in place) is no snap's: the op it runs on
        its local tensor comes through here on its own."""
        if type(t) not in _PLAIN:
            return
        self.storage_written(t.untyped_storage().data_ptr())

    def storage_written(self, storage: int) -> None:
        """:meth:`written` of the storage at address ``storage`` (also called from a storage resize)."""
        for key in self._by_storage.pop(storage, ()):
            self._drop(key)
        live = self._live.pop(storage, None)
        if live:
            with self._cond:
                for snap in live:
                    snap.tracked = False
                    if snap.holders and snap.live:
                        while snap.readers:
                            self._cond.wait()
                        snap.spoiled = not _unwritten(snap)  # (the copy would hold the unseen write)
                        snap.tensor = snap.tensor.clone()
                        snap.live = False

    def release(self, t: torch.Tensor) -> None:
        """Let go of every weak reference to ``t``, about to be swapped (``swap_guard.py``): its entry, and the
        live snaps of it, copied first as before a write (the swap changes its values)."""
        self._drop(id(t))
        if type(t) not in _PLAIN:
            return
        storage = t.untyped_storage().data_ptr()
        owned = [s for s in self._live.get(storage, ()) if s.owner is not None and s.owner() is t]
        if owned:
            self.storage_written(storage)
        for snap in owned:
            snap.owner = None

    def clear(self) -> None:
        """Drop every entry, and copy the live snaps checks still hold: after a clear (a step boundary, the
        shadow going off outside its ``steps``) ops may write tensors without the mode seeing them."""
        for key in list(self._entries):
            self._drop(key)
        if self._live:
            with _disable_current_modes():  # the copies are the shadow's, not the user's ops
                for storage in list(self._live):
                    self.storage_written(storage)

    def _prune(self) -> None:
        """Stop tracking the live snaps no check holds (:meth:`hold` tracks a cached one again)."""
        kept: Dict[int, List[Snap]] = {}
        with self._cond:
            for storage, snaps in self._live.items():
                for snap in snaps:
                    if snap.holders:
                        kept.setdefault(storage, []).append(snap)
                    else:
                        snap.tracked = False
        self._live = kept

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
