"""Distributed profiling: every collective timed with bus bandwidth, slow ranks named, hangs caught with
the stacks of all ranks, device and host memory over time with OOM forensics (docs/profiling.md).

``from ascend_tools.profiling import profile`` (imported lazily: this package's import pulls in no torch)."""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("profile", "Profiler"):
        return getattr(importlib.import_module(f"{__name__}.profiler"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
