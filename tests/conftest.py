"""Shared test setup: the repo root on sys.path, so tests import ascend_tools without installing it, and
tests/ itself, for the helpers every test directory shares (polling.py)."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for path in (ROOT, os.path.join(ROOT, "tests")):
    if path not in sys.path:
        sys.path.insert(0, path)
