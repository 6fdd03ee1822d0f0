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
import math
import os
from typing import TYPE_CHECKING, Any, Dict, Iterator, List

import numpy as np

from ..atomic import open_atomic
from ..errors import InputError
from .analyze.arrays import runs
from .bandwidth import GB, P2P_OPS, bus_factors

if TYPE_CHECKING:
    from .analyze import Analysis

COLL_TID, ASYNC_TID, STEP_TID = 0, 1, 2
COUNTERS = ("dev.allocated_bytes", "dev.reserved_bytes", "dev.active_bytes", "host.rss")


def _origin(a: "Analysis") -> float:
    starts = [a.profile.colls.t0.min(initial=np.inf), a.profile.steps.t0.min(initial=np.inf)]
    starts += [
        float(i.memory.t[0]) for i in a.profile.ranks.values() if i.memory is not None and len(i.memory.t)
    ]
    origin = min(starts)
    return origin if np.isfinite(origin) else 0.0


def lines(a: "Analysis") -> Iterator[str]:
    """Every trace event as one line of JSON, rank by rank."""
    p = a.profile
    colls, steps = p.colls, p.steps
    origin = _origin(a)
    by_rank, step_rows = _rows_by_rank(colls.rank), _rows_by_rank(steps.rank)
    op_names = [json.dumps(op) for op in p.ops]
    gid_names = [json.dumps(gid) for gid in p.gids]

    def us(t: float) -> float:
        return round((t - origin) * 1e6, 3)

    for rank, info in p.ranks.items():
        if not info.present:
            continue
        meta = [
            {
                "ph": "M",
                "pid": rank,
                "ts": 0,
                "name": "process_name",
                "args": {"name": f"rank {rank} ({info.host})"},
            },
            {"ph": "M", "pid": rank, "ts": 0, "name": "process_sort_index", "args": {"sort_index": rank}},
        ]
        meta += [
            {"ph": "M", "pid": rank, "tid": tid, "ts": 0, "name": "thread_name", "args": {"name": name}}
            for tid, name in (
                (COLL_TID, "collectives"),
                (ASYNC_TID, "async collectives"),
                (STEP_TID, "steps"),
            )
        ]
        yield from map(_dumps, meta)
        yield from _collectives(
            a, by_rank.get(rank, np.zeros(0, np.int64)), rank, origin, op_names, gid_names
        )
        for j in step_rows.get(rank, ()):
            yield _dumps(
                {
                    "ph": "X",
                    "pid": rank,
                    "tid": STEP_TID,
                    "name": f"step {steps.step[j]}",
                    "cat": "step",
                    "ts": us(steps.t0[j]),
                    "dur": round(float(steps.t1[j] - steps.t0[j]) * 1e6, 3),
                    "args": {},
                }
            )
        yield from map(_dumps, _memory(rank, info.memory, us))
        yield from map(_dumps, _inflight(rank, info.hang, us))


def _dumps(event: Dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))


COLL_EVENT = (
    '{"ph":"X","pid":%d,"tid":%d,"name":%s,"cat":"collective","ts":%.3f,"dur":%.3f,"args":{"op":%s,'
    '"group":%s,"seq":%d,"bytes":%d,"step":%d,"busbw_GBps":%s,"wait_ms":%.3f}}'
)


def _collectives(
    a: "Analysis", rows: np.ndarray, rank: int, origin: float, op_names: List[str], gid_names: List[str]
) -> Iterator[str]:
    """One rank's collectives, formatted from numpy columns (a 1,024-rank profile has millions)."""
    p, colls = a.profile, a.profile.colls
    dur = colls.t1[rows] - colls.t0[rows]
    with np.errstate(divide="ignore", invalid="ignore"):
        busbw = (
            colls.bytes[rows]
            * bus_factors(p.ops, colls.op[rows], colls.n[rows])
            / (dur - a.skew.wait[rows])
            / GB
        )
    bw = [f"{b:.3f}" if math.isfinite(b) else "null" for b in busbw.tolist()]
    columns = zip(
        colls.is_async[rows].tolist(),
        colls.op[rows].tolist(),
        colls.peer[rows].tolist(),
        ((colls.t0[rows] - origin) * 1e6).tolist(),
        (dur * 1e6).tolist(),
        colls.gid[rows].tolist(),
        colls.seq[rows].tolist(),
        colls.bytes[rows].tolist(),
        colls.step[rows].tolist(),
        bw,
        (a.skew.wait[rows] * 1e3).tolist(),
    )
    for is_async, op, peer, ts, d, gid, seq, nbytes, step, b, wait in columns:
        name = p.ops[op]
        label = (
            json.dumps(f"{name} → {peer}" if name == "send" else f"{name} ← {peer}")
            if name in P2P_OPS
            else op_names[op]
        )
        yield COLL_EVENT % (
            rank,
            ASYNC_TID if is_async else COLL_TID,
            label,
            ts,
            d,
            op_names[op],
            gid_names[gid],
            seq,
            nbytes,
            step,
            b,
            wait,
        )


def _rows_by_rank(ranks: np.ndarray) -> Dict[int, np.ndarray]:
    order = np.argsort(ranks, kind="stable")
    return {int(ranks[order[start]]): order[start:stop] for start, stop in runs(ranks[order])}


def _memory(rank: int, mem: Any, us: Any) -> Iterator[Dict[str, Any]]:
    if mem is None:
        return
    keys = [k for k in COUNTERS if k in mem.series]
    for n, t in enumerate(mem.t):
        values = {
            k.replace("_bytes", ""): round(float(mem.series[k][n]) / 2**30, 4)
            for k in keys
            if np.isfinite(mem.series[k][n])
        }
        if values:
            yield {"ph": "C", "pid": rank, "ts": us(float(t)), "name": "memory GiB", "args": values}


def _inflight(rank: int, hang: Any, us: Any) -> Iterator[Dict[str, Any]]:
    if not hang or not isinstance(hang.get("detected_at"), (int, float)):
        return
    for e in hang["inflight"]:
        if isinstance(e.get("t0"), (int, float)):
            yield {
                "ph": "X",
                "pid": rank,
                "tid": COLL_TID,
                "name": f"{e.get('op')} (in flight at the hang)",
                "cat": "hang",
                "ts": us(e["t0"]),
                "dur": max(0.0, round((hang["detected_at"] - e["t0"]) * 1e6, 3)),
                "args": {"op": e.get("op"), "group": e["gid"], "seq": e["seq"], "bytes": e.get("bytes")},
            }


def write_trace(a: "Analysis", path: str) -> None:
    """Stream the trace to ``path`` atomically; an unwritable path raises InputError naming it."""
    path = os.path.expanduser(path)
    try:
        with open_atomic(path) as f:
            f.write('{"traceEvents": [\n')
            for n, line in enumerate(lines(a)):
                f.write(("" if n == 0 else ",\n") + line)
            other = {
                "source": "ascend-doctor analyze",
                "profile": a.profile.path,
                "origin_unix_s": _origin(a),
                "clock_reference_rank": a.clock.reference,
            }
            f.write('\n], "displayTimeUnit": "ms", "otherData": ' + json.dumps(other) + "}\n")
    except OSError as exc:
        raise InputError(f"--trace {path}: {exc.strerror or exc}") from exc
