"""The fused ops' Triton tiers on a CUDA GPU, in one run: self-check, then time and memory against peers.

1. **Self-check**: every ``triton`` (and ``sdpa``) tier of every op in :mod:`ascend_tools.ops` runs the
   golden cases (``registry.check_golden``, what ``ascend-doctor selfcheck`` runs) in bf16 and fp32 on the
   GPU: pass/fail, max forward and backward error, the tier's tolerance. An op without such a tier
   (attention has reference/sdpa/npu) says so.
2. **Time and memory**, forward + backward at LLM-sized shapes in bf16: plain PyTorch with HF's math
   (``torch``), our ``reference`` tier, our ``triton`` tier and Liger-Kernel (``LigerRMSNorm``,
   ``liger_rotary_pos_emb``, ``LigerSiLUMulFunction``, ``LigerFusedLinearCrossEntropyLoss``) when
   ``liger_kernel`` imports (else a skip line). Time: CUDA events around each call, after warm-up, median of
   ``--repeat`` (fewer for the loss). Peak: ``torch.cuda.max_memory_allocated()`` during one call, minus
   what was allocated before it (inputs and parameters excluded; gradients and saved tensors included).
   ``err``: max relative error (``registry.max_rel_error``) of the output and every input gradient
   against the ``torch`` variant of the same run.

Prints one markdown table per part; writes ``$OUT/gpu_patch_check.json`` when ``$OUT`` is set. Exit 1 when a
self-check fails. Sized to finish in well under 4 minutes on an H200.

``--dry-run``: the same code on the CPU with tiny shapes, the reference tier and torch only (``time.
perf_counter``, no peak memory): a check of this script where there is no GPU.
"""

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from ascend_tools.ops import registry, rope  # noqa: E402
from ascend_tools.ops.rope import rope_cos_sin, rotate_half  # noqa: E402
from ascend_tools.ops.selfcheck import OP_MODULES  # noqa: E402

CHECKED_TIERS = ("triton", "sdpa")
SEED = 0
Leaves = List[torch.Tensor]
# a variant: a forward over the problem's leaves returning a tensor or a tuple of tensors
Variant = Callable[[], Any]

# (name, dims) per op; full = on the GPU, dry = --dry-run on the CPU
SHAPES: Dict[str, Dict[str, List[Tuple[str, Dict[str, int]]]]] = {
    "full": {
        "rms_norm": [("8192 x 4096", {"n": 8192, "h": 4096})],
        "rope": [("8192 tok, 32/8 heads, d 128", {"s": 8192, "hq": 32, "hkv": 8, "d": 128})],
        "swiglu": [("8192 x 11008", {"n": 8192, "i": 11008})],
        "linear_cross_entropy": [
            ("N 4096, H 4096, V 151936", {"n": 4096, "h": 4096, "v": 151936}),
            ("N 8192, H 4096, V 151936", {"n": 8192, "h": 4096, "v": 151936}),
        ],
    },
    "dry": {
        "rms_norm": [("16 x 64", {"n": 16, "h": 64})],
        "rope": [("16 tok, 4/2 heads, d 16", {"s": 16, "hq": 4, "hkv": 2, "d": 16})],
        "swiglu": [("16 x 96", {"n": 16, "i": 96})],
        "linear_cross_entropy": [("N 40, H 16, V 100", {"n": 40, "h": 16, "v": 100})],
    },
}


