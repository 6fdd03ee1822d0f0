"""Put every rank's host clock on one timeline (the reference rank's: the lowest rank with collectives).

The rule: no rank can leave an all_reduce, all_gather, reduce_scatter, all_to_all or barrier before the
last rank of its group has arrived, and all leave within the transport's latency of each other. So the
exit times ``t1`` of one such collective, on different ranks, name nearly the same instant, and

    offset[r] = median over shared (gid, seq) of (t1 on rank r − t1 on the anchor rank)

is how far r's clock is ahead of the anchor's. Only blocking calls (``async: false``) count: an async
work's ``t1`` is when its future was seen complete, which can be much later. Rooted collectives
(broadcast, reduce, gather, scatter) and send/recv are left out: their ranks need not leave together.

Within a group the anchor is the member with the most usable records. Groups are chained through shared
ranks (a maximum spanning tree, weighted by the number of shared collectives, grown from the reference),
so tensor-parallel groups inside a data-parallel group, or pipeline stages, all end up on one clock. A
rank that shares no usable collective with the others keeps offset 0 and is reported as unaligned.
Aligned time = recorded time − offset[rank].
"""

import heapq
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import numpy as np

from ..bandwidth import ALL_TO_ALL_DEPENDENT
from .instances import GroupInstances
from .model import Profile


@dataclass
class ClockFit:
    offsets: np.ndarray  # seconds, index = rank
    reference: int
    via: Dict[int, Tuple[str, int]] = field(
        default_factory=dict
    )  # rank -> (gid, shared collectives) it was aligned by
    unaligned: List[int] = field(default_factory=list)
    residual_p50: float = float("nan")  # spread (max − min) of aligned exit times per collective
    residual_p99: float = float("nan")


def _usable_t1(profile: Profile, inst: GroupInstances) -> np.ndarray:
    colls = profile.colls
    codes = [profile.op_code(op) for op in ALL_TO_ALL_DEPENDENT]
    usable = ~colls.is_async & np.isin(colls.op, codes)
    return inst.matrix(np.where(usable, colls.t1, np.nan))


def fit(profile: Profile, instances: List[GroupInstances]) -> ClockFit:
    """Offsets per rank by the rule in the module docstring."""
    world = profile.world_size
    edges: Dict[
        int, List[Tuple[int, int, float, str]]
    ] = {}  # rank -> [(weight, other, d = clock_other − clock_rank, gid)]
    matrices = []
    for inst in instances:
        t1 = _usable_t1(profile, inst)
        counts = np.isfinite(t1).sum(axis=1)
        if counts.max(initial=0) == 0:
            continue
        matrices.append((inst, t1))
        anchor = int(np.argmax(counts))
        diff = t1 - t1[anchor]
        shared = np.isfinite(diff).sum(axis=1)
        for row in np.flatnonzero(shared):
            if row == anchor:
                continue
            d = float(np.median(diff[row][np.isfinite(diff[row])]))
            a, b = int(inst.members[anchor]), int(inst.members[row])
            edges.setdefault(a, []).append((int(shared[row]), b, d, inst.gid))
            edges.setdefault(b, []).append((int(shared[row]), a, -d, inst.gid))
    offsets = np.zeros(world)
    with_records = np.unique(profile.colls.rank)
    reference = int(min(edges)) if edges else int(with_records.min(initial=0))
    result = ClockFit(offsets=offsets, reference=reference)
    done = {reference}
    heap = [(-w, reference, other, d, gid) for w, other, d, gid in edges.get(reference, [])]
    heapq.heapify(heap)
    while heap:
        negw, src, dst, d, gid = heapq.heappop(heap)
        if dst in done:
            continue
        done.add(dst)
        offsets[dst] = offsets[src] + d
        result.via[dst] = (gid, -negw)
        for w, other, d2, gid2 in edges.get(dst, []):
            if other not in done:
                heapq.heappush(heap, (-w, dst, other, d2, gid2))
    result.unaligned = sorted(int(r) for r in with_records if int(r) not in done)
    spread = np.concatenate(
        [_spread(t1 - offsets[inst.members][:, None]) for inst, t1 in matrices] or [np.zeros(0)]
    )
    if len(spread):
        result.residual_p50, result.residual_p99 = (float(v) for v in np.percentile(spread, [50, 99]))
    return result


def _spread(m: np.ndarray) -> np.ndarray:
    """max − min per column, over the columns with at least two values."""
    m = m[:, np.isfinite(m).sum(axis=0) >= 2]
    return np.nanmax(m, axis=0) - np.nanmin(m, axis=0)


def align(profile: Profile, clock: ClockFit) -> None:
    """Move every time in ``profile`` onto the reference clock (in place)."""
    off = clock.offsets
    colls, steps = profile.colls, profile.steps
    colls.t0 -= off[colls.rank]
    colls.t1 -= off[colls.rank]
    steps.t0 -= off[steps.rank]
    steps.t1 -= off[steps.rank]
    for rank, info in profile.ranks.items():
        o = float(off[rank]) if rank < len(off) else 0.0
        if info.memory is not None:
            info.memory.shift(o)
        if info.hang is not None:
            if isinstance(info.hang.get("detected_at"), (int, float)):
                info.hang["detected_at"] -= o
            for entry in info.hang["inflight"] + info.hang["recent"]:
                for key in ("t0", "t1"):
                    if isinstance(entry.get(key), (int, float)):
                        entry[key] -= o
    profile.offsets = off
