"""The pictures of analyze's findings, as report charts (ascend_tools.report renders them).

- per-rank stacked bars, compute / exposed comm / wait per step (per window without step records), the
  slow ranks highlighted;
- a rank × step (window) heatmap of lateness, the latest ``MAX_COLS`` windows;
- busbw against message size, every collective kind (async ones as their own kind), both axes log.
"""

from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

from ...report import Bars, Heatmap, Scatter
from .collectives import bandwidths

if TYPE_CHECKING:
    from . import Analysis

MAX_ROWS = 32
MAX_COLS = 60
MAX_POINTS = 400  # per collective kind in the scatter (evenly spaced over the records)


def _slow_ranks(a: "Analysis") -> List[int]:
    """The ranks the finding is about: the slow ones, else the suspects."""
    return [s["rank"] for s in a.slow["slow_ranks"]] or sorted({s["rank"] for s in a.slow["suspects"]})


def _main_group(a: "Analysis") -> Optional[Dict[str, Any]]:
    """The group the finding is about: the first where a rank is slow (or suspect), else the one with most
    members."""
    groups = a.slow["groups"]
    slow = [g for g in groups if any(r["verdict"] in ("slow", "suspect") for r in g["ranks"])]
    return (slow or sorted(groups, key=lambda g: -g["members"]) or [None])[0]


def _top(rows: List[Dict[str, Any]], key: str, keep: List[int]) -> List[Dict[str, Any]]:
    """Up to MAX_ROWS rows, in rank order: the kept ranks first, then the highest ``key``."""
    if len(rows) <= MAX_ROWS:
        return rows
    ranked = sorted(rows, key=lambda r: (r["rank"] not in keep, -(r[key] or 0.0)))[:MAX_ROWS]
    return sorted(ranked, key=lambda r: r["rank"])


def breakdown_bars(a: "Analysis", step_rows: List[Dict[str, Any]]) -> Optional[Bars]:
    """From the step breakdown (per step) or, without step records, the main group's windows."""
    slow = _slow_ranks(a)
    if step_rows and a.slow.get("source") != "windows":  # always-on: the windows, not the dumps' steps
        rows = _top(step_rows, "compute_s", slow)
        keys, unit = ("compute_s", "exposed_comm_s", "wait_s"), "step"
    else:
        group = _main_group(a)
        if group is None or not group["windows"]:
            return None
        rows = _top(group["ranks"], "compute_per_step_s", slow)
        keys, unit = ("compute_per_step_s", "exposed_per_step_s", "wait_per_step_s"), "window"
    return Bars(
        title=f"Where each rank's time went (mean per {unit})",
        x_label="rank",
        y_label=f"ms per {unit}",
        categories=[f"rank {r['rank']}" for r in rows],
        stacks={
            label: [float(r[key] or 0.0) * 1e3 for r in rows]
            for label, key in zip(("compute", "exposed comm", "wait"), keys)
        },
        highlight=[f"rank {r}" for r in slow],
    )


def lateness_heatmap(a: "Analysis") -> Optional[Heatmap]:
    group = _main_group(a)
    if group is None or not group["windows"]:
        return None
    members, labels, late = a.slow["heat"][group["group"]]
    slow = _slow_ranks(a)
    keep = _keep_rows(members, late.mean(axis=1), slow)
    cols = slice(max(0, len(labels) - MAX_COLS), len(labels))
    what = "step" if group["window"] == "step" else "window"
    return Heatmap(
        title=f"Lateness per rank and {what}, group {group['group']} (ms; > 0: arrived after the others)",
        x_label=what,
        y_label="rank",
        x_ticks=[str(int(w)) for w in labels[cols]],
        y_ticks=[f"rank {int(members[i])}" for i in keep],
        values=[[float(v) * 1e3 for v in late[i, cols]] for i in keep],
        value_label="ms late",
    )


def _keep_rows(members: np.ndarray, mean: np.ndarray, slow: List[int]) -> np.ndarray:
    """Indices of up to MAX_ROWS members, in rank order: the slow ones, then the latest on average."""
    first = [i for i, r in enumerate(members) if int(r) in slow]
    rest = [int(i) for i in np.argsort(-mean, kind="stable") if int(members[i]) not in slow]
    return np.sort(np.array((first + rest)[:MAX_ROWS], np.int64))


def busbw_scatter(a: "Analysis") -> Optional[Scatter]:
    p = a.profile
    colls = p.colls
    _, bus = bandwidths(p, a.skew)
    ok = np.isfinite(bus) & (bus > 0) & (colls.bytes > 0)
    points: Dict[str, List[Tuple[float, float]]] = {}
    kind = colls.op.astype(np.int64) * 2 + colls.is_async
    for k in np.unique(kind[ok]):
        idx = np.flatnonzero(ok & (kind == k))
        idx = idx[np.linspace(0, len(idx) - 1, min(len(idx), MAX_POINTS)).astype(np.int64)]
        label = p.ops[int(k) // 2] + (" (async)" if k % 2 else "")
        points[label] = [(float(colls.bytes[i]), float(bus[i])) for i in idx]
    if not points:
        return None
    return Scatter(
        title="busbw by message size, per record",
        x_label="message size S (bytes)",
        y_label="busbw GB/s",
        points=points,
        log_x=True,
        log_y=True,
    )
