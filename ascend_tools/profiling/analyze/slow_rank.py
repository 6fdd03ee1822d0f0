"""Slow ranks: who holds the others up, per process group, on two signals measured per window.

A *window* is a step (``step`` records) or, without step marks, one repeat of the group's collective
sequence (windows.py); the first window is left out (warm-up: process start skew, DDP's initial
broadcast, lazy initialisation). Per group, member r and window W, on aligned clocks:

    D[r, W] = Σ_{i in W} late[r, i]                 how much later than the others r arrived (skew.py)
    C[r, W] = Σ_{i in W} compute before i on r      its compute between collectives (compute_gaps.py)
    E[r, W] = C[r, W] − mean_{j≠r} C[j, W]          how much more it computed than the others

**Rule** (thresholds are :class:`SlowRankRule` parameters). With at least ``min_windows`` windows in which
every member has both figures, r is slow when, for D or for E,

1. the median over windows ≥ ``min_share`` × the unit (the median step time, or the median time between
   window starts): it holds everyone up by ≥ 3% of a step in a typical window, and
2. a one-sided one-sample Student t-test on the windows' values (ttest.py) gives p ≤ ``max_p``.

With fewer windows the group is *not judged* and says how many it has and needs.

Why: the t-test uses the magnitudes, so its power does not collapse on short runs the way a sign test's
does (with n windows a sign test cannot go below 2⁻ⁿ: 5 windows of a rank 50% slower gave p = 0.03);
each rank is measured against the others in the same window (paired) and against the spread of its own
history (the t-test's variance). A one-off hiccup (GC, a checkpoint) inflates the variance as much as the
mean, so it does not pass (t ≈ 1). E is NVIDIA's straggler detector's signal (its compute against the
others'), measured from host records; D catches a rank late for any reason (its compute is all time
outside collectives, so the two usually agree). False alarms measured on 200+ simulated balanced runs and
the power on real gloo ranks: docs/analyze.md and tests/profiling/test_slow_rank_*.

Reported beside the verdict: ``caused_wait_s`` and ``times_last`` (the wait r imposed as the last
arriver) and msprof-analyze's signature (the straggler's median collective time is the *shortest*, as it
never waits).
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from . import windows
from .arrays import percentile, runs
from .model import Colls, Profile
from .skew import Skew
from .steps import StepTable
from .ttest import one_sided_ps, t_tail

SUSPECT_P = 0.05  # above min_share, ahead in all windows but one, p up to this: a suspect (info finding)


@dataclass(frozen=True)
class SlowRankRule:
    min_share: float = 0.03
    max_p: float = 0.001
    min_windows: int = 5


@dataclass
class Windows:
    """How one group's records fall into windows: per record its window (−1: not counted), the window
    labels in order, the unit of the effect, and what a window is."""

    label: np.ndarray
    unit: float
    # "step" | "sequence" | "collective" | "block" (always-on: 64 seqs of the group) | "ddp" (always-on:
    # a window's mean DDP iteration, window_slow_rank.py)
    kind: str
    period: int


@dataclass
class GroupWindows:
    """One group's members × windows matrices (seconds per window) and per-member figures: what the rule
    judges, from full records (:func:`find`) or from always-on windows (window_slow_rank.py)."""

    gid: str
    members: np.ndarray
    labels: np.ndarray
    late: np.ndarray  # D
    comp: np.ndarray  # C
    wait: np.ndarray
    exposed: np.ndarray
    caused: np.ndarray  # per member: the wait it imposed as the last arriver, s
    times_last: np.ndarray
    comm_p50: np.ndarray  # per member: its median collective time, s
    instances: int
    spread: np.ndarray  # latest − earliest arrival, per instance (or block)
    win: Windows


def find(
    profile: Profile, skew: Skew, table: StepTable, rule: SlowRankRule, gaps: np.ndarray, idx: np.ndarray
) -> Dict[str, Any]:
    """``{"rule", "median_step_s", "groups": [per group, per member scores], "slow_ranks": [flagged],
    "heat": {gid: (members, window labels, D matrix)}}``; ``gaps`` from compute_gaps.gaps, ``idx`` from
    instances.by_group_rank_seq."""
    colls = profile.colls
    found: List[GroupWindows] = []
    for a, b in runs(colls.gid[idx]):
        sel = idx[a:b]
        gid = profile.gids[int(colls.gid[sel[0]])]
        members, starts = np.unique(colls.rank[sel], return_index=True)
        if len(members) < 2:
            continue
        win = _windows(colls, sel, skew.late[sel], table)
        use = win.label >= 0
        row = np.searchsorted(members, colls.rank[sel])[use]
        labels, col = np.unique(win.label[use], return_inverse=True)
        cells = (row, col, len(members), len(labels))
        dur = colls.t1[sel] - colls.t0[sel]
        late = _by_row(*cells, skew.late[sel][use])
        comp = _by_row(*cells, gaps[sel][use])
        wait = _by_row(*cells, skew.wait[sel][use])
        exposed = _by_row(*cells, np.where(colls.is_async[sel], 0.0, dur - skew.wait[sel])[use])
        full = np.isfinite(late).all(axis=0) & np.isfinite(comp).all(axis=0)
        found.append(
            GroupWindows(
                gid=gid,
                members=members,
                labels=labels[full],
                late=late[:, full],
                comp=comp[:, full],
                wait=wait[:, full],
                exposed=exposed[:, full],
                caused=np.add.reduceat(skew.caused[sel], starts),
                times_last=np.add.reduceat(skew.last[sel].astype(np.int64), starts),
                comm_p50=np.array([np.median(part) for part in np.split(dur, starts[1:])]),
                instances=len(skew.spread.get(gid, ())),
                spread=skew.spread.get(gid, np.zeros(0)),
                win=win,
            )
        )
    return judge(profile, found, rule, table.median_step())


def judge(
    profile: Profile, found: List[GroupWindows], rule: SlowRankRule, median_step: Optional[float]
) -> Dict[str, Any]:
    """The rule applied to each group's windows: what :func:`find` returns."""
    groups: List[Dict[str, Any]] = []
    heat: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    flagged: Dict[int, List[Dict[str, Any]]] = {}
    suspects: List[Dict[str, Any]] = []
    for g in found:
        gid, members, win, late, comp = g.gid, g.members, g.win, g.late, g.comp
        n = late.shape[1]
        others = (comp.sum(axis=0) - comp) / (len(members) - 1)
        excess = comp - others
        judged = n >= rule.min_windows
        others_p50 = _median_without_each(g.comm_p50)
        scores = _scores(late, excess, win.unit, rule, judged)
        rows = []
        for i, r in enumerate(members):
            row_i = {
                "rank": int(r),
                **scores[i],
                "caused_wait_s": float(g.caused[i]),
                "times_last": int(g.times_last[i]),
                "collective_p50_s": float(g.comm_p50[i]),
                "others_collective_p50_s": float(others_p50[i]),
                "compute_per_step_s": float(comp[i].mean()) if n else None,
                "others_compute_per_step_s": float(others[i].mean()) if n else None,
                "exposed_per_step_s": float(g.exposed[i].mean()) if n else None,
                "wait_per_step_s": float(g.wait[i].mean()) if n else None,
            }
            rows.append(row_i)
            if row_i["verdict"] == "suspect":
                suspects.append(dict(row_i, group=gid, window=win.kind))
            if row_i["slow"]:
                flagged.setdefault(int(r), []).append(
                    dict(row_i, group=gid, instances=g.instances, window=win.kind)
                )
        heat[gid] = (members, g.labels, late)
        groups.append(
            {
                "group": gid,
                "members": len(members),
                "instances": g.instances,
                "window": win.kind,
                "period": win.period,
                "windows": n,
                "windows_needed": rule.min_windows,
                "judged": judged,
                "unit_s": win.unit,
                "skew_p50_s": percentile(g.spread, 50),
                "skew_p99_s": percentile(g.spread, 99),
                "ranks": rows,
            }
        )
    slow_ranks = [_verdict(profile, rank, hits, heat) for rank, hits in sorted(flagged.items())]
    return {
        "rule": {"min_share": rule.min_share, "max_p": rule.max_p, "min_windows": rule.min_windows},
        "median_step_s": median_step,
        "groups": groups,
        "slow_ranks": slow_ranks,
        "suspects": [dict(x, reason=_suspect_reason(x, rule)) for x in suspects if x["rank"] not in flagged],
        "heat": heat,
    }


