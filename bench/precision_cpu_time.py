#!/usr/bin/env python
"""CPU time per train step of op-level statistics, for before/after comparisons on a busy machine.

    python bench/precision_cpu_time.py [ROOT]

ROOT is a checkout (default: this one); run it on two checkouts in turn (``git archive REV ascend_tools bench
| tar -x -C DIR``), a few rounds each. In one process: the tiny Llama of ``bench_precision.py``, one thread,
``bare`` steps, ``stats-floor`` steps (its dispatch mode), ``ours-op`` steps (``capture(level="op",
mode="stats")``), ``bare`` again; each the median of 10 steps after 3, in ``time.process_time`` (every thread
of the process, the capture's writer included). Prints one JSON object: the medians in ms and each one's
ratio to the mean of the two bare medians. Wall time is what ``bench_precision.py`` measures; when other
tenants hold the CPUs (``/proc/pressure/cpu`` near 100 %), wall-time medians move several-fold between
rounds and the CPU time is what the step itself costs.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict


def main() -> None:
    root = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(__file__))
    sys.path.insert(0, os.path.join(root, "bench"))
    sys.path.insert(0, root)
    import bench_precision as bench
    import torch

    from ascend_tools.precision import capture

    torch.set_num_threads(1)
    model, ids = bench.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def timed(run: Callable[[], None], steps: int = 10, warmup: int = 3) -> float:
        times = []
        for _ in range(warmup + steps):
            start = time.process_time()
            run()
            times.append(time.process_time() - start)
        return statistics.median(times[warmup:]) * 1000

    out: Dict[str, float] = {"bare": timed(step)}
    with bench._stats_floor_mode():
        out["stats-floor"] = timed(step)
    with capture(os.path.join(tempfile.mkdtemp(), "dump"), level="op", mode="stats", model=model):
        out["ours-op"] = timed(step)
    out["bare-after"] = timed(step)
    bare = (out["bare"] + out["bare-after"]) / 2
    print(json.dumps({"root": root, "ms": out, "ratio": {k: v / bare for k, v in out.items()}}))


if __name__ == "__main__":
    main()
