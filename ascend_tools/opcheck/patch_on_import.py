"""Patch a library module right after it executes, in the check-ops child, without importing it first.

A script that never imports transformers (or deepspeed) does not pay for importing it; one that does gets
the module patched before its own code sees it. Used by ``hf_fake.py`` and ``deepspeed_fake.py``.
"""

import importlib.abc
import importlib.util
import sys
from typing import Any, Callable, Mapping, Optional

Patches = Mapping[str, Callable[[Any], None]]


class PatchOnImport(importlib.abc.MetaPathFinder):
    """Wraps the loader of each module named in ``patches`` so the patch follows its execution."""

    def __init__(self, patches: Patches) -> None:
        self.patches = patches

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Optional[Any]:
        patch = self.patches.get(fullname)
        if patch is None:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        original_exec = loader.exec_module

        def exec_module(module: Any) -> None:
            original_exec(module)
            patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def install(patches: Patches) -> None:
    """Patch the modules already imported now, the others when they are."""
    for name, patch in patches.items():
        if name in sys.modules:
            patch(sys.modules[name])
    sys.meta_path.insert(0, PatchOnImport(patches))
