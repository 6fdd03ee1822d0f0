"""Whole-file writes: a temporary file in the same directory, then :func:`os.replace`, so a reader (a peer
polling for the hang signal, ``analyze``, a user opening a report) sees the old file or the new one, never half
of one, and a failed write leaves nothing behind. Used by the profiler's one-off files (hang dumps, ``oom.json``,
``meta.json``), the reports and the Chrome trace. :func:`open_append` opens the streams a capture or profile
appends to (never through a symlink, a FIFO or a hard link planted at their fixed names)."""

import contextlib
import errno
import json
import os
import stat
import tempfile
from typing import IO, Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no O_NONBLOCK either
    fcntl = None  # type: ignore[assignment]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0) if fcntl is not None else 0


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w", fsync: bool = False) -> Iterator[IO[Any]]:
    """A file object for ``path`` (text mode: UTF-8, ``\\n`` line ends). On a clean exit the file replaces
    ``path`` with the permissions a plain ``open`` would give it (or the replaced file's; ``mkstemp`` makes
    0600); on an error the temporary file is removed and the error propagates."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # mkstemp: a random name opened O_CREAT|O_EXCL|O_NOFOLLOW, so nothing planted beside the target (a
    # symlink at a guessed temporary name) is written through; os.replace swaps a symlink at ``path`` itself
    # for the new file and leaves whatever it pointed to alone
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    try:
        try:
            f = _fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        with f:  # close() flushes: ENOSPC there raises too, and the temporary file goes below
            yield f
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        with contextlib.suppress(OSError):
            os.chmod(tmp, _mode_of(path))
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


def _mode_of(path: str) -> int:
    """The permissions of the regular file at ``path``, or those a plain ``open`` would give a new one."""
    try:
        st = os.lstat(path)
    except OSError:
        st = None
    if st is not None and stat.S_ISREG(st.st_mode):
        return st.st_mode & 0o7777
    return 0o666 & ~_umask()


def open_append(path: str, truncate: bool = False) -> IO[str]:
    """A UTF-8 text stream appending to ``path`` (created if missing; emptied first with ``truncate``), for
    the files a capture or profile keeps open and appends to (``records.jsonl``, ``stacks.jsonl``,
    ``events.jsonl``). Refused with an OSError, and nothing written, when ``path`` is not a plain file of
    its own: a symlink (``O_NOFOLLOW``: ELOOP), a FIFO or device (opened ``O_NONBLOCK`` so a FIFO without a
    reader cannot block the training; ENXIO or the check below), or a file with other hard links (it would
    write into a file elsewhere). The check comes before any truncation. Callers fail open."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK
    fd = os.open(path, flags, 0o666)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file, not written", path)
        if st.st_nlink > 1:
            raise OSError(errno.EMLINK, "has other hard links, not written", path)
        if _O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_NONBLOCK)
        if truncate:
            os.ftruncate(fd, 0)
        return os.fdopen(fd, "a", encoding="utf-8", newline="\n")
    except BaseException:
        os.close(fd)
        raise


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
