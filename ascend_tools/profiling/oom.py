"""Out-of-memory forensics: on a device OOM, write ``rank{r}/oom.json`` with what explains it, then let
the error go on.

Three ways in: the profiler's context manager calls :meth:`OomForensics.report` on the way out; the
chained ``sys.excepthook`` / ``threading.excepthook`` catch an OOM that ends the script or a thread
outside it; and the allocator's OOM observer (CUDA, torch_npu), called before the error is raised,
records the failed request and the allocator's state at that moment. An exception is reported once; a
later OOM (a script that catches one and retries smaller) overwrites the file.
"""

import contextlib
import logging
import os
import re
import socket
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

import psutil
import torch

from .. import backend
from ..atomic import write_json
from ..failopen import FailOpen
from .memory import fragmentation

log = logging.getLogger("ascend_tools")

# torch_npu's caching allocator: `AT_ERROR("NPU out of memory. Tried to allocate ", ...)` (a RuntimeError)
# in older releases, `TORCH_CHECK_WITH(OutOfMemoryError, ...)` with the same text in newer ones
# (Ascend/pytorch, torch_npu/csrc/core/npu/NPUCachingAllocator.cpp).
OOM_MESSAGES = ("NPU out of memory",)
OOM_TYPES = tuple(
    t
    for t in (getattr(torch, "OutOfMemoryError", None), getattr(torch.cuda, "OutOfMemoryError", None))
    if t is not None
)
# the allocators' configuration: PYTORCH_{CUDA,NPU,HIP}_ALLOC_CONF, PYTORCH_ALLOC_CONF (recent torch's generic name),
# PYTORCH_NO_{CUDA,NPU}_MEMORY_CACHING; torch_npu's OOM_SNAPSHOT_* and MULTI_STREAM_MEMORY_REUSE
ALLOC_ENV = re.compile(r"^(PYTORCH_\w*(ALLOC|MEMORY)\w*|OOM_SNAPSHOT_\w+|MULTI_STREAM_MEMORY_REUSE)$")
TOP_BLOCKS = 20
MAX_FRAMES = 16
_REPORTED = "_ascend_doctor_oom_report"  # set on an exception once reported (no reference kept to it)


def is_oom(exc: BaseException) -> bool:
    """A device out-of-memory error: torch's ``OutOfMemoryError`` (CUDA; torch_npu in newer releases) or
    torch_npu's ``RuntimeError`` saying "NPU out of memory"."""
    if OOM_TYPES and isinstance(exc, OOM_TYPES):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in OOM_MESSAGES)


def _frames(frames: List[Dict[str, Any]]) -> List[str]:
    """``file:line in name``, innermost first as the allocator records them; Python frames only when
    there are any (history recorded with ``stacks="all"`` mixes in C++ frames)."""
    py = [f for f in frames if str(f.get("filename", "")).endswith(".py")]
    return [f"{f.get('filename')}:{f.get('line')} in {f.get('name')}" for f in (py or frames)[:MAX_FRAMES]]


def snapshot_summary(snapshot: Dict[str, Any], top: int = TOP_BLOCKS) -> Dict[str, Any]:
    """From an allocator snapshot (``torch.cuda.memory._snapshot()``: ``segments``, each with ``blocks``
    whose ``state`` is ``active_allocated``, ``active_awaiting_free`` or ``inactive``): segment totals,
    the largest free block (an allocation larger than it needs a new segment) and the ``top`` largest
    live blocks with the stack that allocated them (empty unless history was being recorded)."""
    live, largest_free, reserved, allocated = [], 0, 0, 0
    segments = snapshot.get("segments") or []
    for seg in segments:
        reserved += int(seg.get("total_size", 0))
        allocated += int(seg.get("allocated_size", 0))
        for block in seg.get("blocks") or []:
            if block.get("state") == "inactive":
                largest_free = max(largest_free, int(block["size"]))
            elif block.get("state") == "active_allocated":
                live.append(
                    {
                        "size": int(block["size"]),
                        "requested_size": int(block.get("requested_size", block["size"])),
                        "address": block.get("address"),
                        "segment_type": seg.get("segment_type"),
                        "stream": seg.get("stream"),
                        "frames": _frames(block.get("frames") or []),
                    }
                )
    live.sort(key=lambda b: b["size"], reverse=True)
    return {
        "segments": len(segments),
        "reserved_bytes": reserved,
        "allocated_bytes": allocated,
        "live_blocks": len(live),
        "largest_inactive_block": largest_free,
        "history": any(b["frames"] for b in live),
        "top_blocks": live[:top],
    }


class _ObserverSlot:
    """The allocator's OOM observer cannot be detached, so the process attaches one function once and it
    forwards to whichever :class:`OomForensics` is installed."""

    def __init__(self) -> None:
        self.status: Optional[str] = None  # None: not tried; "attached"; else why not
        self.target: Optional[OomForensics] = None

    def attach(self, target: "OomForensics") -> str:
        if self.status is None:
            self.status = backend.attach_oom_observer(self.on_oom) or "attached"
        self.target = target
        return self.status

    def on_oom(self, device: int, requested: int, device_limit: int, device_free: int) -> None:
        target = self.target
        if target is not None:
            target.observe(device, requested, device_limit, device_free)


