"""The columnar collectives files of a rank (docs/profile-format.md): ``colls.{i}.npz``, the ``coll`` records
of lines ``[first, end)`` of ``events.jsonl`` as numpy columns (with the byte offset of line ``end``, so
that a file whose lines were edited since is noticed), so ``analyze`` loads them (~1 ms for 2,000
records) instead of decoding their JSON (~8 ms). ``events.jsonl`` stays the format of record: it holds every
record, and the reader takes from it the ``coll`` lines past what the files cover (a rank killed before its
last file was written).

The same conversion, from record dicts to columns, serves the profiler's writer (:class:`Writer`), the
simulated profiles and the reader, so a record read from either file gives the same row. The files are
hostile input: :func:`load` reads them with ``allow_pickle=False`` and checks every member's name, shape,
dtype and range, raising ValueError for anything else.
"""

import operator
import os
import re
import zipfile
from typing import IO, Any, Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

#: the fields of a ``coll`` record that become columns
COLL_KEYS = ("gid", "seq", "op", "bytes", "n", "peer", "t0", "t1", "dev_ms", "async", "step", "sid")
#: how every ``coll`` line the profiler writes starts (``json.dumps`` of a dict whose first key is ``k``)
COLL_PREFIX = b'{"k": "coll"'
FILE = re.compile(r"^colls\.(\d+)\.npz$")
#: rows in one file the profiler writes (at most; fewer at close or at an anomaly): ~0.7 MB held meanwhile
ROWS = 8192
#: column name -> dtype in the file; ``gid``/``op`` index the file's own ``gids``/``ops`` (-1: not a name)
DTYPES = {
    "gid": np.int32,
    "op": np.int32,
    "seq": np.float64,  # NaN: missing (the record is not kept), as in the JSON
    "bytes": np.int64,
    "n": np.int64,
    "peer": np.int64,
    "step": np.int64,
    "sid": np.int64,
    "t0": np.float64,
    "t1": np.float64,
    "dev_ms": np.float64,
    "is_async": np.bool_,
}
MAX_NAMES = 1 << 16  # distinct group or op names in one file
MAX_NAME = 1024  # characters of one name


