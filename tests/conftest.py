"""Shared test setup: the repo root on sys.path, so tests import ascend_tools without installing it, and
tests/ itself, for the helpers every test directory shares (polling.py)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)


def pytest_collection_finish(session):
    """Importing ``ascend_tools.patch`` patches every transformers family (the drop-in), and a worker collects every
    test module before it runs any: a module that imports it at the top would leave transformers patched for every
    test of its worker, whichever file they are in (FSDP's unwrapped reference ran the fused loss). Undo it once
    collection is done; a test that wants the patch applies it (``hf.patch_all()``) and reverts it."""
    patch = sys.modules.get("ascend_tools.patch")
    if patch is not None:
        patch.revert()
