#!/usr/bin/env python
"""Paired A/B of capture code inside one process: steps alternate between two versions of some functions.

    python bench/precision_ab.py REV MODULE:NAME [MODULE:NAME ...] [--pairs 80]

e.g. ``python bench/precision_ab.py HEAD ascend_tools.precision.stats:_cpu_values``: version A of each named
function or method (``NAME`` or ``Class.method``) is the one in ``REV`` (``git show REV:<its file>``, run in a
namespace of its own), version B the working tree's. One capture (``level="op"``, ``mode="stats"``) of the
tiny Llama of ``bench_precision.py`` (one thread) runs ``--pairs`` pairs of steps (default 80), A then B or B
then A in turn, each step's ``time.process_time``; prints bare's median, A's and B's medians, and the median and
quartiles of the paired differences B - A. Resolution: A-A runs (the same code on both sides) on the shared
VM read -2.1 ms over 20 pairs and -0.5 ms (quartiles -1.6 ... +2.2) over 80 (~1 min): with 80 pairs a median
below ~1 ms a step (~2 % of bare) is noise. It is meant for changes that swap a few functions of the capture,
where rounds in separate processes (``precision_cpu_time.py``) drift by more with the load. A function
imported by name elsewhere (``from .x import f``) is swapped only in its own module: the importer keeps the
working tree's.
"""

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _old_namespace(module: Any, rev: str) -> Dict[str, Any]:
    """``module``'s source at ``rev``, executed in a namespace of its own (its relative imports resolve to
    the working tree's modules)."""
    path = os.path.relpath(module.__file__, ROOT)
    src = subprocess.run(
        ["git", "-C", ROOT, "show", f"{rev}:{path}"], capture_output=True, text=True, check=True
    ).stdout
    ns: Dict[str, Any] = {
        "__name__": module.__name__,
        "__package__": module.__package__,
        "__file__": module.__file__,
    }
    exec(compile(src, module.__file__, "exec"), ns)
    return ns


def _swaps(rev: str, specs: List[str]) -> List[Tuple[Any, str, Any, Any]]:
    """``(owner, name, version A, version B)`` of each ``MODULE:NAME`` or ``MODULE:Class.method``."""
    spaces: Dict[str, Dict[str, Any]] = {}
    out = []
    for spec in specs:
        modname, attr = spec.split(":")
        module = importlib.import_module(modname)
        if modname not in spaces:
            spaces[modname] = _old_namespace(module, rev)
        owner_name, _, name = attr.rpartition(".")
        owner = getattr(module, owner_name) if owner_name else module
        old_owner = spaces[modname][owner_name] if owner_name else None
        old = old_owner.__dict__[name] if old_owner is not None else spaces[modname][name]
        out.append((owner, name, old, owner.__dict__[name] if owner_name else getattr(module, name)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rev")
    parser.add_argument("specs", nargs="+", metavar="MODULE:NAME")
    parser.add_argument("--pairs", type=int, default=80)
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    sys.path.insert(0, ROOT)
    import bench_precision as bench
    import torch

    from ascend_tools.precision import capture

    swaps = _swaps(args.rev, args.specs)

    def use(version: int) -> None:
        for owner, name, *versions in swaps:
            setattr(owner, name, versions[version])

    torch.set_num_threads(1)
    model, ids = bench.build()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        start = time.process_time()
        model(input_ids=ids, labels=ids).loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return (time.process_time() - start) * 1000

    def run(n: int) -> List[float]:
        return [step() for _ in range(n)]

    run(3)
    bare = run(6)
    a: List[float] = []
    b: List[float] = []
    with capture(os.path.join(tempfile.mkdtemp(), "dump"), level="op", mode="stats", model=model):
        run(3)
        for i in range(args.pairs):
            for version in (1, 0) if i % 2 else (0, 1):
                use(version)
                (a if version == 0 else b).append(step())
        use(1)
    bare += run(6)
    base = statistics.median(bare)
    ma, mb = statistics.median(a), statistics.median(b)
    diffs = [y - x for x, y in zip(a, b)]
    q1, med, q3 = statistics.quantiles(diffs, n=4)
    print(
        f"bare {base:.1f} ms | A ({args.rev}) {ma:.1f} ms {ma / base:.3f}x | B (working tree) {mb:.1f} ms "
        f"{mb / base:.3f}x | B - A over {args.pairs} pairs: median {med:+.2f} ms, quartiles {q1:+.2f} {q3:+.2f}"
    )


if __name__ == "__main__":
    main()
