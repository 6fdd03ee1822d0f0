"""Read a profile directory (docs/profile-format.md) one rank at a time into a merged :class:`Profile`.

Each rank's ``events.jsonl`` is parsed, turned into numpy columns and dropped before the next rank is
read, so memory grows with the number of collectives, not with the size of the records. Nothing in the
files is fatal: a missing rank directory, a missing or corrupt ``meta.json``, a corrupt line, a last line
without its newline (a write cut short), an unknown record kind or a malformed record each become a
:class:`Problem`. Only a directory that holds no ``rank*/`` directory at all is refused (InputError).
"""

import operator
import os
import re
from collections import Counter
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ... import boundedio
from ...errors import InputError
from ..recorder import SCHEMA
from . import memory
from .model import Colls, Problem, Profile, RankInfo, Steps

if TYPE_CHECKING:
    from typing_extensions import TypeGuard  # typing.TypeGuard is 3.10+

#: the most ranks a profile is read as having (a corrupt world_size or rank must not make millions)
MAX_WORLD = 1 << 17
RANK_DIR = re.compile(r"^rank(\d+)$")
KINDS = ("group", "stack", "coll", "step", "mem")
COLL_KEYS = ("gid", "seq", "op", "bytes", "n", "peer", "t0", "t1", "dev_ms", "async", "step", "sid")
Progress = Callable[[int, int], None]


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