_OBSERVER = _ObserverSlot()


class OomForensics(FailOpen):
    """Writes ``rank_dir/oom.json`` for a device OOM. ``current_step()`` labels it, ``recent_memory()``
    gives the last memory samples (:meth:`MemorySampler.recent`). Fails open: a report that cannot be
    written is logged once, and the OOM goes on as it would have."""

    def __init__(
        self, rank_dir: str, current_step: Callable[[], int], recent_memory: Callable[[], List[dict]]
    ) -> None:
        self.path = os.path.join(rank_dir, "oom.json")
        self.reports = 0
        self.observer: Optional[str] = None
        self._current_step = current_step
        self._recent_memory = recent_memory
        self._at_oom: Optional[Dict[str, Any]] = None
        self._installed = False
        self._prev_excepthook: Callable[..., Any] = sys.excepthook
        self._prev_threading_hook: Callable[..., Any] = threading.excepthook

    def report(self, exc: BaseException) -> Optional[str]:
        """Write ``oom.json`` for ``exc`` and return its path; None when ``exc`` is not a device OOM, was
        reported already, or the report failed."""
        try:
            if not is_oom(exc) or getattr(exc, _REPORTED, None):
                return None
            with contextlib.suppress(AttributeError, TypeError):  # unmarkable: reported again if seen again
                setattr(exc, _REPORTED, self.path)
            doc = self._build(exc)
            write_json(self.path, doc)
        except Exception as err:
            self._fail(err)
            return None
        self.reports += 1
        first = (doc["error"]["message"].strip().splitlines() or [""])[0]
        log.warning(
            "oom: step %s: %s: %s; forensics in %s", doc["step"], type(exc).__name__, first, self.path
        )
        return self.path

    def observe(self, device: int, requested: int, device_limit: int, device_free: int) -> None:
        """The allocator's view at the failed allocation (called by its OOM observer, before it raises)."""
        try:
            snapshot = backend.memory_snapshot(device)
            self._at_oom = {
                "t": time.time(),
                "device": device,
                "requested_bytes": requested,
                "device_limit": device_limit,
                "device_free": device_free,
                "stats": backend.memory_stats_raw(device),
                "snapshot": snapshot_summary(snapshot) if snapshot else None,
            }
        except Exception as err:
            self._fail(err)

    def install(self) -> None:
        """Chain ``sys.excepthook`` and ``threading.excepthook`` (the previous hooks still run) and attach
        the allocator's OOM observer where the backend has one (``observer`` says which or why not)."""
        if self._installed:
            return
        self._prev_excepthook, sys.excepthook = sys.excepthook, self._excepthook
        self._prev_threading_hook, threading.excepthook = threading.excepthook, self._threading_hook
        self.observer = _OBSERVER.attach(self)
        self._installed = True

    def uninstall(self) -> None:
        """Put the previous hooks back where ours are still in place; a hook chained after ours keeps
        calling ours, which then only passes through."""
        if not self._installed:
            return
        if sys.excepthook == self._excepthook:
            sys.excepthook = self._prev_excepthook
        if threading.excepthook == self._threading_hook:
            threading.excepthook = self._prev_threading_hook
        if _OBSERVER.target is self:
            _OBSERVER.target = None
        self._installed = False

    # --- internals -------------------------------------------------------------------------------

    def _excepthook(self, etype: Any, value: BaseException, tb: Any) -> None:
        if self._installed and value is not None:
            self.report(value)
        self._prev_excepthook(etype, value, tb)

    def _threading_hook(self, args: Any) -> None:
        if self._installed and args.exc_value is not None:
            self.report(args.exc_value)
        self._prev_threading_hook(args)

    def _build(self, exc: BaseException) -> Dict[str, Any]:
        raw = backend.memory_stats_raw()
        dev = backend.normalise_memory_stats(raw)
        snapshot = backend.memory_snapshot()
        at_oom, self._at_oom = self._at_oom, None
        return {
            "error": {
                "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                "message": str(exc),
                "traceback": traceback.format_exception(type(exc), exc, exc.__traceback__),
            },
            "step": self._guarded(self._current_step),
            "time": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend": backend.detect().name,
            "device": {
                "memory": dev,
                "fragmentation": fragmentation(dev),
                "stats": raw,
                "summary": backend.memory_summary(),
            },
            "at_oom": at_oom,
            "observer": self.observer,
            "allocator_env": {k: v for k, v in sorted(os.environ.items()) if ALLOC_ENV.match(k)},
            "snapshot": snapshot_summary(snapshot) if snapshot else None,
            "host_memory": {"process": backend.host_memory(), "system": psutil.virtual_memory()._asdict()},
            "recent_memory": self._guarded(self._recent_memory),
        }

    def _fail_message(self) -> str:
        return "oom forensics: internal error, the report may be missing or partial"
