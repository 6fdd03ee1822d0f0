"""Compute between collectives: on each rank, the time it was not blocked in a collective.

On rank r, on aligned clocks, the rank is *blocked* during the union of

    [t0, t1]          of each of its blocking collectives (``async: false``, send/recv included)
    [t0, t0 + wait]   of each of its async collectives: from its issue to the last rank's issue
                      (skew.py's ``wait``, clipped to the call), when no collective can progress

and computes the rest of the time:

    compute(a, b) = (b − a) − |blocked ∩ [a, b]|

Why the async wait counts as blocked: with DDP a punctual rank issues its bucket all-reduce, ends its
backward and then sits in the reducer until the straggler issues the same bucket; with FSDP it sits
before the layer whose prefetched shards have not arrived. Counting that as compute made a punctual
rank's compute read as high as the straggler's. Where a rank overlaps real work with several async
collectives in flight at once (DDP with many buckets), each one's wait is taken out, so a punctual rank's
compute can read low; the straggler's never does (it arrives last: its wait is ~0).

:func:`gaps` gives, per coll record, the compute since the rank's previous collective of the same group
(its release: t1 of a blocking one, t0 of an async one, since the rank goes on after issuing it).
"""

from dataclasses import dataclass
from typing import Dict

import numpy as np

from .arrays import runs
from .model import Profile
from .skew import Skew


@dataclass
class Blocked:
    """Per rank, merged blocked intervals ``[starts, ends)`` sorted in time, and ``before[i]``, the blocked
    time before interval i."""

    starts: Dict[int, np.ndarray]
    ends: Dict[int, np.ndarray]
    before: Dict[int, np.ndarray]

    def upto(self, rank: int, x: np.ndarray) -> np.ndarray:
        """Blocked time of ``rank`` before each time in ``x``."""
        s = self.starts.get(rank)
        if s is None or not len(s):
            return np.zeros(len(x))
        e, before = self.ends[rank], self.before[rank]
        i = np.searchsorted(s, x, side="right") - 1
        j = np.maximum(i, 0)
        inside = np.clip(x - s[j], 0.0, e[j] - s[j])
        return np.where(i >= 0, before[j] + inside, 0.0)

    def compute(self, rank: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``compute(a, b)`` per row (0 where b ≤ a)."""
        out = np.zeros(len(a))
        order = np.argsort(rank, kind="stable")
        for lo, hi in runs(rank[order]):
            sel = order[lo:hi]
            r = int(rank[sel[0]])
            out[sel] = (b[sel] - a[sel]) - (self.upto(r, b[sel]) - self.upto(r, a[sel]))
        return np.maximum(out, 0.0)


def blocked(profile: Profile, skew: Skew) -> Blocked:
    colls = profile.colls
    end = np.where(colls.is_async, colls.t0 + np.minimum(skew.wait, colls.t1 - colls.t0), colls.t1)
    by_rank = np.argsort(colls.rank, kind="stable")  # records come grouped by rank, nearly in time order
    starts: Dict[int, np.ndarray] = {}
    ends: Dict[int, np.ndarray] = {}
    before: Dict[int, np.ndarray] = {}
    for lo, hi in runs(colls.rank[by_rank]):
        sel = by_rank[lo:hi]
        sel = sel[np.argsort(colls.t0[sel], kind="stable")]
        s, e = colls.t0[sel], np.maximum(end[sel], colls.t0[sel])
        reach = np.maximum.accumulate(e)
        new = np.r_[True, s[1:] > reach[:-1]]  # an interval that starts after everything before it ended
        first = np.flatnonzero(new)
        ms, me = s[first], np.maximum.reduceat(e, first)
        r = int(colls.rank[sel[0]])
        starts[r], ends[r] = ms, me
        before[r] = np.r_[0.0, np.cumsum(me - ms)[:-1]]
    return Blocked(starts, ends, before)


def gaps(profile: Profile, block: Blocked, order: np.ndarray) -> np.ndarray:
    """Per coll record: compute since the rank's previous collective on the same group (NaN for its first,
    and for send/recv, which count their own seqs); ``order``: instances.by_group_rank_seq's."""
    colls = profile.colls
    out = np.full(len(colls), np.nan)
    # each temporary goes as soon as it is used: 16 M records make each one 131 MB
    if not len(order):
        return out
    gid, rank = colls.gid[order], colls.rank[order]
    same = np.r_[False, (gid[1:] == gid[:-1]) & (rank[1:] == rank[:-1])]
    del gid, rank
    prev = order[np.flatnonzero(same) - 1]  # the same rank's previous record on the group
    cur = order[same]
    del same
    prev_release = np.where(colls.is_async[prev], colls.t0[prev], colls.t1[prev])
    del prev
    out[cur] = block.compute(colls.rank[cur], prev_release, colls.t0[cur])
    return out
