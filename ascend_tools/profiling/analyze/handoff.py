"""How the reading workers hand their chunks' columns (:class:`Colls`, :class:`Steps`) to the main process:
each worker writes a chunk's columns back to back into one file of a private directory (:func:`spill`)
and the main process reads each straight into its slice of the merged column, allocated once at its full
length (:func:`merge`). Through the pool's pipe the columns were pickled, copied into the pipe, read into a
buffer, unpickled into pieces and concatenated: four copies and a heap of pieces (12.9 CPU s of the main
process at 8,192 ranks × 2,000 collectives); here the main process makes one ``read`` into place."""

import contextlib
import ctypes
import os
from dataclasses import dataclass, fields
from typing import Dict, List, Sequence, Tuple, Type, TypeVar, Union

import numpy as np

Columns = TypeVar("Columns")  # a dataclass of equal-length 1-D numpy columns: Colls or Steps


@dataclass
class Spilled:
    """A chunk's columns in ``path``, back to back in the order of ``dtypes`` (column name -> dtype)."""

    path: str
    length: int
    dtypes: Dict[str, str]

    def __len__(self) -> int:
        return self.length

    def read_into(self, name: str, out: np.ndarray) -> None:
        """Column ``name`` into ``out`` (its length), cast when ``out`` has another dtype."""
        offset = 0
        for column, dtype in self.dtypes.items():
            if column == name:
                break
            offset += np.dtype(dtype).itemsize * self.length
        stored = np.dtype(self.dtypes[name])
        target = out if out.dtype == stored else np.empty(self.length, stored)
        view = memoryview(target.view(np.uint8))  # type: ignore[arg-type]
        with open(self.path, "rb", buffering=0) as f:
            f.seek(offset)
            while len(view):
                got = f.readinto(view)
                if not got:
                    raise OSError(f"{self.path}: ends before column {name!r}")
                view = view[got:]
        if target is not out:
            out[...] = target


Part = Union[Columns, Spilled]


def spill(columns: Columns, directory: str, name: str) -> Spilled:
    """``columns`` written to ``directory/name`` (in a worker); what :func:`merge` needs to read them back."""
    path = os.path.join(directory, name)
    dtypes = {}
    with open(path, "wb") as f:
        for field in fields(columns):  # type: ignore[arg-type]
            values = np.ascontiguousarray(getattr(columns, field.name))
            f.write(values.view(np.uint8).data)
            dtypes[field.name] = values.dtype.str
    return Spilled(path, len(columns), dtypes)  # type: ignore[arg-type]


def merge(cls: Type[Columns], parts: Sequence[Tuple[Part, Dict[str, np.ndarray]]], empty: Columns) -> Columns:
    """``parts`` one after the other, each with its recoding tables (column -> table indexed by the part's
    codes, applied in place), column by column. An in-memory part's column is dropped as soon as it is
    copied: the peak is the parts plus one column, not twice the columns; a spilled part is not in memory."""
    if not parts:
        return empty
    merged = {}
    lengths = [len(part) for part, _ in parts]
    for field in fields(cls):  # type: ignore[arg-type]
        name = field.name
        out = np.empty(sum(lengths), _dtype(name, parts))
        start = 0
        for (part, tables), length in zip(parts, lengths):
            piece = out[start : start + length]
            if isinstance(part, Spilled):
                part.read_into(name, piece)
            else:
                piece[...] = getattr(part, name)
                setattr(part, name, None)
            if name in tables:
                piece[...] = tables[name][piece]
            start += len(piece)
        merged[name] = out
        _return_freed_memory()
    return cls(**merged)


def _dtype(name: str, parts: Sequence[Tuple[Part, Dict[str, np.ndarray]]]) -> np.dtype:
    """The merged column's dtype: that of ``np.concatenate`` of the parts' columns after recoding."""
    dtypes: List[np.dtype] = []
    for part, tables in parts:
        if name in tables:
            dtypes.append(tables[name].dtype)
        elif isinstance(part, Spilled):
            dtypes.append(np.dtype(part.dtypes[name]))
        else:
            dtypes.append(getattr(part, name).dtype)
    return np.result_type(*dtypes)


def _return_freed_memory() -> None:
    """Hand the heap's free pages back to the system. In-memory parts' columns (pieces of a few hundred KB,
    below glibc's mmap threshold once it has risen) sit in the heap; freed by :func:`merge`, glibc keeps
    them as resident memory unless trimmed (1.6 GB at 8,192 ranks when they came unpickled)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim, or no way to
        ctypes.CDLL("libc.so.6").malloc_trim(0)
