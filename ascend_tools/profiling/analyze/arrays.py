"""Small numpy helpers the analyses share."""

from typing import Iterator, Tuple

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
