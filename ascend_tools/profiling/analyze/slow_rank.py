"""Slow ranks: who holds the others up, per process group and per step.

Per group and member r, over the group's complete collective instances (skew.py), on aligned clocks:

    late[r, i] = t0[r, i] − mean_{j≠r} t0[j, i]     how much later than the others r arrived at instance i
    D[r, s]    = Σ_{i in step s} late[r, i]          how much later r arrived, in all, in step s
    effect[r]  = median over steps of D[r, s]        robust to a one-off hiccup (GC, a checkpoint)

Counted: every collective of the group, async ones included (DDP's bucket all-reduces are async: the
others wait for a late rank inside backward, where DDP waits for them, not in any blocking collective;
where a later blocking call waits on an async one instead, a late rank counts twice and the effect reads
up to double, which only matters to threshold (1)); not the first step (warm-up: process start skew,
DDP's initial broadcast, lazy initialisation), nor collectives outside the steps that have a ``step``
record (a final barrier, an evaluation after the last step).

**Rule** (per group; thresholds are :class:`SlowRankRule` parameters): r is slow when

1. ``effect ≥ min_share × median step time`` (default 5%: it holds everyone up by 5% of a step in a
   typical step), and
2. it was late (D > 0) in so many steps that a one-sided sign test rejects "late or early at random":
   P(Binomial(S, ½) ≥ late steps) ≤ ``max_p`` (default 0.002: 9 of 9 counted steps, 17 of 19, ...; so
   a profile needs at least 10 steps, the first being warm-up).

Without step records every collective instance counts as a step, and the unit of (1) is the group's span
divided by its number of instances.

Why, measured on simulated runs (synthetic.py; tests/profiling/test_analyze_slow_rank.py):

- ``late`` rather than the wait a rank caused as the last arriver (``caused`` in skew.py, reported beside
  it): when the jitter is larger than the delay per collective the late rank is not always last, and
  ``caused`` came out at 2–7% of the step for a 10% straggler; ``late`` has expectation exactly the
  delay whatever the jitter, and zero for every rank of a balanced run.
- a sign test rather than a z-score from the spread of D: with 10 steps the spread is too poorly known
  (a MAD-based z ≥ 3 flagged 1–2% of balanced runs); the sign test needs no estimate of the spread, its
  false-positive rate is at most ``max_p`` per rank for symmetric jitter, and it is conservative for
  right-skewed jitter (a rank that hiccups now and then is late in few steps). Balanced runs, 10 steps,
  30 ms of compute and 3–5 ms of half-normal jitter per collective, 2 and 4 ranks: no flag in 600 runs;
  10 ms of compute and 2–4 ms of jitter: 1 flag in 800. A 10% straggler in the first setting: named in
  87 of 90 runs. When the jitter per step is as large as the delay, the rule stays silent rather than guess.

Two pieces of evidence are reported beside the verdict, not used by it: msprof-analyze's signature (the
straggler has the *shortest* collective time, since it never waits) and NVIDIA's straggler detector's
(its compute time between collectives, from steps.py, against the others').
"""

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Tuple

import numpy as np

from ..bandwidth import P2P_OPS
from .arrays import percentile, runs
from .model import Colls, Profile
from .skew import Skew
from .steps import StepTable


@dataclass(frozen=True)
class SlowRankRule:
    min_share: float = 0.05
    max_p: float = 0.002