class _Codes:
    """Interns strings (process-group names, op names) as small integers shared by every rank."""

    def __init__(self) -> None:
        self.names: List[str] = []
        self._index: Dict[str, int] = {}

    def code(self, name: str) -> int:
        i = self._index.get(name)
        if i is None:
            i = self._index[name] = len(self.names)
            self.names.append(name)
        return i


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.gids, self.ops = _Codes(), _Codes()
        self.groups: Dict[str, List[int]] = {}
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
        records = self._records(rank, os.path.join(rdir, "events.jsonl"))
        info.records = len(records)
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
        self._colls(rank, rdir, by_kind["coll"])
        self._steps(rank, rdir, by_kind["step"], info)
        info.memory = self._memory(by_kind["mem"])
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

    def _records(self, rank: int, path: str) -> List[Any]:
        """The records of ``path``, read line by line (a line over ``boundedio.MAX_LINE`` bytes, bad JSON
        or JSON nested too deeply is skipped and counted)."""
        records: List[Any] = []
        bad: List[int] = []
        batch: List[Tuple[int, bytes]] = []
        size = 0

        def flush() -> None:  # one C call per batch (~8 MiB); a bad line sends the batch line by line
            try:
                parsed = boundedio.loads(b"[" + b",".join(line for _, line in batch) + b"]")
                if len(parsed) != len(batch):  # a line "{...}, {...}" holds two values: not one record
                    raise ValueError("not one value a line")
                records.extend(parsed)
            except ValueError:
                for number, line in batch:
                    try:
                        records.append(boundedio.loads(line))
                    except ValueError:
                        bad.append(number)
            batch.clear()

        try:
            with open(path, "rb") as f:
                for number, line, ended in boundedio.lines(f):
                    if not ended:
                        if line is None or line.strip():
                            self.problem(
                                "info", rank, path, "last line has no newline (a write cut short): skipped"
                            )
                        break
                    if line is None:
                        bad.append(number)  # longer than boundedio.MAX_LINE
                    elif line.strip():
                        batch.append((number, line))
                        size += len(line)
                        if size >= 8 << 20:
                            flush()
                            size = 0
                flush()
        except FileNotFoundError:
            self.problem("error", rank, path, "missing: no records from this rank")
            return []
        except OSError as exc:
            self.problem("error", rank, path, f"unreadable: {exc}")
            return []
        if bad:
            self.problem(
                "warning", rank, path, f"{len(bad)} corrupt line(s) skipped (first: line {min(bad)})"
            )
        return records

    def _groups(self, rank: int, rdir: str, recs: List[Dict[str, Any]]) -> None:
        for rec in recs:
            gid, members = rec.get("gid"), rec.get("ranks")
            if not isinstance(gid, str) or not is_rank_list(members):
                self.problem(
                    "warning", rank, os.path.join(rdir, "events.jsonl"), "malformed group record skipped"
                )
                continue
            self.gids.code(gid)
            known = self.groups.setdefault(gid, list(members))
            if known != members:
                self.problem(
                    "warning",
                    rank,
                    os.path.join(rdir, "events.jsonl"),
                    f"group {gid!r}: ranks {members} here, {known} on another rank",
                )

    def _colls(self, rank: int, rdir: str, recs: List[Dict[str, Any]]) -> None:
        if not recs:
            return
        get = operator.itemgetter(*COLL_KEYS)
        try:
            rows = [get(r) for r in recs]
        except KeyError:
            rows = [tuple(r.get(k) for k in COLL_KEYS) for r in recs]
        gid, seq, op, nbytes, n, peer, t0, t1, dev_ms, is_async, step, sid = zip(*rows)
        ok = np.array([isinstance(g, str) and isinstance(o, str) for g, o in zip(gid, op)], dtype=bool)
        seq_a, t0_a, t1_a = _floats(seq), _floats(t0), _floats(t1)
        ok &= np.isfinite(seq_a) & np.isfinite(t0_a) & np.isfinite(t1_a) & (t1_a >= t0_a)
        if not ok.all():
            self.problem(
                "warning",
                rank,
                os.path.join(rdir, "events.jsonl"),
                f"{int((~ok).sum())} malformed coll record(s) skipped (need gid, seq, op, t0 <= t1)",
            )
        idx = np.flatnonzero(ok)
        gid_codes = np.array([self.gids.code(g) if isinstance(g, str) else -1 for g in gid], dtype=np.int64)
        op_codes = np.array([self.ops.code(o) if isinstance(o, str) else -1 for o in op], dtype=np.int64)
        self.colls.append(
            Colls(
                rank=np.full(len(idx), rank, np.int64),
                gid=gid_codes[idx],
                op=op_codes[idx],
                seq=seq_a[idx].astype(np.int64),
                bytes=_ints(nbytes, 0)[idx],
                n=_ints(n, 1)[idx],
                peer=_ints(peer, -1)[idx],
                step=_ints(step, -1)[idx],
                sid=_ints(sid, -1)[idx],
                t0=t0_a[idx],
                t1=t1_a[idx],
                dev_ms=_floats(dev_ms)[idx],
                is_async=np.array([bool(a) for a in is_async], dtype=bool)[idx],
            )
        )

    def _steps(self, rank: int, rdir: str, recs: List[Dict[str, Any]], info: RankInfo) -> None:
        if not recs:
            return
        step, t0, t1 = zip(*[(r.get("step"), r.get("t0"), r.get("t1")) for r in recs])
        s, a, b = _floats(step), _floats(t0), _floats(t1)
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


def _floats(values: Tuple[Any, ...]) -> np.ndarray:
    """None (and anything not a number) → NaN."""
    try:
        return np.array(values, dtype=float)
    except (TypeError, ValueError):
        return np.array(
            [v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan for v in values],
            dtype=float,
        )


def _ints(values: Tuple[Any, ...], missing: int) -> np.ndarray:
    a = _floats(values)
    return np.where(np.isfinite(a), a, missing).astype(np.int64)


def _coll_entry(e: Any) -> Optional[Dict[str, Any]]:
    """A hang.json in-flight or recent entry with the fields the analysis needs, or None."""
    if not isinstance(e, dict) or not isinstance(e.get("gid"), str) or not isinstance(e.get("seq"), int):
        return None
    out = {k: e.get(k) for k in ("gid", "seq", "op", "api", "t0", "t1", "bytes", "n", "ranks", "step")}
    if not is_rank_list(out["ranks"]):
        out["ranks"] = None
    return out


def is_rank_list(value: Any) -> "TypeGuard[List[int]]":
    """A list of ranks as the profiler writes it: ints in [0, MAX_WORLD)."""
    return isinstance(value, list) and all(
        isinstance(m, int) and not isinstance(m, bool) and 0 <= m < MAX_WORLD for m in value
    )


