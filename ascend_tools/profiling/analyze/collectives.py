"""Collectives by op × message-size bucket (and per process group): count, time, bandwidth.

Buckets are powers of two: a message of S bytes falls in [2^k, 2^(k+1)) with k = floor(log2 S); barriers
(S = 0) have their own. Per row, over every rank's records:

- ``time`` = t1 − t0 as the rank saw it (p50, p99), and ``wait`` (skew.py) the part spent waiting for
  late peers;
- ``algbw`` = S / (time − wait) and ``busbw`` = algbw × nccl-tests' factor (bandwidth.py), p50 over
  records: the transfer is timed from the last arrival, the way nccl-tests times a collective whose
  ranks start together. Records whose time is all wait have no bandwidth.
- ``dev_ms`` p50 when the backend timed the call on the device.

Async collectives (``async_op=True``) are their own rows: their time runs to when the future was seen
complete, so it includes whatever the rank did meanwhile.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from ..bandwidth import GB, P2P_OPS, bus_factors
from .arrays import count_distinct, percentile, runs
from .model import Colls, Profile
from .skew import Skew


def bucket_of(nbytes: np.ndarray) -> np.ndarray:
    """floor(log2 S), -1 for S = 0 (int8: S < 2⁶³)."""
    out = np.full(len(nbytes), -1, np.int8)
    pos = nbytes > 0
    out[pos] = np.floor(np.log2(nbytes[pos]))
    return out


def size_label(nbytes: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes:g} B"


def bucket_label(bucket: int) -> str:
    return "0 B" if bucket < 0 else f"{size_label(2**bucket)}–{size_label(2 ** (bucket + 1))}"


def tables(profile: Profile, skew: Skew) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """One row per (op, async, bucket), and one per (group, op, async, bucket): the per-record figures
    (131 MB each at 8,192 ranks × 2,000) computed once for both."""
    colls = profile.colls
    if not len(colls):
        return [], []
    bucket = bucket_of(colls.bytes)
    figures = (bucket, colls.t1 - colls.t0, *bandwidths(profile, skew), _instance_keys(colls))
    return _table(profile, skew, figures, None), _table(profile, skew, figures, colls.gid)


def _table(
    profile: Profile,
    skew: Skew,
    figures: Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    gid: Optional[np.ndarray],
) -> List[Dict[str, Any]]:
    """The rows, per group when ``gid`` is given; ``figures``: per record bucket, time, algbw, busbw and
    instance key."""
    colls = profile.colls
    bucket, time, alg, bus, instance = figures
    key = _row_keys(gid, colls.op, colls.is_async, bucket)
    order = np.argsort(key, kind="stable")  # an int16 key (one group) is radix sorted
    bounds = list(runs(key[order]))
    del key
    first = order[[a for a, _ in bounds]]
    ops = [profile.ops[int(o)] for o in colls.op[first]]

    def per_row(column: np.ndarray, figure: Callable[[np.ndarray], Any]) -> List[Any]:
        """``figure`` of each row's values: the column gathered once in row order (one pass over 16 M
        records, not a scattered gather per row), each row a slice of it."""
        ordered = column[order]
        return [figure(ordered[a:b]) for a, b in bounds]

    distinct = per_row(instance, count_distinct)
    byte_figures = per_row(colls.bytes, lambda v: (int(v.min()), int(v.max()), int(v.sum())))
    times = per_row(time, lambda v: np.percentile(v, [50, 99]))
    waits = per_row(skew.wait, lambda v: percentile(v, 50))
    algs, buses, devs = (per_row(c, _nanmedian) for c in (alg, bus, colls.dev_ms))
    rows: List[Dict[str, Any]] = []
    for r, (a, b) in enumerate(bounds):
        i = first[r]
        row: Dict[str, Any] = {"group": profile.gids[int(colls.gid[i])]} if gid is not None else {}
        row.update(
            {
                "op": ops[r],
                "async": bool(colls.is_async[i]),
                "bucket": bucket_label(int(bucket[i])),
                "bytes_min": byte_figures[r][0],
                "bytes_max": byte_figures[r][1],
                "records": b - a,
                "calls": int(b - a if ops[r] in P2P_OPS else distinct[r]),
                "bytes_total": byte_figures[r][2],
                "time_p50_s": float(times[r][0]),
                "time_p99_s": float(times[r][1]),
                "wait_p50_s": waits[r],
                "algbw_p50_GBps": algs[r],
                "busbw_p50_GBps": buses[r],
                "dev_ms_p50": devs[r],
            }
        )
        rows.append(row)
    return rows


def bandwidths(profile: Profile, skew: Skew) -> Tuple[np.ndarray, np.ndarray]:
    """Per coll record: algbw and busbw in GB/s (NaN where nothing moved or the time was all wait)."""
    colls = profile.colls
    xfer = colls.t1 - colls.t0 - skew.wait
    with np.errstate(divide="ignore", invalid="ignore"):
        alg = np.where(
            (xfer > 0) & (colls.bytes > 0), colls.bytes / xfer / GB, np.nan
        )  # a barrier moves nothing
    return alg, alg * bus_factors(profile.ops, colls.op, colls.n)


def _row_keys(
    gid: Optional[np.ndarray], op: np.ndarray, is_async: np.ndarray, bucket: np.ndarray
) -> np.ndarray:
    """Per record, its row's key, ordered by (group, op, async, bucket): dense, in the smallest integer
    type that holds it (bucket + 1 is in [0, 64])."""
    key = (op.astype(np.int64) * 2 + is_async) * 65 + (bucket + 1)
    if gid is not None:
        key = gid.astype(np.int64) * (int(op.max()) + 1) * 130 + key
    return key.astype(np.min_scalar_type(int(key.max())))


def _instance_keys(colls: Colls) -> np.ndarray:
    """Per record, an integer naming its (gid, seq): gid × (largest seq + 1) + seq, dense enough for
    :func:`count_distinct`'s table; ``gid << 40 | seq`` where that would not fit."""
    stride = int(colls.seq.max()) + 1
    gid = colls.gid.astype(np.int64)
    if colls.seq.min() < 0 or stride * (int(colls.gid.max()) + 1) >= 1 << 62:
        return (gid << 40) | colls.seq
    return gid * stride + colls.seq


def _nanmedian(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else float("nan")
