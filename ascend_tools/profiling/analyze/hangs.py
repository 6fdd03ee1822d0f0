"""Hangs: which collective never completed, and which ranks never entered it.

From each rank's ``hang/hang.json`` (written by the watchdog) and its ``coll`` records:

- a rank has *entered* seq k of group g when it recorded a completed collective (g, k), or holds (g, k) in
  flight, or lists it among its recent collectives; its highest entered seq is the maximum of those;
- for each group with a collective in flight on some rank, the hang is the *lowest* in-flight seq on that
  group (higher ones, async work queued behind it, are its consequences), with the op its waiting ranks
  report;
- ``missing_ranks`` = members of the group whose highest entered seq on it is below the hang's seq: they
  never arrived, so everyone else waits on them. ``mismatched_ranks`` = waiting ranks whose op or byte
  count for that seq differs from the majority's (the group is out of step, not short of a rank: one rank skipped a
  collective the others entered and went on to the next); ``mismatched_calls`` = what each of them called there.
- a rank's entries are counted as they stood when its hang report was written (``detected_at``): a stall that
  outlasts the watchdog's timeout and then resolves (a rank stuck in a slow read arrives late, the collective
  completes, training goes on) leaves records of the collectives the late rank entered afterwards, which must
  not make it look present. ``completed_after_s`` = how long after its first arrival every member had completed
  the collective (such a stall), else None (a hang to the end).

:func:`positions` says where every rank stands: its last completed collective (with its caller), what it
holds in flight, its last step, and whether it was cut short.
"""

import os
import re
from collections import Counter
from typing import Any, Dict, List, Optional

import numpy as np

from ... import boundedio
from .model import Profile


def _reported_at(profile: Profile) -> np.ndarray:
    """Per rank (index = rank): when its hang report was written, +inf where it wrote none."""
    at = np.full(max(profile.ranks, default=-1) + 1, np.inf)
    for rank, info in profile.ranks.items():
        when = (info.hang or {}).get("detected_at")
        if isinstance(when, (int, float)) and not isinstance(when, bool):
            at[rank] = when
    return at


def _entered(profile: Profile, gid: str, members: List[int], reported_at: np.ndarray) -> Dict[int, int]:
    """Highest entered seq on ``gid`` per member (-1: none), as of each rank's hang report."""
    colls = profile.colls
    best = {r: -1 for r in members}
    if gid in profile.gids:
        sel = colls.gid == profile.gid_code(gid)
        rank_ok = colls.rank < len(reported_at)
        sel &= rank_ok
        sel[rank_ok] &= ~(colls.t0[rank_ok] > reported_at[colls.rank[rank_ok]])
        ranks, seqs = colls.rank[sel], colls.seq[sel]
        if len(ranks):
            top = np.full(int(ranks.max()) + 1, -1, np.int64)
            np.maximum.at(top, ranks, seqs)
            for r in members:
                if r < len(top):
                    best[r] = int(top[r])
    for rank, info in profile.ranks.items():
        if rank in best and info.hang is not None:
            for entry in info.hang["inflight"] + info.hang["recent"]:
                if entry["gid"] == gid:
                    best[rank] = max(best[rank], entry["seq"])
    return best


def find(profile: Profile) -> List[Dict[str, Any]]:
    """One entry per group with a collective in flight at a hang, lowest seq first."""
    waiting: Dict[str, List[Dict[str, Any]]] = {}
    for rank, info in profile.ranks.items():
        for entry in (info.hang or {}).get("inflight", []):
            waiting.setdefault(entry["gid"], []).append(dict(entry, rank=rank))
    hangs = []
    reported_at = _reported_at(profile)
    for gid, entries in sorted(waiting.items()):
        seq = min(e["seq"] for e in entries)
        at = [e for e in entries if e["seq"] == seq]
        members = profile.groups.get(gid) or next(
            (list(e["ranks"]) for e in at if isinstance(e.get("ranks"), list)),
            sorted({e["rank"] for e in at}),
        )
        entered = _entered(profile, gid, members, reported_at)
        signature = Counter((e.get("op"), e.get("bytes")) for e in at).most_common(1)[0][0]
        t0s = [e["t0"] for e in at if isinstance(e.get("t0"), (int, float))]
        hangs.append(
            {
                "group": gid,
                "seq": seq,
                "op": signature[0],
                "bytes": signature[1],
                "api": next((e.get("api") for e in at if (e.get("op"), e.get("bytes")) == signature), None),
                "step": next((e.get("step") for e in at if e.get("step") is not None), None),
                "members": list(members),
                "waiting_ranks": sorted({e["rank"] for e in at}),
                "missing_ranks": sorted(r for r in members if entered[r] < seq),
                "mismatched_ranks": sorted(
                    {e["rank"] for e in at if (e.get("op"), e.get("bytes")) != signature}
                ),
                "mismatched_calls": sorted(
                    (
                        {"rank": e["rank"], "op": e.get("op"), "api": e.get("api"), "bytes": e.get("bytes")}
                        for e in at
                        if (e.get("op"), e.get("bytes")) != signature
                    ),
                    key=lambda c: c["rank"],
                ),
                "also_inflight": sorted({e["seq"] for e in entries if e["seq"] != seq}),
                "first_arrival": min(t0s) if t0s else None,
                "completed_after_s": _completed_after(profile, gid, seq, members, min(t0s) if t0s else None),
            }
        )
    return sorted(hangs, key=lambda h: (h["first_arrival"] is None, h["first_arrival"] or 0.0, h["group"]))


