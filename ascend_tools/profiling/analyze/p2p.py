"""Point-to-point traffic: bytes from each source rank to each destination rank.

A send is recorded by its source (``peer`` = destination), the matching recv by its destination (``peer``
= source). Each (src, dst) pair counts the larger of the two sides' byte totals, so a pair survives one
side's records being lost (a rank cut short) without being counted twice. Bandwidth is the pair's bytes
over its sender-side time (send records; receive side when there are none).
"""

from typing import Any, Dict, List

import numpy as np

from ..bandwidth import GB
from .arrays import runs
from .model import Profile


def _side(profile: Profile, op: str, src_is_rank: bool) -> Dict[int, np.ndarray]:
    colls = profile.colls
    sel = np.flatnonzero((colls.op == profile.op_code(op)) & (colls.peer >= 0))
    src = colls.rank[sel] if src_is_rank else colls.peer[sel]
    dst = colls.peer[sel] if src_is_rank else colls.rank[sel]
    key = (src.astype(np.int64) << 32) | dst
    order = np.argsort(key, kind="stable")
    out: Dict[int, np.ndarray] = {}  # (src << 32) | dst -> [bytes, calls, time]
    for a, b in runs(key[order]):
        part = sel[order[a:b]]
        out[int(key[order[a]])] = np.array(
            [colls.bytes[part].sum(), b - a, (colls.t1[part] - colls.t0[part]).sum()]
        )
    return out


def matrix(profile: Profile) -> List[Dict[str, Any]]:
    """``[{"src", "dst", "bytes", "calls", "time_s", "algbw_GBps"}]``, largest first."""
    sends, recvs = _side(profile, "send", True), _side(profile, "recv", False)
    rows: List[Dict[str, Any]] = []
    for key in sorted(set(sends) | set(recvs)):
        sides = [x for x in (sends.get(key), recvs.get(key)) if x is not None]
        best = max(sides, key=lambda x: x[0])
        timed = sides[0]  # the send side when there is one
        nbytes, time = int(best[0]), float(timed[2])
        rows.append(
            {
                "src": key >> 32,
                "dst": key & 0xFFFFFFFF,
                "bytes": nbytes,
                "calls": int(best[1]),
                "time_s": time,
                "algbw_GBps": nbytes / time / GB if time > 0 else None,
            }
        )
    rows.sort(key=lambda row: (-row["bytes"], row["src"], row["dst"]))
    return rows
