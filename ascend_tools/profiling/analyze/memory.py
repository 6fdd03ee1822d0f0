"""Memory per rank over time, from the ``mem`` samples, and the OOM forensics files.

A rank's samples are reduced as soon as its file is read (:func:`rank_memory`): peaks and last values per
counter, per-step peaks of the primary counter, and a series thinned to :data:`MAX_POINTS` (each kept point
is the maximum of its chunk, so peaks survive). A 1,024-rank job sampled every 0.5 s for hours therefore
costs kilobytes per rank, not the samples.

Counters are named ``dev.<key>`` and ``host.<key>`` after the sample's ``dev``/``host`` dicts; any numeric
value is kept. Fragmentation, where the device reports both, is ``1 − allocated / reserved`` at the sample
with the most reserved memory: the share of the caching allocator's reservation not holding tensors when
the reservation peaked.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

MAX_POINTS = 256
PRIMARY = ("dev.allocated_bytes", "dev.reserved_bytes", "host.rss", "host.uss")
ALLOCATED, RESERVED = "dev.allocated_bytes", "dev.reserved_bytes"
HOST_RSS = "host.rss"


@dataclass
class RankMemory:
    samples: int
    keys: List[str]
    peak: Dict[str, float]
    last: Dict[str, float]
    primary: Optional[str]
    step_peaks: Tuple[np.ndarray, np.ndarray]  # (steps, peak of the primary counter in that step)
    t: np.ndarray  # thinned sample times
    series: Dict[str, np.ndarray] = field(default_factory=dict)  # thinned values per key
    fragmentation: Optional[float] = None

    def shift(self, offset: float) -> None:
        self.t = self.t - offset


def flatten(sample: Dict[str, Any]) -> Dict[str, float]:
    """``{"dev": {"allocated_bytes": 1}, "host": {"rss": 2}}`` → ``{"dev.allocated_bytes": 1.0, "host.rss": 2.0}``."""
    out = {}
    for side in ("dev", "host"):
        values = sample.get(side)
        if isinstance(values, dict):
            for key, value in values.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    out[f"{side}.{key}"] = float(value)
    return out


def rank_memory(
    t: Sequence[float], steps: Sequence[int], values: Sequence[Dict[str, float]]
) -> Optional[RankMemory]:
    """Reduce one rank's samples (times, steps, flattened counters); None without samples."""
    if not len(t):
        return None
    order = np.argsort(np.asarray(t, dtype=float), kind="stable")
    times = np.asarray(t, dtype=float)[order]
    step_arr = np.asarray(steps, dtype=np.int64)[order]
    keys = sorted({k for v in values for k in v})
    cols = {k: np.array([values[i].get(k, np.nan) for i in order], dtype=float) for k in keys}
    peak = {k: float(np.nanmax(c)) for k, c in cols.items() if np.isfinite(c).any()}
    last = {k: float(c[np.isfinite(c)][-1]) for k, c in cols.items() if np.isfinite(c).any()}
    primary = next((k for k in PRIMARY if k in peak), None)
    step_peaks = (np.zeros(0, np.int64), np.zeros(0))
    if primary is not None:
        ok = (step_arr >= 0) & np.isfinite(cols[primary])
        uniq, inv = np.unique(step_arr[ok], return_inverse=True)
        peaks = np.full(len(uniq), -np.inf)
        np.maximum.at(peaks, inv, cols[primary][ok])
        step_peaks = (uniq, peaks)
    frag = None
    if ALLOCATED in peak and RESERVED in peak and peak[RESERVED] > 0:
        i = int(np.nanargmax(cols[RESERVED]))
        frag = (
            float(1.0 - cols[ALLOCATED][i] / cols[RESERVED][i]) if np.isfinite(cols[ALLOCATED][i]) else None
        )
    thin_t, thin = _thin(times, cols)
    return RankMemory(
        samples=len(times),
        keys=keys,
        peak=peak,
        last=last,
        primary=primary,
        step_peaks=step_peaks,
        t=thin_t,
        series=thin,
        fragmentation=frag,
    )


def _thin(t: np.ndarray, cols: Dict[str, np.ndarray]) -> Tuple[np.ndarray, Dict[str, np.ndarray]]:
    """At most MAX_POINTS points: each chunk keeps its first time and its maximum per counter."""
    if len(t) <= MAX_POINTS:
        return t, cols
    starts = np.linspace(0, len(t), MAX_POINTS, endpoint=False).astype(np.int64)
    with np.errstate(invalid="ignore"):
        return t[starts], {k: np.fmax.reduceat(c, starts) for k, c in cols.items()}


