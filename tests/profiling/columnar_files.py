"""Columnar collectives files written by hand over an existing ``events.jsonl``, as the profiler would have
written them had it stopped after line ``end - 1``."""

import json
import os

from ascend_tools.profiling import columnar


def cover(rank_dir: str, end: int, name: str = "colls.0.npz", first: int = 1) -> int:
    """Write ``name`` holding the coll records of lines ``[first, end)`` of ``rank_dir/events.jsonl``; the
    number of records it holds."""
    with open(os.path.join(rank_dir, "events.jsonl"), "rb") as f:
        before = f.read().split(b"\n")[: end - 1]
    lines = before[first - 1 :]
    recs = [json.loads(line) for line in lines if line.startswith(columnar.COLL_PREFIX)]
    gids, ops = columnar.Codes(), columnar.Codes()
    offset = sum(map(len, before)) + len(before)
    with open(os.path.join(rank_dir, name), "wb") as f:
        columnar.write(f, columnar.columns(recs, gids, ops), gids.names, ops.names, (first, end, offset))
    return len(recs)