class Codes:
    """Interns strings (process-group names, op names) as small integers."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self._index: Dict[str, int] = {}

    def code(self, name: str) -> int:
        i = self._index.get(name)
        if i is None:
            i = self._index[name] = len(self.names)
            self.names.append(name)
        return i


def coded(codes: Codes, names: Sequence[Any]) -> np.ndarray:
    """The code of each name (-1 for a name that is not a string), interning each distinct name once in
    order of appearance."""
    try:
        distinct = list(dict.fromkeys(names))
    except TypeError:  # a list or an object where a name should be: none of those is a name
        names = tuple(n if isinstance(n, str) else None for n in names)
        distinct = list(dict.fromkeys(names))
    table = {name: codes.code(name) if isinstance(name, str) else -1 for name in distinct}
    return np.fromiter(map(table.__getitem__, names), np.int64, len(names))


def floats(values: Sequence[Any]) -> np.ndarray:
    """None (and anything not a number) → NaN."""
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        return np.array(
            [v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values],
            dtype=float,
        )


def ints(values: Sequence[Any], missing: int) -> np.ndarray:
    a = floats(values)
    return np.where(np.isfinite(a), a, missing).astype(np.int64)


def rows(recs: List[Dict[str, Any]]) -> List[Tuple[Any, ...]]:
    """The :data:`COLL_KEYS` fields of each ``coll`` record (None where missing)."""
    get = operator.itemgetter(*COLL_KEYS)
    try:
        return [get(r) for r in recs]
    except KeyError:
        return [tuple(r.get(k) for k in COLL_KEYS) for r in recs]


def columns(recs: List[Dict[str, Any]], gids: Codes, ops: Codes) -> Dict[str, np.ndarray]:
    """The columns of ``coll`` records, every record a row (:func:`valid` says which rows to keep): ``gid``
    and ``op`` coded by ``gids``/``ops``; a missing ``bytes`` is 0, ``n`` 1, ``peer``/``step``/``sid`` -1,
    ``seq``/``t0``/``t1``/``dev_ms`` NaN."""
    return _columns(rows(recs), gids, ops)


def _columns(rows: List[Tuple[Any, ...]], gids: Codes, ops: Codes) -> Dict[str, np.ndarray]:
    if not rows:
        return {name: np.zeros(0, dtype) for name, dtype in DTYPES.items()}
    gid, seq, op, nbytes, n, peer, t0, t1, dev_ms, is_async, step, sid = zip(*rows)
    return {
        "gid": coded(gids, gid),
        "op": coded(ops, op),
        "seq": floats(seq),
        "bytes": ints(nbytes, 0),
        "n": ints(n, 1),
        "peer": ints(peer, -1),
        "step": ints(step, -1),
        "sid": ints(sid, -1),
        "t0": floats(t0),
        "t1": floats(t1),
        "dev_ms": floats(dev_ms),
        "is_async": np.fromiter(map(bool, is_async), bool, len(is_async)),
    }


def valid(cols: Dict[str, np.ndarray]) -> np.ndarray:
    """The rows that are collectives: a group and an op name, a seq, and finite ``t0 <= t1``."""
    t0, t1 = cols["t0"], cols["t1"]
    ok = (cols["gid"] >= 0) & (cols["op"] >= 0) & np.isfinite(cols["seq"])
    return ok & np.isfinite(t0) & np.isfinite(t1) & (t1 >= t0)


def write(
    f: IO[bytes], cols: Dict[str, np.ndarray], gids: List[str], ops: List[str], lines: Tuple[int, int, int]
) -> None:
    """One file: ``cols`` (as :func:`columns` gives them) for the ``coll`` lines among lines ``[first, end)``
    of ``events.jsonl`` (numbered from 1); ``lines``: ``(first, end, offset of line end in bytes)``."""
    members: Dict[str, Any] = {name: np.asarray(cols[name], dtype) for name, dtype in DTYPES.items()}
    members["gids"] = np.array(gids, dtype=f"<U{max(map(len, gids), default=1)}")
    members["ops"] = np.array(ops, dtype=f"<U{max(map(len, ops), default=1)}")
    members["lines"] = np.array(lines, np.int64)
    np.savez(f, **members)


class Part(NamedTuple):
    """One file as loaded: its columns, names, and the lines of ``events.jsonl`` it covers."""

    cols: Dict[str, np.ndarray]
    gids: List[str]
    ops: List[str]
    first: int
    end: int
    offset: int  # of line ``end``, in bytes


def files(rdir: str) -> List[str]:
    """The columnar files of a rank directory, by number."""
    found = []
    for name in os.listdir(rdir):
        m = FILE.match(name)
        if m:
            found.append((int(m.group(1)), os.path.join(rdir, name)))
    return [path for _, path in sorted(found)]


def load(path: str, limit: int) -> Part:
    """One file, checked: at most ``limit`` bytes; uncompressed members only, no bigger than the file; exactly
    the expected members, one-dimensional, of the expected dtypes and one length; codes that index the
    names. ValueError (or OSError) otherwise."""
    size = os.path.getsize(path)
    if size > limit:
        raise ValueError(f"{size} bytes, more than the coll lines it stands for can be ({limit})")
    try:
        with zipfile.ZipFile(path) as z:
            infos = z.infolist()
    except zipfile.BadZipFile as exc:
        raise ValueError(str(exc)) from None
    if any(i.compress_type != zipfile.ZIP_STORED for i in infos) or sum(i.file_size for i in infos) > size:
        raise ValueError("compressed or inconsistent members")
    members = {i.filename for i in infos}
    want = {f"{name}.npy" for name in (*DTYPES, "gids", "ops", "lines")}
    if members != want:
        raise ValueError(f"members {sorted(members)}, expected {sorted(want)}")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in (*DTYPES, "gids", "ops", "lines")}
    names = {}
    for key in ("gids", "ops"):
        a = arrays[key]
        if a.ndim != 1 or a.dtype.kind != "U" or len(a) > MAX_NAMES or a.dtype.itemsize > 4 * MAX_NAME:
            raise ValueError(f"{key}: not a list of names")
        names[key] = a.tolist()
    lines = arrays["lines"]
    if lines.shape != (3,) or lines.dtype != np.int64 or not 1 <= lines[0] <= lines[1] <= lines[2] + 1:
        raise ValueError("lines: not a range of line numbers")
    length = len(arrays["t0"])
    cols = {}
    for name, dtype in DTYPES.items():
        a = arrays[name]
        if a.ndim != 1 or a.dtype != np.dtype(dtype) or len(a) != length:
            raise ValueError(f"{name}: {a.dtype} × {a.shape}, expected {np.dtype(dtype)} × ({length},)")
        cols[name] = a
    for code, key in (("gid", "gids"), ("op", "ops")):
        if length and not -1 <= int(cols[code].min()) <= int(cols[code].max()) < len(names[key]):
            raise ValueError(f"{code}: codes outside its {len(names[key])} names")
    if length > int(lines[1] - lines[0]):
        raise ValueError(f"{length} records in {int(lines[1] - lines[0])} lines")
    return Part(cols, names["gids"], names["ops"], *map(int, lines))


class Writer:
    """Collects the ``coll`` records the recorder wrote to ``events.jsonl`` and writes them out as a file every
    :data:`ROWS` records and at :meth:`close` (``open_file(name)`` gives the binary file to write, atomically).
    Holds at most ~:data:`ROWS` records' fields as tuples (~3 MB), turned into columns when a file is written:
    1.4 µs a record in the writer thread (file written included), where each flush's few records made into
    arrays cost 3.4 (json.dumps: 4.5)."""

    def __init__(self) -> None:
        self.gids, self.ops = Codes(), Codes()
        self._rows: List[Tuple[Any, ...]] = []
        self._first = 1  # the first line of events.jsonl the next file covers
        self.names: List[str] = []  # of the files written

    def add(self, recs: List[Dict[str, Any]], end: Tuple[int, int], open_file: Any) -> None:
        """``recs``: the ``coll`` records among the lines just written, ``end``: the line after them and its
        offset in bytes."""
        self._rows += rows(recs)
        if len(self._rows) >= ROWS:
            self.close(end, open_file)

    def close(self, end: Tuple[int, int], open_file: Any) -> None:
        """Write what is held (nothing when no ``coll`` line came since the last file)."""
        if not self._rows:
            return
        cols = _columns(self._rows, self.gids, self.ops)
        name = f"colls.{len(self.names)}.npz"
        with open_file(name) as f:
            write(f, cols, self.gids.names, self.ops.names, (self._first, *end))
        self.names.append(name)
        self._rows, self._first = [], end[0]
