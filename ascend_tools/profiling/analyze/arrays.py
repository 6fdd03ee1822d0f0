"""Small numpy helpers the analyses share."""

from typing import Iterator, Optional, Tuple

import numpy as np


def runs(sorted_keys: np.ndarray) -> Iterator[Tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in ``sorted_keys``."""
    if not len(sorted_keys):
        return iter(())
    bounds = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1], True])
    return zip(bounds[:-1].tolist(), bounds[1:].tolist())


def percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile`` that gives NaN for no values instead of raising."""
    return float(np.percentile(values, q)) if len(values) else float("nan")


def unique_ints(values: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for integers, through a table of the values present
    instead of a sort when their range is at most a few times their number (seqs: 16 M of them at 8,192
    ranks × 2,000 collectives)."""
    present, lo = _present(values)
    if present is None:
        return np.unique(values, return_inverse=True)
    position = np.cumsum(present) - 1
    return np.flatnonzero(present) + lo, position[values - lo]


def count_distinct(values: np.ndarray) -> int:
    """``len(np.unique(values))`` for integers (through :func:`unique_ints`' table where it applies)."""
    present, _ = _present(values)
    return len(np.unique(values)) if present is None else int(np.count_nonzero(present))


def _present(values: np.ndarray) -> Tuple[Optional[np.ndarray], int]:
    """``(present, lo)``: ``present[v - lo]`` is whether v is among ``values``; None when their range is
    too wide for a table (or there are none)."""
    if not len(values):
        return None, 0
    lo, hi = int(values.min()), int(values.max())
    if hi - lo > 4 * len(values) + (1 << 16):
        return None, lo
    present = np.zeros(hi - lo + 1, bool)
    present[values - lo] = True
    return present, lo
