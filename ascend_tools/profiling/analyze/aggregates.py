"""What the always-on windows say (profiling/always_on.py writes them): collectives by op × size bucket,
per-rank compute and lateness, slow windows and the anomaly dumps.

- **Collectives**: count, bytes and time summed over every rank and window; the time quantiles from the
  merged log2 histograms, each the middle of the bin holding the quantile (``q``-th of N: the
  ⌈q·N/100⌉-th smallest), so within a factor 2^(1/16) of the exact order statistic.
- **Lateness**: each rank sums the entry times t0 and exit times t1 of blocks of 64 consecutive
  collectives of a group (an async one enters at its issue and exits at its completion). For a block every member completed, mean t1 is the same instant on every rank
  up to its clock offset; a rank's offset is the median over blocks of (its mean t1 − the members' median
  mean t1). Its lateness in a block = (its mean t0 − offset) − the earliest member's, i.e. how much later
  than the earliest rank it arrived, averaged over the block (≤ the mean of the per-collective lateness,
  equal when the same rank is first at every collective).
- **Compute**: a window's span (first to last record) minus the time in blocking collectives.
"""

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ...report import Report, Table
from ..always_on import DDP_KEYS, DDP_TIMES, bin_value
from .collectives import bucket_label
from .model import Profile


def summarize(profile: Profile) -> Optional[Dict[str, Any]]:
    """The always-on summary of ``profile``, None when no rank wrote windows."""
    windows = {r: info.windows for r, info in profile.ranks.items() if info.windows}
    if not windows:
        return None
    lateness = _lateness(windows)
    dumps = {r: _dumps(profile.ranks[r].path) for r in windows}
    return {
        "collectives": _collectives(windows),
        "ranks": [_rank(r, ws, lateness.get(r)) for r, ws in sorted(windows.items())],
        "dumps": {r: d for r, d in dumps.items() if d},
    }


def _dumps(rank_dir: str) -> List[str]:
    """The anomaly dumps on disk (meta.json lists them too, but not when the rank was killed)."""
    ring = os.path.join(rank_dir, "ring")
    names = sorted(n for n in os.listdir(ring) if n.endswith(".jsonl")) if os.path.isdir(ring) else []
    return [f"ring/{n}" for n in names]


def quantile(hist: Dict[int, int], q: float) -> float:
    """The q-th percentile of the durations in ``hist`` (bin -> count) as its bin's middle."""
    bins = sorted(hist)
    counts = np.cumsum([hist[b] for b in bins])
    k = max(1, int(np.ceil(q / 100 * counts[-1])))
    return bin_value(bins[int(np.searchsorted(counts, k))])


def _collectives(windows: Dict[int, List[Dict[str, Any]]]) -> List[Dict[str, Any]]:
    merged: Dict[Tuple[str, bool, int], Dict[str, Any]] = {}
    for ws in windows.values():
        for w in ws:
            for c in w.get("colls") or []:
                key = (str(c.get("op")), bool(c.get("async")), int(c.get("bucket", -1)))
                row = merged.setdefault(key, {"records": 0, "bytes": 0, "time_s": 0.0, "hist": {}})
                row["records"] += int(c.get("count", 0))
                row["bytes"] += int(c.get("bytes", 0))
                row["time_s"] += float(c.get("time_s", 0.0))
                for b, n in c.get("hist") or []:
                    row["hist"][int(b)] = row["hist"].get(int(b), 0) + int(n)
    rows = []
    for (op, is_async, bucket), row in sorted(merged.items()):
        hist = row["hist"]
        rows.append(
            {
                "op": op,
                "async": is_async,
                "bucket": bucket_label(bucket),
                "records": row["records"],
                "bytes_total": row["bytes"],
                "time_mean_s": row["time_s"] / row["records"] if row["records"] else None,
                "time_p50_s": quantile(hist, 50) if hist else None,
                "time_p99_s": quantile(hist, 99) if hist else None,
            }
        )
    return rows


@dataclass
class Blocks:
    """One group's blocks of 64 seqs that every member completed, members × blocks: the mean arrival
    (clock offsets removed, relative to the block's earliest mean arrival ``start``), and the sums of compute
    gaps and of blocking time; ``count`` collectives per block."""

    members: np.ndarray
    labels: np.ndarray
    count: np.ndarray
    start: np.ndarray
    arrive: np.ndarray
    gap: np.ndarray
    blocking: np.ndarray