def find(profile: Profile, skew: Skew, table: StepTable, rule: SlowRankRule) -> Dict[str, Any]:
    """``{"rule", "median_step_s", "groups": [per group, per member scores], "slow_ranks": [flagged]}``."""
    colls = profile.colls
    idx = np.flatnonzero(~np.isin(colls.op, [profile.op_code(op) for op in P2P_OPS]))
    idx = idx[np.lexsort((colls.rank[idx], colls.gid[idx]))]
    step_time = table.median_step()
    steady = table.steady()
    compute = _per_rank_mean(table.rank[steady], table.compute[steady])
    groups: List[Dict[str, Any]] = []
    flagged: Dict[int, List[Dict[str, Any]]] = {}
    for a, b in runs(colls.gid[idx]):
        sel = idx[a:b]
        gid = profile.gids[int(colls.gid[sel[0]])]
        members, starts = np.unique(colls.rank[sel], return_index=True)
        if len(members) < 2:
            continue
        counted, labels, unit = _counted(colls, sel, skew.late[sel], table)
        use = sel[counted]
        effect, late_steps, total = _lateness(colls.rank[use], labels[counted], skew.late[use], members)
        caused = np.add.reduceat(skew.caused[sel], starts)
        times_last = np.add.reduceat(skew.last[sel].astype(np.int64), starts)
        dur = colls.t1[sel] - colls.t0[sel]
        comm_p50 = np.array([np.median(part) for part in np.split(dur, starts[1:])])
        instances = len(skew.spread.get(gid, ()))
        rows = []
        for i, r in enumerate(members):
            share = float(effect[i] / unit) if unit > 0 else 0.0
            p = sign_test(int(late_steps[i]), int(total[i])) if share >= rule.min_share else None
            slow = p is not None and p <= rule.max_p
            rows.append(
                {
                    "rank": int(r),
                    "late_per_step_s": float(effect[i]),
                    "share_of_step": share,
                    "late_steps": int(late_steps[i]),
                    "steps": int(total[i]),
                    "p_value": p,
                    "caused_wait_s": float(caused[i]),
                    "times_last": int(times_last[i]),
                    "collective_p50_s": float(comm_p50[i]),
                    "others_collective_p50_s": float(np.median(np.delete(comm_p50, i))),
                    "compute_per_step_s": compute.get(int(r)),
                    "slow": slow,
                }
            )
            if slow:
                flagged.setdefault(int(r), []).append(dict(rows[-1], group=gid, instances=instances))
        spread = skew.spread.get(gid, np.zeros(0))
        groups.append(
            {
                "group": gid,
                "members": len(members),
                "instances": instances,
                "unit_s": unit,
                "skew_p50_s": percentile(spread, 50),
                "skew_p99_s": percentile(spread, 99),
                "ranks": rows,
            }
        )
    slow_ranks = [
        _verdict(profile, skew, rank, hits, step_time, compute) for rank, hits in sorted(flagged.items())
    ]
    return {
        "rule": {"min_share": rule.min_share, "max_p": rule.max_p},
        "median_step_s": step_time,
        "groups": groups,
        "slow_ranks": slow_ranks,
    }


def _counted(
    colls: Colls, sel: np.ndarray, late: np.ndarray, table: StepTable
) -> Tuple[np.ndarray, np.ndarray, float]:
    """Which of a group's records the rule counts, the step (or seq) each counts in, and the unit of the
    effect (see the module docstring)."""
    counted = np.isfinite(late)
    steps = colls.step[sel]
    recorded = np.unique(table.step)
    if len(recorded) > 1:
        recorded = recorded[1:]  # warm-up
    in_steps = counted & np.isin(steps, recorded)
    if in_steps.any():
        return in_steps, steps, table.median_step()
    seqs = colls.seq[sel]
    span = float(colls.t1[sel].max() - colls.t0[sel].min()) if len(sel) else 0.0
    return counted, seqs, span / max(1, len(np.unique(seqs)))


