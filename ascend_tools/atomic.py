"""Whole-file writes: a temporary file in the same directory, then :func:`os.replace`, so a reader (a peer
polling for the hang signal, ``analyze``, a user opening a report) sees the old file or the new one, never half
of one, and a failed write leaves nothing behind. Used by the profiler's one-off files (hang dumps, ``oom.json``,
``meta.json``), the reports and the Chrome trace."""

import contextlib
import json
import os
import tempfile
from typing import IO, Any, Iterator


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w", fsync: bool = False) -> Iterator[IO[Any]]:
    """A file object for ``path`` (text mode: UTF-8, ``\\n`` line ends). On a clean exit the file replaces
    ``path`` with the permissions a plain ``open`` would give it (or the replaced file's; ``mkstemp`` makes
    0600); on an error the temporary file is removed and the error propagates."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        with _fdopen(fd, mode) as f:
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777 if os.path.exists(path) else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _fdopen(fd: int, mode: str) -> IO[Any]:
    """``fd`` as a file object: binary as is, text as UTF-8 with ``\\n`` line ends."""
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="\n")


def write_bytes(path: str, data: bytes) -> None:
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON; values JSON cannot encode are written as their ``str``."""
    write_bytes(path, json.dumps(obj, indent=1, default=str).encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
