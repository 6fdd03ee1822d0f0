"""Waiting on a condition instead of sleeping a fixed time."""

import time
from typing import Callable


def wait_for(pred: Callable[[], bool], limit: float = 30.0) -> bool:
    """Poll ``pred`` until true; False after ``limit`` s (a safety net for a loaded machine, not a timing
    assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False