def _version(dist: str) -> Optional[str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def _liger() -> Tuple[Optional[Dict[str, Any]], str]:
    """Liger-Kernel's four modules/functions, or None and why not."""
    try:
        from liger_kernel.ops.swiglu import LigerSiLUMulFunction
        from liger_kernel.transformers.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyLoss
        from liger_kernel.transformers.rms_norm import LigerRMSNorm
        from liger_kernel.transformers.rope import liger_rotary_pos_emb
    except Exception as exc:  # absent or broken: skip the peer, keep the run
        return None, f"liger_kernel not importable ({type(exc).__name__}: {exc})"
    return {
        "rms_norm": LigerRMSNorm,
        "rope": liger_rotary_pos_emb,
        "swiglu": LigerSiLUMulFunction,
        "linear_cross_entropy": LigerFusedLinearCrossEntropyLoss,
    }, ""


def _tiers(op: str) -> Dict[str, registry.Tier]:
    importlib.import_module(f"ascend_tools.ops.{op}")  # its tiers register at import
    return registry.tiers(op)


# --- part 1: self-check --------------------------------------------------------------------------------------


def selfcheck(device: torch.device, dtypes: Sequence[torch.dtype], tier_names: Sequence[str]) -> List[Dict]:
    rows: List[Dict[str, Any]] = []
    for op in OP_MODULES:
        tiers = [t for name, t in _tiers(op).items() if name in tier_names]
        if not tiers:
            rows.append(
                {"op": op, "tier": "-", "verdict": "none", "reason": f"no {'/'.join(tier_names)} tier"}
            )
        cases = registry.load_goldens(op)
        for tier in tiers:
            why = registry.why_unavailable(tier, device)
            if why:
                rows.append({"op": op, "tier": tier.name, "verdict": "skip", "reason": why})
                continue
            for dtype in dtypes:
                results = [registry.check_golden(tier, case, dtype, device) for case in cases]
                rtol, atol = tier.tolerance(dtype)
                failed = [f"{case.name}: {r.reason}" for case, r in zip(cases, results) if not r.ok]
                rows.append(
                    {
                        "op": op,
                        "tier": tier.name,
                        "dtype": str(dtype).replace("torch.", ""),
                        "cases": len(cases),
                        "max_err_forward": max((r.max_err_forward or 0.0 for r in results), default=0.0),
                        "max_err_backward": max((r.max_err_backward or 0.0 for r in results), default=0.0),
                        "tolerance": rtol + atol,
                        "verdict": "fail" if failed or not cases else "pass",
                        "reason": "; ".join(failed) or ("no golden cases" if not cases else ""),
                    }
                )
    return rows


# --- part 2: time and memory ---------------------------------------------------------------------------------


def _rms_torch(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """HF's LlamaRMSNorm.forward."""
    xf = x.to(torch.float32)
    return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def _rope_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """HF's apply_rotary_pos_emb for one tensor (B, H, S, D), cos/sin (B, S, D)."""
    return x * cos.unsqueeze(1) + rotate_half(x) * sin.unsqueeze(1)


def _lce_torch(h: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """HF's causal-LM loss on already shifted labels: fp32 logits, mean over non-ignored rows."""
    return F.cross_entropy(F.linear(h, w).float(), y, ignore_index=-100)


def problems(
    op: str, dims: Dict[str, int], device: torch.device, dtype: torch.dtype, liger: Optional[Dict[str, Any]]
) -> Tuple[Leaves, List[torch.Tensor], Dict[str, Optional[Variant]]]:
    """(leaves, upstream gradients, variant name -> forward) for one op at one shape; a variant is None
    where its tier is not registered."""
    gen = torch.Generator().manual_seed(SEED)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).to(device, dtype)

    tier = _tiers(op)
    ref = tier["reference"].forward
    tri = tier["triton"].forward if "triton" in tier else None
    if op == "rms_norm":
        # a Parameter from the start, so that Liger's module can hold this very tensor as its weight
        x, w = randn(dims["n"], dims["h"]), torch.nn.Parameter(1 + randn(dims["h"], scale=0.1))
        leaves, grads = [x, w], [randn(dims["n"], dims["h"])]
        variants: Dict[str, Optional[Variant]] = {
            "torch": lambda: _rms_torch(x, w),
            "reference": lambda: ref(x, w, eps=1e-6),
            "triton": None if tri is None else lambda: tri(x, w, eps=1e-6),
        }
        if liger:
            norm = liger["rms_norm"](dims["h"], eps=1e-6).to(device, dtype)
            norm.weight = w
            variants["liger"] = lambda: norm(x)
    elif op == "rope":
        s, hq, hkv, d = dims["s"], dims["hq"], dims["hkv"], dims["d"]
        q, k = randn(1, hq, s, d), randn(1, hkv, s, d)
        cos, sin = (t.to(device, dtype) for t in rope_cos_sin(torch.arange(s).unsqueeze(0), d))
        leaves, grads = [q, k], [randn(1, hq, s, d), randn(1, hkv, s, d)]
        variants = {
            "torch": lambda: (_rope_torch(q, cos, sin), _rope_torch(k, cos, sin)),
            "reference": lambda: (ref(q, cos, sin), ref(k, cos, sin)),
            # what the patch runs: q and k through one launch each way (rope.JOINT_FORWARDS)
            "triton": None if tri is None else lambda: rope.JOINT_FORWARDS["triton"](q, k, cos, sin),
        }
        if liger:
            variants["liger"] = lambda: liger["rope"](q, k, cos, sin)
    elif op == "swiglu":
        g, u = randn(dims["n"], dims["i"], scale=2.0), randn(dims["n"], dims["i"])
        leaves, grads = [g, u], [randn(dims["n"], dims["i"])]
        variants = {
            "torch": lambda: F.silu(g) * u,
            "reference": lambda: ref(g, u),
            "triton": None if tri is None else lambda: tri(g, u),
        }
        if liger:
            variants["liger"] = lambda: liger["swiglu"].apply(g, u)
    elif op == "linear_cross_entropy":
        n, h, v = dims["n"], dims["h"], dims["v"]
        hid, head = randn(n, h), randn(v, h, scale=h**-0.5)
        y = torch.randint(0, v, (n,), generator=gen)
        y[torch.rand(n, generator=gen) < 0.1] = -100  # padding
        y = y.to(device)
        leaves, grads = [hid, head], [torch.ones((), device=device)]
        variants = {
            "torch": lambda: _lce_torch(hid, head, y),
            "reference": lambda: ref(hid, head, y),
            "triton": None if tri is None else lambda: tri(hid, head, y),
        }
        if liger:
            loss_fn = liger["linear_cross_entropy"]()

            def liger_lce() -> torch.Tensor:
                out = loss_fn(head, hid, y)
                return out[0] if isinstance(out, tuple) else out  # versions returning (loss, z_loss)

            variants["liger"] = liger_lce
    else:
        raise ValueError(f"no problem defined for op {op!r}")
    for t in leaves:
        t.requires_grad_(True)
    return leaves, grads, variants


def _outputs(out: Any) -> List[torch.Tensor]:
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _fresh(
    leaves: Leaves, pristine: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]
) -> List[torch.Tensor]:
    """Restore the leaves and return a copy of the upstream gradients, before (not inside) a timed call:
    Liger-Kernel's backward writes into its inputs and ``grad_output`` (RMSNorm's dX into dY, SwiGLU's
    gradients into ``a`` and ``b``), which would feed the next call garbage."""
    with torch.no_grad():
        for t, p in zip(leaves, pristine):
            t.copy_(p)
            t.grad = None
    return [g.clone() for g in grads]


def _step(fn: Variant, grads: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    outs = _outputs(fn())
    torch.autograd.backward(outs, [g.to(o.dtype) for o, g in zip(outs, grads)])
    return [o.detach() for o in outs]


def measure(
    fn: Variant, leaves: Leaves, grads: Sequence[torch.Tensor], device: torch.device, warmup: int, repeat: int
) -> Dict[str, Any]:
    """Median ms and peak MB of forward + backward, and the outputs and gradients of the last call."""
    cuda = device.type == "cuda"
    pristine = [t.detach().clone() for t in leaves]
    for _ in range(warmup):
        _step(fn, _fresh(leaves, pristine, grads))
    peak_mb = None
    if cuda:
        upstream = _fresh(leaves, pristine, grads)
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        _step(fn, upstream)
        torch.cuda.synchronize()
        peak_mb = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(repeat):
        upstream = _fresh(leaves, pristine, grads)
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            outs = _step(fn, upstream)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            outs = _step(fn, upstream)
            times.append((time.perf_counter() - t0) * 1000)
    return {
        "ms": statistics.median(times),
        "peak_mb": peak_mb,
        "results": outs + [t.grad.detach() for t in leaves if t.grad is not None],
    }


def timing(
    device: torch.device,
    dtype: torch.dtype,
    shapes: Dict[str, List[Tuple[str, Dict[str, int]]]],
    liger: Optional[Dict[str, Any]],
    wanted: Sequence[str],
    warmup: int,
    repeat: int,
) -> List[Dict[str, Any]]:
    """One row per (op, shape, variant) in ``wanted`` (plus Liger's where ``liger`` is given)."""
    rows: List[Dict[str, Any]] = []
    for op, cases in shapes.items():
        for label, dims in cases:
            leaves, grads, variants = problems(op, dims, device, dtype, liger)
            calls = repeat if op != "linear_cross_entropy" else max(1, repeat // 2)
            want: Optional[List[torch.Tensor]] = None
            for name, fn in variants.items():
                if name not in wanted and name != "liger":
                    continue
                row: Dict[str, Any] = {"op": op, "shape": label, "variant": name}
                if fn is None:
                    row["error"] = f"no {name} tier registered"
                else:
                    try:
                        got = measure(fn, leaves, grads, device, warmup, calls)
                    except Exception as exc:  # one failing variant must not end the run
                        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
                    else:
                        results = got.pop("results")
                        if want is None:
                            want = results  # the first variant, "torch", is the yardstick
                        row.update(got)
                        if len(results) == len(want):
                            row["err"] = max(registry.max_rel_error(a, b) for a, b in zip(results, want))
                        else:
                            row["error"] = f"{len(results)} outputs+grads, torch has {len(want)}"
                rows.append(row)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            del leaves, grads, variants, want
    return rows


# --- output ----------------------------------------------------------------------------------------------------


def _md(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _num(value: Any, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def render(data: Dict[str, Any]) -> str:
    check = _md(
        ["op", "tier", "dtype", "cases", "max err fwd", "max err bwd", "tolerance", "verdict"],
        [
            [
                r["op"],
                r["tier"],
                r.get("dtype", "-"),
                r.get("cases", "-"),
                _num(r.get("max_err_forward"), ".2e"),
                _num(r.get("max_err_backward"), ".2e"),
                _num(r.get("tolerance"), ".1e"),
                r["verdict"] + (f" ({r['reason']})" if r.get("reason") else ""),
            ]
            for r in data["selfcheck"]
        ],
    )
    times = _md(
        ["op", "shape", "variant", "ms (median)", "peak MB", "err vs torch"],
        [
            [
                r["op"],
                r["shape"],
                r["variant"],
                _num(r.get("ms"), ".2f"),
                _num(r.get("peak_mb"), ",.0f"),
                r["error"] if "error" in r else _num(r.get("err"), ".1e"),
            ]
            for r in data["timing"]
        ],
    )
    head = "device: {device}; torch {torch}, triton {triton}, liger-kernel {liger}".format(**data["machine"])
    return f"{head}\n\n## Self-check (golden vectors)\n\n{check}\n\n## Forward + backward, {data['dtype']}\n\n{times}\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny shapes, reference tier and torch only")
    ap.add_argument("--repeat", type=int, default=10, help="timed calls per variant (half for the loss)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed calls per variant first")
    ap.add_argument("--ops", help="comma-separated ops to time (default: all); the self-check runs all")
    args = ap.parse_args(argv)
    checked: Tuple[str, ...]
    variants: Tuple[str, ...]
    if args.dry_run:
        device, dtype, shapes = torch.device("cpu"), torch.float32, SHAPES["dry"]
        checked, variants, peers = ("reference",), ("torch", "reference"), False
        name = "cpu (dry run)"
    else:
        if not torch.cuda.is_available():
            print("gpu_patch_check: no CUDA device (use --dry-run on a CPU)", file=sys.stderr)
            return 2
        device, dtype, shapes = torch.device("cuda"), torch.bfloat16, SHAPES["full"]
        checked, variants, peers = CHECKED_TIERS, ("torch", "reference", "triton"), True
        name = torch.cuda.get_device_name(device)
    if args.ops:
        shapes = {op: cases for op, cases in shapes.items() if op in args.ops.split(",")}
    liger_mods, liger_skip = _liger() if peers else (None, "dry run")
    data: Dict[str, Any] = {
        "machine": {
            "device": name,
            "torch": torch.__version__,
            "triton": _version("triton"),
            "liger": _version("liger-kernel") if liger_mods else f"skipped: {liger_skip}",
        },
        "dtype": str(dtype).replace("torch.", ""),
        "selfcheck": selfcheck(device, (torch.bfloat16, torch.float32), checked),
        "timing": timing(device, dtype, shapes, liger_mods, variants, args.warmup, args.repeat),
    }
    print(render(data))
    out = os.environ.get("OUT")
    if out:
        with open(os.path.join(out, "gpu_patch_check.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
    return 1 if any(r["verdict"] == "fail" for r in data["selfcheck"]) else 0


if __name__ == "__main__":
    sys.exit(main())
