#!/usr/bin/env python
"""Memory and time of the SwiGLU and fused linear cross-entropy patches (issue 16), CPU, in one run.

    python bench/bench_fused_memory.py [--rounds 5] [--tokens 4096] [--json]

**Train step.** A Qwen2-style model with Qwen2's 151,936-token vocabulary, kept small elsewhere so that a
step fits a 2-core CPU (2 layers, hidden 256, intermediate 1,024, 4 heads, 2 kv heads, untied head),
batch 1 x ``--tokens`` tokens, fp32, one AdamW step (forward, LM loss, backward, ``optimizer.step()``).
Variants:

* ``unpatched``: HF as it is;
* ``patched``: the two memory ops, swiglu and linear_cross_entropy, on the Qwen2 classes (the tier the
  registry picks here: the reference).

**Memory**: each variant in a fresh subprocess of this script (``ASCEND_TOOLS_PATCH=0`` /
``ASCEND_TOOLS_PATCH_OPS=swiglu,linear_cross_entropy``); the figure is the **peak RSS increase** over the
second step (the first allocates AdamW's state), read as ``VmHWM`` after resetting it
(``benchlib.PeakRSS``): activations, logits, gradients and temporaries. The loss of both variants is
printed (they must agree).

**Time**, robust to a shared, loaded machine: one subprocess per workload with ``torch.set_num_threads``
fixed (``--threads``, default 2), one model, the patch switched on and off between steps
(``hf.patch_family`` / ``hf.revert``: class attributes, no rebuild); after one warm-up step of each, for
``--rounds`` rounds one unpatched and one patched step back to back, in alternating order. The speed of
a round is ``unpatched ms / patched ms`` of its two steps (both see the same load); the figure is the
median over rounds, with the min and max. CPU pressure (Linux PSI: time some task waited for a core)
during the timed rounds is printed as a share of wall time (0: idle machine).

**MLP alone.** ``Qwen2MLP`` (hidden 1,024, intermediate 4,096) forward + backward on ``--tokens`` tokens, the
same two variants, the same measurements.

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
from typing import Any, Callable, Dict, List, Optional, Sequence

from benchlib import PeakRSS, cpu_pressure_us, machine, table, targets_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.abspath(__file__)
VARIANTS = {
    "unpatched": {"ASCEND_TOOLS_PATCH": "0"},
    "patched": {"ASCEND_TOOLS_PATCH": "1", "ASCEND_TOOLS_PATCH_OPS": "swiglu,linear_cross_entropy"},
}
VOCAB = 151_936
KINDS = ("step", "mlp")


def make_step(kind: str, tokens: int) -> Callable[[], float]:
    """One train step (``kind`` "step") or MLP forward + backward ("mlp"), as a function returning a value
    that both variants must agree on (the loss; the output's sum)."""
    import torch
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

        def step() -> float:
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)

        return step

    from transformers.models.qwen2.modeling_qwen2 import Qwen2MLP

    mlp = Qwen2MLP(transformers.Qwen2Config(hidden_size=1024, intermediate_size=4096))
    x = torch.randn(tokens, 1024, generator=torch.Generator().manual_seed(2), requires_grad=True)

    def mlp_step() -> float:
        out = mlp(x)
        out.sum().backward()
        x.grad = None
        mlp.zero_grad(set_to_none=True)
        return float(out.detach().double().sum())

    return mlp_step


def memory_worker(kind: str, tokens: int) -> Dict[str, Any]:
    """Peak RSS increase of one step (the second) in this process, patched or not by the environment."""
    if os.environ.get("ASCEND_TOOLS_PATCH") == "1":
        import ascend_tools.patch  # noqa: F401  (patches on import)
    one = make_step(kind, tokens)
    first = one()  # allocates AdamW's state
    with PeakRSS() as peak:
        value = one()
    return {"peak_mb": peak.delta / 2**20, "how": peak.how, "value": value, "first": first}


def timing_worker(kind: str, tokens: int, rounds: int, threads: int) -> Dict[str, Any]:
    """Per round, one unpatched and one patched step back to back (alternating order) on one model."""
    import torch

    from ascend_tools import patch
    from ascend_tools.patch import hf

    torch.set_num_threads(threads)
    one = make_step(kind, tokens)

    def timed(variant: str) -> float:
        if variant == "patched":
            hf.patch_family("qwen2", rms_norm=False, rope=False, attention=False)
        else:
            patch.revert()
        start = time.perf_counter()
        one()
        return 1000 * (time.perf_counter() - start)

    for variant in VARIANTS:  # warm-up: AdamW's state, first-call costs (self-checks, allocator)
        timed(variant)
    ms: Dict[str, List[float]] = {v: [] for v in VARIANTS}
    pressure, wall = cpu_pressure_us(), time.perf_counter()
    for rnd in range(rounds):
        for variant in list(VARIANTS) if rnd % 2 == 0 else list(reversed(VARIANTS)):
            ms[variant].append(timed(variant))
    wall_us = 1e6 * (time.perf_counter() - wall)
    after = cpu_pressure_us()
    patch.revert()
    return {
        "ms": ms,
        "cpu_pressure": None if pressure is None or after is None else (after - pressure) / wall_us,
        "threads": torch.get_num_threads(),
    }


