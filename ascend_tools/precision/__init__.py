"""Precision drift: capture op/module outputs, compare two runs or one run against a CPU fp64
shadow, and name the op that *introduced* the error."""

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    """``capture``/``Capture`` and ``shadow``/``Shadow`` without importing torch at package import time.

    The submodule ``capture`` and the function share a name: importing the submodule sets the package
    attribute to the module, so the function is put back in its place here."""
    if name in ("capture", "Capture"):
        mod = importlib.import_module(f"{__name__}.capture")
        globals()["capture"] = mod.capture
        globals()["Capture"] = mod.Capture
        return globals()[name]
    if name in ("shadow", "Shadow"):
        mod = importlib.import_module(f"{__name__}.shadow")
        globals()["shadow"] = mod.shadow
        globals()["Shadow"] = mod.Shadow
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
