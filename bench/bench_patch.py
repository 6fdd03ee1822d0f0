#!/usr/bin/env python
"""``import ascend_tools.patch`` against unpatched Hugging Face: train-step time and memory, per-op
microbenchmarks, and (on a CUDA machine) the Triton kernels' bandwidth, in one run.

    python bench/bench_patch.py [--repeat 3] [--steps 10] [--warmup 3] [--json]

**Train step.** The tiny Llama of issue 3 (4 layers, hidden 256, 8 heads, 4 kv heads, intermediate 512,
vocab 1024, random init, seed 1234), batch 2 x 128 tokens, one AdamW step (forward, LM loss, backward,
``optimizer.step()``, ``zero_grad``), fp32, CPU, ``torch.set_num_threads(1)``. Three variants, each a fresh
subprocess of this script (``--worker step``), interleaved over ``--repeat`` rounds (each goes first in
turn):

* ``unpatched``: ``ASCEND_TOOLS_PATCH=0``, ``ascend_tools`` never imported, ``attn_implementation="sdpa"``;
* ``patched``: ``import ascend_tools.patch`` before the model is built, no ``attn_implementation`` (so the
  model gets ``"ascend_fused"``); each op runs the tier the registry picks on this machine (on a CPU: the
  reference tier), read back from ``ascend_tools.patch.status()`` and ``ops.registry.status()``.
* ``patched-norm-rope``: the same with ``ASCEND_TOOLS_PATCH_OPS=rms_norm,rope`` (attention stays HF's
  sdpa): which part of a difference is the attention tier's. The targets are on ``patched``.

A worker times ``--steps`` steps after ``--warmup`` untimed ones and reports their median; the parent
prints the median over rounds and ``speedup = unpatched / patched`` (target >= 1.0x: not slower).

Memory is the **peak RSS increase** of the worker process (torch's CPU allocator keeps no statistics):
the kernel's high-water mark ``VmHWM`` is reset to the current RSS by writing ``5`` to
``/proc/self/clear_refs`` (Linux >= 4.0) and read from ``/proc/self/status`` afterwards, so nothing is
sampled and no spike is missed; without ``clear_refs`` a psutil sampler (1 ms) stands in. Two figures,
both measured after ``gc.collect()`` and ``malloc_trim(0)`` (freed heap given back, so the baseline is
live memory): ``1st step`` (the first warm-up step, AdamW state allocation included) and ``step`` (one
extra step after the timed ones, steady state: activations, gradients, temporaries; target patched <=
unpatched). ``saved MB`` is what autograd holds for backward in one forward (``saved_tensors_hooks``,
counted once per storage): the deterministic part of the activation memory. The loss of every step of
both variants is compared (same seed: the patch must not change the numerics beyond rounding).

**Per-op microbenchmarks** (``--worker micro``, a fresh subprocess per op and shape and round):
forward + backward on CPU, 1 thread, ours through the same entry points the patch installs (the tier
the registry picks; on a CPU the reference) against what unpatched HF runs:

* ``rms_norm``: ``ascend_tools.ops.rms_norm.rms_norm`` vs ``LlamaRMSNorm`` (weight trained);
* ``rope``: ``ascend_tools.ops.rope.apply_rotary_pos_emb`` vs HF's ``apply_rotary_pos_emb`` (q and k,
  laid out as HF's ``view(B, S, H, D).transpose(1, 2)``);
* ``attention``: the patch's ``ascend_fused_attention`` vs HF's ``sdpa_attention_forward`` (torch SDPA,
  causal, GQA), both HF attention-interface functions (output transposed to [B, S, H, D]).

Shapes: the tiny Llama's, and a 7B-like row (hidden 4096, seq 512, batch 1; 32 heads of 128). Inside a
worker the two are timed alternately (ABBA), the iteration count calibrated to ~``--micro-budget`` s;
``ratio = ours / HF`` of the medians (below 1: ours faster).

**GPU** (``--worker gpu``): skipped unless ``torch.cuda.is_available()``. Then the ``triton`` tier of
RMSNorm and RoPE, forward + backward in bf16 (``triton.testing.do_bench``, median, L2 flushed), in GB/s of
the minimum traffic (RMSNorm: read x, write y; read dy and x, write dx = 5 x the bytes of x; RoPE, per
tensor: 4 x its bytes plus cos/sin read in both passes), against the card's HBM peak from a small table
of datasheet figures (name not in it: no percentage, the reason printed; target >= 80 %) and against
Liger-Kernel's ``LigerRMSNorm`` / ``liger_rotary_pos_emb`` in the same process when ``liger_kernel``
imports.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from benchlib import PeakRSS, cpu_pressure_us, table, targets_table, version
from benchlib import machine as benchlib_machine

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.abspath(__file__)
SEED = 1234
BATCH, SEQ = 2, 128
CONFIG = {
    "vocab_size": 1024,
    "hidden_size": 256,
    "intermediate_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "max_position_embeddings": 256,
    "tie_word_embeddings": False,
}
VARIANTS = ("unpatched", "patched", "patched-norm-rope")
# extra environment per variant: the last one patches RMSNorm and RoPE only (attention stays HF sdpa),
# to tell the attention tier's share of the difference from the rest
VARIANT_ENV = {"patched-norm-rope": {"ASCEND_TOOLS_PATCH_OPS": "rms_norm,rope"}}
# (op, shape name) -> (batch, seq, hidden, q heads, kv heads)
MICRO_SHAPES = {
    "tiny": (BATCH, SEQ, CONFIG["hidden_size"], CONFIG["num_attention_heads"], CONFIG["num_key_value_heads"]),
    "7b": (1, 512, 4096, 32, 32),
}
MICRO_CASES = (
    ("rms_norm", "tiny"),
    ("rope", "tiny"),
    ("attention", "tiny"),
    ("rms_norm", "7b"),
    ("rope", "7b"),
)
TARGET_SPEEDUP = 1.0  # unpatched / patched step time
TARGET_HBM_SHARE = 0.8  # Triton fwd+bwd GB/s / HBM peak
MB = 1e6
# HBM peak bandwidth, GB/s, from NVIDIA's datasheets; first substring of the device name that matches
# wins (so "H100 NVL" before "H100", "A100" before "A10"); None: variants differ, no single figure.
HBM_PEAK_GBS: Tuple[Tuple[str, Optional[float]], ...] = (
    ("GH200", None),
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),  # H100 SXM5 80GB HBM3
    ("H800", 3350.0),
    ("H20", 4000.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),  # 40GB, SXM4 and PCIe
    ("L40S", 864.0),
    ("L40", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
    ("A10", 600.0),
    ("V100", 900.0),
    ("RTX 4090", 1008.0),
    ("T4", 320.0),
)


# --- worker helpers ---------------------------------------------------------------------------------------


def build(patched: bool) -> Any:
    """``(model, ids)``: the tiny Llama (fp32, seed SEED) and a fixed batch of token ids."""
    import torch

    if patched:
        import ascend_tools.patch  # noqa: F401  (patches on import: before the model is built)
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    config = LlamaConfig(**CONFIG) if patched else LlamaConfig(**CONFIG, attn_implementation="sdpa")
    model = LlamaForCausalLM(config)
    model.train()
    ids = torch.randint(
        0, CONFIG["vocab_size"], (BATCH, SEQ), generator=torch.Generator().manual_seed(SEED + 1)
    )
    return model, ids


def saved_for_backward_bytes(fn: Callable[[], Any]) -> int:
    """Bytes autograd saves for backward while ``fn()`` runs (each storage counted once)."""
    import torch

    seen: Dict[Tuple[int, str], int] = {}

    def pack(t: Any) -> Any:
        try:
            storage = t.untyped_storage()
            seen[(storage.data_ptr(), str(t.device))] = storage.nbytes()
        except Exception:
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def worker_step(variant: str, steps: int, warmup: int) -> Dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    patched = variant.startswith("patched")
    model, ids = build(patched)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    losses: List[float] = []

    def step() -> None:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))

    times: List[float] = []
    first = PeakRSS()
    for i in range(warmup + steps):
        if i == 0:
            with first:
                start = time.perf_counter()
                step()
                times.append((time.perf_counter() - start) * 1000)
            continue
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1000)
    with PeakRSS() as steady:
        step()  # untimed: the steady-state memory of one step
    loss_box: List[Any] = []
    saved = saved_for_backward_bytes(lambda: loss_box.append(model(input_ids=ids, labels=ids).loss))
    loss_box[0].backward()
    opt.zero_grad(set_to_none=True)
    out: Dict[str, Any] = {
        "variant": variant,
        "times_ms": times[warmup:],
        "warmup_ms": times[:warmup],
        "median_ms": statistics.median(times[warmup:]),
        "losses": losses[: warmup + steps],
        "first_step_peak_mb": first.delta / MB,
        "step_peak_mb": steady.delta / MB,
        "rss_method": steady.how,
        "saved_mb": saved / MB,
        "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "threads": torch.get_num_threads(),
    }
    if patched:
        from ascend_tools.ops import registry
        from ascend_tools.patch import status

        st = status()
        llama = next((f for f in st["families"] if f["family"] == "llama"), {})
        out["patch"] = {
            "llama": {k: llama.get(k) for k in ("rms_norm", "rope", "attention_default")},
            "attention": st.get("attention"),
            "tiers": [
                {k: t.get(k) for k in ("op", "device", "tier", "verdict", "candidates", "forced")}
                for t in st["tiers"]
            ],
            "self_checks": [
                {
                    "op": c.op,
                    "tier": c.tier,
                    "device": c.device,
                    "dtype": c.dtype,
                    "ok": c.ok,
                    "reason": c.reason,
                }
                for c in registry.status()
            ],
            "errors": st.get("errors"),
        }
    return out


def _is_ours(fn: Any) -> bool:
    return getattr(getattr(fn, "__func__", fn), "_ascend_tools_patch", None) is not None


def micro_case(op: str, shape: str) -> Tuple[Callable[[], None], Callable[[], None], Dict[str, Any]]:
    """(ours, HF, info): two closures running forward + backward of ``op`` at ``shape`` on CPU."""
    import types

    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama import modeling_llama

    from ascend_tools.ops import attention as _attention  # noqa: F401  (registers the attention tiers)
    from ascend_tools.ops import registry
    from ascend_tools.ops.rms_norm import rms_norm
    from ascend_tools.ops.rope import apply_rotary_pos_emb, rope_cos_sin
    from ascend_tools.patch.attention_interface import ascend_fused_attention

    b, s, hidden, hq, hkv = MICRO_SHAPES[shape]
    d = hidden // hq
    gen = torch.Generator().manual_seed(SEED)

    def randn(*size: int) -> Any:
        return torch.randn(*size, generator=gen)

    info: Dict[str, Any] = {"op": op, "shape": shape}
    if op == "rms_norm":
        norm = modeling_llama.LlamaRMSNorm(hidden, eps=1e-6)
        with torch.no_grad():
            norm.weight.add_(0.1 * randn(hidden))
        if _is_ours(type(norm).forward):
            raise RuntimeError("LlamaRMSNorm is patched in the micro worker (ASCEND_TOOLS_PATCH=0 expected)")
        x = randn(b, s, hidden).requires_grad_(True)
        g = randn(b, s, hidden)
        leaves = [x, norm.weight]
        info["dims"] = f"x {b}x{s}x{hidden}"
        info["tier"] = registry.select("rms_norm", (x, norm.weight), {"eps": 1e-6}).name

        def ours_fwd() -> Any:
            return rms_norm(x, norm.weight, eps=norm.variance_epsilon)

        def hf_fwd() -> Any:
            return norm(x)

        outs = lambda o: [o]  # noqa: E731
        grads = [g]
    elif op == "rope":
        hf_rope = modeling_llama.apply_rotary_pos_emb
        if _is_ours(hf_rope):
            raise RuntimeError("HF apply_rotary_pos_emb is patched in the micro worker")
        qb = randn(b, s, hq, d).requires_grad_(True)
        kb = randn(b, s, hkv, d).requires_grad_(True)
        cos, sin = rope_cos_sin(torch.arange(s).unsqueeze(0).expand(b, s), d, dtype=torch.float32)
        gq, gk = randn(b, hq, s, d), randn(b, hkv, s, d)
        leaves = [qb, kb]
        info["dims"] = f"q {b}x{hq}x{s}x{d}, k {b}x{hkv}x{s}x{d}"
        info["tier"] = registry.select("rope", (qb.transpose(1, 2), cos, sin), {"unsqueeze_dim": 1}).name

        def ours_fwd() -> Any:
            return apply_rotary_pos_emb(qb.transpose(1, 2), kb.transpose(1, 2), cos, sin)

        def hf_fwd() -> Any:
            return hf_rope(qb.transpose(1, 2), kb.transpose(1, 2), cos, sin)

        outs = list
        grads = [gq, gk]
    elif op == "attention":
        module = types.SimpleNamespace(num_key_value_groups=hq // hkv, is_causal=True, training=True)
        qb = randn(b, s, hq, d).requires_grad_(True)
        kb = randn(b, s, hkv, d).requires_grad_(True)
        vb = randn(b, s, hkv, d).requires_grad_(True)
        g = randn(b, s, hq, d)
        leaves = [qb, kb, vb]
        scaling = d**-0.5
        info["dims"] = f"q {b}x{hq}x{s}x{d}, k/v {b}x{hkv}x{s}x{d}, causal"
        info["tier"] = registry.select(
            "attention", (qb.transpose(1, 2), kb.transpose(1, 2), vb.transpose(1, 2)), {"is_causal": True}
        ).name

        def ours_fwd() -> Any:
            return ascend_fused_attention(
                module,
                qb.transpose(1, 2),
                kb.transpose(1, 2),
                vb.transpose(1, 2),
                None,
                dropout=0.0,
                scaling=scaling,
            )[0]

        def hf_fwd() -> Any:
            return sdpa_attention_forward(
                module,
                qb.transpose(1, 2),
                kb.transpose(1, 2),
                vb.transpose(1, 2),
                None,
                dropout=0.0,
                scaling=scaling,
            )[0]

        outs = lambda o: [o]  # noqa: E731
        grads = [g]
    else:
        raise ValueError(f"unknown op {op!r}")

    def run(fwd: Callable[[], Any]) -> Callable[[], None]:
        def go() -> None:
            for leaf in leaves:
                leaf.grad = None
            torch.autograd.backward(outs(fwd()), grads)

        return go

    with torch.no_grad():
        a, c = outs(ours_fwd()), outs(hf_fwd())
        info["max_abs_diff"] = max(float((x - y).abs().max()) for x, y in zip(a, c))
    return run(ours_fwd), run(hf_fwd), info


def worker_micro(op: str, shape: str, budget_s: float) -> Dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    ours, hf, info = micro_case(op, shape)

    def timed(fn: Callable[[], None]) -> float:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000

    warm = [max(timed(ours), timed(hf)) for _ in range(3)]
    iters = int(min(200, max(5, budget_s * 1000 / (2 * max(min(warm), 1e-3)))))
    t_ours: List[float] = []
    t_hf: List[float] = []
    for i in range(iters):
        if i % 2 == 0:  # ABBA: neither always runs first
            t_ours.append(timed(ours))
            t_hf.append(timed(hf))
        else:
            t_hf.append(timed(hf))
            t_ours.append(timed(ours))
    return dict(info, iters=iters, ours_ms=statistics.median(t_ours), hf_ms=statistics.median(t_hf))


def hbm_peak(name: str) -> Tuple[Optional[float], str]:
    """(peak GB/s, "") for a known device name, else (None, the reason)."""
    for key, peak in HBM_PEAK_GBS:
        if key.lower() in name.lower():
            if peak is None:
                return None, f"{name!r}: {key} variants have different HBM; no single peak in the table"
            return peak, ""
    return None, f"{name!r} is not in the HBM peak table (bench_patch.HBM_PEAK_GBS)"


def worker_gpu(smoke: bool = False) -> Dict[str, Any]:
    """Triton RMSNorm/RoPE forward + backward GB/s on CUDA, next to the HBM peak and Liger-Kernel.
    ``smoke``: run the same code on tiny CPU shapes under TRITON_INTERPRET=1 (a check of this function)."""
    import torch

    if smoke:
        device, dtype = torch.device("cpu"), torch.float32
        name = "cpu (smoke test, TRITON_INTERPRET=1)"
    else:
        if not torch.cuda.is_available():
            return {"skip": "no CUDA device on this machine"}
        device, dtype = torch.device("cuda"), torch.bfloat16
        name = torch.cuda.get_device_properties(device).name
    peak, why = hbm_peak(name)
    from ascend_tools.ops import registry
    from ascend_tools.ops.rms_norm import rms_norm_triton
    from ascend_tools.ops.rope import rope_cos_sin, rope_triton_qk

    try:
        import liger_kernel  # noqa: F401
        from liger_kernel.transformers.rms_norm import LigerRMSNorm
        from liger_kernel.transformers.rope import liger_rotary_pos_emb

        liger: Optional[str] = version("liger-kernel")
        liger_skip = ""
    except Exception as exc:
        liger, liger_skip = None, f"liger_kernel not importable ({type(exc).__name__}: {exc})"

    def bench(fn: Callable[[], None], leaves: Sequence[Any]) -> float:
        if smoke:
            fn()
            start = time.perf_counter()
            fn()
            return (time.perf_counter() - start) * 1000
        import triton.testing

        return float(triton.testing.do_bench(fn, grad_to_none=list(leaves), return_mode="median"))

    def fwd_bwd(fwd: Callable[[], Any], leaves: Sequence[Any], grads: Sequence[Any]) -> Callable[[], None]:
        def go() -> None:
            out = fwd()
            torch.autograd.backward(list(out) if isinstance(out, (tuple, list)) else [out], list(grads))

        return go

    # "xl": large enough (~9 GB of traffic for RoPE) that the kernels, not the Python launch path, set the time
    shapes = {
        "7b row": (1, 512, 4096, 32, 32),
        "large": (8, 2048, 4096, 32, 32),
        "xl": (32, 4096, 4096, 32, 32),
    }
    if smoke:
        shapes = {"smoke": (1, 4, 64, 2, 2)}
    gen = torch.Generator().manual_seed(SEED)
    rows: List[Dict[str, Any]] = []
    selected: Dict[str, str] = {}

    def measure(shape: str, b: int, s: int, hidden: int, hq: int, hkv: int) -> None:
        d = hidden // hq
        esize = torch.empty((), dtype=dtype).element_size()
        # rms_norm
        x = torch.randn(b, s, hidden, generator=gen).to(device, dtype).requires_grad_(True)
        w = (1 + 0.1 * torch.randn(hidden, generator=gen)).to(device, dtype).requires_grad_(True)
        dy = torch.randn(b, s, hidden, generator=gen).to(device, dtype)
        nbytes = 5 * x.numel() * esize
        selected["rms_norm"] = registry.select("rms_norm", (x, w), {"eps": 1e-6}).name
        row: Dict[str, Any] = {
            "op": "rms_norm",
            "shape": shape,
            "dims": f"x {b}x{s}x{hidden}",
            "bytes": nbytes,
        }
        try:
            ms = bench(fwd_bwd(lambda: rms_norm_triton(x, w, eps=1e-6), [x, w], [dy]), [x, w])
            row.update(ours_ms=ms, ours_gbs=nbytes / ms / 1e6)
        except Exception as exc:
            row["ours_error"] = f"{type(exc).__name__}: {exc}"
        if liger:
            try:
                lnorm = LigerRMSNorm(hidden, eps=1e-6).to(device, dtype)
                with torch.no_grad():
                    lnorm.weight.copy_(w)
                ms = bench(fwd_bwd(lambda: lnorm(x), [x, lnorm.weight], [dy]), [x, lnorm.weight])
                row.update(liger_ms=ms, liger_gbs=nbytes / ms / 1e6)
            except Exception as exc:
                row["liger_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
        # rope: q and k, HF layout
        qb = torch.randn(b, s, hq, d, generator=gen).to(device, dtype).requires_grad_(True)
        kb = torch.randn(b, s, hkv, d, generator=gen).to(device, dtype).requires_grad_(True)
        cos, sin = rope_cos_sin(torch.arange(s).unsqueeze(0).expand(b, s), d, dtype=torch.float32)
        cos, sin = cos.to(device, dtype), sin.to(device, dtype)
        gq = torch.randn(b, hq, s, d, generator=gen).to(device, dtype)
        gk = torch.randn(b, hkv, s, d, generator=gen).to(device, dtype)
        nbytes = (4 * (qb.numel() + kb.numel()) + 2 * 4 * cos.numel()) * esize
        selected["rope"] = registry.select("rope", (qb.transpose(1, 2), cos, sin), {"unsqueeze_dim": 1}).name
        row = {
            "op": "rope",
            "shape": shape,
            "dims": f"q {b}x{hq}x{s}x{d}, k {b}x{hkv}x{s}x{d}",
            "bytes": nbytes,
        }

        def ours_rope() -> Any:
            return rope_triton_qk(qb.transpose(1, 2), kb.transpose(1, 2), cos, sin)

        try:
            ms = bench(fwd_bwd(ours_rope, [qb, kb], [gq, gk]), [qb, kb])
            row.update(ours_ms=ms, ours_gbs=nbytes / ms / 1e6)
        except Exception as exc:
            row["ours_error"] = f"{type(exc).__name__}: {exc}"
        if liger:
            try:
                ms = bench(
                    fwd_bwd(
                        lambda: liger_rotary_pos_emb(qb.transpose(1, 2), kb.transpose(1, 2), cos, sin),
                        [qb, kb],
                        [gq, gk],
                    ),
                    [qb, kb],
                )
                row.update(liger_ms=ms, liger_gbs=nbytes / ms / 1e6)
            except Exception as exc:
                row["liger_error"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)

    for shape, dims in shapes.items():
        measure(shape, *dims)
    for row in rows:
        if peak and "ours_gbs" in row:
            row["ours_share"] = row["ours_gbs"] / peak
        if peak and "liger_gbs" in row:
            row["liger_share"] = row["liger_gbs"] / peak
    return {
        "device": name,
        "dtype": str(dtype).replace("torch.", ""),
        "hbm_peak_gbs": peak,
        "hbm_why": why,
        "liger": liger,
        "liger_skip": liger_skip,
        "rows": rows,
        "registry_tier": selected,
        "triton": version("triton"),
    }


# --- the parent side ------------------------------------------------------------------------------------


def _env(patch: bool, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["ASCEND_TOOLS_PATCH"] = "1" if patch else "0"
    env.update(extra or {})
    return env


def run_worker(
    args: List[str], patch: bool, timeout: float = 600, env: Optional[Dict[str, str]] = None
) -> Dict[str, Any]:
    """Run this script as ``--worker ...`` in a fresh process; return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="bench-patch-") as tmp:
        result = os.path.join(tmp, "result.json")
        proc = subprocess.run(
            [sys.executable, SCRIPT, "--worker", *args, "--result", result],
            cwd=ROOT,
            env=_env(patch, env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0 or not os.path.isfile(result):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            sys.exit(f"bench: worker {' '.join(args)} failed (exit {proc.returncode}):\n{tail}")
        with open(result, encoding="utf-8") as f:
            return json.load(f)


def train_step(repeat: int, steps: int, warmup: int, progress: Callable[[str], None]) -> Dict[str, Any]:
    runs: Dict[str, List[Dict[str, Any]]] = {v: [] for v in VARIANTS}
    for i in range(repeat):
        order = VARIANTS[i % len(VARIANTS) :] + VARIANTS[: i % len(VARIANTS)]  # each goes first in turn
        for variant in order:
            r = run_worker(
                ["step", "--variant", variant, "--steps", str(steps), "--warmup", str(warmup)],
                patch=variant.startswith("patched"),
                env=VARIANT_ENV.get(variant),
            )
            runs[variant].append(r)
            progress(
                "[{}/{}] {:<17} median {:6.1f} ms/step, step peak RSS +{:.1f} MB, 1st step +{:.1f} MB".format(
                    i + 1, repeat, variant, r["median_ms"], r["step_peak_mb"], r["first_step_peak_mb"]
                )
            )
    out: Dict[str, Any] = {"variants": {}}
    for variant, rs in runs.items():
        med = [r["median_ms"] for r in rs]
        out["variants"][variant] = {
            "median_ms": statistics.median(med),
            "min_ms": min(med),
            "per_run_ms": med,
            "first_step_ms": statistics.median(r["warmup_ms"][0] for r in rs) if warmup else None,
            "step_peak_mb": statistics.median(r["step_peak_mb"] for r in rs),
            "step_peak_mb_runs": [r["step_peak_mb"] for r in rs],
            "first_step_peak_mb": statistics.median(r["first_step_peak_mb"] for r in rs),
            "saved_mb": statistics.median(r["saved_mb"] for r in rs),
            "attn_implementation": rs[-1]["attn_implementation"],
            "rss_method": rs[-1]["rss_method"],
            "losses": rs[-1]["losses"],
        }
    out["patch"] = runs["patched"][-1].get("patch")
    v = out["variants"]
    for name in VARIANTS:
        v[name]["speedup"] = v["unpatched"]["median_ms"] / v[name]["median_ms"]
    out["speedup"] = v["unpatched"]["median_ms"] / v["patched"]["median_ms"]
    out["memory_ratio"] = (
        v["patched"]["step_peak_mb"] / v["unpatched"]["step_peak_mb"]
        if v["unpatched"]["step_peak_mb"] > 0
        else None
    )
    a, b = v["patched"]["losses"], v["unpatched"]["losses"]
    out["max_loss_diff"] = max(abs(x - y) for x, y in zip(a, b)) if a and b else None
    return out


def micro(repeat: int, budget: float, progress: Callable[[str], None]) -> Dict[str, Any]:
    runs: Dict[str, List[Dict[str, Any]]] = {f"{op}/{shape}": [] for op, shape in MICRO_CASES}
    for i in range(repeat):
        for op, shape in MICRO_CASES:
            r = run_worker(
                ["micro", "--op", op, "--shape", shape, "--micro-budget", str(budget)], patch=False
            )
            runs[f"{op}/{shape}"].append(r)
            progress(
                "[{}/{}] {:<9} {:<4} ours {:8.3f} ms, HF {:8.3f} ms ({} iterations)".format(
                    i + 1, repeat, op, shape, r["ours_ms"], r["hf_ms"], r["iters"]
                )
            )
    rows = []
    for rs in runs.values():
        ours, hf = statistics.median(r["ours_ms"] for r in rs), statistics.median(r["hf_ms"] for r in rs)
        rows.append(
            {
                "op": rs[0]["op"],
                "shape": rs[0]["shape"],
                "dims": rs[0]["dims"],
                "tier": rs[0]["tier"],
                "ours_ms": ours,
                "hf_ms": hf,
                "ratio": ours / hf,
                "per_run_ratio": [r["ours_ms"] / r["hf_ms"] for r in rs],
                "max_abs_diff": max(r["max_abs_diff"] for r in rs),
            }
        )
    return {"rows": rows}


def gpu(repeat: int, progress: Callable[[str], None]) -> Dict[str, Any]:
    results = []
    for i in range(repeat):
        r = run_worker(["gpu"], patch=False)
        if r.get("skip"):
            progress(f"gpu: skipped ({r['skip']})")
            return r
        results.append(r)
        progress(
            "[{}/{}] gpu {}: {}".format(
                i + 1,
                repeat,
                r["device"],
                ", ".join(
                    "{} {} {:.0f} GB/s".format(x["op"], x["shape"], x.get("ours_gbs", float("nan")))
                    for x in r["rows"]
                ),
            )
        )
    out = dict(results[-1])
    for n, row in enumerate(out["rows"]):
        for key in ("ours_ms", "liger_ms"):
            vals = [r["rows"][n][key] for r in results if key in r["rows"][n]]
            if vals:
                row[key] = statistics.median(vals)
                which = key.split("_")[0]
                row[which + "_gbs"] = row["bytes"] / row[key] / 1e6
                if out["hbm_peak_gbs"]:
                    row[which + "_share"] = row[which + "_gbs"] / out["hbm_peak_gbs"]
    return out


def machine() -> Dict[str, Any]:
    return benchlib_machine(
        **{
            "torch": version("torch"),
            "transformers": version("transformers"),
            "triton": version("triton"),
            "liger-kernel": version("liger-kernel"),
            "commit": _git_commit(),
        }
    )


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        return head + (" + uncommitted changes" if dirty else "") if head else "unknown"
    except OSError:
        return "unknown"


def targets(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    out: List[Dict[str, Any]] = []

    def add(name: str, value: Optional[float], ok: Optional[bool], unit: str, why: str = "") -> None:
        out.append({"target": name, "value": value, "unit": unit, "pass": ok, "why": why})

    t = result["train"]
    v = t["variants"]
    add(
        f"train step speedup unpatched/patched >= {TARGET_SPEEDUP:g}x",
        t["speedup"],
        t["speedup"] >= TARGET_SPEEDUP,
        "x",
    )
    add(
        "step peak RSS increase, patched <= unpatched",
        v["patched"]["step_peak_mb"],
        v["patched"]["step_peak_mb"] <= v["unpatched"]["step_peak_mb"],
        " MB",
        "unpatched {:.1f} MB".format(v["unpatched"]["step_peak_mb"]),
    )
    g = result["gpu"]
    if g.get("skip"):
        for op in ("rms_norm", "rope"):
            add(f"triton {op} fwd+bwd >= {TARGET_HBM_SHARE:.0%} of HBM peak", None, None, "", g["skip"])
        return out
    for row in g["rows"]:
        if row["shape"] != "large" and len({r["shape"] for r in g["rows"]}) > 1:
            continue
        name = f"triton {row['op']} fwd+bwd ({row['shape']}) >= {TARGET_HBM_SHARE:.0%} of HBM peak"
        if "ours_share" in row:
            add(name, row["ours_share"] * 100, row["ours_share"] >= TARGET_HBM_SHARE, " %")
        else:
            add(name, None, None, "", row.get("ours_error") or g.get("hbm_why", ""))
    return out


def render(result: Dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    t = result["train"]
    out = [
        f"patch benchmark: tiny Llama (4 layers, hidden 256, 8/4 heads, vocab 1024), batch {BATCH}x{SEQ}, AdamW, fp32, "
        "CPU, 1 thread",
        "{} rounds, interleaved, fresh process each; per worker: {} warm-up steps, median of {} timed steps; "
        "median over rounds / min".format(a["repeat"], a["warmup"], a["steps"]),
        "machine: {} CPUs, {}; Python {}, torch {}, transformers {}, triton {}, liger-kernel {}; {} ({})".format(
            m["nproc"],
            m["cpu"],
            m["python"],
            m["torch"],
            m["transformers"],
            m["triton"],
            m["liger-kernel"],
            m["date"],
            m["commit"],
        ),
        "bench wall {:.0f} s; CPU pressure (share of it with a task waiting for a CPU, /proc/pressure/cpu): {}".format(
            result.get("bench_wall_s", 0),
            "n/a" if result.get("cpu_pressure") is None else "{:.0%}".format(result["cpu_pressure"]),
        ),
        "",
    ]
    rows = []
    for variant in VARIANTS:
        v = t["variants"][variant]
        rows.append(
            [
                variant,
                v["attn_implementation"],
                "{:.1f} / {:.1f}".format(v["median_ms"], v["min_ms"]),
                "{:.2f}x".format(v["speedup"]),
                "{:.0f}".format(v["first_step_ms"]) if v["first_step_ms"] is not None else "",
                "{:.1f}".format(v["step_peak_mb"]),
                "{:.1f}".format(v["first_step_peak_mb"]),
                "{:.1f}".format(v["saved_mb"]),
            ]
        )
    out.append(
        table(
            [
                "train step",
                "attention",
                "ms/step",
                "speedup",
                "1st step ms",
                "step peak MB",
                "1st step peak MB",
                "saved MB",
            ],
            rows,
        )
    )
    out.append(
        "speedup unpatched/patched {:.2f}x; step peak RSS patched/unpatched {}; max |loss difference| over "
        "{} steps {:.2g}".format(
            t["speedup"],
            "n/a" if t["memory_ratio"] is None else "{:.2f}x".format(t["memory_ratio"]),
            len(t["variants"]["patched"]["losses"]),
            t["max_loss_diff"] or 0.0,
        )
    )
    out.append(
        "(speedup: unpatched / variant; patched-norm-rope: ASCEND_TOOLS_PATCH_OPS=rms_norm,rope, attention "
        "left to HF sdpa)"
    )
    out.append(
        "(peak MB: peak RSS increase over one step, {}; saved MB: tensors autograd keeps for backward, one "
        "forward)".format(t["variants"]["patched"]["rss_method"])
    )
    p = t.get("patch") or {}
    if p:
        out.append(
            "tiers (ascend_tools.patch.status()): "
            + "; ".join(
                "{} -> {} ({}, on {})".format(x["op"], x["tier"], x["verdict"], x["device"])
                for x in p["tiers"]
            )
        )
        out.append(
            "llama patched: rms_norm {rms_norm}, rope {rope}, attention default {attention_default}; ".format(
                **p["llama"]
            )
            + "self-checks run: {}".format(
                ", ".join("{op}/{tier}/{dtype} {ok}".format(**c) for c in p["self_checks"])
                or "none (the reference needs none)"
            )
        )
    out.append("")
    rows = [
        [
            r["op"],
            r["shape"],
            r["dims"],
            r["tier"],
            "{:.3f}".format(r["ours_ms"]),
            "{:.3f}".format(r["hf_ms"]),
            "{:.2f}x".format(r["ratio"]),
            "{:.1g}".format(r["max_abs_diff"]),
        ]
        for r in result["micro"]["rows"]
    ]
    out.append(
        "per-op forward+backward on CPU, 1 thread (median over rounds of in-process medians; ABBA interleaved)"
    )
    out.append(table(["op", "shape", "dims", "ours tier", "ours ms", "HF ms", "ours/HF", "max |diff|"], rows))
    out.append("(HF: LlamaRMSNorm; apply_rotary_pos_emb; sdpa_attention_forward = torch SDPA)")
    out.append("")
    g = result["gpu"]
    if g.get("skip"):
        out.append(f"GPU: skipped: {g['skip']}")
    else:
        out.append(
            "GPU: {} ({}), HBM peak {}; Liger-Kernel {}".format(
                g["device"],
                g["dtype"],
                "{:.0f} GB/s".format(g["hbm_peak_gbs"])
                if g["hbm_peak_gbs"]
                else "unknown ({})".format(g["hbm_why"]),
                g["liger"] or "skipped ({})".format(g["liger_skip"]),
            )
        )
        out.append(
            "registry tier on this device: " + ", ".join(f"{k} -> {v}" for k, v in g["registry_tier"].items())
        )

        def cell(row: Dict[str, Any], who: str) -> List[str]:
            if who + "_ms" not in row:
                return [row.get(who + "_error", "")[:40], "", ""]
            share = row.get(who + "_share")
            return [
                "{:.3f}".format(row[who + "_ms"]),
                "{:.0f}".format(row[who + "_gbs"]),
                "" if share is None else f"{share:.0%}",
            ]

        rows = [[r["op"], r["shape"], r["dims"], *cell(r, "ours"), *cell(r, "liger")] for r in g["rows"]]
        out.append(
            table(["op", "shape", "dims", "triton ms", "GB/s", "% peak", "liger ms", "GB/s", "% peak"], rows)
        )
        out.append(
            "(forward+backward, triton.testing.do_bench median; GB/s of the minimum traffic, see the docstring)"
        )
    out.append("")
    out.append(targets_table(result["targets"]))
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every measurement (default 3)")
    ap.add_argument("--steps", type=int, default=10, help="timed train steps per worker (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed train steps per worker first (default 3)")
    ap.add_argument(
        "--micro-budget",
        type=float,
        default=1.5,
        help="seconds of timed iterations per microbenchmark worker (default 1.5)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    for hidden in ("--result", "--variant", "--op", "--shape"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--gpu-smoke", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker == "step":
            res = worker_step(args.variant, args.steps, args.warmup)
        elif args.worker == "micro":
            res = worker_micro(args.op, args.shape, args.micro_budget)
        elif args.worker == "gpu":
            res = worker_gpu(smoke=args.gpu_smoke)
        else:
            ap.error(f"unknown worker {args.worker!r}")
        with open(args.result, "w", encoding="utf-8") as f:
            json.dump(res, f)
        return 0
    if args.gpu_smoke:  # the GPU section's code on tiny CPU shapes under the Triton interpreter
        os.environ["TRITON_INTERPRET"] = "1"
        print(json.dumps(worker_gpu(smoke=True), indent=2))
        return 0
    if args.repeat < 1 or args.steps < 1 or args.warmup < 1:
        ap.error("--repeat, --steps and --warmup must be at least 1")

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    psi0 = cpu_pressure_us()
    result: Dict[str, Any] = {
        "args": {
            "repeat": args.repeat,
            "steps": args.steps,
            "warmup": args.warmup,
            "micro_budget": args.micro_budget,
        },
        "machine": machine(),
    }
    result["train"] = train_step(args.repeat, args.steps, args.warmup, progress)
    result["micro"] = micro(args.repeat, args.micro_budget, progress)
    result["gpu"] = gpu(args.repeat, progress)
    result["targets"] = targets(result)
    result["bench_wall_s"] = time.perf_counter() - started
    psi1 = cpu_pressure_us()
    result["cpu_pressure"] = (
        None if psi0 is None or psi1 is None else (psi1 - psi0) / 1e6 / result["bench_wall_s"]
    )
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
