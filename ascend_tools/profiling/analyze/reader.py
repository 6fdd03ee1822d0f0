"""Read a profile directory (docs/profile-format.md) into a merged :class:`Profile`, in chunks of
:data:`CHUNK` ranks read by worker processes (``jobs``) and merged in rank order.

Each rank's ``events.jsonl`` (with the always-on ``windows.*.jsonl`` and ``ring/`` dumps) is parsed, turned
into numpy columns and dropped before the next rank is read, so memory grows with the number of
collectives, not with the size of the records. Nothing in the files is fatal: a missing rank directory, a
missing or corrupt ``meta.json``, a corrupt line, a last line without its newline (a write cut short), an
unknown record kind or a malformed record each become a :class:`Problem`. Only a directory that holds no
``rank*/`` directory, or none that a profiler wrote, is refused (InputError).
"""

import functools
import multiprocessing
import os
import re
import tempfile
from collections import Counter
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ... import boundedio
from ...errors import InputError
from .. import columnar
from ..columnar import Codes, floats
from ..recorder import SCHEMA
from . import handoff, memory
from .model import Colls, Problem, Profile, RankInfo, Steps

if TYPE_CHECKING:
    from typing_extensions import TypeGuard  # typing.TypeGuard is 3.10+

#: the most ranks a profile is read as having (a corrupt world_size or rank must not make millions)
MAX_WORLD = 1 << 17
RANK_DIR = re.compile(r"^rank(\d+)$")
# "ddp" (DDP's own timers, always-on: in its anomaly dumps) is known, and read from the windows only
KINDS = ("group", "stack", "coll", "step", "mem", "ddp")
Progress = Callable[[int, int], None]
CHUNK = 32  # ranks read by one worker task


def rank_dirs(path: str) -> List[Tuple[int, str]]:
    """``(rank, directory)`` for every ``rank{r}/`` under ``path``, by rank; InputError when there is none."""
    if not os.path.isdir(path):
        raise InputError(f"{path}: {'not a directory' if os.path.exists(path) else 'no such directory'}")
    found = []
    for name in os.listdir(path):
        m = RANK_DIR.match(name)
        if m and os.path.isdir(os.path.join(path, name)):
            found.append((int(m.group(1)), os.path.join(path, name)))
    if not found:
        raise InputError(f"{path}: not a profile (no rank*/ directory; see docs/profile-format.md)")
    return sorted(found)


