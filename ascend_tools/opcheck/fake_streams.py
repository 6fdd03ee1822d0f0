"""Streams, events, NVTX and the CUDA runtime handle of the fake CUDA node (``fake_accelerator.py``).

Training scripts overlap host-to-device copies with compute on a side stream (``torch.cuda.Stream()``,
``with torch.cuda.stream(s)``, ``wait_stream``, ``record_stream``), time steps with ``torch.cuda.Event``, and
mark profiler ranges with ``torch.cuda.nvtx`` and ``torch.cuda.cudart().cudaProfilerStart()``. On CPU-only
torch each raises. On the fake node there is one ordered stream of meta ops, so every stream and event
call is a no-op that answers as a finished one would (``query()`` is true, ``elapsed_time`` is 0 ms). The
static scan still reports the CUDA-only ones (nvtx, cudart).
"""

import contextlib
from types import SimpleNamespace
from typing import Any, Iterator, List, Tuple


class FakeEvent:
    """``torch.cuda.Event``: recorded and completed at once."""

    def __init__(
        self, enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
    ) -> None:
        self.enable_timing = enable_timing

    def record(self, stream: Any = None) -> None:
        return None

    def wait(self, stream: Any = None) -> None:
        return None

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None

    def elapsed_time(self, end_event: Any) -> float:
        return 0.0


class FakeStream:
    """``torch.cuda.Stream``: work on it is already done."""

    def __init__(self, device: Any = None, priority: int = 0, **_: Any) -> None:
        self.device = device
        self.priority = priority

    def wait_stream(self, stream: Any) -> None:
        return None

    def wait_event(self, event: Any) -> None:
        return None

    def record_event(self, event: Any = None) -> Any:
        return event if event is not None else FakeEvent()

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None

    def is_capturing(self) -> bool:
        """No CUDA graph is being captured (fused optimizers ask)."""
        return False

    def __enter__(self) -> "FakeStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


_DEFAULT = FakeStream()


@contextlib.contextmanager
def stream(s: Any = None) -> Iterator[Any]:
    """``with torch.cuda.stream(s):``."""
    yield s


def current_stream(device: Any = None) -> FakeStream:
    return _DEFAULT


def _record_stream(self: Any, stream: Any) -> None:
    """``Tensor.record_stream``: the caching allocator's bookkeeping, nothing to do on meta."""
    return None


def _nothing() -> Any:
    """A new no-op per patched name: torch._dynamo refuses one object under two torch names."""
    return lambda *args, **kwargs: None


def _cudart() -> Any:
    """``torch.cuda.cudart()``: the profiler start/stop calls scripts make through it."""
    return SimpleNamespace(cudaProfilerStart=_nothing(), cudaProfilerStop=_nothing())


def patches(cuda: Any, tensor: Any) -> List[Tuple[Any, str, Any]]:
    """(owner, attribute, replacement) for ``torch.cuda`` (``cuda``) and ``torch.Tensor`` (``tensor``)."""
    out: List[Tuple[Any, str, Any]] = [
        (cuda, "Stream", FakeStream),
        (cuda, "Event", FakeEvent),
        (cuda, "stream", stream),
        (cuda, "current_stream", current_stream),
        (cuda, "default_stream", lambda device=None: _DEFAULT),
        (cuda, "set_stream", _nothing()),
        (cuda, "cudart", _cudart),
        (tensor, "record_stream", _record_stream),
    ]
    nvtx = getattr(cuda, "nvtx", None)
    if nvtx is not None:
        out += [
            (nvtx, name, _nothing())
            for name in ("range_push", "range_pop", "mark", "range_start", "range_end")
        ]
        out.append((nvtx, "range", lambda *a, **k: contextlib.nullcontext()))
    return out