def blocks(windows: Dict[int, List[Dict[str, Any]]]) -> Dict[str, Blocks]:
    """The windows' ``arrivals`` summed per (group, block) and rank, lined up across ranks (module doc)."""
    sums: Dict[Tuple[str, int], Dict[int, List[float]]] = {}
    bases = [
        float(w["base"]) for ws in windows.values() for w in ws if isinstance(w.get("base"), (int, float))
    ]
    ref = min(bases, default=0.0)  # one origin for every rank: times stay small, the offsets unchanged
    for rank, ws in windows.items():
        for w in ws:
            shift = float(w.get("base") or 0.0) - ref  # no base (before 2026-12): absolute sums
            for entry in w.get("arrivals") or []:
                try:  # count, Σt0, Σt1 (, Σgap, Σblocking: since 2026-12)
                    gid, block, count, *values = entry[:7]
                    key = (str(gid), int(block))
                    add = [float(count), *(float(v) for v in values)]
                    add[1] += add[0] * shift  # Σ(t0 − base) + count · (base − ref)
                    add[2] += add[0] * shift
                except (TypeError, ValueError, IndexError):
                    continue  # not an entry this version writes
                acc = sums.setdefault(key, {}).setdefault(rank, [0.0] * 5)
                for i, v in enumerate(add):
                    acc[i] += v
    complete: Dict[str, List[Tuple[int, Dict[int, List[float]]]]] = {}
    for (gid, block), by_rank in sums.items():
        counts = {a[0] for a in by_rank.values()}
        if len(by_rank) > 1 and len(counts) == 1:
            complete.setdefault(gid, []).append((block, by_rank))
    deviations: Dict[int, List[float]] = {}
    for found in complete.values():
        for _, by_rank in found:
            t1 = {r: a[2] / a[0] for r, a in by_rank.items()}
            middle = float(np.median(list(t1.values())))
            for r, t in t1.items():
                deviations.setdefault(r, []).append(t - middle)
    offset = {r: float(np.median(d)) for r, d in deviations.items()}
    out = {}
    for gid, found in complete.items():
        members = np.array(sorted({r for _, by_rank in found for r in by_rank}))
        found = sorted((b, x) for b, x in found if len(x) == len(members))
        if not found:
            continue
        grid = np.array([[x[int(r)] for r in members] for _, x in found]).transpose(2, 1, 0)  # 5 × m × n
        count = grid[0, 0]
        arrive = grid[1] / count - np.array([offset[int(r)] for r in members])[:, None]
        out[gid] = Blocks(
            members=members,
            labels=np.array([b for b, _ in found]),
            count=count,
            start=arrive.min(axis=0),
            arrive=arrive - arrive.min(axis=0),
            gap=grid[3],
            blocking=grid[4],
        )
    return out


def _lateness(windows: Dict[int, List[Dict[str, Any]]]) -> Dict[int, Dict[str, float]]:
    """Per rank: mean lateness per collective (s) and the number of blocks it arrived last in."""
    late: Dict[int, List[float]] = {}
    last: Dict[int, int] = {}
    for b in blocks(windows).values():
        for i, r in enumerate(b.members):
            late.setdefault(int(r), []).extend(b.arrive[i].tolist())
        for latest in b.members[np.argmax(b.arrive, axis=0)]:
            last[int(latest)] = last.get(int(latest), 0) + 1
    return {
        r: {"lateness_mean_s": float(np.mean(x)), "blocks": len(x), "last_in_blocks": last.get(r, 0)}
        for r, x in late.items()
    }


def _rank(rank: int, ws: List[Dict[str, Any]], lateness: Optional[Dict[str, float]]) -> Dict[str, Any]:
    steps = [w.get("steps") or {} for w in ws]
    count = sum(int(s.get("count") or 0) for s in steps)
    step_s = sum(float(s.get("time_s") or 0.0) for s in steps)
    spans = [
        w["t1"] - w["t0"] for w in ws if isinstance(w.get("t0"), float) and isinstance(w.get("t1"), float)
    ]
    sync = sum(float(w.get("sync_s") or 0.0) for w in ws)
    peaks: Dict[str, float] = {}
    for w in ws:
        for k, v in (w.get("mem_peak") or {}).items():
            peaks[k] = max(peaks.get(k, v), v)
    ddp = [0.0] * len(DDP_KEYS)
    for d in filter(None, (ddp_entry(w.get("ddp")) for w in ws)):
        for i, key in enumerate(DDP_KEYS):
            ddp[i] += d[key]
    return {
        "rank": rank,
        "windows": len(ws),
        "ddp_iterations": int(ddp[0]),
        **{f"ddp_{n}_mean_s": ddp[i] / ddp[0] if ddp[0] else None for i, n in enumerate(DDP_TIMES, 1)},
        "steps": count,
        "step_mean_s": step_s / count if count else None,
        "compute_s": sum(spans) - sync,
        "sync_s": sync,
        "slow_windows": [w["w"] for w in ws if w.get("slow")],
        "overflow": sum(int(w.get("overflow") or 0) for w in ws),
        "mem_peak": peaks,
        **(lateness or {"lateness_mean_s": None, "blocks": 0, "last_in_blocks": 0}),
    }


