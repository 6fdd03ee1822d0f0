"""The slow-rank rule on always-on windows: the blocks of 64 collectives of a group (aggregates.py) stand
in for the windows of slow_rank.py when the profile holds no full records outside its anomaly dumps.

Per group, member r and block B (the first block left out: warm-up), with a(r, B) its mean arrival on the
aligned clock and n_B the block's collectives:

    D[r, B] = n_B · (a(r, B) − mean_{j≠r} a(j, B))     its lateness, summed over the block
    C[r, B] = Σ gap over its collectives of B          its compute between collectives (comm.py's ``gap``)
    wait[r, B] = n_B · (max_j a(j, B) − a(r, B))       waiting for the last rank (exact when the same rank
                                                        is last at each collective of the block)
    exposed[r, B] = max(0, blocking time − wait)

and the unit is the median time between consecutive blocks' mean arrivals. Then the rule is the same
(slow_rank.judge: median ≥ 3% of the unit and a one-sided t-test). ``caused`` is the wait the last
arriver imposed (n_B × its lead over the second latest, summed over the blocks it was last in);
``times_last`` counts blocks, not collectives.

DDP's bucket all-reduces are not in the blocks (always-on reads DDP's own timers instead of hooking them,
ddp_stats.py): they are judged as one more group, ``ddp``, whose windows are the always-on windows every
rank timed DDP iterations in (the first left out), with per rank r and window W the means per iteration

    C[r, W] = step − (comm − overlap) − sync      its step less the DDP comm it waited for and its blocking
                                                   collectives (fwd + bwd in a window without steps)
    D[r, W] = mean_{j≠r} comm[j, W] − comm[r, W]  DDP's comm holds a rank's waiting for the last one to
                                                   finish backward: the late rank waits least
    wait[r, W] = comm[r, W] − min_j comm[j, W]     exposed[r, W] = max(0, comm − overlap − wait)

and the unit is the median step (or, without steps, the median of fwd + bwd + comm − overlap).
"""

from typing import Any, Dict, List, Optional

import numpy as np

from ..always_on import ARRIVAL_BLOCK
from . import aggregates, slow_rank
from .model import Profile


def find(profile: Profile, rule: slow_rank.SlowRankRule) -> Optional[Dict[str, Any]]:
    """slow_rank.find's answer from the windows; None when no rank wrote windows."""
    windows = {r: info.windows for r, info in profile.ranks.items() if info.windows}
    if not windows:
        return None
    found = []
    for gid, b in sorted(aggregates.blocks(windows).items()):
        keep = (b.labels > b.labels.min()) & (
            b.count == b.count.max()
        )  # warm-up and a last partial block out
        found.append(_group(gid, b, keep, windows))
    ddp = _ddp_group(windows)
    if ddp is not None:
        found.append(ddp)
    per_window = [
        float(s.get("time_s") or 0.0) / int(s["count"])
        for ws in windows.values()
        for s in (w.get("steps") or {} for w in ws)
        if s.get("count")
    ]  # a window's mean step
    out = slow_rank.judge(profile, found, rule, float(np.median(per_window)) if per_window else None)
    out["source"] = "windows"
    return out


def _group(
    gid: str, b: aggregates.Blocks, keep: np.ndarray, windows: Dict[int, List[Dict[str, Any]]]
) -> slow_rank.GroupWindows:
    m = len(b.members)
    arrive, count = b.arrive[:, keep], b.count[keep]
    late = count * (arrive - (arrive.sum(axis=0) - arrive) / (m - 1))
    wait = count * (arrive.max(axis=0) - arrive)
    order = np.sort(arrive, axis=0)
    lead = count * (order[-1] - order[-2])
    last = np.argmax(arrive, axis=0)
    caused = np.bincount(last, weights=lead, minlength=m)
    start = b.start[keep]
    steps = np.diff(b.labels[keep])
    unit = float(np.median(np.diff(start) / steps)) if len(start) > 1 else float("nan")
    return slow_rank.GroupWindows(
        gid=gid,
        members=b.members,
        labels=b.labels[keep],
        late=late,
        comp=b.gap[:, keep],
        wait=wait,
        exposed=np.maximum(0.0, b.blocking[:, keep] - wait),
        caused=caused,
        times_last=np.bincount(last, minlength=m),
        comm_p50=np.array([_median_time(windows.get(int(r), []), gid) for r in b.members]),
        instances=int(count.sum()),
        spread=order[-1] - order[0],
        win=slow_rank.Windows(b.labels[keep], unit, "block", ARRIVAL_BLOCK),
    )


