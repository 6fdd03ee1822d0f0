"""Arrival skew of each collective instance, on aligned clocks (run :func:`clocks.align` first).

For one (gid, seq), rank r arrives at ``t0[r]`` and leaves at ``t1[r]``. The collective cannot make
progress before its last rank has arrived, so

    wait[r]   = clip(max_j t0[j] − t0[r], 0, t1[r] − t0[r])    time r sat in the call waiting for peers
    caused[r] = t0[r] − (second-latest arrival)  if r arrived last, else 0
                                                     the wait r alone imposed on the others
    late[r]   = t0[r] − mean_{j≠r} t0[j]           how much later than the others r came

``wait`` is clipped to the call's own duration: a rank that returned early (e.g. a broadcast root on a
backend that does not wait for receivers) did not wait longer than it sat in the call. ``caused`` and
``late`` are only measured on complete instances (every member with records in the group has one for
this seq): with one record missing the last arriver is unknown. ``late`` sums to zero over the ranks of
an instance, so with identically distributed jitter its expectation is zero on every rank, and a rank
that arrives d seconds late has expectation d whatever the jitter (``caused`` shrinks when the jitter is
larger than d: the late rank is then not always last).
"""

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from .instances import GroupInstances
from .model import Profile


@dataclass
class Skew:
    wait: np.ndarray  # per coll record, seconds (0 for send/recv)
    caused: np.ndarray  # per coll record, seconds
    late: np.ndarray  # per coll record, seconds; NaN outside complete instances
    last: np.ndarray  # per coll record: arrived last at a complete instance
    spread: Dict[str, np.ndarray]  # gid -> latest − earliest arrival, per complete instance


def measure(profile: Profile, instances: List[GroupInstances]) -> Skew:
    colls = profile.colls
    wait, caused, late = np.zeros(len(colls)), np.zeros(len(colls)), np.full(len(colls), np.nan)
    last = np.zeros(len(colls), bool)
    spread: Dict[str, np.ndarray] = {}
    for inst in instances:
        arrive = inst.matrix(colls.t0)
        dur = inst.matrix(colls.t1 - colls.t0)
        latest = np.nanmax(arrive, axis=0)
        have = inst.rec >= 0
        cell_wait = np.clip(latest - arrive, 0.0, dur)
        wait[inst.rec[have]] = cell_wait[have]
        active = have.any(axis=1)
        del dur, cell_wait, have  # members × instances each: 131 MB at 8,192 ranks × 2,000
        cols = np.flatnonzero(inst.complete)
        if active.sum() < 2 or not len(cols):
            spread[inst.gid] = np.zeros(0)
            continue
        a = arrive[np.ix_(active, cols)]
        del arrive
        rec = inst.rec[np.ix_(active, cols)]
        top = np.argmax(a, axis=0)
        second = np.partition(a, -2, axis=0)[-2]
        late_rec = rec[top, np.arange(len(cols))]
        caused[late_rec] = a[top, np.arange(len(cols))] - second
        last[late_rec] = True
        rel = a - a.min(axis=0)  # seconds since the first arrival: sums of epoch times lose precision
        late[rec] = rel - (rel.sum(axis=0) - rel) / (a.shape[0] - 1)
        spread[inst.gid] = a.max(axis=0) - a.min(axis=0)
    return Skew(wait=wait, caused=caused, late=late, last=last, spread=spread)
