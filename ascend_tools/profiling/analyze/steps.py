"""Per-rank step breakdown: where each step's time went, on aligned clocks.

For rank r and step s (a ``step`` record, t0..t1):

    comm      = Σ (t1 − t0) of r's blocking collectives in s      (``async: false``, send/recv included)
    wait      = Σ wait of those collectives                         (see skew.py: sat in the call for peers)
    exposed   = comm − wait                                         (moving data, or latency)
    compute   = (t1 − t0 of the step) − comm                        (everything outside blocking collectives)

Async collectives (``async_op=True``, DDP's bucket all-reduces) overlap compute: their time is reported
apart, as ``overlapped``, and not subtracted from compute.
"""
from dataclasses import dataclass
from typing import Any, Dict, List

import numpy as np

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

    def median_step(self) -> float:
        return float(np.median(self.duration)) if len(self.duration) else float("nan")


def _key(rank: np.ndarray, step: np.ndarray) -> np.ndarray:
    return (rank.astype(np.int64) << 32) | (step.astype(np.int64) & 0xFFFFFFFF)


def breakdown(profile: Profile, skew: Skew) -> StepTable:
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
    comm = np.minimum(np.bincount(pos[blocking], weights=dur[blocking], minlength=m), duration)
    wait = np.minimum(np.bincount(pos[blocking], weights=skew.wait[blocking], minlength=m), comm)
    overlapped = np.bincount(pos[inside & colls.is_async], weights=dur[inside & colls.is_async], minlength=m)
    return StepTable(rank=rank, step=step, duration=duration, compute=duration - comm, exposed=comm - wait,
                     wait=wait, overlapped=overlapped)


def per_rank(table: StepTable) -> List[Dict[str, Any]]:
    """Mean seconds per step for each rank with step records."""
    rows = []
    if not len(table.rank):
        return rows
    order = np.argsort(table.rank, kind="stable")
    ranks = table.rank[order]
    bounds = np.flatnonzero(np.r_[True, ranks[1:] != ranks[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        sel = order[a:b]
        rows.append({
            "rank": int(ranks[a]), "steps": int(b - a),
            "step_time_p50_s": float(np.median(table.duration[sel])),
            "compute_s": float(table.compute[sel].mean()), "exposed_comm_s": float(table.exposed[sel].mean()),
            "wait_s": float(table.wait[sel].mean()), "overlapped_comm_s": float(table.overlapped[sel].mean()),
        })
    return rows
