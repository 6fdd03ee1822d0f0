#!/usr/bin/env python
"""Where the CPU time of an op-level statistics capture goes, per record, on the bench's tiny Llama.

    python bench/precision_record_cost.py [--rounds 3]

One process, one thread, the model and train step of ``bench_precision.py``. Each variant is timed as the median
of 10 steps after 3, in ``time.process_time``; the variants are interleaved over ``--rounds`` rounds and the
median over rounds is printed:

* ``bare``: nothing recorded; ``empty-mode``: a dispatch mode that only calls the op;
* ``ours-op``: ``capture(level="op", mode="stats")`` as a user runs it;
* then parts of it taken away in turn, each variant keeping the previous ones' cuts: ``stack=False`` (the
  Python stack of each record); the statistics (``stats.cpu_body`` returns a fixed fragment: no pass of the
  compiled ``_moments.c``, nor torch's aminmax, sum, dot and item where it is not built); the encoding and writing of each record (``RecordWriter.add`` drops the record); the per-tensor
  entries (``Capture._tensor`` returns a bare ``TensorEntry``: no place, lookup, statistics fragment).

Each variant's cost per record is (its step − the next variant's step) / records a step: what that part
costs. What is left under ``rest`` is the op's record without any of them (module path, phase, call
index, arguments without tensors, the record tuple) and the capture's dispatch mode above ``empty-mode``.
The stubs only measure: none of them is a way to run the capture.
"""

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (name, what the cut removes) in the order the cuts accumulate
CUTS = (
    ("ours-op", "stack walk"),
    ("no stack", "statistics (_moments.c's pass, or torch's reductions)"),
    ("no statistics", "encoding and writing the record"),
    ("no encoding", "per-tensor entries (place, lookup, fragment)"),
    ("no entries", "rest (record skeleton, mode above empty-mode)"),
)


def _fixed_body(t: Any) -> Any:
    return ',"stats":{"max":1.0,"min":0.0,"mean":1.0,"norm":1.0}}'


def _drop(self: Any, rec: tuple, step: int) -> None:
    return None


def _bare_entry(self: Any, t: Any, rid: int, slot: str, index: int) -> Any:
    return _ENTRY[0]("float32", t.shape, body="}")


_ENTRY: List[
    Any
] = []  # TensorEntry, set by _patched (no import statement inside the stub: it costs ~1 µs a call)


@contextlib.contextmanager
def _patched(cuts: int) -> Any:
    """The first ``cuts`` stubs of the variants after ``no stack`` in place."""
    from ascend_tools.precision import capture_session, record_writer
    from ascend_tools.precision.tensor_entry import TensorEntry

    _ENTRY[:] = [TensorEntry]
    saved = (capture_session.cpu_body, record_writer.RecordWriter.add, capture_session.Capture._tensor)
    try:
        if cuts >= 1:
            capture_session.cpu_body = _fixed_body  # type: ignore[assignment]
        if cuts >= 2:
            record_writer.RecordWriter.add = _drop  # type: ignore[method-assign]
        if cuts >= 3:
            capture_session.Capture._tensor = _bare_entry  # type: ignore[method-assign]
        yield
    finally:
        capture_session.cpu_body, record_writer.RecordWriter.add, capture_session.Capture._tensor = saved  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    sys.path.insert(0, ROOT)
    import bench_precision as bench
    import torch

    from ascend_tools.precision import capture

    torch.set_num_threads(1)
    model, ids = bench.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    tmp = tempfile.mkdtemp()

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def timed(make: Callable[[], Any], steps: int = 10, warmup: int = 3) -> Tuple[float, int]:
        times: List[float] = []
        with make() as tool:
            for _ in range(warmup + steps):
                start = time.process_time()
                step()
                times.append(time.process_time() - start)
        records = getattr(tool, "records_written", 0) // (warmup + steps) if tool is not None else 0
        return statistics.median(times[warmup:]) * 1000, records

    def ours(stack: bool = True) -> Any:
        return capture(
            os.path.join(tempfile.mkdtemp(dir=tmp), "d"), level="op", mode="stats", model=model, stack=stack
        )

    variants: List[Tuple[str, Callable[[], Any], int]] = [
        ("bare", contextlib.nullcontext, 0),
        ("empty-mode", bench._empty_mode, 0),
        ("ours-op", ours, 0),
        ("no stack", lambda: ours(stack=False), 0),
        ("no statistics", lambda: ours(stack=False), 1),
        ("no encoding", lambda: ours(stack=False), 2),
        ("no entries", lambda: ours(stack=False), 3),
    ]
    ms: Dict[str, List[float]] = {name: [] for name, _, _ in variants}
    records = 0
    for _ in range(args.rounds):
        for name, make, cuts in variants:
            with _patched(cuts):
                t, n = timed(make)
            ms[name].append(t)
            if name == "ours-op":
                records = n
    med = {name: statistics.median(v) for name, v in ms.items()}
    print(f"tiny Llama train step, CPU, 1 thread; CPU time per step, median of {args.rounds} rounds")
    print(f"{'variant':14s} {'ms/step':>8s} {'vs bare':>8s}")
    for name, _, _ in variants:
        print(f"{name:14s} {med[name]:8.1f} {med[name] / med['bare']:7.2f}x")
    print(f"\nrecords a step: {records}; cost per record of each part (difference to the next variant):")
    chain = [name for name, _ in CUTS] + ["empty-mode"]
    for (name, what), nxt in zip(CUTS, chain[1:]):
        print(f"  {what:48s} {(med[name] - med[nxt]) / max(records, 1) * 1000:6.1f} us")
    print(
        f"  {'ours-op above empty-mode, all of it':48s} {(med['ours-op'] - med['empty-mode']) / max(records, 1) * 1000:6.1f} us"
    )


if __name__ == "__main__":
    main()
