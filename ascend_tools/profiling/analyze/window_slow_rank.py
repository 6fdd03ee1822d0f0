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