def _scores(
    late: np.ndarray, excess: np.ndarray, unit: float, rule: SlowRankRule, judged: bool
) -> List[Dict[str, Any]]:
    """Per member (row of the members × windows matrices), its scores and verdict."""
    m, n = late.shape
    late_eff = np.median(late, axis=1) if n else np.zeros(m)
    comp_eff = np.median(excess, axis=1) if n else np.zeros(m)
    scale = 1.0 / unit if unit > 0 and np.isfinite(unit) else 0.0
    p_late, p_comp = one_sided_ps(late), one_sided_ps(excess)
    ahead_late, ahead_comp = (late > 0).sum(axis=1), (excess > 0).sum(axis=1)
    out = []
    for i in range(m):
        tests = (
            ("late", float(p_late[i]), float(late_eff[i]) * scale, int(ahead_late[i]), late[i]),
            ("compute", float(p_comp[i]), float(comp_eff[i]) * scale, int(ahead_comp[i]), excess[i]),
        )
        big = [t for t in tests if t[2] >= rule.min_share]
        signals = [t[0] for t in big if judged and t[1] <= rule.max_p]
        # large and consistent (ahead in every window but at most one) but not established: how many
        # windows would establish it at this spread
        candidates = [t for t in big if t[1] <= SUSPECT_P and t[3] >= n - 1]
        needed = None
        if judged and not signals and candidates:
            needed = windows_needed(min(candidates, key=lambda t: t[1])[4], rule.max_p)
        verdict = "slow" if signals else "suspect" if needed else "ok" if judged else "too few windows"
        out.append(
            {
                "verdict": verdict,
                "slow": bool(signals),
                "signals": signals,
                "windows_to_judge": needed,
                "late_per_step_s": float(late_eff[i]),
                "share_of_step": float(late_eff[i]) * scale,
                "p_late": float(p_late[i]),
                "compute_excess_per_step_s": float(comp_eff[i]),
                "compute_share_of_step": float(comp_eff[i]) * scale,
                "p_compute": float(p_comp[i]),
                "late_steps": int(ahead_late[i]),
                "steps": n,
            }
        )
    return out


