"""Whole-file writes: a temporary file in the same directory, then :func:`os.replace`, so a reader (a peer
polling for the hang signal, ``analyze``, a user opening a report) sees the old file or the new one, never half
of one, and a failed write leaves nothing behind. Used by the profiler's one-off files (hang dumps, ``oom.json``,
``meta.json``), the reports and the Chrome trace. :func:`open_append` opens the streams a capture or profile
appends to (never through a symlink, a FIFO or a hard link planted at their fixed names). :class:`OutputDir`
does both below a run's output directory without following a symlink at any level under it."""

import contextlib
import errno
import json
import os
import secrets
import stat
from typing import IO, Any, Iterator, Optional, Tuple

try:
    import fcntl
except ImportError:  # Windows: no O_NONBLOCK either
    fcntl = None  # type: ignore[assignment]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0) if fcntl is not None else 0


@contextlib.contextmanager
def open_atomic(path: str, mode: str = "w", fsync: bool = False) -> Iterator[IO[Any]]:
    """A file object for ``path`` (text mode: UTF-8, ``\\n`` line ends). On a clean exit the file replaces
    ``path`` with the permissions a plain ``open`` would give it (or the replaced file's; the temporary file
    is made 0600); on an error the temporary file is removed and the error propagates."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    dir_fd = os.open(parent, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        with _open_atomic_at(dir_fd, os.path.basename(path), mode, fsync) as f:
            yield f
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _open_atomic_at(dir_fd: int, name: str, mode: str, fsync: bool) -> Iterator[IO[Any]]:
    """:func:`open_atomic` of the file ``name`` in the directory open at ``dir_fd``."""
    # a random name opened O_CREAT|O_EXCL|O_NOFOLLOW, so nothing planted beside the target (a symlink at a
    # guessed temporary name) is written through; os.replace swaps a symlink at ``name`` itself for the new
    # file and leaves whatever it pointed to alone
    tmp = f".{name}.{secrets.token_hex(4)}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
    fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
    try:
        try:
            f = _fdopen(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        with f:  # close() flushes: ENOSPC there raises too, and the temporary file goes below
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
            with contextlib.suppress(OSError):
                os.fchmod(f.fileno(), _mode_of(dir_fd, name))
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise


def _fdopen(fd: int, mode: str) -> IO[Any]:
    """``fd`` as a file object: binary as is, text as UTF-8 with ``\\n`` line ends."""
    if "b" in mode:
        return os.fdopen(fd, mode)
    return os.fdopen(fd, mode, encoding="utf-8", newline="\n")


def _mode_of(dir_fd: int, name: str) -> int:
    """The permissions of the regular file ``name``, or those a plain ``open`` would give a new one."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
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
    return _open_append_at(None, path, truncate)


def _open_append_at(dir_fd: Optional[int], name: str, truncate: bool) -> IO[str]:
    """:func:`open_append` of ``name`` relative to the directory open at ``dir_fd`` (None: as a path)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK
    fd = os.open(name, flags, 0o666, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file, not written", name)
        if st.st_nlink > 1:
            raise OSError(errno.EMLINK, "has other hard links, not written", name)
        if _O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_O_NONBLOCK)
        if truncate:
            os.ftruncate(fd, 0)
        return os.fdopen(fd, "a", encoding="utf-8", newline="\n")
    except BaseException:
        os.close(fd)
        raise


class OutputDir:
    """An output directory opened once (at the start of a run) and written only below it: every directory
    and file under it is reached from that descriptor one name at a time with ``O_NOFOLLOW``
    (``openat``/``mkdirat``), so a symlink planted at any level below it (``rank0``, ``step3``,
    ``tensors``, ``hang``, a file's own name) is refused with ELOOP instead of followed, and swapping the
    directory's own path later does not redirect the writes. The directory itself is followed once, when
    opened (the user chose that path). Paths are ``/``-separated, relative to it."""

    def __init__(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = path
        self._fd: Optional[int] = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def makedirs(self, rel: str) -> None:
        os.close(self._dir_fd(rel))

    def open_append(self, rel: str, truncate: bool = False) -> IO[str]:
        """:func:`open_append` of ``rel`` (its directories made as needed)."""
        parent, name = _split(rel)
        dir_fd = self._dir_fd(parent)
        try:
            return _open_append_at(dir_fd, name, truncate)
        finally:
            os.close(dir_fd)

    @contextlib.contextmanager
    def open_atomic(self, rel: str, mode: str = "w") -> Iterator[IO[Any]]:
        """:func:`open_atomic` of ``rel`` (its directories made as needed)."""
        parent, name = _split(rel)
        dir_fd = self._dir_fd(parent)
        try:
            with _open_atomic_at(dir_fd, name, mode, False) as f:
                yield f
        finally:
            os.close(dir_fd)

    def remove(self, rel: str) -> None:
        """Remove the file or empty directory ``rel``; nothing when it is missing or not empty."""
        parent, name = _split(rel)
        try:
            dir_fd = self._dir_fd(parent, create=False)
        except OSError:
            return
        try:
            try:
                os.unlink(name, dir_fd=dir_fd)
            except IsADirectoryError:
                os.rmdir(name, dir_fd=dir_fd)
        except OSError:
            pass
        finally:
            os.close(dir_fd)

    def write_json(self, rel: str, obj: Any) -> None:
        """:func:`write_json` of ``rel``."""
        with self.open_atomic(rel, "wb") as f:
            f.write(_json_bytes(obj))

    def _dir_fd(self, rel: str, create: bool = True) -> int:
        """A new descriptor of the directory ``rel`` (made where missing with ``create``), every name
        ``O_NOFOLLOW``."""
        if self._fd is None:
            raise OSError(errno.EBADF, "output directory closed", self.path)
        fd = os.dup(self._fd)
        try:
            for name in (p for p in rel.split("/") if p):
                if name == "..":
                    raise OSError(errno.EINVAL, "leads out of the output directory", rel)
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, 0o777, dir_fd=fd)
                below = os.open(name, os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=fd)
                os.close(fd)
                fd = below
        except BaseException:
            os.close(fd)
            raise
        return fd


def _split(rel: str) -> Tuple[str, str]:
    parent, _, name = rel.rpartition("/")
    if name in ("", ".", ".."):
        raise OSError(errno.EINVAL, "not a file name", rel)
    return parent, name


def write_bytes(path: str, data: bytes) -> None:
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_json(path: str, obj: Any) -> None:
    """``obj`` as indented JSON; values JSON cannot encode are written as their ``str``."""
    write_bytes(path, _json_bytes(obj))


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, default=str).encode("utf-8")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
