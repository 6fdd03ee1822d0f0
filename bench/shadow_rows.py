#!/usr/bin/env python
"""What shadow's row sampling (``shadow_rows.py``) buys on a matrix product of a real model's size.

    python bench/shadow_rows.py [--size 2048] [--rounds 2]

One step (forward and backward) of a ``size`` x ``size`` projection on ``size`` tokens, float32, one thread: its
GEMMs are what a 7B model's attention projection is at ``--size 4096``. Timed bare, under ``shadow(rows=32)`` (the
default) and under ``shadow(rows=0)`` (every row, as before the sampling), interleaved over ``--rounds``; each the
wall time of one step including its checks (the worker drained). Prints the times and the ratios to bare. At
``--size 4096`` the two matrix products' inputs (33.5M elements) are over the default ``max_numel``: ``rows=32``
checks them on a 32 x 32 block (``shadow_blocks.py``), ``rows=0`` skips them.
"""

import argparse
import statistics
import time
from typing import Dict, List


def step_seconds(size: int, rows: int) -> float:
    """One step's wall time, its checks included; ``rows`` < 0: bare."""
    import torch

    from ascend_tools.precision import shadow

    torch.manual_seed(0)
    layer = torch.nn.Linear(size, size, bias=False)
    x = torch.randn(size, size)
    layer(x).square().mean().backward()  # warm-up, bare
    with shadow(rows=1):  # and the shadow's first start (its imports: ~1.5 s)
        torch.ones(2, 2).add(1)
    start = time.perf_counter()
    if rows < 0:
        layer(x).square().mean().backward()
    else:
        with shadow(rows=rows) as sh:
            layer(x).square().mean().backward()
            sh._worker.drain()
    return time.perf_counter() - start


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    kinds = {"bare": -1, "shadow rows=32": 32, "shadow rows=0 (every row)": 0}
    times: Dict[str, List[float]] = {k: [] for k in kinds}
    for _ in range(args.rounds):
        for kind, rows in kinds.items():
            times[kind].append(step_seconds(args.size, rows))
    bare = statistics.median(times["bare"])
    print(f"one step of a {args.size}x{args.size} projection on {args.size} tokens, float32, 1 thread")
    print(f"{'':28s} {'median s':>9s} {'vs bare':>8s}")
    for kind, ts in times.items():
        print(f"{kind:28s} {statistics.median(ts):9.3f} {statistics.median(ts) / bare:7.1f}x")


if __name__ == "__main__":
    main()