def oom_summary(rank: int, doc: Any) -> Dict[str, Any]:
    """The headline of one ``oom.json`` (whatever its exact layout): step, error and numeric top-level
    facts; the file keeps the rest (memory snapshot, allocator config, top blocks)."""
    if not isinstance(doc, dict):
        return {
            "rank": rank,
            "step": None,
            "error": "oom.json is not a JSON object",
            "facts": {},
            "sections": [],
        }
    error = next((doc[k] for k in ("error", "message", "exception") if doc.get(k)), None)
    if isinstance(error, dict):  # ours (profiling/oom.py): {"type", "message", "traceback"}
        message = str(error.get("message") or "").strip().splitlines()
        error = f"{str(error.get('type', '')).rpartition('.')[2]}: {message[0] if message else ''}".strip(
            ": "
        )
    facts = _numbers(doc)
    # ours: what the allocator held and was asked for, one level down
    for key in ("at_oom", "device"):
        facts.update(_numbers(doc.get(key)))
    if isinstance(doc.get("device"), dict):
        facts.update(_numbers(doc["device"].get("memory")))
    facts.pop("step", None)
    return {
        "rank": rank,
        "step": doc.get("step"),
        "error": str(error)[:300] if error is not None else None,
        "facts": facts,
        "sections": sorted(k for k, v in doc.items() if isinstance(v, (dict, list))),
    }


def _numbers(doc: Any) -> Dict[str, Any]:
    """The numeric (not bool) top-level values of a JSON object."""
    if not isinstance(doc, dict):
        return {}
    return {k: v for k, v in doc.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def summarize(memories: Dict[int, Optional[RankMemory]], ooms: Dict[int, Any]) -> Dict[str, Any]:
    """The ``memory`` payload: one row per rank (samples, peaks, the step of its peak), the peak of each step
    over all ranks (and which rank held it), and the OOMs."""
    rows: List[Dict[str, Any]] = []
    all_steps, all_peaks, all_ranks = [], [], []
    for rank in sorted(memories):
        mem = memories[rank]
        if mem is None:
            continue
        steps, peaks = mem.step_peaks
        worst = int(np.argmax(peaks)) if len(peaks) else None
        rows.append(
            {
                "rank": rank,
                "samples": mem.samples,
                "primary": mem.primary,
                "peak": mem.peak,
                "last": mem.last,
                "fragmentation": mem.fragmentation,
                "peak_step": int(steps[worst]) if worst is not None else None,
            }
        )
        all_steps.append(steps)
        all_peaks.append(peaks)
        all_ranks.append(np.full(len(steps), rank))
    primaries = [r["primary"] for r in rows if r["primary"]]
    primary = max(sorted(set(primaries)), key=primaries.count) if primaries else None
    return {
        "primary": primary,
        "ranks": rows,
        "steps": _step_maxima(all_steps, all_peaks, all_ranks),
        "ooms": [oom_summary(r, d) for r, d in sorted(ooms.items())],
    }


def _step_maxima(
    steps: List[np.ndarray], peaks: List[np.ndarray], ranks: List[np.ndarray]
) -> List[Dict[str, Any]]:
    if not steps:
        return []
    s, p, r = np.concatenate(steps), np.concatenate(peaks), np.concatenate(ranks)
    order = np.lexsort((-p, s))  # by step, highest peak first
    s, p, r = s[order], p[order], r[order]
    first = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    return [{"step": int(s[i]), "peak": float(p[i]), "rank": int(r[i])} for i in first]


def gib(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(f"{value / 2**30:.4g}")


def peak_columns(rows: List[Dict[str, Any]], primary: Optional[str]) -> Tuple[List[str], List[List[Any]]]:
    """The memory table (headers, cells) of :func:`summarize`'s rank ``rows``: peaks in GiB, host RSS
    beside the primary counter unless it is the primary counter, and no column empty in every row
    (fragmentation needs a device's allocated and reserved bytes: none on a CPU run)."""
    spec: List[Tuple[str, Callable[[Dict[str, Any]], Any]]] = [
        ("rank", lambda r: r["rank"]),
        ("samples", lambda r: r["samples"]),
        (f"peak {primary} GiB", lambda r: gib(r["peak"].get(primary))),
        ("peak step", lambda r: r["peak_step"]),
    ]
    if primary != HOST_RSS:
        spec.append((f"peak {HOST_RSS} GiB", lambda r: gib(r["peak"].get(HOST_RSS))))
    spec.append(
        ("fragmentation", lambda r: None if r["fragmentation"] is None else round(r["fragmentation"], 3))
    )
    cells = [[get(r) for _, get in spec] for r in rows]
    kept = [i for i in range(len(spec)) if any(row[i] is not None for row in cells)]
    return [spec[i][0] for i in kept], [[row[i] for i in kept] for row in cells]
