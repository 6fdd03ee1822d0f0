"""A Chrome / Perfetto trace of an analysed profile (``ascend-doctor analyze DIR --trace FILE``).

The JSON Trace Event Format (``{"traceEvents": [...]}``), loadable in https://ui.perfetto.dev and
chrome://tracing. One process per rank, named ``rank r (host)``; in it, blocking collectives on one
thread and async ones on another (they may overlap), steps on a third, each a complete (``X``) event with
its args (op, group, seq, bytes, busbw, wait); memory samples as counter (``C``) events; a collective
still in flight at a hang as an ``X`` event up to the moment the watchdog fired. Times are microseconds
since the earliest event, on the reference rank's clock (the offsets of analyze/clocks.py applied).

The file is streamed rank by rank to a temporary file next to ``path`` and renamed into place, so a
failure leaves no half-written trace.
"""
import json
import os
import tempfile
from typing import TYPE_CHECKING, Any, Dict, Iterator

import numpy as np

from ..errors import InputError
from .analyze.arrays import runs
from .bandwidth import GB, bus_factors

if TYPE_CHECKING:
    from .analyze import Analysis

COLL_TID, ASYNC_TID, STEP_TID = 0, 1, 2
COUNTERS = ("dev.allocated_bytes", "dev.reserved_bytes", "dev.active_bytes", "host.rss")


def _origin(a: "Analysis") -> float:
    starts = [a.profile.colls.t0.min(initial=np.inf), a.profile.steps.t0.min(initial=np.inf)]
    starts += [float(i.memory.t[0]) for i in a.profile.ranks.values() if i.memory is not None and len(i.memory.t)]
    origin = min(starts)
    return origin if np.isfinite(origin) else 0.0


def events(a: "Analysis") -> Iterator[Dict[str, Any]]:
    """Every trace event, rank by rank."""
    p = a.profile
    colls, steps = p.colls, p.steps
    origin = _origin(a)
    dur = colls.t1 - colls.t0
    with np.errstate(divide="ignore", invalid="ignore"):
        busbw = colls.bytes * bus_factors(p.ops, colls.op, colls.n) / (dur - a.skew.wait) / GB
    by_rank, step_rows = _rows_by_rank(colls.rank), _rows_by_rank(steps.rank)

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 3)

    for rank, info in p.ranks.items():
        if not info.present:
            continue
        yield {"ph": "M", "pid": rank, "ts": 0, "name": "process_name", "args": {"name": f"rank {rank} ({info.host})"}}
        yield {"ph": "M", "pid": rank, "ts": 0, "name": "process_sort_index", "args": {"sort_index": rank}}
        for tid, name in ((COLL_TID, "collectives"), (ASYNC_TID, "async collectives"), (STEP_TID, "steps")):
            yield {"ph": "M", "pid": rank, "tid": tid, "ts": 0, "name": "thread_name", "args": {"name": name}}
        for i in by_rank.get(rank, ()):
            op = p.ops[int(colls.op[i])]
            name = f"{op} → {colls.peer[i]}" if op == "send" else f"{op} ← {colls.peer[i]}" if op == "recv" else op
            yield {"ph": "X", "pid": rank, "tid": ASYNC_TID if colls.is_async[i] else COLL_TID, "name": name,
                   "cat": "collective", "ts": us(colls.t0[i]), "dur": round(float(dur[i]) * 1e6, 3),
                   "args": {"op": op, "group": p.gids[int(colls.gid[i])], "seq": int(colls.seq[i]),
                            "bytes": int(colls.bytes[i]), "step": int(colls.step[i]),
                            "busbw_GBps": round(float(busbw[i]), 3) if np.isfinite(busbw[i]) else None,
                            "wait_ms": round(float(a.skew.wait[i]) * 1e3, 3)}}
        for j in step_rows.get(rank, ()):
            yield {"ph": "X", "pid": rank, "tid": STEP_TID, "name": f"step {steps.step[j]}", "cat": "step",
                   "ts": us(steps.t0[j]), "dur": round(float(steps.t1[j] - steps.t0[j]) * 1e6, 3), "args": {}}
        yield from _memory(rank, info.memory, us)
        yield from _inflight(rank, info.hang, us)


def _rows_by_rank(ranks: np.ndarray) -> Dict[int, np.ndarray]:
    order = np.argsort(ranks, kind="stable")
    return {int(ranks[order[start]]): order[start:stop] for start, stop in runs(ranks[order])}


def _memory(rank: int, mem: Any, us: Any) -> Iterator[Dict[str, Any]]:
    if mem is None:
        return
    keys = [k for k in COUNTERS if k in mem.series]
    for n, t in enumerate(mem.t):
        values = {k.replace("_bytes", ""): round(float(mem.series[k][n]) / 2 ** 30, 4) for k in keys
                  if np.isfinite(mem.series[k][n])}
        if values:
            yield {"ph": "C", "pid": rank, "ts": us(float(t)), "name": "memory GiB", "args": values}


def _inflight(rank: int, hang: Any, us: Any) -> Iterator[Dict[str, Any]]:
    if not hang or not isinstance(hang.get("detected_at"), (int, float)):
        return
    for e in hang["inflight"]:
        if isinstance(e.get("t0"), (int, float)):
            yield {"ph": "X", "pid": rank, "tid": COLL_TID, "name": f"{e.get('op')} (in flight at the hang)",
                   "cat": "hang", "ts": us(e["t0"]), "dur": max(0.0, round((hang["detected_at"] - e["t0"]) * 1e6, 3)),
                   "args": {"op": e.get("op"), "group": e["gid"], "seq": e["seq"], "bytes": e.get("bytes")}}


def write_trace(a: "Analysis", path: str) -> None:
    """Stream the trace to ``path`` atomically; an unwritable path raises InputError naming it."""
    path = os.path.expanduser(path)
    parent = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise InputError(f"--trace {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write('{"traceEvents": [\n')
            for n, event in enumerate(events(a)):
                f.write(("" if n == 0 else ",\n") + json.dumps(event, separators=(",", ":")))
            other = {"source": "ascend-doctor analyze", "profile": a.profile.path,
                     "origin_unix_s": _origin(a), "clock_reference_rank": a.clock.reference}
            f.write('\n], "displayTimeUnit": "ms", "otherData": ' + json.dumps(other) + "}\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException as exc:
        os.unlink(tmp)
        if isinstance(exc, OSError):
            raise InputError(f"--trace {path}: {exc.strerror or exc}") from exc
        raise