def number(x: Any) -> Optional[float]:
    """A finite number ≥ 0 (a window file may come from anywhere), else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x < math.inf:
        return None
    return float(x)


def ddp_entry(d: Any) -> Optional[Dict[str, Any]]:
    """A window's ``ddp`` aggregate with every figure a finite number ≥ 0, else None."""
    if not isinstance(d, dict):
        return None
    out = {key: number(d.get(key)) for key in DDP_KEYS}
    if not out["count"] or any(v is None for v in out.values()):
        return None
    return out


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else round(1e3 * seconds, 3)


def add_section(report: Report, profile: Profile) -> None:
    """Add the always-on section and ``data["always_on"]`` to ``report`` when the profile has windows."""
    summary = summarize(profile)
    if summary is None:
        return
    report.data["always_on"] = summary
    dumps = sum(len(d) for d in summary["dumps"].values())
    sec = report.section(
        "Always-on windows",
        [
            "Aggregates of every collective, step and memory sample, one record per window and rank; the "
            "slow-rank verdict and its charts come from them. The other sections see only the full records "
            "of the anomaly dumps"
            + (f" ({dumps} dump(s), listed below)." if dumps else " (none was dumped)."),
            "time p50/p99: middle of the log2 histogram bin (9% wide) holding the quantile; lateness: mean "
            "delay behind the earliest rank per collective (async ones at their issue), from blocks of 64 "
            "(docs/analyze.md). DDP's gradient all-reduces are timed by DDP itself (no comm hook): per timed "
            "iteration, forward + backward compute (the forward holds DDP's buffer broadcast, where a rank "
            "waits for a late one) and the bucket all-reduces' span, which holds a rank's waiting for the "
            "latest one.",
        ],
    )
    sec.tables.append(
        Table(
            "Collectives",
            ["op", "size", "records", "bytes", "time mean ms", "time p50 ms", "time p99 ms"],
            [
                [
                    r["op"] + (" (async)" if r["async"] else ""),
                    r["bucket"],
                    r["records"],
                    r["bytes_total"],
                    _ms(r["time_mean_s"]),
                    _ms(r["time_p50_s"]),
                    _ms(r["time_p99_s"]),
                ]
                for r in summary["collectives"]
            ],
        )
    )
    sec.tables.append(
        Table(
            "Ranks",
            [
                "rank",
                "windows",
                "steps",
                "step ms",
                "DDP fwd+bwd ms",
                "DDP comm ms",
                "compute s",
                "in collectives s",
                "lateness ms",
                "last in",
                "DDP iterations",
                "slow windows",
            ],
            [
                [
                    r["rank"],
                    r["windows"],
                    r["steps"],
                    _ms(r["step_mean_s"]),
                    _ms(r["ddp_fwd_mean_s"] + r["ddp_bwd_mean_s"]) if r["ddp_iterations"] else None,
                    _ms(r["ddp_comm_mean_s"]),
                    round(r["compute_s"], 3),
                    round(r["sync_s"], 3),
                    _ms(r["lateness_mean_s"]),
                    f"{r['last_in_blocks']}/{r['blocks']}",
                    r["ddp_iterations"],
                    ", ".join(map(str, r["slow_windows"])) or "-",
                ]
                for r in summary["ranks"]
            ],
        )
    )
    if dumps:
        sec.tables.append(
            Table(
                "Anomaly dumps (full records, read into the other sections)",
                ["rank", "file"],
                [[r, os.path.join(f"rank{r}", d)] for r, ds in sorted(summary["dumps"].items()) for d in ds],
            )
        )