def _median_time(ws: List[Dict[str, Any]], gid: str) -> float:
    """A rank's median collective time in group ``gid``, from its windows' histograms (NaN without)."""
    hist: Dict[int, int] = {}
    for w in ws:
        for c in w.get("colls") or []:
            if str(c.get("gid")) == gid and c.get("peer") is None:
                for k, n in c.get("hist") or []:
                    hist[int(k)] = hist.get(int(k), 0) + int(n)
    return aggregates.quantile(hist, 50) if hist else float("nan")


def _ddp_group(windows: Dict[int, List[Dict[str, Any]]]) -> Optional[slow_rank.GroupWindows]:
    """The ``ddp`` pseudo-group (module doc), or None when fewer than two ranks timed DDP iterations."""
    per_rank: Dict[int, Dict[int, Dict[str, Any]]] = {}
    steps: List[float] = []
    for r, ws in windows.items():
        for w in ws:
            s = w.get("steps") or {}
            n_steps, time_s, sync_s = (
                aggregates.number(x) for x in (s.get("count"), s.get("time_s"), w.get("sync_s"))
            )
            step = sync = None
            if n_steps and time_s is not None:
                step, sync = time_s / n_steps, (sync_s or 0.0) / n_steps
            d = aggregates.ddp_entry(w.get("ddp"))
            if d is not None and isinstance(w.get("w"), int):
                d["step_s"], d["sync_per_step_s"] = step, sync
                per_rank.setdefault(r, {})[w["w"]] = d
            if step is not None:
                steps.append(step)
    if len(per_rank) < 2:
        return None
    members = np.array(sorted(per_rank))
    common = sorted(set.intersection(*(set(v) for v in per_rank.values())))[1:]  # the first: warm-up
    labels = np.array(common, dtype=np.int64)

    def matrix(fn: Any) -> np.ndarray:
        return np.array([[fn(per_rank[int(r)][w]) for w in common] for r in members], dtype=float).reshape(
            len(members), len(common)
        )

    count = matrix(lambda d: d["count"])
    comm = matrix(lambda d: d["comm_s"] / d["count"])
    overlap = matrix(lambda d: d["overlap_s"] / d["count"])
    comp = matrix(_ddp_compute)
    m = len(members)
    late = (comm.sum(axis=0) - comm) / (m - 1) - comm
    wait = comm - comm.min(axis=0) if common else comm
    order = np.sort(comm, axis=0)
    last = np.argmin(comm, axis=0)
    lead = order[1] - order[0] if common else np.zeros(0)
    unit = float(np.median(steps)) if steps else float(np.median(comp + comm - overlap)) if common else 0.0
    return slow_rank.GroupWindows(
        gid="ddp",
        members=members,
        labels=labels,
        late=late,
        comp=comp,
        wait=wait,
        exposed=np.maximum(0.0, comm - overlap - wait),
        caused=np.bincount(last, weights=lead * count[last, np.arange(len(common))], minlength=m),
        times_last=np.bincount(last, minlength=m),
        comm_p50=np.median(comm, axis=1) if common else np.full(m, np.nan),
        instances=int(count.min(axis=0).sum()),
        spread=order[-1] - order[0],
        win=slow_rank.Windows(labels, unit, "ddp", 0),
    )


def _ddp_compute(d: Dict[str, Any]) -> float:
    """C[r, W] of the module doc, from one rank's window."""
    n = d["count"]
    if d["step_s"] is None:
        return (d["fwd_s"] + d["bwd_s"]) / n
    exposed = max(0.0, d["comm_s"] - d["overlap_s"]) / n
    return max(0.0, d["step_s"] - exposed - d["sync_per_step_s"])