def _median_without_each(values: np.ndarray) -> np.ndarray:
    """Per element, the median of the others (NaN for a single value); O(m log m)."""
    m = len(values)
    if m < 2:
        return np.full(m, np.nan)
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    pos = np.empty(m, np.int64)
    pos[order] = np.arange(m)
    lo, hi = (m - 2) // 2, (m - 1) // 2  # middle index(es) among the m − 1 others
    pick_lo = ranked[lo + (lo >= pos)]
    pick_hi = ranked[hi + (hi >= pos)]
    return (pick_lo + pick_hi) / 2.0


def windows_needed(values: np.ndarray, max_p: float, limit: int = 10_000) -> Optional[int]:
    """The fewest windows with which values of this mean and spread give p ≤ ``max_p`` (None: over
    ``limit``, or no positive mean)."""
    mean, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    if mean <= 0 or not np.isfinite(sd):
        return None
    n = len(values)
    while n <= limit:
        if t_tail(mean / (sd / math.sqrt(n)), n - 1) <= max_p:
            return n
        n = max(n + 1, int(n * 1.1))
    return None


def _windows(colls: Colls, sel: np.ndarray, late: np.ndarray, table: StepTable) -> Windows:
    """Steps where the group's records fall in recorded steps (less the first), else repeats of its
    collective sequence (less the first); only records of complete instances count."""
    complete = np.isfinite(late)
    steps = colls.step[sel]
    recorded = np.unique(table.step)
    if len(recorded) > 1:
        in_steps = complete & np.isin(steps, recorded[1:])
        if in_steps.any():
            return Windows(np.where(in_steps, steps, -1), table.median_step(), "step", 0)
    _, first, inverse = np.unique(colls.seq[sel], return_index=True, return_inverse=True)
    rec = sel[first]
    per_seq, period = windows.labels(windows.signature(colls.op[rec], colls.bytes[rec], colls.is_async[rec]))
    per_seq = np.where(per_seq >= 1, per_seq, -1)  # the first window is warm-up
    label = np.where(complete, per_seq[inverse], -1)
    counted = np.flatnonzero(label >= 0)
    order = counted[np.argsort(label[counted], kind="stable")]
    bounds = [lo for lo, _ in runs(label[order])]
    starts = np.minimum.reduceat(colls.t0[sel][order], bounds) if bounds else np.zeros(0)  # first arrivals
    unit = float(np.median(np.diff(starts))) if len(starts) > 1 else float("nan")
    return Windows(label, unit, "sequence" if period > 1 else "collective", period)


def _by_row(row: np.ndarray, col: np.ndarray, rows: int, cols: int, values: np.ndarray) -> np.ndarray:
    """rows × cols matrix of the sums of ``values`` per (row, col), NaN where a cell has none (or a NaN)."""
    flat = row * cols + col
    sums = np.bincount(flat, weights=values, minlength=rows * cols).reshape(rows, cols)
    present = np.bincount(flat, minlength=rows * cols).reshape(rows, cols) > 0
    return np.where(present, sums, np.nan)


