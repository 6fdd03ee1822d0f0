"""Collective instances: the records of all members of a group for one (gid, seq), as matrices.

Every rank of a group issues the same collectives in the same order, so (gid, seq) names one collective
across ranks. For each group this builds ``rec[member, instance]``, the index of that member's record
(-1 where it has none: dropped, cut short, or never entered), from which any per-record column becomes a
members × instances matrix. send/recv are left out: they pair two ranks, not the group.
"""

from dataclasses import dataclass
from typing import List

import numpy as np

from ..bandwidth import P2P_OPS
from .arrays import runs, unique_ints
from .model import Profile


@dataclass
class GroupInstances:
    gid: str
    members: np.ndarray  # global ranks, in group-rank order
    seqs: np.ndarray  # the seq of each instance (column)
    rec: np.ndarray  # members × instances record indices, -1 where missing

    def matrix(self, column: np.ndarray) -> np.ndarray:
        """``column`` (one value per record) as a float members × instances matrix, NaN where missing."""
        out = np.full(self.rec.shape, np.nan)
        have = self.rec >= 0
        out[have] = column[self.rec[have]]
        return out

    @property
    def complete(self) -> np.ndarray:
        """Instances every member with any record in this group has a record of (a rank with no record
        at all, e.g. a missing directory, does not make every instance incomplete)."""
        have = self.rec >= 0
        return np.all(have[have.any(axis=1)], axis=0)


def group_instances(profile: Profile) -> List[GroupInstances]:
    """One :class:`GroupInstances` per process group that has collectives (send/recv excluded)."""
    colls = profile.colls
    p2p = np.isin(colls.op, [profile.op_code(op) for op in P2P_OPS])
    idx = np.flatnonzero(~p2p)
    idx = idx[np.argsort(colls.gid[idx], kind="stable")]
    out = []
    for start, stop in runs(colls.gid[idx]):
        sel = idx[start:stop]
        gid = profile.gids[int(colls.gid[sel[0]])]
        ranks = colls.rank[sel]
        members = np.array(profile.groups.get(gid) or [], dtype=np.int64)
        extra = np.setdiff1d(np.unique(ranks), members)
        members = np.concatenate([members, extra])  # ranks outside the group's record still count
        position = np.full(max(int(members.max()), int(ranks.max())) + 1, -1, np.int64)
        position[members] = np.arange(len(members))
        seqs, column = unique_ints(colls.seq[sel])
        rec = np.full((len(members), len(seqs)), -1, np.int64)
        rec[position[ranks], column] = sel
        out.append(GroupInstances(gid, members, seqs, rec))
    return out
