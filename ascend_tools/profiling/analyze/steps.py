"""Per-rank step breakdown: where each step's time went, on aligned clocks.

For rank r and step s (a ``step`` record, t0..t1), with *blocked* as compute_gaps.py defines it (its
blocking collectives, plus the wait of its async ones: from issue to the last rank's issue):

    blocked   = |blocked ∩ [t0, t1]|
    exposed   = Σ (t1 − t0 − wait) of r's blocking collectives in s       moving data, or latency
    wait      = blocked − exposed              waiting for peers, in blocking and in async collectives
    compute   = (t1 − t0 of the step) − blocked                            everything else

Means per rank leave the first step out (warm-up: process start, initial broadcasts, lazy init).
Async collectives (``async_op=True``, DDP's bucket all-reduces) overlap compute: their time is reported
apart, as ``overlapped``, and ``overlapped_wait`` is the part of it spent waiting for late ranks, which
(unlike the rest of ``overlapped``) is counted in ``wait``, not in compute: a punctual DDP rank sits in
the reducer at the end of backward until the straggler's bucket arrives.
"""

from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

from .arrays import runs
from .compute_gaps import Blocked
from .model import Profile
from .skew import Skew


@dataclass
class StepTable:
    """One row per (rank, step) with a step record."""

    rank: np.ndarray
    step: np.ndarray
    duration: np.ndarray
    compute: np.ndarray
    exposed: np.ndarray
    wait: np.ndarray
    overlapped: np.ndarray
    overlapped_wait: np.ndarray

    def median_step(self) -> float:
        return float(np.median(self.duration)) if len(self.duration) else float("nan")

    def steady(self) -> np.ndarray:
        """Rows other than the first step's (warm-up: process start, initial broadcasts, lazy init), when
        there is more than one step."""
        if not len(self.step) or (self.step == self.step.min()).all():
            return np.ones(len(self.step), bool)
        return self.step != self.step.min()


def _key(rank: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (rank.astype(np.int64) << 32) | (step.astype(np.int64) & 0xFFFFFFFF)


def breakdown(profile: Profile, skew: Skew, block: Blocked) -> StepTable:
    steps, colls = profile.steps, profile.colls
    keys = _key(steps.rank, steps.step)
    uniq, first = np.unique(keys, return_index=True)  # a repeated step record counts once
    rank, step = steps.rank[first], steps.step[first]
    duration = steps.t1[first] - steps.t0[first]
    ckeys = _key(colls.rank, colls.step)
    if len(uniq):
        pos = np.minimum(np.searchsorted(uniq, ckeys), len(uniq) - 1)
        inside = (colls.step >= 0) & (uniq[pos] == ckeys)
    else:
        pos, inside = np.zeros(len(colls), np.int64), np.zeros(len(colls), bool)
    blocking = inside & ~colls.is_async
    dur = colls.t1 - colls.t0
    m = len(uniq)
    blocked = duration - block.compute(rank, steps.t0[first], steps.t1[first])
    moving = np.bincount(pos[blocking], weights=dur[blocking] - skew.wait[blocking], minlength=m)
    exposed = np.clip(moving, 0.0, blocked)
    overlapping = inside & colls.is_async
    overlapped = np.bincount(pos[overlapping], weights=dur[overlapping], minlength=m)
    overlapped_wait = np.bincount(pos[overlapping], weights=skew.wait[overlapping], minlength=m)
    return StepTable(
        rank=rank,
        step=step,
        duration=duration,
        compute=duration - blocked,
        exposed=exposed,
        wait=blocked - exposed,
        overlapped=overlapped,
        overlapped_wait=overlapped_wait,
    )


def per_rank(table: StepTable) -> List[Dict[str, Any]]:
    """Mean seconds per step for each rank with step records, the warm-up step left out."""
    rows = []
    keep = np.flatnonzero(table.steady())
    order = keep[np.argsort(table.rank[keep], kind="stable")]
    ranks = table.rank[order]
    for a, b in runs(ranks):
        sel = order[a:b]
        rows.append(
            {
                "rank": int(ranks[a]),
                "steps": b - a,
                "step_time_p50_s": float(np.median(table.duration[sel])),
                "compute_s": float(table.compute[sel].mean()),
                "exposed_comm_s": float(table.exposed[sel].mean()),
                "wait_s": float(table.wait[sel].mean()),
                "overlapped_comm_s": float(table.overlapped[sel].mean()),
                "overlapped_wait_s": float(table.overlapped_wait[sel].mean()),
            }
        )
    return rows