def normalise_hang(doc: Dict[str, Any]) -> Dict[str, Any]:
    """hang.json read defensively: ``inflight`` and ``recent`` keep well-formed entries only."""
    return {
        "trigger": doc.get("trigger"),
        "detected_at": doc.get("detected_at"),
        "inflight": [c for c in map(_coll_entry, doc.get("inflight") or []) if c],
        "recent": [c for c in map(_coll_entry, doc.get("recent") or []) if c],
    }


def read_profile(path: str, progress: Optional[Progress] = None) -> Profile:
    """Read every ``rank*/`` of ``path``, one at a time; ``progress(done, total)`` after each."""
    reader = _Reader(path)
    dirs = []
    for rank, rdir in rank_dirs(path):
        if rank >= MAX_WORLD:
            reader.problem("error", None, rdir, f"rank {rank} is not below {MAX_WORLD}: directory skipped")
        else:
            dirs.append((rank, rdir))
    sizes = []
    for rank, rdir in dirs:  # world_size as the meta files declare it bounds the rank numbers read
        size = _peek_world_size(os.path.join(rdir, "meta.json"))
        if isinstance(size, int) and not isinstance(size, bool) and 0 < size <= MAX_WORLD:
            sizes.append(size)
        elif size is not None:
            reader.problem(
                "warning",
                rank,
                os.path.join(rdir, "meta.json"),
                f"world_size {size!r} ignored (not a count of ranks up to {MAX_WORLD})",
            )
    if sizes:
        for rank, rdir in [d for d in dirs if d[0] >= max(sizes)]:
            reader.problem(
                "error", None, rdir, f"rank {rank} is outside the world size {max(sizes)}: directory skipped"
            )
        dirs = [d for d in dirs if d[0] < max(sizes)]
    if not dirs:
        raise InputError(f"{path}: not a profile (no rank*/ directory with a rank below the world size)")
    ranks: Dict[int, RankInfo] = {}
    for i, (rank, rdir) in enumerate(dirs):
        ranks[rank] = reader.read_rank(rank, rdir)
        if progress is not None:
            progress(i + 1, len(dirs))
    members = [m + 1 for group in reader.groups.values() for m in group]
    world = max(sizes) if sizes else max([max(ranks) + 1, *members])
    for gid, group in list(reader.groups.items()):
        if any(m >= world for m in group):  # its ranks come from its collectives instead (_complete_groups)
            del reader.groups[gid]
            reader.problem(
                "error", None, path, f"group {gid!r}: ranks {group} outside the world size {world}"
            )
    for rank in range(min(world, MAX_WORLD)):
        if rank not in ranks:
            ranks[rank] = RankInfo(rank=rank, path=os.path.join(path, f"rank{rank}"), present=False)
            reader.problem(
                "error", rank, ranks[rank].path, f"missing: no directory for rank {rank} of {world}"
            )
    if os.path.exists(os.path.join(path, "hang-signal")):
        reader.problem(
            "info", None, os.path.join(path, "hang-signal"), "a rank signalled a hang through this file"
        )
    colls = Colls.concat(reader.colls)
    _complete_groups(reader.groups, reader.gids.names, colls)
    return Profile(
        path=path,
        world_size=world,
        ranks=dict(sorted(ranks.items())),
        gids=reader.gids.names,
        ops=reader.ops.names,
        groups=reader.groups,
        colls=colls,
        steps=Steps.concat(reader.steps),
        problems=reader.problems,
    )


def _peek_world_size(path: str) -> Any:
    """``world_size`` of a meta.json, None when it cannot be read (read_rank reports that)."""
    try:
        with open(path, "rb") as f:
            meta = boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
    except (OSError, ValueError):
        return None
    return meta.get("world_size") if isinstance(meta, dict) else None


def _complete_groups(groups: Dict[str, List[int]], gids: List[str], colls: Colls) -> None:
    """A group whose ``group`` record was lost gets the ranks that recorded collectives on it."""
    for code, gid in enumerate(gids):
        if gid not in groups:
            groups[gid] = sorted(int(r) for r in np.unique(colls.rank[colls.gid == code]))
