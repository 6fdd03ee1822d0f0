#!/usr/bin/env python
"""Precision capture overhead and compare throughput, ours next to msprobe's, in one run.

    python bench/bench_precision.py [--repeat 3] [--steps 10] [--warmup 3] [--json]

The model is the one of issue 3: a tiny Llama built from a config (4 layers, hidden 256, 8 heads, 4 kv
heads, intermediate 512, vocab 1024, random init, seed 1234), batch 2 x 128 tokens, one AdamW train step
(forward, LM loss, backward, ``optimizer.step()``, ``zero_grad``), fp32, CPU, ``torch.set_num_threads(1)``.

**Step overhead.** Every measurement is a fresh subprocess of this script (``--worker KIND``), so the hooks
and dispatch modes of one tool never leak into another's timing. A worker builds the model, opens the
tool, runs ``--warmup`` untimed steps, then times ``--steps`` steps one by one and reports their median
(ms/step). Kinds:

* ``bare``: nothing recorded;
* ``empty-mode``: a TorchDispatchMode whose handler only calls the op: the floor of any op-level
  (dispatch) tool on this machine, ours included;
* ``stats-floor``: a TorchDispatchMode that computes our statistics of each op output ``capture`` computes
  them for (every output but those of views, read from the op schema (``precision/aliasing.py``), and of
  ``empty``-like ops; the reductions read as ``capture`` reads them on the CPU) and records nothing: the floor of an op-level statistics dump with these
  reductions, whatever its bookkeeping (inputs that no op produced, such as parameters, are left out);
* ``ours-op`` / ``ours-module`` / ``ours-mix``: ``ascend_tools.precision.capture(DIR, level=..., mode="stats",
  model=model)`` open around all steps; steps counted by its ``optimizer.step()`` hook, which flushes the
  step's records to disk (the flush is inside the timed step);
* ``msprobe-L1`` / ``msprobe-mix``: msprobe's ``PrecisionDebugger`` (task "statistics", summary_mode
  "statistics", level L1 / mix), ``debugger.start(model)`` before the forward, ``debugger.stop()`` after
  ``optimizer.step()``, ``debugger.step()`` at the end of each step, as its docs show; skipped, with the
  reason, when ``import msprobe`` fails;
* ``shadow``: ``ascend_tools.precision.shadow(model=model)`` open around all steps; each timed step ends once
  its checks are made; its check process (``shadow_process.py``, where the machine has two CPUs: started after
  the first step) is waited for before the timed steps; skipped when it cannot be imported;
* ``bare-bf16`` / ``shadow-bf16``: ``bare`` and ``shadow`` on the model cast to bfloat16 (what a run on Ascend
  trains in: shadow's truth for a bf16 op is float32, as compare's), the second against the first.

The parent interleaves the kinds (bare, ours-op, ..., shadow; then again) over ``--repeat`` rounds and
prints the median over rounds of each worker's median, and ratios to bare of those medians.

**Compare throughput.** One train step (forward + backward) of the same model on a batch of
``COMPARE_BATCH`` x 128 tokens (our two dumps: about 1.5 GB of tensors, msprobe's 1.1 GB), once in fp32 and once in bf16 (the fp32
initial weights cast), is dumped with full tensors by each tool in its own subprocess: ours
with ``capture(DIR, level="op", mode="tensor")``, msprobe with task "tensor", level L1. Then, interleaved
over ``--repeat`` rounds, each as a fresh subprocess (interpreter start-up and imports included):

* ``python -m ascend_tools.cli compare BF16 FP32 -f json -o X`` on our dumps, also with ``--replay all`` (every op
  off the reference replayed) and ``--no-replay`` (metrics only, as msprobe's compare);
* ``msprobe compare -tp BF16/step0 -gp FP32/step0 -o OUT`` on msprobe's dumps (the ``msprobe`` next to
  this interpreter, else on PATH: run the bench with the bench virtualenv's python, bench/README.md);
* ours on msprobe's dumps (the same data msprobe reads);
* ``compare_dumps(BF16, FP32)`` on our dumps timed inside a worker, after its imports: the part without
  interpreter start-up.

GB/s = bytes of the tensor files of both dumps (``.npy`` for ours, ``dump_tensor_data/*.pt`` for msprobe)
/ wall time. GB is 10^9 bytes.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from benchlib import cpu_pressure_us, table, targets_table, version
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
STEP_KINDS = (
    "bare",
    "empty-mode",
    "stats-floor",
    "ours-op",
    "ours-module",
    "ours-mix",
    "msprobe-L1",
    "msprobe-mix",
    "shadow",
    "bare-bf16",
    "shadow-bf16",
)
#: kinds run on the model cast to bfloat16 (what Ascend runs train in), each against ``bare-bf16``
BF16_KINDS = ("bare-bf16", "shadow-bf16")
TARGET_OP_RATIO = 1.6  # ours-op / bare (issue 13)
TARGET_SHADOW_RATIO = 3.0  # shadow / bare
TARGET_VS_MSPROBE = 0.35  # (ours ratio to bare) / (msprobe ratio to bare), issue 13
TARGET_COMPARE_SPEEDUP = 10.0  # ours GB/s / msprobe GB/s
GB = 1e9
#: batch of the compare part's dumped step: 10 x 128 tokens make the tensor dumps of the two runs 1.5 GB (ours) and
#: 1.1 GB (msprobe's); the issue asks for a pair of at least 1 GB
COMPARE_BATCH = 10


# --- the worker side (runs in a fresh subprocess) ----------------------------------------------------------


def build(dtype_name: str = "float32", batch: int = BATCH, device: str = "cpu") -> Any:
    """``(model, ids)``: the tiny Llama (fp32 init from SEED, then cast and moved to ``device``) and a fixed
    batch of token ids."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(SEED)
    model = LlamaForCausalLM(LlamaConfig(**CONFIG, attn_implementation="sdpa"))
    model.to(device=device, dtype=getattr(torch, dtype_name))
    model.train()
    ids = torch.randint(
        0, CONFIG["vocab_size"], (batch, SEQ), generator=torch.Generator().manual_seed(SEED + 1)
    )
    return model, ids.to(device)


