"""Whole-file writes for the profiler's one-off reports (hang dumps, ``oom.json``, the hang signal): a
temporary file in the same directory, then :func:`os.replace`, so a reader (a peer polling for the hang
signal, ``analyze``) sees the old file or the new one, never half of one."""
import contextlib
import json
import os
import tempfile
from typing import Any


def write_bytes(path: str, data: bytes) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON; values JSON cannot encode are written as their ``str``."""
    write_bytes(path, json.dumps(obj, indent=1, default=str).encode("utf-8"))
