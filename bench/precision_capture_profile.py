#!/usr/bin/env python
"""Where an op-level statistics capture spends a train step on a device: Python functions and device calls.

    python bench/precision_capture_profile.py [--device cuda] [--steps 5] [--level op]

The tiny Llama step of ``bench_precision.py`` under ``capture(level=..., mode="stats")``, 3 warm-up steps, then
``--steps`` steps under ``cProfile`` (the 25 functions with the most time of their own) and one step under
``torch.profiler`` (aten calls per step, with and without the capture's; on CUDA the kernels launched and the
host syncs). ``--device cpu --device-path`` runs the accelerator statistics path on CPU tensors (what the
tests simulate), for comparing with a GPU's profile where there is none.
"""

import argparse
import collections
import cProfile
import os
import pstats
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

from bench_precision import build  # noqa: E402

from ascend_tools.precision import capture  # noqa: E402
from ascend_tools.precision import stats as stats_mod  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--level", default="op")
    ap.add_argument("--device-path", action="store_true", help="CPU tensors through the accelerator path")
    args = ap.parse_args()
    if args.device_path:
        stats_mod.reads_free = lambda t: False  # type: ignore[assignment]
    torch.set_num_threads(1)
    model, ids = build(device=args.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()

    def aten_calls() -> collections.Counter:
        with torch.profiler.profile() as prof:
            step()
        return collections.Counter(e.name for e in prof.events() if e.name.startswith(("aten::", "cuda")))

    for _ in range(3):
        step()
    bare = aten_calls()
    with (
        tempfile.TemporaryDirectory() as tmp,
        capture(os.path.join(tmp, "dump"), level=args.level, mode="stats", model=model) as cap,
    ):
        for _ in range(3):
            step()
        n0, t0 = cap.records_written, time.perf_counter()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(args.steps):
            step()
        prof.disable()
        wall = (time.perf_counter() - t0) / args.steps
        records = (cap.records_written - n0) / args.steps
        captured = aten_calls()
    print(f"device {args.device}: {wall * 1000:.1f} ms a step under cProfile, {records:.0f} records a step")
    print(
        f"aten/cuda events a step: bare {sum(bare.values())}, captured {sum(captured.values())}; most added:"
    )
    for name, n in (captured - bare).most_common(15):
        print(f"  {n:7d} {name}")
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