def msprobe_debugger(dump_path: str, task: str, level: str) -> Any:
    """msprobe's ``PrecisionDebugger`` for ``task`` ("statistics" | "tensor") at ``level``, dumping to
    ``dump_path`` (its config file goes next to it)."""
    from msprobe.pytorch import PrecisionDebugger

    os.makedirs(os.path.dirname(os.path.abspath(dump_path)), exist_ok=True)
    cfg: Dict[str, Any] = {
        "task": task,
        "dump_path": dump_path,
        "rank": [],
        "step": [],
        "level": level,
        "async_dump": False,
        task: {"scope": [], "list": [], "data_mode": ["all"]},
    }
    if task == "statistics":
        cfg[task]["summary_mode"] = "statistics"
    path = os.path.abspath(dump_path) + ".msprobe_config.json"
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cfg, f)
    return PrecisionDebugger(config_path=path)


def _import_error(what: str, fn: Callable[[], Any]) -> Optional[str]:
    try:
        fn()
    except Exception as exc:  # ImportError, or msprobe failing at import time in another way
        return f"{what}: {type(exc).__name__}: {exc}"
    return None


def worker_step(kind: str, steps: int, warmup: int, tmp: str, device: str = "cpu") -> Dict[str, Any]:
    """Time ``steps`` train steps under tool ``kind`` after ``warmup`` untimed ones (on a CUDA ``device``, each
    step ends with a synchronize: its time is the device's, not only the launches')."""
    import contextlib

    import torch

    torch.set_num_threads(1)
    if kind.startswith("msprobe"):
        skip = _import_error("import msprobe", lambda: __import__("msprobe.pytorch"))
    elif kind.startswith("shadow"):
        skip = _import_error(
            "import ascend_tools.precision.shadow_session",
            lambda: __import__("ascend_tools.precision.shadow_session"),
        )
    else:
        skip = None
    if skip:
        return {"kind": kind, "skip": skip}
    model, ids = build("bfloat16" if kind in BF16_KINDS else "float32", device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    debugger = None
    ctx: Any = contextlib.nullcontext()
    if kind.startswith("ours-"):
        from ascend_tools.precision import capture

        ctx = capture(os.path.join(tmp, "dump"), level=kind.split("-", 1)[1], mode="stats", model=model)
    elif kind.startswith("msprobe-"):
        debugger = msprobe_debugger(os.path.join(tmp, "dump"), "statistics", kind.split("-", 1)[1])
    elif kind.startswith("shadow"):
        from ascend_tools.precision import shadow

        ctx = shadow(model=model)
    elif kind == "empty-mode":
        ctx = _empty_mode()
    elif kind == "stats-floor":
        ctx = _stats_floor_mode()

    def step() -> None:
        if debugger is not None:
            debugger.start(model)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if debugger is not None:
            debugger.stop()
            debugger.step()

    times = []
    with ctx as tool:
        for i in range(warmup + steps):
            if i == warmup and kind.startswith("shadow") and tool._process is not None:
                tool._process.wait_ready()  # (started after the first step; its import is not a step's cost)
            start = time.perf_counter()
            step()
            if kind.startswith(
                "shadow"
            ):  # the step's own checks, not left to the next step or the block's end
                tool._drain()
            sync()
            times.append((time.perf_counter() - start) * 1000)
    out: Dict[str, Any] = {
        "kind": kind,
        "warmup_ms": times[:warmup],
        "times_ms": times[warmup:],
        "median_ms": statistics.median(times[warmup:]),
    }
    if kind.startswith("ours-"):
        out["records"] = tool.records_written
    elif kind.startswith("shadow"):
        out["compared"], out["skipped"] = tool.compared, sum(tool.skipped.values())
        out["checked_in_process"] = tool.checked_in_process
    out["dump_mb"] = _tree_bytes(tmp) / 1e6
    return out


def _empty_mode() -> Any:
    from torch.utils._python_dispatch import TorchDispatchMode

    class Empty(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            return func(*args, **(kwargs or {}))

    return Empty()


def _stats_floor_mode() -> Any:
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from ascend_tools.dispatch import flat_tensors

    try:
        from ascend_tools.precision.op_facts import OpFacts
    except ImportError:  # a checkout from before the capture split (before/after runs)
        from ascend_tools.precision.capture_session import _Meta as OpFacts  # type: ignore[attr-defined,no-redef]
    from ascend_tools.precision.stats import StatsQueue

    queue = StatsQueue()
    skip: Dict[Any, bool] = {}

    class StatsFloor(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            out = func(*args, **(kwargs or {}))
            if func not in skip:  # capture's own per-op facts: what it leaves out, it is left out here
                meta = OpFacts(func, None)
                # (getattr: the same bench runs on a checkout from before aliasing.py, for before/after)
                skip[func] = (
                    not meta.selected or meta.same_values or getattr(meta, "view", False) or meta.undefined
                )
            if skip[func]:
                return out
            tensors: List[Any] = []
            flat_tensors(out, tensors)
            for t in tensors:
                if type(t) is torch.Tensor or type(t) is torch.nn.Parameter:
                    queue.add(t)
            return out

    return StatsFloor()


def worker_dump(tool: str, dtype_name: str, out_dir: str) -> Dict[str, Any]:
    """One train step (forward + backward) of the model in ``dtype_name``, dumped with full tensors."""
    import torch

    torch.set_num_threads(1)
    model, ids = build(dtype_name, COMPARE_BATCH)
    start = time.perf_counter()
    if tool == "ours":
        from ascend_tools.precision import capture

        with capture(out_dir, level="op", mode="tensor", model=model):
            model(input_ids=ids, labels=ids).loss.backward()
    else:
        debugger = msprobe_debugger(out_dir, "tensor", "L1")
        debugger.start(model)
        model(input_ids=ids, labels=ids).loss.backward()
        debugger.stop()
        debugger.step()
    return {"tool": tool, "dtype": dtype_name, "dump_s": time.perf_counter() - start}


def worker_compare(target: str, reference: str) -> Dict[str, Any]:
    """Our ``compare_dumps`` in this process, timed after its imports (no interpreter start-up)."""
    from ascend_tools.precision.compare import compare_dumps

    start = time.perf_counter()
    report = compare_dumps(target, reference)
    wall = time.perf_counter() - start
    del report
    return {"wall_s": wall}


def _tree_bytes(path: str, patterns: Sequence[str] = ("**/*",)) -> int:
    total = 0
    for pattern in patterns:
        for p in glob.glob(os.path.join(path, pattern), recursive=True):
            if os.path.isfile(p):
                total += os.path.getsize(p)
    return total


# --- the parent side ------------------------------------------------------------------------------------


def _env() -> Dict[str, str]:
    # no thread limit here: step workers call torch.set_num_threads(1) themselves; the compares run with
    # each tool's default threads, as a user runs them
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


def run_worker(args: List[str], timeout: float = 600) -> Dict[str, Any]:
    """Run this script as ``--worker ...`` in a fresh process; return the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        result = os.path.join(tmp, "result.json")
        proc = subprocess.run(
            [sys.executable, SCRIPT, "--worker", *args, "--result", result, "--tmp", tmp],
            cwd=ROOT,
            env=_env(),
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


def timed(cmd: Sequence[str], timeout: float = 600) -> float:
    """Wall time of ``cmd`` as a fresh process from the repository root (start-up included)."""
    start = time.perf_counter()
    proc = subprocess.run(
        list(cmd),
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        sys.exit(f"bench: {' '.join(cmd)} failed (exit {proc.returncode}):\n{tail}")
    return wall


def step_overhead(
    repeat: int,
    steps: int,
    warmup: int,
    progress: Callable[[str], None],
    only: Sequence[str] = STEP_KINDS,
    device: str = "cpu",
) -> Dict[str, Any]:
    kinds_run = [
        k for k in STEP_KINDS if k == "bare" or k in only or (k == "bare-bf16" and "shadow-bf16" in only)
    ]
    runs: Dict[str, List[Dict[str, Any]]] = {k: [] for k in kinds_run}
    skipped: Dict[str, str] = {}
    for i in range(repeat):
        for kind in kinds_run:
            if kind in skipped:
                continue
            r = run_worker([kind, "--steps", str(steps), "--warmup", str(warmup), "--device", device])
            if r.get("skip"):
                skipped[kind] = r["skip"]
                progress(f"[{i + 1}/{repeat}] {kind}: skipped ({r['skip']})")
                continue
            runs[kind].append(r)
            progress(
                "[{}/{}] {:<12} median {:7.1f} ms/step (first step {:.0f} ms)".format(
                    i + 1, repeat, kind, r["median_ms"], r["warmup_ms"][0] if r["warmup_ms"] else float("nan")
                )
            )
    kinds: Dict[str, Any] = {}
    for kind, rs in runs.items():
        if not rs:
            continue
        med = [r["median_ms"] for r in rs]
        kinds[kind] = {
            "median_ms": statistics.median(med),
            "min_ms": min(med),
            "per_run_ms": med,
            "first_step_ms": statistics.median(r["warmup_ms"][0] for r in rs) if warmup else None,
            "dump_mb": statistics.median(r["dump_mb"] for r in rs),
        }
        for extra in ("records", "compared", "skipped"):
            if extra in rs[-1]:
                kinds[kind][extra] = rs[-1][extra]
        if "records" in rs[-1] or "compared" in rs[-1]:
            kinds[kind]["per_step"] = rs[-1].get("records", rs[-1].get("compared", 0)) / (warmup + steps)
    for name, k in kinds.items():
        base = "bare-bf16" if name in BF16_KINDS and "bare-bf16" in kinds else "bare"
        k["ratio"] = k["median_ms"] / kinds[base]["median_ms"]
    return {"kinds": kinds, "skipped": skipped}


def default_dump_dir() -> Optional[str]:
    """/dev/shm (tmpfs) when there is one: a compare then reads its dumps from memory, on every run alike.
    On a disk, a dump the kernel has already evicted is read at the disk's speed; on the 2-core VM of
    the README the same compare took 5 s with the files cached and up to 116 s without."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        st = os.statvfs(shm)
        if st.f_bavail * st.f_frsize > 4 * GB:
            return shm
    return None


def compare_throughput(
    repeat: int, dump_dir: Optional[str], progress: Callable[[str], None]
) -> Dict[str, Any]:
    work = tempfile.mkdtemp(prefix="bench-precision-dumps-", dir=dump_dir)
    try:
        out = _compare_throughput(work, repeat, progress)
        out["dump_dir"] = os.path.dirname(work)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def msprobe_command() -> Optional[str]:
    """msprobe's CLI: the one installed next to this interpreter (a virtualenv's ``bin/``, run without
    activating it), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "msprobe")
    return beside if os.access(beside, os.X_OK) else shutil.which("msprobe")


def _compare_throughput(work: str, repeat: int, progress: Callable[[str], None]) -> Dict[str, Any]:
    msprobe = msprobe_command()
    skip = None
    if msprobe:
        probe = subprocess.run(
            [sys.executable, "-c", "import msprobe.pytorch"],
            cwd=ROOT,
            env=_env(),
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode != 0:
            skip = "import msprobe.pytorch: " + (probe.stderr.strip().splitlines() or ["failed"])[-1]
    else:
        skip = "no msprobe command on PATH (pip install mindstudio-probe)"
    tools = ["ours"] + ([] if skip else ["msprobe"])
    dirs: Dict[str, Dict[str, str]] = {t: {} for t in tools}
    dump_s: Dict[str, Dict[str, float]] = {t: {} for t in tools}
    for tool in tools:
        for dtype in ("float32", "bfloat16"):
            d = dirs[tool][dtype] = os.path.join(work, f"{tool}-{dtype}")
            r = run_worker(["dump", "--tool", tool, "--dtype", dtype, "--out", d])
            dump_s[tool][dtype] = r["dump_s"]
            progress(f"dump {tool} {dtype}: {r['dump_s']:.1f} s in the step, {_tree_bytes(d) / 1e6:.0f} MB")
    tensor_bytes = {
        "ours": sum(_tree_bytes(d, ("**/*.npy",)) for d in dirs["ours"].values()),
    }
    if "msprobe" in dirs:
        tensor_bytes["msprobe"] = sum(
            _tree_bytes(d, ("**/dump_tensor_data/*",)) for d in dirs["msprobe"].values()
        )
    out_dir = os.path.join(work, "out")
    rows: Dict[str, List[float]] = {
        "ours CLI, our dumps": [],
        "ours CLI --replay all, our dumps": [],
        "ours CLI --no-replay, our dumps": [],
        "ours in-process, our dumps": [],
    }
    if "msprobe" in dirs:
        rows.update({"msprobe CLI, msprobe dumps": [], "ours CLI, msprobe dumps": []})

    def ours_cli(target: str, reference: str, out: str, *options: str) -> float:
        cli = [sys.executable, "-m", "ascend_tools.cli", "compare", target, reference, *options]
        return timed([*cli, "-f", "json", "-o", os.path.join(work, out)])

    for i in range(repeat):
        ours_t, ours_r = dirs["ours"]["bfloat16"], dirs["ours"]["float32"]
        rows["ours CLI, our dumps"].append(ours_cli(ours_t, ours_r, "ours.json"))
        rows["ours CLI --replay all, our dumps"].append(
            ours_cli(ours_t, ours_r, "ours-replay-all.json", "--replay", "all")
        )
        rows["ours CLI --no-replay, our dumps"].append(
            ours_cli(ours_t, ours_r, "ours-no-replay.json", "--no-replay")
        )
        rows["ours in-process, our dumps"].append(
            run_worker(["compare", "--target", ours_t, "--reference", ours_r])["wall_s"]
        )
        if "msprobe" in dirs:
            ms_t = os.path.join(dirs["msprobe"]["bfloat16"], "step0")
            ms_r = os.path.join(dirs["msprobe"]["float32"], "step0")
            shutil.rmtree(out_dir, ignore_errors=True)
            os.makedirs(out_dir)
            rows["msprobe CLI, msprobe dumps"].append(
                timed([str(msprobe), "compare", "-tp", ms_t, "-gp", ms_r, "-o", out_dir])
            )
            rows["ours CLI, msprobe dumps"].append(ours_cli(ms_t, ms_r, "ours-ms.json"))
        progress(
            "[{}/{}] compare: {}".format(
                i + 1, repeat, ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items())
            )
        )
    table = {}
    for name, walls in rows.items():
        nbytes = tensor_bytes["msprobe" if name.endswith("msprobe dumps") else "ours"]
        wall = statistics.median(walls)
        table[name] = {
            "wall_s": wall,
            "min_s": min(walls),
            "per_run_s": walls,
            "bytes": nbytes,
            "gb_per_s": nbytes / GB / wall,
            "best_gb_per_s": nbytes / GB / min(walls),
        }
    return {
        "rows": table,
        "skipped": skip,
        "dump_s": dump_s,
        "dump_mb": {t: {dt: _tree_bytes(d) / 1e6 for dt, d in ds.items()} for t, ds in dirs.items()},
    }


def machine() -> Dict[str, Any]:
    import torch

    return benchlib_machine(
        **{
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": version("torch"),
            "transformers": version("transformers"),
            "mindstudio-probe": version("mindstudio-probe"),
            "numpy": version("numpy"),
        }
    )


def targets(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    k = result["steps"]["kinds"]
    out: List[Dict[str, Any]] = []

    def add(name: str, value: Optional[float], limit: float, at_most: bool, unit: str, why: str = "") -> None:
        ok = None if value is None else (value <= limit if at_most else value >= limit)
        out.append({"target": name, "value": value, "unit": unit, "pass": ok, "why": why})

    add(
        f"ours op-level stats <= {TARGET_OP_RATIO:g}x bare",
        k["ours-op"]["ratio"] if "ours-op" in k else None,
        TARGET_OP_RATIO,
        True,
        "x",
        "" if "ours-op" in k else "not run (--kinds)",
    )
    add(
        f"shadow <= {TARGET_SHADOW_RATIO:g}x bare",
        k["shadow"]["ratio"] if "shadow" in k else None,
        TARGET_SHADOW_RATIO,
        True,
        "x",
        result["steps"]["skipped"].get("shadow", ""),
    )
    for ours, theirs in (("ours-op", "msprobe-L1"), ("ours-mix", "msprobe-mix")):
        value = k[ours]["ratio"] / k[theirs]["ratio"] if theirs in k and ours in k else None
        add(
            f"{ours} ratio / {theirs} ratio <= {TARGET_VS_MSPROBE:g}",
            value,
            TARGET_VS_MSPROBE,
            True,
            "",
            result["steps"]["skipped"].get(theirs, ""),
        )
    rows = result["compare"]["rows"]
    ms, ours = rows.get("msprobe CLI, msprobe dumps"), rows.get("ours CLI, our dumps")
    value = ours["gb_per_s"] / ms["gb_per_s"] if ms and ours else None
    add(
        f"compare GB/s, ours CLI / msprobe CLI >= {TARGET_COMPARE_SPEEDUP:g}",
        value,
        TARGET_COMPARE_SPEEDUP,
        False,
        "x",
        result["compare"]["skipped"] or "",
    )
    return out


def render(result: Dict[str, Any]) -> str:
    m, a = result["machine"], result["args"]
    out = [
        f"precision benchmark: tiny Llama (4 layers, hidden 256, 8/4 heads, vocab 1024), batch {BATCH}x{SEQ}, AdamW, fp32, "
        + (
            "CPU, 1 thread"
            if a.get("device", "cpu") == "cpu"
            else "on {}".format(m.get("gpu") or a["device"])
        ),
        "{} rounds, interleaved; per worker: {} warm-up steps, median of {} timed steps; median over rounds / min".format(
            a["repeat"], a["warmup"], a["steps"]
        ),
        "machine: {} CPUs, {}; Python {}, torch {}, transformers {}, mindstudio-probe {}, numpy {}; {}".format(
            m["nproc"],
            m["cpu"],
            m["python"],
            m["torch"],
            m["transformers"],
            m["mindstudio-probe"],
            m["numpy"],
            m["date"],
        ),
        "bench wall {:.0f} s; CPU pressure (share of it with a task waiting for a CPU, /proc/pressure/cpu): {}".format(
            result.get("bench_wall_s", 0),
            "n/a" if result.get("cpu_pressure") is None else "{:.0%}".format(result["cpu_pressure"]),
        ),
        "",
    ]
    rows = []
    for kind in STEP_KINDS:
        k = result["steps"]["kinds"].get(kind)
        if k is None:
            rows.append([kind, "skipped", "", "", "", ""])
            continue
        first = "" if k["first_step_ms"] is None else "{:.0f}".format(k["first_step_ms"])
        rows.append(
            [
                kind,
                "{:.1f} / {:.1f}".format(k["median_ms"], k["min_ms"]),
                "{:.2f}x".format(k["ratio"]),
                first,
                "{:.1f}".format(k["dump_mb"]),
                "{:.0f}".format(k["per_step"]) if "per_step" in k else "",
            ]
        )
    out.append(table(["step", "ms/step", "vs bare", "1st step ms", "dump MB", "records/step"], rows))
    for kind, why in result["steps"]["skipped"].items():
        out.append(f"skipped {kind}: {why}")
    out.append(
        "(dump MB: on disk after all steps; records/step: records written for ours, ops compared for shadow;\n"
        " *-bf16: the model cast to bfloat16, vs bare-bf16)"
    )
    out.append("")
    c = result["compare"]
    if not c["rows"]:
        out.append(f"compare throughput: skipped ({c['skipped']})")
        return "\n".join(out)
    out.append(
        f"tensor dumps of one train step (fwd+bwd, batch {COMPARE_BATCH}x{SEQ}), bf16 target vs fp32 reference: "
        + ", ".join(f"{t} {d['bfloat16']:.0f} + {d['float32']:.0f} MB" for t, d in c["dump_mb"].items())
    )
    rows = [
        [
            name,
            "{:.2f} / {:.2f}".format(r["wall_s"], r["min_s"]),
            "{:.0f}".format(r["bytes"] / 1e6),
            "{:.3f} / {:.3f}".format(r["gb_per_s"], r["best_gb_per_s"]),
        ]
        for name, r in c["rows"].items()
    ]
    out.append(table(["compare", "wall s", "tensor MB", "GB/s"], rows))
    out.append(
        "(dumps read from {}; wall: median / min over rounds, each a fresh process except in-process)".format(
            c.get("dump_dir")
        )
    )
    if c["skipped"]:
        out.append(f"skipped msprobe compare: {c['skipped']}")
    out.append("")
    out.append(targets_table(result["targets"]))
    return "\n".join(out)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every measurement (default 3)")
    ap.add_argument("--steps", type=int, default=10, help="timed train steps per worker (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="untimed train steps per worker first (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument("--no-compare", action="store_true", help="skip the compare-throughput part")
    ap.add_argument(
        "--kinds",
        default=",".join(STEP_KINDS),
        help="comma-separated step-overhead kinds to run (bare always runs) [default: all]",
    )
    ap.add_argument(
        "--dump-dir",
        default=None,
        help="where the tensor dumps of the compare part go (default /dev/shm if it exists, else "
        "the system temp dir)",
    )
    ap.add_argument(
        "--device",
        default="cpu",
        help="where the step-overhead model trains (default cpu; cuda on a GPU: each step synchronized)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    for hidden in ("--result", "--tmp", "--tool", "--dtype", "--out", "--target", "--reference"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if args.worker == "dump":
            res = worker_dump(args.tool, args.dtype, args.out)
        elif args.worker == "compare":
            res = worker_compare(args.target, args.reference)
        else:
            res = worker_step(args.worker, args.steps, args.warmup, args.tmp, args.device)
        with open(args.result, "w", encoding="utf-8") as f:
            json.dump(res, f)
        return 0
    if args.repeat < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--repeat and --steps must be at least 1, --warmup at least 0")

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.perf_counter()
    psi0 = cpu_pressure_us()
    result: Dict[str, Any] = {
        "args": {"repeat": args.repeat, "steps": args.steps, "warmup": args.warmup, "device": args.device},
        "machine": machine(),
    }
    result["steps"] = step_overhead(
        args.repeat, args.steps, args.warmup, progress, args.kinds.split(","), args.device
    )
    if args.no_compare:
        result["compare"] = {"rows": {}, "skipped": "--no-compare", "dump_mb": {}, "dump_s": {}}
    else:
        result["compare"] = compare_throughput(args.repeat, args.dump_dir or default_dump_dir(), progress)
    result["targets"] = targets(result) if not args.no_compare else []
    result["bench_wall_s"] = time.perf_counter() - started
    psi1 = cpu_pressure_us()
    # share of the bench's wall time during which some task (ours or another process's) waited for a CPU:
    # the workers are single-threaded, so on an otherwise idle 2-core machine this stays near 0
    result["cpu_pressure"] = (
        None if psi0 is None or psi1 is None else (psi1 - psi0) / 1e6 / result["bench_wall_s"]
    )
    result["loadavg_end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