class _Reader:
    """Reads ranks into columns whose ``gid``/``op`` codes are its own (:class:`_Merge` recodes them)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.gids, self.ops = Codes(), Codes()
        self.group_records: List[Tuple[int, str, str, List[int]]] = []  # (rank, file, gid, ranks)
        self.problems: List[Problem] = []
        self.colls: List[Colls] = []
        self.steps: List[Steps] = []

    def problem(self, severity: str, rank: Optional[int], where: str, message: str) -> None:
        self.problems.append(Problem(severity, os.path.relpath(where, self.path), message, rank))

    # --- one rank --------------------------------------------------------------------------------

    def read_rank(self, rank: int, rdir: str) -> RankInfo:
        info = RankInfo(rank=rank, path=rdir, meta=self._meta(rank, rdir))
        info.closed = "closed_at" in info.meta
        if info.meta and not info.closed:
            self.problem(
                "warning",
                rank,
                os.path.join(rdir, "meta.json"),
                "cut short: meta.json has no closed_at (the rank was killed or is still running)",
            )
        for counter in ("dropped", "internal_errors"):
            if info.meta.get(counter):
                self.problem(
                    "warning",
                    rank,
                    os.path.join(rdir, "meta.json"),
                    f"{counter.replace('_', ' ')}: {info.meta[counter]} (records are missing)",
                )
        always_on = _always_on_files(rdir)
        events = os.path.join(rdir, "events.jsonl")
        parts = self._columnar(rank, rdir)
        held = sum(len(p.cols["t0"]) for p in parts)
        mark = len(self.problems)
        records, skipped = self._records(rank, events, (parts[-1].end, parts[-1].offset) if parts else (1, 0))
        if skipped != held:  # not what the profiler writes: events.jsonl alone, its problems said once
            del self.problems[mark:]
            self.problem(
                "warning",
                rank,
                events,
                f"the columnar files hold {held} coll records, events.jsonl has "
                + ("other lines" if skipped < 0 else f"{skipped} coll lines")
                + " where they cover it: its coll records read from it instead",
            )
            parts, held = [], 0
            records, _ = self._records(rank, events)
        for path in always_on["ring"]:  # full records dumped around an anomaly
            records += self._records(rank, path)[0]
        info.records = len(records) + held
        by_kind: Dict[Any, List[Dict[str, Any]]] = {k: [] for k in KINDS}
        unknown: Counter = Counter()
        for rec in records:
            kind = rec.get("k") if isinstance(rec, dict) else None
            if isinstance(kind, str) and kind in by_kind:
                by_kind[kind].append(rec)
            else:
                unknown[str(kind)] += 1
        if unknown:
            self.problem(
                "warning",
                rank,
                os.path.join(rdir, "events.jsonl"),
                "skipped records of unknown kind: "
                + ", ".join(f"{k!r} × {n}" for k, n in sorted(unknown.items())),
            )
        self._groups(rank, rdir, by_kind["group"])
        info.stacks = {
            int(s["sid"]): list(s.get("frames") or [])
            for s in by_kind["stack"]
            if isinstance(s.get("sid"), int)
        }
        self._colls(rank, rdir, parts, by_kind["coll"])
        self._steps(rank, rdir, by_kind["step"], info)
        info.memory = self._memory(by_kind["mem"])
        info.windows = self._windows(rank, always_on["windows"])
        self._hang(rank, rdir, info)
        oom_path = os.path.join(rdir, "oom.json")
        if os.path.exists(oom_path):
            info.oom = self._json(rank, oom_path)
            if info.oom is None:
                info.oom = {"error": "oom.json could not be read"}
        return info

    def _json(self, rank: int, path: str) -> Any:
        try:
            with open(path, "rb") as f:
                return boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
        except FileNotFoundError:
            self.problem("warning", rank, path, "missing")
        except (OSError, ValueError) as exc:
            self.problem("error", rank, path, f"unreadable: {type(exc).__name__}: {exc}")
        return None

    def _meta(self, rank: int, rdir: str) -> Dict[str, Any]:
        path = os.path.join(rdir, "meta.json")
        meta = self._json(rank, path)
        if meta is None:
            return {}
        if not isinstance(meta, dict):
            self.problem("error", rank, path, "not a JSON object")
            return {}
        if meta.get("schema") != SCHEMA:
            self.problem("warning", rank, path, f"schema {meta.get('schema')!r}, expected {SCHEMA!r}")
        if meta.get("rank") not in (None, rank):
            self.problem("warning", rank, path, f"says rank {meta.get('rank')}, directory says rank {rank}")
        return meta

    def _records(self, rank: int, path: str, cover: Tuple[int, int] = (1, 0)) -> Tuple[List[Any], int]:
        """The records of ``path``, read a block at a time (a line over ``boundedio.MAX_LINE`` bytes, bad
        JSON or JSON nested too deeply is skipped and counted), but for the coll lines (those starting with
        :data:`columnar.COLL_PREFIX`) before line ``cover[0]``, which are counted and left out; the count
        comes back beside the records, -1 when a coll record lay on another of those lines or line
        ``cover[0]`` does not start at byte ``cover[1]`` (lines were added, removed or changed)."""
        records: List[Any] = []
        bad: List[int] = []
        skipped = 0
        covered, offset = cover
        try:
            with open(path, "rb") as f:
                for first, lines in _line_blocks(f, boundedio.MAX_LINE):
                    if lines is None:
                        bad.append(first)  # longer than boundedio.MAX_LINE
                        offset = -1 if first < covered else offset
                    elif isinstance(lines, bytes):  # the last line, without its newline
                        if lines.strip():
                            self.problem(
                                "info", rank, path, "last line has no newline (a write cut short): skipped"
                            )
                    elif first < covered:
                        cut = min(len(lines), covered - first)
                        offset -= sum(map(len, lines[:cut])) + cut
                        kept = [i for i in range(cut) if not lines[i].startswith(columnar.COLL_PREFIX)]
                        head: List[Any] = []
                        _parse_block([first + i for i in kept], [lines[i] for i in kept], head, bad)
                        if skipped >= 0:
                            skipped += cut - len(kept)
                        if any(isinstance(r, dict) and r.get("k") == "coll" for r in head):
                            skipped = -1
                        records += head
                        _parse_block(range(first + cut, first + len(lines)), lines[cut:], records, bad)
                    else:
                        _parse_block(range(first, first + len(lines)), lines, records, bad)
        except FileNotFoundError:
            self.problem("error", rank, path, "missing: no records from this rank")
            return [], 0
        except OSError as exc:
            self.problem("error", rank, path, f"unreadable: {exc}")
            return [], 0
        if bad:
            self.problem(
                "warning", rank, path, f"{len(bad)} corrupt line(s) skipped (first: line {min(bad)})"
            )
        return records, skipped if offset == 0 else -1

    def _columnar(self, rank: int, rdir: str) -> List[columnar.Part]:
        """The columnar files that cover lines 1.. of events.jsonl without a gap (the first that does not
        load or does not follow on is reported, and it and the files after it are left to the JSON)."""
        parts: List[columnar.Part] = []
        try:  # a record is 83 bytes in a file, ~300 on its JSON line: the files are never larger
            limit = os.path.getsize(os.path.join(rdir, "events.jsonl")) + (64 << 10)
        except OSError:
            limit = 0
        for path in columnar.files(rdir):
            try:
                part = columnar.load(path, limit)
                limit -= os.path.getsize(path)
            except (OSError, ValueError) as exc:
                self.problem("warning", rank, path, f"unreadable, read from events.jsonl instead: {exc}")
                break
            if part.first != (parts[-1].end if parts else 1):
                self.problem(
                    "warning", rank, path, f"starts at line {part.first}, not where the files before end"
                )
                break
            parts.append(part)
        return parts

    def _groups(self, rank: int, rdir: str, recs: List[Dict[str, Any]]) -> None:
        for rec in recs:
            gid, members = rec.get("gid"), rec.get("ranks")
            if not isinstance(gid, str) or not is_rank_list(members):
                self.problem(
                    "warning", rank, os.path.join(rdir, "events.jsonl"), "malformed group record skipped"
                )
                continue
            self.gids.code(gid)
            self.group_records.append((rank, os.path.join(rdir, "events.jsonl"), gid, list(members)))

    def _colls(self, rank: int, rdir: str, parts: List[columnar.Part], recs: List[Dict[str, Any]]) -> None:
        """The rows of the columnar files, then of the records read from JSON, in the order of the lines."""
        pieces = [_recoded(part, self.gids, self.ops) for part in parts]
        if recs:
            pieces.append(columnar.columns(recs, self.gids, self.ops))
        if not pieces:
            return
        cols = {name: np.concatenate([p[name] for p in pieces]) for name in columnar.DTYPES}
        ok = columnar.valid(cols)
        if not ok.all():
            self.problem(
                "warning",
                rank,
                os.path.join(rdir, "events.jsonl"),
                f"{int((~ok).sum())} malformed coll record(s) skipped (need gid, seq, op, t0 <= t1)",
            )
        idx = np.flatnonzero(ok)
        self.colls.append(
            Colls(
                rank=np.full(len(idx), rank, np.int32),
                gid=cols["gid"][idx].astype(np.int32),
                op=cols["op"][idx].astype(np.int32),
                seq=_narrow(cols["seq"][idx].astype(np.int64)),
                bytes=cols["bytes"][idx],
                t0=cols["t0"][idx],
                t1=cols["t1"][idx],
                dev_ms=cols["dev_ms"][idx],
                is_async=cols["is_async"][idx],
                **{name: _narrow(cols[name][idx]) for name in ("n", "peer", "step", "sid")},
            )
        )

    def _steps(self, rank: int, rdir: str, recs: List[Dict[str, Any]], info: RankInfo) -> None:
        if not recs:
            return
        step, t0, t1 = zip(*[(r.get("step"), r.get("t0"), r.get("t1")) for r in recs])
        s, a, b = floats(step), floats(t0), floats(t1)
        ok = np.isfinite(s) & np.isfinite(a) & np.isfinite(b) & (b >= a)
        if not ok.all():
            self.problem(
                "warning",
                rank,
                os.path.join(rdir, "events.jsonl"),
                f"{int((~ok).sum())} malformed step record(s) skipped",
            )
        if ok.any():
            self.steps.append(
                Steps(np.full(int(ok.sum()), rank, np.int64), s[ok].astype(np.int64), a[ok], b[ok])
            )
            info.last_step = int(s[ok].max())

    def _windows(self, rank: int, paths: List[str]) -> List[Dict[str, Any]]:
        """The ``window`` records of the always-on files, by window number (two files alternate)."""
        found = []
        for path in paths:
            recs = self._records(rank, path)[0]
            ok = [
                r
                for r in recs
                if isinstance(r, dict) and r.get("k") == "window" and isinstance(r.get("w"), int)
            ]
            if len(ok) < len(recs):
                self.problem(
                    "warning", rank, path, f"{len(recs) - len(ok)} record(s) that are not windows skipped"
                )
            found += ok
        return sorted(found, key=lambda r: r["w"])

    @staticmethod
    def _memory(recs: List[Dict[str, Any]]) -> Optional[memory.RankMemory]:
        samples = [
            (r["t"], r.get("step"), memory.flatten(r)) for r in recs if isinstance(r.get("t"), (int, float))
        ]
        if not samples:
            return None
        t, step, values = zip(*samples)
        return memory.rank_memory(t, [s if isinstance(s, int) else -1 for s in step], values)

    def _hang(self, rank: int, rdir: str, info: RankInfo) -> None:
        hdir = os.path.join(rdir, "hang")
        if not os.path.isdir(hdir):
            return
        info.hang_files = sorted(os.listdir(hdir))
        path = os.path.join(hdir, "hang.json")
        doc = self._json(rank, path) if os.path.exists(path) else None
        if os.path.exists(path) and not isinstance(doc, dict):
            self.problem("error", rank, path, "not a hang report (expected a JSON object)")
            doc = None
        info.hang = (
            normalise_hang(doc)
            if doc is not None
            else {"trigger": None, "detected_at": None, "inflight": [], "recent": []}
        )


def _narrow(values: np.ndarray) -> np.ndarray:
    """``values`` as int32 when they fit (they do unless a record is odd: a chunk holding one stays int64,
    and so does the merged column)."""
    if not len(values) or (values.min() >= -(1 << 31) and values.max() < 1 << 31):
        return values.astype(np.int32)
    return values


def _recoded(part: columnar.Part, gids: Codes, ops: Codes) -> Dict[str, np.ndarray]:
    """``part``'s columns with its own group and op codes turned into ``gids``'/``ops``' (each name interned
    at its first row, as the JSON path interns it at its first record)."""
    cols = dict(part.cols)
    for key, codes, names in (("gid", gids, part.gids), ("op", ops, part.ops)):
        column = cols[key]
        used, first = np.unique(column[column >= 0], return_index=True)
        table = np.full(len(names) + 1, -1, np.int64)  # the last slot: code -1 stays -1
        for code in used[np.argsort(first)].tolist():
            table[code] = codes.code(names[code])
        cols[key] = table[column]
    return cols


BLOCK = 8 << 20  # bytes read (and parsed in one C call) at a time
_CUT = b"(cut)"  # stands for a long last line that has no newline


def _line_blocks(f: IO[bytes], limit: int) -> Iterator[Tuple[int, Union[List[bytes], bytes, None]]]:
    """``(number of the first line, lines)`` for each block of complete lines of ``f``; ``(number, None)``
    for a line longer than ``limit`` (skipped without being held); ``(number, tail)`` last, for a last line
    without its newline. Memory stays under ``limit`` + :data:`BLOCK` whatever the file holds."""
    number = 1
    rest = b""
    skipping: Optional[int] = None  # the number of the long line being skipped
    while True:
        block = f.read(BLOCK)
        if not block:
            break
        if skipping is not None:
            end = block.find(b"\n")
            if end < 0:
                continue
            yield skipping, None
            block, skipping = block[end + 1 :], None
        data = rest + block if rest else block
        cut = data.rfind(b"\n")
        if cut >= 0:
            lines = data[:cut].split(b"\n")
            yield number, lines
            number += len(lines)
            rest = data[cut + 1 :]
        else:
            rest = data
        if len(rest) > limit:
            skipping, rest = number, b""
            number += 1
    if skipping is not None:
        yield skipping, _CUT
    elif rest:
        yield number, rest


def _parse_block(numbers: Sequence[int], lines: List[bytes], records: List[Any], bad: List[int]) -> None:
    """Parse ``lines`` (numbered ``numbers``) into ``records``: one C call for the block; a bad line sends
    the block line by line, and its number into ``bad``."""
    limit = boundedio.MAX_LINE
    if lines and max(map(len, lines)) <= limit:
        try:
            parsed = boundedio.loads(b"[" + b",".join(lines) + b"]")
            if len(parsed) == len(lines):  # a line "{...}, {...}" holds two values: not one record
                records.extend(parsed)
                return
        except ValueError:
            pass
    for number, line in zip(numbers, lines):
        if len(line) > limit:
            bad.append(number)
        elif line.strip():
            try:
                records.append(boundedio.loads(line))
            except ValueError:
                bad.append(number)


def _coll_entry(e: Any) -> Optional[Dict[str, Any]]:
    """A hang.json in-flight or recent entry with the fields the analysis needs, or None."""
    if not isinstance(e, dict) or not isinstance(e.get("gid"), str) or not isinstance(e.get("seq"), int):
        return None
    out = {k: e.get(k) for k in ("gid", "seq", "op", "api", "t0", "t1", "bytes", "n", "ranks", "step")}
    if not is_rank_list(out["ranks"]):
        out["ranks"] = None
    return out


def is_rank_list(value: Any) -> "TypeGuard[List[int]]":
    """A list of ranks as the profiler writes it: ints (not bools) in [0, MAX_WORLD). The types are checked
    in C: the group record of each of 8,192 ranks lists 8,192 ranks."""
    if not isinstance(value, list):
        return False
    return not value or (set(map(type, value)) == {int} and min(value) >= 0 and max(value) < MAX_WORLD)


def normalise_hang(doc: Dict[str, Any]) -> Dict[str, Any]:
    """hang.json read defensively: ``inflight`` and ``recent`` keep well-formed entries only."""
    return {
        "trigger": doc.get("trigger"),
        "detected_at": doc.get("detected_at"),
        "inflight": [c for c in map(_coll_entry, doc.get("inflight") or []) if c],
        "recent": [c for c in map(_coll_entry, doc.get("recent") or []) if c],
    }


@dataclass
class _Chunk:
    """What one reader took from a run of consecutive ranks; ``colls.gid``/``colls.op`` index its own
    ``gids``/``ops``."""

    ranks: Dict[int, RankInfo]
    gids: List[str]
    ops: List[str]
    group_records: List[Tuple[int, str, str, List[int]]]
    colls: "handoff.Part[Colls]"
    steps: "handoff.Part[Steps]"
    problems: List[Problem]


def _read_chunk(
    path: str,
    spill: Optional[str],
    dirs: List[Tuple[int, str]],
    on_rank: Optional[Callable[[], None]] = None,
) -> _Chunk:
    """The ranks ``dirs``; their columns written into the directory ``spill`` (from a worker: see
    :mod:`handoff`), or held (``spill`` None)."""
    reader = _Reader(path)
    ranks = {}
    for rank, rdir in dirs:
        ranks[rank] = reader.read_rank(rank, rdir)
        if on_rank is not None:
            on_rank()
    colls, steps = Colls.concat(reader.colls), Steps.concat(reader.steps)
    first = dirs[0][0] if dirs else 0
    return _Chunk(
        ranks,
        reader.gids.names,
        reader.ops.names,
        reader.group_records,
        handoff.spill(colls, spill, f"colls.{first}") if spill else colls,
        handoff.spill(steps, spill, f"steps.{first}") if spill else steps,
        reader.problems,
    )


class _Merge:
    """Chunks merged in rank order, codes shared by every rank: the same result whichever process read
    which chunk."""

    def __init__(self, path: str, problems: List[Problem]) -> None:
        self.path = path
        self.gids, self.ops = Codes(), Codes()
        self.groups: Dict[str, List[int]] = {}
        self.ranks: Dict[int, RankInfo] = {}
        self.problems = problems
        self.colls: List[Tuple[handoff.Part[Colls], Dict[str, np.ndarray]]] = []  # with recoding tables
        self.steps: List[Tuple[handoff.Part[Steps], Dict[str, np.ndarray]]] = []

    def add(self, chunk: _Chunk) -> None:
        self.ranks.update(chunk.ranks)
        self.problems.extend(chunk.problems)
        gids = np.array([self.gids.code(g) for g in chunk.gids] + [-1], np.int32)
        ops = np.array([self.ops.code(o) for o in chunk.ops] + [-1], np.int32)
        self.colls.append((chunk.colls, {"gid": gids, "op": ops}))
        self.steps.append((chunk.steps, {}))
        for rank, where, gid, members in chunk.group_records:
            known = self.groups.setdefault(gid, members)
            if known != members:
                self.problems.append(
                    Problem(
                        "warning",
                        os.path.relpath(where, self.path),
                        f"group {gid!r}: ranks {members} here, {known} on another rank",
                        rank,
                    )
                )


def _read_chunks(
    path: str, dirs: List[Tuple[int, str]], jobs: int, progress: Optional[Progress], spill: str
) -> Iterator[_Chunk]:
    """The chunks of :data:`CHUNK` ranks of ``dirs`` in rank order, read by ``jobs`` worker processes that
    write their columns into the directory ``spill`` (in this process when ``jobs`` is 1 or there is one
    chunk, the columns held)."""
    chunks = [dirs[i : i + CHUNK] for i in range(0, len(dirs), CHUNK)]
    done = [0]

    def one_rank() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], len(dirs))

    if jobs <= 1 or len(chunks) < 2:
        for chunk in chunks:
            yield _read_chunk(path, None, chunk, one_rank)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with context.Pool(min(jobs, len(chunks))) as pool:
        for chunk, read in zip(chunks, pool.imap(functools.partial(_read_chunk, path, spill), chunks)):
            done[0] += len(chunk) - 1
            one_rank()
            yield read


def read_profile(path: str, progress: Optional[Progress] = None, jobs: int = 1) -> Profile:
    """Read every ``rank*/`` of ``path`` in chunks of :data:`CHUNK` ranks, ``jobs`` chunks at a time in
    worker processes (1: in this process); ``progress(done, total)`` after each rank (each chunk with
    workers)."""
    problems: List[Problem] = []

    def problem(severity: str, rank: Optional[int], where: str, message: str) -> None:
        problems.append(Problem(severity, os.path.relpath(where, path), message, rank))

    dirs = []
    for rank, rdir in rank_dirs(path):
        if rank >= MAX_WORLD:
            problem("error", None, rdir, f"rank {rank} is not below {MAX_WORLD}: directory skipped")
        else:
            dirs.append((rank, rdir))
    sizes = []
    profiles = 0
    for rank, rdir in dirs:  # world_size as the meta files declare it bounds the rank numbers read
        meta = _peek_meta(os.path.join(rdir, "meta.json"))
        profiles += _is_profile_rank(rdir, meta)
        size = meta.get("world_size") if isinstance(meta, dict) else None
        if isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_WORLD:
            sizes.append(size)
        elif size is not None:
            problem(
                "warning",
                rank,
                os.path.join(rdir, "meta.json"),
                f"world_size {size!r} ignored (not a count of ranks up to {MAX_WORLD})",
            )
    if dirs and not profiles:
        raise InputError(f"{path}: not a profile ({_what_it_is(dirs[0][1])}; see docs/profile-format.md)")
    if sizes:
        for rank, rdir in [d for d in dirs if d[0] >= max(sizes)]:
            problem(
                "error", None, rdir, f"rank {rank} is outside the world size {max(sizes)}: directory skipped"
            )
        dirs = [d for d in dirs if d[0] < max(sizes)]
    if not dirs:
        raise InputError(f"{path}: not a profile (no rank*/ directory with a rank below the world size)")
    merged = _Merge(path, problems)
    with tempfile.TemporaryDirectory(prefix="ascend-analyze-") as spill:  # removed on every path
        for chunk in _read_chunks(path, dirs, jobs, progress, spill):
            merged.add(chunk)
        colls = handoff.merge(Colls, merged.colls, Colls.empty())
        steps = handoff.merge(Steps, merged.steps, Steps.concat([]))
    ranks = merged.ranks
    if not (merged.groups or len(colls) or len(steps)) and not any(
        info.meta or info.windows or info.memory or info.hang for info in ranks.values()
    ):
        raise InputError(
            f"{path}: not a profile (its rank*/ directories hold no meta.json and no record a profile writes; "
            "see docs/profile-format.md)"
        )
    members = [m + 1 for group in merged.groups.values() for m in group]
    world = max(sizes) if sizes else max([max(ranks) + 1, *members])
    for gid, group in list(merged.groups.items()):
        if any(m >= world for m in group):  # its ranks come from its collectives instead (_complete_groups)
            del merged.groups[gid]
            problem("error", None, path, f"group {gid!r}: ranks {group} outside the world size {world}")
    for rank in range(min(world, MAX_WORLD)):
        if rank not in ranks:
            ranks[rank] = RankInfo(rank=rank, path=os.path.join(path, f"rank{rank}"), present=False)
            problem("error", rank, ranks[rank].path, f"missing: no directory for rank {rank} of {world}")
    if os.path.exists(os.path.join(path, "hang-signal")):
        problem("info", None, os.path.join(path, "hang-signal"), "a rank signalled a hang through this file")
    _complete_groups(merged.groups, merged.gids.names, colls)
    return Profile(
        path=path,
        world_size=world,
        ranks=dict(sorted(ranks.items())),
        gids=merged.gids.names,
        ops=merged.ops.names,
        groups=merged.groups,
        colls=colls,
        steps=steps,
        problems=problems,
    )


PROFILE_FILES = ("events.jsonl", "windows.0.jsonl")


def _always_on_files(rdir: str) -> Dict[str, List[str]]:
    """``windows``: the always-on window files of a rank directory; ``ring``: its anomaly dumps, in order."""
    windows = [os.path.join(rdir, f"windows.{i}.jsonl") for i in (0, 1)]
    ring = os.path.join(rdir, "ring")
    dumps = sorted(n for n in os.listdir(ring) if n.endswith(".jsonl")) if os.path.isdir(ring) else []
    return {
        "windows": [w for w in windows if os.path.exists(w)],
        "ring": [os.path.join(ring, n) for n in dumps],
    }


def _is_profile_rank(rdir: str, meta: Any) -> bool:
    """A rank directory a profiler wrote: its meta.json says so, or (meta.json lost) its records are there."""
    if isinstance(meta, dict) and meta.get("schema") == SCHEMA:
        return True
    if isinstance(meta, dict) and isinstance(meta.get("schema"), str):
        return False  # another tool's (a precision dump's rank directory)
    return any(os.path.exists(os.path.join(rdir, name)) for name in PROFILE_FILES)


def _what_it_is(rdir: str) -> str:
    """What the first rank directory of a directory that is not a profile holds, in a few words."""
    meta = _peek_meta(os.path.join(rdir, "meta.json"))
    name = os.path.basename(rdir)
    if isinstance(meta, dict) and isinstance(meta.get("schema"), str):
        return f"{name}/meta.json is {meta['schema']!r}, not {SCHEMA!r}"
    return f"{name}/ holds neither a profile's meta.json nor {' nor '.join(PROFILE_FILES)}"


def _peek_meta(path: str) -> Any:
    """A meta.json as read, None when it cannot be read (read_rank reports that)."""
    try:
        with open(path, "rb") as f:
            return boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
    except (OSError, ValueError):
        return None


def _complete_groups(groups: Dict[str, List[int]], gids: List[str], colls: Colls) -> None:
    """A group whose ``group`` record was lost gets the ranks that recorded collectives on it."""
    for code, gid in enumerate(gids):
        if gid not in groups:
            groups[gid] = sorted(int(r) for r in np.unique(colls.rank[colls.gid == code]))
