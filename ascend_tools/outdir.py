"""One run owns an output directory: an exclusive ``flock`` on the directory itself, held while it writes.

``ascend-doctor dump`` / ``profile`` / ``shadow`` lock ``-o DIR`` (shadow: ``--records DIR`` or its temporary
directory) before launching the command and hold it until the command ends (its rank processes write ``DIR/rank{r}`` under it); ``capture()`` / ``profile()`` lock their own rank
directory ``DIR/rank{r}``. A second run finds the lock taken and is refused instead of mixing its records into
the first's. The directory is opened ``O_DIRECTORY | O_NOFOLLOW`` (a symlink planted at its name is refused,
not followed) and nothing is written for the lock: no lock file appears in a dump or profile. The kernel drops
the lock when its process dies, even by SIGKILL. Where ``flock`` is missing or refused for a directory
(Windows, some network file systems) there is no lock, as before.
"""

import errno
import os
from typing import List, Optional

from .errors import InputError

try:
    import fcntl
except ImportError:  # Windows: no locking, as before
    fcntl = None  # type: ignore[assignment]


class Busy(Exception):
    """The directory is locked by another run; ``str()`` says by whom."""


class DirLock:
    """The lock on one directory; :meth:`acquire` takes it or raises :class:`Busy` (another run holds it) or
    OSError (the directory or the lock file cannot be made or opened). ``shared``: a lock several runs can
    hold together (``profile --append`` of several nodes), refused while another run holds the exclusive
    one and refusing it."""

    def __init__(self, directory: str, tool: str, shared: bool = False) -> None:
        self.directory = directory
        self.tool = tool
        self.shared = shared
        self._fd: Optional[int] = None

    def acquire(self) -> "DirLock":
        if self._fd is not None:
            return self
        os.makedirs(self.directory, exist_ok=True)
        if fcntl is None:
            return self
        flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(self.directory, flags | getattr(os, "O_CLOEXEC", 0))
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                except OSError as exc:
                    if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise Busy(f"another run is writing there ({_owner(fd)})") from None
                    if exc.errno not in (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP):
                        raise
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # drops the flock

    def __enter__(self) -> "DirLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner(fd: int) -> str:
    """``pid 123`` of the lock's holder, from ``/proc/locks`` (Linux; else ``its lock is held``)."""
    try:
        st = os.fstat(fd)
        want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            for line in f:
                parts = line.split()
                if "FLOCK" in parts and "->" not in parts and len(parts) >= 6 and parts[5] == want:
                    pid = parts[4]
                    return f"pid {pid}" + _cmdline(pid)
    except (OSError, ValueError):
        pass
    return "its lock is held"


def _cmdline(pid: str) -> str:
    """``: ascend-doctor dump`` for a pid whose command line says so, else empty."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read(4096).split(b"\0")
    except OSError:
        return ""
    for i, arg in enumerate(args[:-1]):
        if os.path.basename(arg) == b"ascend-doctor" or arg.endswith(b"ascend_tools.cli"):
            verb = args[i + 1].decode("utf-8", "replace")
            return f", ascend-doctor {verb}" if verb.isidentifier() else ""
    return ""


def rank_lock(out_dir: str, rank: int, tool: str) -> DirLock:
    """The lock of ``out_dir/rank{rank}`` (not taken yet)."""
    return DirLock(os.path.join(out_dir, f"rank{rank}"), tool)


def lock_run(out_dir: str, tool: str, option: str = "-o DIR", shared: bool = False) -> DirLock:
    """The lock of ``ascend-doctor TOOL -o out_dir`` (``option``: how the verb names the directory), taken;
    InputError (one line, exit 2) when another run holds it or it cannot be taken."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output directory ({exc.strerror or exc})") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):  # else the run's writers would fail open: no records
        raise InputError(f"{out_dir}: cannot write to the output directory (read-only or no permission)")
    lock = DirLock(out_dir, tool, shared=shared)
    try:
        return lock.acquire()
    except Busy as exc:
        raise InputError(f"{out_dir}: {exc}: give another {option}, or wait until it ends") from None
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot lock the output directory ({exc.strerror or exc})") from None


def ranges(numbers: List[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``0-2,5``."""
    out: List[List[int]] = []
    for n in sorted(numbers):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(f"{a}-{b}" if b > a else f"{a}" for a, b in out)
