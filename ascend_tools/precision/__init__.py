"""Precision drift: capture op/module outputs, compare two runs or one run against a CPU fp64
shadow, and name the op that *introduced* the error."""

import importlib
from typing import Any

# the public names and the modules that define them (imported on first use: no torch at package import)
_LAZY = {
    "capture": "capture_session",
    "Capture": "capture_session",
    "shadow": "shadow_session",
    "Shadow": "shadow_session",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