def _completed_after(
    profile: Profile, gid: str, seq: int, members: List[int], first: Optional[float]
) -> Optional[float]:
    """Seconds from ``first`` (the first arrival) until every member had completed (``gid``, ``seq``), where every
    member recorded it completed: the stall resolved. None where one did not (a hang to the end)."""
    colls = profile.colls
    if first is None or gid not in profile.gids:
        return None
    sel = (colls.gid == profile.gid_code(gid)) & (colls.seq == seq) & np.isfinite(colls.t1)
    done = colls.rank[sel]
    if not set(members) <= set(done.tolist()):
        return None
    return float(colls.t1[sel].max()) - first


# frames that are not the user's: torch, this package (not its examples), the standard library, <frozen ...>
_LIBRARY_FRAME = re.compile(
    r"^<|[/\\](torch|ascend_tools(?![/\\]examples[/\\]))[/\\]|[/\\]lib[/\\]python3\.\d+[/\\](?!site-packages)"
)


def stack_top(rank_dir: str) -> Optional[str]:
    """``file:line in func`` of the innermost user frame of the main thread in ``hang/pyspy.json``: where the
    rank stood when the hang was caught (None without a readable py-spy dump)."""
    try:
        with open(os.path.join(rank_dir, "hang", "pyspy.json"), "rb") as f:
            threads = boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
        main = next(t for t in threads if t.get("thread_name") == "MainThread")
        for fr in main.get("frames", []):  # innermost first
            if not _LIBRARY_FRAME.search(str(fr.get("filename", ""))):
                return (
                    f"{fr.get('short_filename') or fr.get('filename')}:{fr.get('line')} in {fr.get('name')}"
                )
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return None
    return None


def _after_last_step(step: Optional[int], info: Any) -> bool:
    """A collective of a rank that ended cleanly, counted in a step past its last step record. (On a rank
    that hung or was cut short the step is the one in progress, and a step indeed.)"""
    return step is not None and info.closed and info.last_step is not None and step > info.last_step


def _latest_by_rank(rank: np.ndarray, t1: np.ndarray) -> Dict[int, int]:
    """Per rank, its record that completed last (the last one of equal ``t1``). The reader gives the records
    rank after rank (model.Colls), so each rank's are one run: a max per run instead of a sort of all."""
    starts = np.flatnonzero(np.r_[True, rank[1:] != rank[:-1]])
    latest = np.repeat(np.maximum.reduceat(t1, starts), np.diff(np.r_[starts, len(t1)]))
    index = np.where(t1 == latest, np.arange(len(t1)), -1)
    return dict(zip(rank[starts].tolist(), np.maximum.reduceat(index, starts).tolist()))


def positions(profile: Profile) -> Dict[int, Dict[str, Any]]:
    """Per rank: last completed collective, in-flight collectives, last step, cut short or not."""
    colls = profile.colls
    last = _latest_by_rank(colls.rank, colls.t1) if len(colls) else {}
    out = {}
    for rank, info in profile.ranks.items():
        i = last.get(rank)
        done: Optional[Dict[str, Any]] = None
        if i is not None:
            frames = info.stacks.get(int(colls.sid[i]), [])
            done = {
                "group": profile.gids[int(colls.gid[i])],
                "seq": int(colls.seq[i]),
                "op": profile.ops[int(colls.op[i])],
                "step": int(colls.step[i]) if colls.step[i] >= 0 else None,
                "t1": float(colls.t1[i]),
                "where": frames[-1] if frames else None,
            }
        hang = info.hang or {}
        if done is not None and _after_last_step(done["step"], info):
            # a closing barrier after the loop: the step counter moved on, but no step ran
            done["step"], done["after_step"] = None, info.last_step
        steps = [s for s in (info.last_step, done["step"] if done else None) if s is not None]
        out[rank] = {
            "last_collective": done,
            "inflight": [
                {
                    "group": e["gid"],
                    "seq": e["seq"],
                    "op": e.get("op"),
                    "step": e.get("step"),
                    "t0": e.get("t0"),
                }
                for e in hang.get("inflight", [])
            ],
            "hang_trigger": hang.get("trigger"),
            "last_step": max(steps) if steps else None,
            "cut_short": info.present and not info.closed,
            "present": info.present,
            "stack_top": stack_top(info.path) if "pyspy.json" in info.hang_files else None,
        }
    return out
