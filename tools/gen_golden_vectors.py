"""Generate ascend_tools/ops/golden/<op>_<case>.npz: the fp64 reference's inputs, outputs and input gradients.

For each op module in ascend_tools/ops (rms_norm, rope, attention, swiglu, linear_cross_entropy) that defines ``golden_cases()`` (a list
of ``(name, kwargs)`` with fp64 tensors and plain values), runs the op's ``reference`` tier in float64
with a seeded upstream gradient and writes one .npz per case (``np.savez``, no pickle; see
``ascend_tools.ops.registry.golden_to_arrays`` for the keys) into the package, which ships them. Every
tier is checked against these files (tests/ops, ``ascend-doctor selfcheck``).

    python tools/gen_golden_vectors.py [--out DIR] [--ops rms_norm,rope] [--check]

``--check`` regenerates in memory and compares with the files (inputs and parameters exactly, outputs and
gradients to 1e-12): exit 1 and a list of what is stale or missing.
"""

import argparse
import importlib
import os
import sys
from typing import Any, Dict, List, Tuple

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ascend_tools.ops import registry  # noqa: E402

OPS = ("rms_norm", "rope", "attention", "swiglu", "linear_cross_entropy")
MAX_BYTES_PER_OP = 200_000


def op_modules(ops: Tuple[str, ...] = OPS) -> List[Tuple[str, Any]]:
    """(op name, module) for each op module that exists and has ``golden_cases``."""
    found = []
    for op in ops:
        try:
            module = importlib.import_module(f"ascend_tools.ops.{op}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ascend_tools.ops.{op}":
                continue
            raise
        if callable(getattr(module, "golden_cases", None)):
            found.append((op, module))
    return found


def generate(ops: Tuple[str, ...] = OPS) -> Dict[str, Dict[str, np.ndarray]]:
    """file name -> arrays, for every golden case of every op."""
    files: Dict[str, Dict[str, np.ndarray]] = {}
    for op, module in op_modules(ops):
        for name, kwargs in module.golden_cases():
            case = registry.make_golden(op, name, kwargs)
            files[f"{op}_{name}.npz"] = registry.golden_to_arrays(case)
    return files


def _same(key: str, a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if key.startswith(("input.", "param.", "grad_output.")) or not np.issubdtype(a.dtype, np.floating):
        return bool(np.array_equal(a, b))
    return bool(np.allclose(a, b, rtol=1e-12, atol=1e-12))


def stale(files: Dict[str, Dict[str, np.ndarray]], out: str, ops: Tuple[str, ...]) -> List[str]:
    """What differs between ``files`` and the directory ``out``: one line per file."""
    problems = []
    for fname, arrays in sorted(files.items()):
        path = os.path.join(out, fname)
        if not os.path.exists(path):
            problems.append(f"{fname}: missing")
            continue
        with np.load(path, allow_pickle=False) as stored:
            keys = set(stored.files)
            if keys != set(arrays):
                problems.append(f"{fname}: keys differ ({', '.join(sorted(keys ^ set(arrays)))})")
                continue
            bad = [k for k in sorted(arrays) if not _same(k, arrays[k], stored[k])]
            if bad:
                problems.append(f"{fname}: differs in {', '.join(bad)}")
    if os.path.isdir(out):
        modules = {op for op, _ in op_modules(ops)}
        for fname in sorted(os.listdir(out)):
            op = next((o for o in modules if fname.startswith(o + "_")), None)
            if op and fname.endswith(".npz") and fname not in files:
                problems.append(f"{fname}: no longer generated")
    return problems


def main(argv: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(registry.golden_dir()), help="directory of the .npz files")
    parser.add_argument("--ops", default=",".join(OPS), help="comma-separated op modules")
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    args = parser.parse_args(argv)
    ops = tuple(o.strip() for o in args.ops.split(",") if o.strip())
    files = generate(ops)
    if args.check:
        problems = stale(files, args.out, ops)
        for line in problems:
            print(f"stale: {line}")
        if problems:
            print("run: python tools/gen_golden_vectors.py", file=sys.stderr)
            return 1
        print(f"{len(files)} golden files up to date in {args.out}")
        return 0
    os.makedirs(args.out, exist_ok=True)
    sizes: Dict[str, int] = {}
    for fname, arrays in sorted(files.items()):
        path = os.path.join(args.out, fname)
        np.savez(path, **arrays)
        op = next(o for o in ops if fname.startswith(o + "_"))
        sizes[op] = sizes.get(op, 0) + os.path.getsize(path)
        print(f"wrote {path}")
    for op, size in sorted(sizes.items()):
        if size > MAX_BYTES_PER_OP:
            print(
                f"warning: {op} golden files take {size} bytes (> {MAX_BYTES_PER_OP}): use smaller cases",
                file=sys.stderr,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
