"""Time of ``precision.align.align`` on long op streams (docs/precision.md, "Alignment").

A synthetic step shaped like a transformer's: ``LAYERS`` layers of the same op sequence, module paths
carrying the layer number, forward then backward. Three cases on 100k-op streams: identical streams, one
extra op in the target (dropout left on in layer 0), and an extra op in every layer; each pairs every
reference record (checked) and the time is the best of 3 runs.

    python bench/bench_align.py
"""

import time

from ascend_tools.precision.align import align
from ascend_tools.precision.records import Record, TensorInfo

OPS = ["mm", "add", "mul", "pow", "mean", "rsqrt", "mul", "mm", "_softmax", "bmm", "silu", "mul", "mm", "add"]
LAYERS = 100_000 // (2 * len(OPS) * 5) + 1


def stream(extra_in_layers=()):
    recs = []
    calls = {}
    for phase in ("forward", "backward"):
        for layer in range(LAYERS):
            for sub in ("attn", "mlp", "norm1", "norm2", "proj"):
                names = list(OPS)
                if sub == "attn" and layer in extra_in_layers:
                    names.insert(9, "native_dropout")
                for op in names:
                    name = f"aten::{op}"
                    call = calls.get((name, phase), 0)
                    calls[(name, phase)] = call + 1
                    out = [TensorInfo("bfloat16", [2, 16, 64])]
                    recs.append(
                        Record(len(recs), name, "op", phase, call, f"model.layers.{layer}.{sub}", [], out)
                    )
    return recs


def best_of(f, n=3):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - start)
    return min(times), result


def main():
    ref = stream()
    for label, target in (
        ("identical", stream()),
        ("one extra op", stream({0})),
        ("an extra op per layer", stream(set(range(LAYERS)))),
    ):
        seconds, pairs = best_of(lambda target=target: align(target, ref))
        matched = sum(1 for p in pairs if p.target is not None and p.reference is not None)
        only_t = sum(1 for p in pairs if p.reference is None)
        assert matched == len(ref), (label, matched, len(ref))
        print(
            f"{label:24s} {len(target):7d} target / {len(ref):7d} ref ops: {seconds:6.2f} s, {only_t} target-only"
        )


if __name__ == "__main__":
    main()
