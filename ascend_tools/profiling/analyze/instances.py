"""Collective instances: the records of all members of a group for one (gid, seq), as matrices.

Every rank of a group issues the same collectives in the same order, so (gid, seq) names one collective
across ranks. For each group this builds ``rec[member, instance]``, the index of that member's record
(-1 where it has none: dropped, cut short, or never entered), from which any per-record column becomes a
members × instances matrix. send/recv are left out: they pair two ranks, not the group.
"""

from dataclasses import dataclass
from typing import List, Optional

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


def by_group_rank_seq(profile: Profile) -> np.ndarray:
    """The records of the groups' collectives (send/recv left out) in (gid, rank, seq) order, equal keys in
    record order: what the instances, the compute gaps and the slow-rank windows walk, sorted once for all.
    The reader gives each rank's records in the order it wrote them, so a stable sort on the group alone
    usually gives it (checked; otherwise a lexsort): 16 M records at 8,192 ranks."""
    colls = profile.colls
    idx = np.flatnonzero(~np.isin(colls.op, [profile.op_code(op) for op in P2P_OPS]))
    order = idx[np.argsort(colls.gid[idx], kind="stable")]
    del idx
    gid, rank, seq = colls.gid[order], colls.rank[order], colls.seq[order]
    after = (gid[1:] != gid[:-1]) | (rank[1:] > rank[:-1]) | ((rank[1:] == rank[:-1]) & (seq[1:] >= seq[:-1]))
    del gid, rank, seq
    if not after.all():
        order = order[np.lexsort((colls.seq[order], colls.rank[order], colls.gid[order]))]
    return order.astype(np.int32) if len(colls) < 1 << 31 else order  # held through the analyses


def group_instances(profile: Profile, order: Optional[np.ndarray] = None) -> List[GroupInstances]:
    """One :class:`GroupInstances` per process group that has collectives (send/recv excluded); ``order``:
    :func:`by_group_rank_seq`'s, when the caller has it."""
    colls = profile.colls
    idx = by_group_rank_seq(profile) if order is None else order
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
