#!/usr/bin/env python
"""Memory and time of the SwiGLU and fused linear cross-entropy patches (issue 16), CPU, in one run.

    python bench/bench_fused_memory.py [--repeat 2] [--tokens 4096] [--json]

**Train step.** A Qwen2-style model with Qwen2's 151,936-token vocabulary, kept small elsewhere so that a
step fits a 2-core CPU (2 layers, hidden 256, intermediate 1,024, 4 heads, 2 kv heads, untied head),
batch 1 x ``--tokens`` tokens, fp32, one AdamW step (forward, LM loss, backward, ``optimizer.step()``).
Variants, each a fresh subprocess of this script, interleaved over ``--repeat`` rounds:

* ``unpatched``: ``ASCEND_TOOLS_PATCH=0``, HF as it is;
* ``patched``: ``ASCEND_TOOLS_PATCH_OPS=swiglu,linear_cross_entropy`` (the two memory ops; the tier the
  registry picks here: the reference).

The figure is the **peak RSS increase** over the second step (the first allocates AdamW's state), read as
``VmHWM`` after resetting it (``benchlib.PeakRSS``): activations, logits, gradients and temporaries. The
step time is the median of the timed steps; the loss of both variants is printed (they must agree).

**MLP alone.** ``Qwen2MLP`` (hidden 1,024, intermediate 4,096) forward + backward on ``--tokens`` tokens, the
same two variants, the same peak-RSS measurement.

Targets (issue 16): train-step peak patched / unpatched <= 0.5; step time unpatched / patched >= 0.95.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence

from benchlib import PeakRSS, machine, table, targets_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.abspath(__file__)
VARIANTS = {
    "unpatched": {"ASCEND_TOOLS_PATCH": "0"},
    "patched": {"ASCEND_TOOLS_PATCH": "1", "ASCEND_TOOLS_PATCH_OPS": "swiglu,linear_cross_entropy"},
}
VOCAB = 151_936


def worker(kind: str, tokens: int, steps: int) -> Dict[str, Any]:
    import torch

    if os.environ.get("ASCEND_TOOLS_PATCH") == "1":
        import ascend_tools.patch  # noqa: F401  (patches on import)
    import transformers

    torch.manual_seed(0)
    ids = torch.randint(0, VOCAB, (1, tokens), generator=torch.Generator().manual_seed(1))
    if kind == "step":
        cfg = transformers.Qwen2Config(
            vocab_size=VOCAB,
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=tokens,
            tie_word_embeddings=False,
        )
        model = transformers.Qwen2ForCausalLM(cfg).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def one() -> float:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)

    else:
        from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

        mlp = Qwen2MLP(transformers.Qwen2Config(hidden_size=1024, intermediate_size=4096))
        x = torch.randn(tokens, 1024, generator=torch.Generator().manual_seed(2), requires_grad=True)

        def one() -> float:
            out = mlp(x)
            out.sum().backward()
            x.grad = None
            mlp.zero_grad(set_to_none=True)
            return float(out.detach().double().sum())

    first = one()  # allocates AdamW's state; untimed
    with PeakRSS() as peak:
        value = one()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        one()
        times.append(time.perf_counter() - start)
    return {
        "peak_mb": peak.delta / 2**20,
        "how": peak.how,
        "ms": 1000 * statistics.median(times),
        "value": value,
        "first": first,
    }


def run_worker(variant: str, kind: str, tokens: int, steps: int) -> Dict[str, Any]:
    env = dict(
        os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **VARIANTS[variant]
    )
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    with tempfile.TemporaryDirectory(prefix="bench-fused-") as tmp:
        out = os.path.join(tmp, "r.json")
        args = [
            sys.executable,
            SCRIPT,
            "--worker",
            kind,
            "--tokens",
            str(tokens),
            "--steps",
            str(steps),
            "--result",
            out,
        ]
        proc = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"{variant} {kind} worker failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        with open(out, encoding="utf-8") as f:
            return dict(json.load(f))


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per worker after the measured one")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        with open(args.result, "w", encoding="utf-8") as f:
            json.dump(worker(args.worker, args.tokens, args.steps), f)
        return 0
    runs: Dict[str, Dict[str, List[Dict[str, Any]]]] = {k: {v: [] for v in VARIANTS} for k in ("step", "mlp")}
    for rnd in range(args.repeat):
        for kind in runs:
            order = list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                print(f"round {rnd + 1}: {kind} {variant}", file=sys.stderr, flush=True)
                runs[kind][variant].append(run_worker(variant, kind, args.tokens, args.steps))
    summary: Dict[str, Dict[str, Dict[str, float]]] = {}
    for kind, by_variant in runs.items():
        summary[kind] = {
            v: {
                "peak_mb": statistics.median(r["peak_mb"] for r in rs),
                "ms": statistics.median(r["ms"] for r in rs),
                "value": rs[0]["value"],
            }
            for v, rs in by_variant.items()
        }
    step, _mlp = summary["step"], summary["mlp"]
    mem_ratio = step["patched"]["peak_mb"] / step["unpatched"]["peak_mb"]
    speed = step["unpatched"]["ms"] / step["patched"]["ms"]
    result = {
        "machine": machine(tokens=args.tokens, vocab=VOCAB, repeat=args.repeat),
        "summary": summary,
        "how": runs["step"]["patched"][0]["how"],
        "targets": [
            {
                "target": "train-step peak RSS patched/unpatched <= 0.5",
                "value": round(mem_ratio, 3),
                "unit": "x",
                "pass": mem_ratio <= 0.5,
                "why": "",
            },
            {
                "target": "step speed unpatched/patched >= 0.95",
                "value": round(speed, 3),
                "unit": "x",
                "pass": speed >= 0.95,
                "why": "",
            },
        ],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    rows = []
    for kind, label in (
        ("step", "train step (Qwen2-style, vocab 151,936)"),
        ("mlp", "Qwen2MLP alone (1024 -> 4096)"),
    ):
        u, p = summary[kind]["unpatched"], summary[kind]["patched"]
        rows.append(
            [
                label,
                f"{u['peak_mb']:.0f}",
                f"{p['peak_mb']:.0f}",
                f"{p['peak_mb'] / u['peak_mb']:.2f}",
                f"{u['ms']:.0f}",
                f"{p['ms']:.0f}",
                f"{u['ms'] / p['ms']:.2f}",
            ]
        )
    print(
        f"{args.tokens} tokens, fp32, CPU, medians of {args.repeat} rounds; peak = {result['how']} increase over one step"
    )
    print(table(["what", "unpatched MB", "patched MB", "ratio", "unpatched ms", "patched ms", "speed"], rows))
    print(f"loss unpatched {step['unpatched']['value']:.6f}, patched {step['patched']['value']:.6f}")
    print()
    print(targets_table(result["targets"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
