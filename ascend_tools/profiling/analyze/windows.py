"""Windows that stand in for steps when a profile has no step marks: repeats of the collective sequence.

A training loop issues the same collectives in the same order every step (DDP: its bucket all-reduces,
then the loss all_reduce; FSDP: an all_gather and a reduce_scatter per layer). Given a group's instances in
seq order, each with a signature (op, bytes, async), the *period* P is the smallest P for which

    signature[k] == signature[k + P]    for every k of one run of consecutive instances

covering at least half the instances and at least two periods. That run, cut into chunks of P instances
from its start, gives the windows; the instances before it (start-up: DDP's initial broadcast) and after
it (a final barrier, an evaluation) belong to no window. With no period (every instance different, or
too few), each instance is a window of its own.
"""

from typing import Tuple

import numpy as np

MAX_CANDIDATES = 256


def signature(op: np.ndarray, nbytes: np.ndarray, is_async: np.ndarray) -> np.ndarray:
    return (op.astype(np.int64) << 50) | (is_async.astype(np.int64) << 49) | (nbytes & ((1 << 49) - 1))


def _longest_run(matches: np.ndarray) -> Tuple[int, int]:
    """``(start, length)`` of the longest run of True."""
    if not matches.any():
        return 0, 0
    edges = np.diff(np.r_[0, matches.astype(np.int8), 0])
    starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    best = int(np.argmax(stops - starts))
    return int(starts[best]), int(stops[best] - starts[best])


def period(sig: np.ndarray) -> Tuple[int, int, int]:
    """``(P, first, stop)``: the period and the instances ``[first, stop)`` it covers; ``(1, 0, n)`` when
    the sequence has none."""
    n = len(sig)
    mid = n // 2
    if n < 4:
        return 1, 0, n
    candidates = (
        np.flatnonzero(sig[mid + 1 :] == sig[mid])[:MAX_CANDIDATES] + 1
    )  # P: sig[mid + P] == sig[mid]
    for p in candidates.tolist():
        if 2 * p > n:
            break
        start, length = _longest_run(sig[:-p] == sig[p:])
        covered = length + p
        if covered >= max(2 * p, n / 2):
            return p, start, start + covered
    return 1, 0, n


def labels(sig: np.ndarray) -> Tuple[np.ndarray, int]:
    """Per instance, its window (−1: outside every window), and the period."""
    p, first, stop = period(sig)
    out = np.full(len(sig), -1, np.int64)
    k = np.arange(first, stop)
    whole = first + (stop - first) // p * p  # a last partial period is no window
    out[first:whole] = (k[: whole - first] - first) // p
    return out, p
