"""Read a dump, whichever tool wrote it: one interface over ours (``store.py``) and msprobe's
(``msprobe_reader.py``), so ``compare`` takes either as either side."""

import os
from functools import lru_cache
from typing import Any, Dict, Iterator, List, Optional

from ..errors import InputError
from .records import Record, TensorInfo


class Dump:
    """One rank's dump, read-only. Subclasses implement the four methods below."""

    format = "unknown"

    def __init__(self, path: str) -> None:
        self.path = path
        self.meta: Dict[str, Any] = {}
        # what could not be read (bad record lines, each reader's count), one line each naming the file
        self.problems: List[str] = []

    def steps(self) -> List[int]:
        """The steps this dump holds, ascending."""
        raise NotImplementedError

    def records(self, step: int) -> Iterator[Record]:
        """The records of ``step`` in execution order."""
        raise NotImplementedError

    def load_tensor(self, info: TensorInfo, step: int) -> Any:
        """The saved tensor as a CPU ``torch.Tensor`` in its original dtype, or None when this dump
        holds no tensor for it (stats or hash mode)."""
        raise NotImplementedError

    def load_array(self, info: TensorInfo, step: int) -> Any:
        """What compare's pair metrics read: a numpy array where the reader has one without torch
        (bfloat16/float8 as raw bits: ``info.dtype`` says which), else :meth:`load_tensor`'s tensor."""
        return self.load_tensor(info, step)

    def tensor_file(self, info: TensorInfo, step: int) -> Optional[str]:
        """The ``.npy`` file :func:`store.read_tensor_file` reads for ``info`` (checked to stay inside the
        dump: :class:`UnsafePath` otherwise), or None: none saved, or a reader whose files are not ``.npy``.
        What a replay in another process is given instead of the tensor (``replay_job.py``)."""
        return None

    def stack(self, stack_id: Optional[int]) -> List[str]:
        """The Python stack of a record (outermost first) as ``file:line in function`` strings."""
        raise NotImplementedError


class UnsafePath(InputError):
    """A path named by a dump that leads out of its directory (absolute, ``..``, or a symlink)."""


@lru_cache(maxsize=64)
def _real_root(root: str) -> str:
    """``realpath(root)``, once per directory (a compare asks for every tensor file it reads)."""
    return os.path.realpath(root)


def inside(root: str, *parts: str) -> str:
    """``root/parts...`` when it stays under ``root`` once symlinks are resolved (both sides: ``root``
    itself may be a link), else :class:`UnsafePath`. For every path whose name a dump supplies."""
    if any(os.path.isabs(p) for p in parts):
        raise UnsafePath(f"{os.path.join(*parts)}: an absolute path, in the dump at {root}")
    path = os.path.join(root, *parts)
    real_root = _real_root(root)
    head, tail = os.path.split(path)
    if tail in ("", ".", "..") or os.path.islink(path):
        real = os.path.realpath(path)
    else:  # a file that is no link: its directory's real path (cached: a compare reads many files of one step)
        real = os.path.join(_real_root(head), tail)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafePath(f"{os.path.join(*parts)}: leads out of {root}")
    return path


def open_dump(path: str, rank: Optional[int] = None) -> Dump:
    """Open ``path`` as our dump (a ``meta.json`` at or below it) or msprobe's (a ``dump.json``).

    ``rank`` picks one rank of a multi-rank dump (default: the lowest). Raises InputError with one
    line naming the path when it is neither."""
    from . import msprobe_reader, store

    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    for reader in (store.OurDump, msprobe_reader.MsprobeDump):
        found = reader.find(path, rank)
        if found is not None:
            return found
    raise InputError(f"{path}: not a dump: found neither meta.json (ascend-doctor) nor dump.json (msprobe)")