def _verdict(
    profile: Profile,
    rank: int,
    hits: List[Dict[str, Any]],
    heat: Dict[str, Tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> Dict[str, Any]:
    worst = max(hits, key=lambda h: max(h["share_of_step"], h["compute_share_of_step"]))
    members, labels, late = heat[worst["group"]]
    row = late[int(np.searchsorted(members, rank))]
    entry = {
        "rank": rank,
        "host": profile.ranks[rank].host if rank in profile.ranks else "?",
        "late_per_step_s": worst["late_per_step_s"],
        "share_of_step": worst["share_of_step"],
        "compute_excess_per_step_s": worst["compute_excess_per_step_s"],
        "compute_share_of_step": worst["compute_share_of_step"],
        "signals": worst["signals"],
        "caused_wait_s": float(sum(h["caused_wait_s"] for h in hits)),
        "groups": hits,
        "by_step": [{"step": int(w), "late_s": float(x)} for w, x in zip(labels, row)],
        "compute_per_step_s": worst["compute_per_step_s"],
        "others_compute_per_step_s": worst["others_compute_per_step_s"],
    }
    entry["reason"] = _reason(entry, worst)
    return entry


def _ms(seconds: Optional[float]) -> str:
    return "?" if seconds is None else f"{seconds * 1e3:.1f} ms"


def _reason(entry: Dict[str, Any], worst: Dict[str, Any]) -> str:
    """The finding sentence: every figure in it points the way the verdict does, or says it does not."""
    n = worst["steps"]
    rank, parts = entry["rank"], []
    unit = window_unit(worst["window"])
    windows = "window" if worst["window"] == "ddp" else unit  # what the t-test counts
    mine, others = entry["compute_per_step_s"], entry["others_compute_per_step_s"]
    ddp = worst["window"] == "ddp"
    where = "outside DDP's gradient all-reduces" if ddp else f"of group {worst['group']} between collectives"
    if "compute" in worst["signals"]:
        parts.append(
            f"rank {rank} computed {_ms(worst['compute_excess_per_step_s'])} per {unit} more than the "
            f"other ranks {where} ({worst['compute_share_of_step']:.1%} "
            f"of the median {unit}; {_ms(mine)} vs {_ms(others)}; t-test over {n} {windows}s, "
            f"p = {worst['p_compute']:.2g})"
        )
    if "late" in worst["signals"]:
        parts.append(
            ("it" if parts else f"rank {rank}")
            + f" arrived {_ms(worst['late_per_step_s'])} per {unit} later than the others"
            + ("" if parts else " of DDP's ranks" if ddp else f" of group {worst['group']}")
            + f" ({worst['share_of_step']:.1%} of the median {unit}; late in {worst['late_steps']} of {n} "
            f"{windows}s, p = {worst['p_late']:.2g})"
        )
    if "compute" not in worst["signals"] and mine is not None and others is not None:
        parts.append(
            f"its compute {'outside DDP' if ddp else 'between collectives'} ({_ms(mine)} per {unit} "
            f"vs {_ms(others)}) is "
            + (
                "higher than the others' but not significantly"
                if mine > others
                else "no higher than the others'"
            )
        )
    last = {
        "block": f"its mean arrival was the last in {worst['times_last']} of {n} blocks of 64 collectives",
        "ddp": f"it waited least in DDP's gradient all-reduces in {worst['times_last']} of {n} windows",
    }.get(worst["window"], f"it came last at {worst['times_last']} of {worst['instances']} collectives")
    span = "DDP all-reduce span per iteration" if ddp else "collective time"
    parts.append(
        f"{last}, where the others waited "
        f"{_ms(worst['caused_wait_s'])} for it in all; its median {span} {_ms(worst['collective_p50_s'])} "
        f"vs {_ms(worst['others_collective_p50_s'])} for the others (msprof-analyze: a straggler's is the "
        f"shortest, as it never waits)"
    )
    return "; ".join(parts)


def window_unit(kind: str) -> str:
    """What the per-window figures are per, in a sentence."""
    return {"step": "step", "ddp": "DDP iteration"}.get(kind, "window")


def _suspect_reason(x: Dict[str, Any], rule: SlowRankRule) -> str:
    unit = window_unit(x["window"])
    late = x["share_of_step"] >= x["compute_share_of_step"]
    what = (
        f"arrived {_ms(x['late_per_step_s'])} per {unit} later than the others ({x['share_of_step']:.1%} of the "
        f"median {unit}; late in {x['late_steps']} of {x['steps']} {unit}s, t-test p = {x['p_late']:.2g})"
        if late
        else f"computed {_ms(x['compute_excess_per_step_s'])} per {unit} more than the others between collectives "
        f"({x['compute_share_of_step']:.1%} of the median {unit}; t-test p = {x['p_compute']:.2g})"
    )
    return (
        f"rank {x['rank']} may be slow in group {x['group']}: it {what}; {x['steps']} {unit}s cannot establish it "
        f"at p ≤ {rule.max_p:g}: at this spread about {x['windows_to_judge']} would"
    )