def run_worker(env_extra: Dict[str, str], worker: str, kind: str, args: argparse.Namespace) -> Dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **env_extra)
    env["OMP_NUM_THREADS"] = str(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-fused-") as tmp:
        out = os.path.join(tmp, "r.json")
        cmd = [sys.executable, SCRIPT, "--worker", worker, "--kind", kind, "--result", out]
        cmd += ["--tokens", str(args.tokens), "--rounds", str(args.rounds), "--threads", str(args.threads)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not os.path.exists(out):
            raise RuntimeError(f"{worker} {kind} worker failed:\n" + (proc.stdout + proc.stderr)[-3000:])
        with open(out, encoding="utf-8") as f:
            return dict(json.load(f))


def speeds(ms: Dict[str, List[float]]) -> List[float]:
    """Per round, unpatched / patched time of its two back-to-back steps."""
    return [u / p for u, p in zip(ms["unpatched"], ms["patched"])]


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds (median ratio)")
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads / OMP_NUM_THREADS")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", choices=("memory", "timing"), help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=KINDS, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker == "memory":
            out = memory_worker(args.kind, args.tokens)
        else:
            out = timing_worker(args.kind, args.tokens, args.rounds, args.threads)
        with open(args.result, "w", encoding="utf-8") as f:
            json.dump(out, f)
        return 0
    summary: Dict[str, Dict[str, Any]] = {}
    for kind in KINDS:
        memory = {}
        for variant, env in VARIANTS.items():
            print(f"{kind}: memory, {variant}", file=sys.stderr, flush=True)
            memory[variant] = run_worker(env, "memory", kind, args)
        print(f"{kind}: timing, {args.rounds} interleaved rounds", file=sys.stderr, flush=True)
        timing = run_worker({"ASCEND_TOOLS_PATCH": "0"}, "timing", kind, args)
        ratios = speeds(timing["ms"])
        summary[kind] = {
            "peak_mb": {v: memory[v]["peak_mb"] for v in VARIANTS},
            "value": {v: memory[v]["value"] for v in VARIANTS},
            "how": memory["patched"]["how"],
            "ms": {v: statistics.median(timing["ms"][v]) for v in VARIANTS},
            "speed": statistics.median(ratios),
            "speed_min": min(ratios),
            "speed_max": max(ratios),
            "rounds_ms": timing["ms"],
            "cpu_pressure": timing["cpu_pressure"],
        }
    step = summary["step"]
    mem_ratio = step["peak_mb"]["patched"] / step["peak_mb"]["unpatched"]
    result = {
        "machine": machine(tokens=args.tokens, vocab=VOCAB, rounds=args.rounds, threads=args.threads),
        "summary": summary,
        "targets": [
            {
                "target": "train-step peak RSS patched/unpatched <= 0.5",
                "value": round(mem_ratio, 3),
                "unit": "x",
                "pass": mem_ratio <= 0.5,
                "why": "",
            },
            {
                "target": "step speed unpatched/patched >= 0.95 (median of rounds)",
                "value": round(step["speed"], 3),
                "unit": "x",
                "pass": step["speed"] >= 0.95,
                "why": "",
            },
        ],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(report(result, args))
    return 0


def report(result: Dict[str, Any], args: argparse.Namespace) -> str:
    rows = []
    for kind, label in (
        ("step", "train step (Qwen2-style, vocab 151,936)"),
        ("mlp", "Qwen2MLP alone (1024 -> 4096)"),
    ):
        k = result["summary"][kind]
        u, p = k["peak_mb"]["unpatched"], k["peak_mb"]["patched"]
        pressure = "-" if k["cpu_pressure"] is None else f"{k['cpu_pressure']:.2f}"
        ms = k["ms"]
        speed = f"{k['speed']:.2f}"
        spread = f"{k['speed_min']:.2f}-{k['speed_max']:.2f}"
        rows.append(
            [label, f"{u:.0f}", f"{p:.0f}", f"{p / u:.2f}", f"{ms['unpatched']:.0f}", f"{ms['patched']:.0f}"]
        )
        rows[-1] += [speed, spread, pressure]
    step = result["summary"]["step"]
    head = ["what", "unpatched MB", "patched MB", "ratio", "unpatched ms", "patched ms", "speed", "range"]
    return "\n".join(
        [
            f"{args.tokens} tokens, fp32, CPU, {args.threads} threads; peak = {step['how']} increase over one step"
            f" (fresh process per variant); time: median of {args.rounds} interleaved rounds, speed = unpatched"
            " ms / patched ms per round",
            table([*head, "cpu pressure"], rows),
            f"loss unpatched {step['value']['unpatched']:.6f}, patched {step['value']['patched']:.6f}",
            "",
            targets_table(result["targets"]),
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