def _lateness(
    ranks: np.ndarray, labels: np.ndarray, late: np.ndarray, members: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per member: the median over steps (``labels``) of its per-step lateness, the number of steps it was
    late in, and its number of steps."""
    effect, late_steps, total = (
        np.zeros(len(members)),
        np.zeros(len(members), np.int64),
        np.zeros(len(members), np.int64),
    )
    if len(late):
        per_step = _by_row(np.searchsorted(members, ranks), labels, late, len(members))
        total = np.isfinite(per_step).sum(axis=1)
        has = total > 0
        effect[has] = np.nanmedian(per_step[has], axis=1)
        late_steps = (per_step > 0).sum(axis=1)
    return effect, late_steps, total


def _by_row(row: np.ndarray, label: np.ndarray, values: np.ndarray, rows: int) -> np.ndarray:
    """rows × distinct labels matrix of the sums of ``values``, NaN where a row has none."""
    labels, col = np.unique(label, return_inverse=True)
    flat = row * len(labels) + col
    size = rows * len(labels)
    sums = np.bincount(flat, weights=values, minlength=size).reshape(rows, len(labels))
    present = np.bincount(flat, minlength=size).reshape(rows, len(labels)) > 0
    return np.where(present, sums, np.nan)


def sign_test(late_steps: int, steps: int) -> float:
    """One-sided sign test: P(at least ``late_steps`` of ``steps`` fair coin flips come up "late")."""
    if late_steps <= 0:
        return 1.0
    if late_steps > steps:
        return 0.0
    if steps <= 1024:  # exact (the sum of big integers grows as steps^2.5: 81 s on a 46 MB profile)
        return sum(math.comb(steps, j) for j in range(late_steps, steps + 1)) / 2**steps
    # log C(steps, j) - steps log 2 for j = late_steps..steps, from the ratio of consecutive terms; O(steps)
    j = np.arange(late_steps, steps, dtype=np.float64)
    first = (
        math.lgamma(steps + 1) - math.lgamma(late_steps + 1) - math.lgamma(steps - late_steps + 1)
    ) - steps * math.log(2.0)
    logs = first + np.concatenate(([0.0], np.cumsum(np.log((steps - j) / (j + 1)))))
    top = float(logs.max())
    return float(min(1.0, math.exp(top) * float(np.exp(logs - top).sum())))


def _per_rank_mean(ranks: np.ndarray, values: np.ndarray) -> Dict[int, float]:
    if not len(ranks):
        return {}
    uniq, inv = np.unique(ranks, return_inverse=True)
    means = np.bincount(inv, weights=values) / np.bincount(inv)
    return {int(r): float(m) for r, m in zip(uniq, means)}


def _verdict(
    profile: Profile,
    skew: Skew,
    rank: int,
    hits: List[Dict[str, Any]],
    step_time: float,
    compute: Dict[int, float],
) -> Dict[str, Any]:
    colls = profile.colls
    mine = np.flatnonzero((colls.rank == rank) & np.isfinite(skew.late) & (colls.step >= 0))
    steps, inv = np.unique(colls.step[mine], return_inverse=True)
    late = np.bincount(inv, weights=skew.late[mine]) if len(mine) else np.zeros(0)
    caused = np.bincount(inv, weights=skew.caused[mine]) if len(mine) else np.zeros(0)
    others = [v for r, v in compute.items() if r != rank]
    worst = max(hits, key=lambda h: h["share_of_step"])
    entry = {
        "rank": rank,
        "host": profile.ranks[rank].host if rank in profile.ranks else "?",
        "late_per_step_s": worst["late_per_step_s"],
        "share_of_step": worst["share_of_step"],
        "caused_wait_s": float(sum(h["caused_wait_s"] for h in hits)),
        "groups": hits,
        "by_step": [
            {
                "step": int(s),
                "late_s": float(x),
                "caused_wait_s": float(c),
                "share_of_step": float(x / step_time) if step_time > 0 else None,
            }
            for s, x, c in zip(steps, late, caused)
        ],
        "compute_per_step_s": compute.get(rank),
        "others_compute_per_step_s": float(np.median(others)) if others else None,
    }
    entry["reason"] = _reason(entry, worst)
    return entry


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _reason(entry: Dict[str, Any], worst: Dict[str, Any]) -> str:
    text = (
        f"rank {entry['rank']} arrived {_ms(worst['late_per_step_s'])} per step later than the other ranks of "
        f"group {worst['group']} ({worst['share_of_step']:.1%} of the median step time; late in "
        f"{worst['late_steps']} of {worst['steps']} steps, p = {worst['p_value']:.2g}); it came last at {worst['times_last']} of {worst['instances']} "
        f"collectives, where the others waited {_ms(worst['caused_wait_s'])} for it in all"
    )
    if entry["compute_per_step_s"] is not None and entry["others_compute_per_step_s"] is not None:
        text += (
            f"; compute between collectives {_ms(entry['compute_per_step_s'])}/step vs "
            f"{_ms(entry['others_compute_per_step_s'])} for the others"
        )
    text += (
        f"; its median collective time {_ms(worst['collective_p50_s'])} vs "
        f"{_ms(worst['others_collective_p50_s'])} for the others (msprof-analyze: a straggler's is the "
        f"shortest, as it never waits)"
    )
    return text
