#!/usr/bin/env python
"""Shadow's checks in the training process against the check process, in one session, under the same noise.

    python bench/shadow_process_ab.py [--rounds 16]

The tiny Llama step of ``bench_precision.py`` (one torch thread). Bare steps first; then one
``shadow(model=model, process=True)`` session whose check process is switched off (``usable`` False: every check
in the training process) and on, two timed steps each, after one untimed step of each switch, for ``--rounds``
rounds; each timed step ends once its checks are made. Prints the medians (ms) and their ratios to the bare median as one JSON object.
"""

import argparse
import json
import os
import statistics
import sys
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=16)
    rounds = ap.parse_args().rounds
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import bench_precision as bench
    import torch

    from ascend_tools.precision import shadow

    torch.set_num_threads(1)
    model, ids = bench.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(session: object = None) -> float:
        """One step in ms; with a shadow ``session``, until its checks are made (as bench_precision.py times it)."""
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if session is not None:
            session._drain()  # type: ignore[attr-defined]
        return (time.perf_counter() - start) * 1000

    for _ in range(3):
        step()
    bare = [step() for _ in range(6)]
    here, there = [], []
    with shadow(model=model, process=True) as sh:
        step()
        step()  # (the check process starts after the first step)
        if sh._process is None or not sh._process.wait_ready():
            raise SystemExit("no check process here")
        usable = sh._process.usable
        for _ in range(rounds):
            sh._process.usable = lambda: False  # type: ignore[method-assign]
            step(sh)
            here += [step(sh), step(sh)]
            sh._process.usable = usable  # type: ignore[method-assign]
            step(sh)
            there += [step(sh), step(sh)]
    b, h, t = statistics.median(bare), statistics.median(here), statistics.median(there)
    print(json.dumps({"bare_ms": b, "in_process_ms": h, "check_process_ms": t, "ratios": [h / b, t / b]}))


if __name__ == "__main__":
    main()
