#!/usr/bin/env python
"""Wall time and peak RSS of ``ascend-doctor check-ops TARGET`` next to a bare meta-device trace.

    python bench/bench_check_ops.py [--repeat 3] [--json] [--target ascend_tools/examples/llama_7b.py]

Every measurement is a fresh subprocess, run from the repository root:

* **ours**: the real CLI, ``python -m ascend_tools.cli check-ops TARGET --format json -o TMP`` (it spawns
  ``ascend_tools.opcheck.child`` for the trace, so it is a tree of two Python processes);
* **bare**: a minimal script that imports torch and transformers, builds ``build_model()`` of TARGET under
  ``torch.device("meta")``, makes ``example_inputs()`` there too (as check-ops does) and runs
  ``model(**inputs).loss.backward()``: no dispatch mode, no ascend_tools. It is the floor for the same work.

Runs are interleaved (bare, ours, bare, ours, ...) so drift on the machine hits both alike; median and min
over ``--repeat`` runs are printed. Memory of a process tree is measured two ways (see bench/README.md):

* ``max1``: the largest peak RSS of any one process in the tree, exact, from the kernel: ``os.wait4`` on the
  top process returns its rusage merged with that of every descendant it waited for, and ``ru_maxrss`` of
  that merge is a maximum over the processes, not a sum;
* ``sum``: the peak of the summed RSS of all live processes of the tree, sampled with psutil every
  ``--interval`` seconds (it can miss a spike shorter than the interval; its per-process maximum is
  checked against the kernel's ``max1``).

Unless ``--no-breakdown``, each round also times where the time goes: interpreter start-up, imports, and
the real check-ops child run in-process with timers around its two steps (``target.load``, ``trace.run_traced``).
"""

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import psutil
from benchlib import machine as benchlib_machine
from benchlib import table, version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1e6  # all sizes are printed in MB = 10**6 bytes; the 1 GB target is 1000 MB
TARGET_WALL_S = 10.0
TARGET_RSS_MB = 1000.0
TARGET_RATIO = 3.0

# The bare trace. argv: TARGET. Prints one JSON line: wall-clock (time.time()) stamps of its phases.
BARE = r"""
import time
t0 = time.time()
import importlib.util, json, sys
import torch, transformers
t1 = time.time()
spec = importlib.util.spec_from_file_location("bench_target", sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
with torch.device("meta"):
    made = mod.build_model()
    inputs = mod.example_inputs()
if isinstance(made, tuple):
    made, inputs = made
t2 = time.time()
out = made(**inputs) if isinstance(inputs, dict) else made(*inputs)
t3 = time.time()
assert out.loss.device.type == "meta"
out.loss.backward()
t4 = time.time()
print(json.dumps({"t0": t0, "import": t1, "build": t2, "forward": t3, "backward": t4}))
"""

# The check-ops child (ascend_tools.opcheck.child.main), with timers around target.load and trace.run_traced.
# argv: SPEC OUT. torch and transformers are imported first, as in BARE, so the phases line up.
CHILD = r"""
import time
t0 = time.time()
import json, sys
import torch, transformers
t1 = time.time()
from ascend_tools.opcheck import child, target, trace
t2 = time.time()
spent = {}
def timed(name, fn):
    def wrapper(*args, **kwargs):
        start = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            spent[name] = time.time() - start
    return wrapper
target.load = timed("load", target.load)
trace.run_traced = timed("trace", trace.run_traced)
code = child.main(sys.argv[1:])
t3 = time.time()
print(json.dumps({"t0": t0, "import": t1, "import_ascend": t2, "main": t3,
                  "load": spent.get("load", 0.0), "trace": spent.get("trace", 0.0), "code": code}))
"""

# The CLI, as ``python -m ascend_tools.cli`` runs it, with time stamps around its one subprocess.run (the
# trace child) and at its last atexit handler. argv: the CLI's arguments. Prints the stamps on stderr.
PARENT = r"""
import time
t0 = time.time()
import atexit, json, runpy, subprocess, sys
stamps = {"t0": t0}
_run = subprocess.run
def run(*args, **kwargs):
    stamps.setdefault("spawn", time.time())
    try:
        return _run(*args, **kwargs)
    finally:
        stamps["reaped"] = time.time()
subprocess.run = run
atexit.register(lambda: sys.stderr.write("BENCH-STAMPS " + json.dumps(dict(stamps, atexit=time.time())) + "\n"))
sys.argv = ["ascend-doctor", *sys.argv[1:]]
runpy.run_module("ascend_tools.cli", run_name="__main__", alter_sys=True)
"""

# rows of the "where the time goes" table, in the order they happen
PHASES = [
    "start-up",
    "import torch+transformers",
    "import ascend_tools.opcheck",
    "build model+inputs",
    "forward+backward",
    "write trace JSON",
    "exit",
]

IMPORTS = [
    ("python start-up (-c pass)", "pass"),
    ("import ascend_tools.cli", "import ascend_tools.cli"),
    ("import ascend_tools.opcheck.checkops", "import ascend_tools.opcheck.checkops"),
    ("import torch", "import torch"),
    ("import torch, transformers", "import torch, transformers"),
]


class Run:
    """One finished subprocess: wall time, exit code, memory figures, its output."""

    def __init__(
        self,
        wall: float,
        code: int,
        max1: float,
        max1_sampled: float,
        tree_sum: float,
        samples: int,
        started: float,
        ended: float,
        stdout: str,
        stderr: str,
    ) -> None:
        self.wall, self.code = wall, code
        self.max1, self.max1_sampled, self.tree_sum, self.samples = max1, max1_sampled, tree_sum, samples
        self.started, self.ended = started, ended  # time.time() at launch and after the wait
        self.stdout, self.stderr = stdout, stderr


def _tree_rss(root: psutil.Process) -> List[int]:
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return []
    rss = []
    for p in procs:
        with contextlib.suppress(psutil.Error):  # gone, a zombie, or not ours
            rss.append(p.memory_info().rss)
    return rss


def measure(cmd: Sequence[str], interval: float) -> Run:
    """Run ``cmd`` from the repository root; sample the tree's RSS in a thread, wait with ``os.wait4``."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(cmd), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        peaks = {"max1": 0, "sum": 0, "n": 0}
        done = threading.Event()

        def sample() -> None:
            try:
                root = psutil.Process(proc.pid)
            except psutil.Error:
                return
            while not done.is_set():
                rss = _tree_rss(root)
                if rss:
                    peaks["max1"] = max(peaks["max1"], max(rss))
                    peaks["sum"] = max(peaks["sum"], sum(rss))
                    peaks["n"] += 1
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        ended = time.time()
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    # ru_maxrss is in kilobytes on Linux, in bytes on macOS
    max1 = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Run(
        wall,
        proc.returncode,
        max1 / MB,
        peaks["max1"] / MB,
        peaks["sum"] / MB,
        peaks["n"],
        started,
        ended,
        stdout,
        stderr,
    )


def _fail(what: str, run: Run) -> None:
    tail = "\n".join(run.stderr.strip().splitlines()[-15:])
    sys.exit(f"bench: {what} failed (exit {run.code}):\n{tail}")


def _last_json(text: str) -> Dict[str, Any]:
    lines = [line for line in text.strip().splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def run_bare(target: str, interval: float) -> Dict[str, Any]:
    run = measure([sys.executable, "-c", BARE, target], interval)
    if run.code != 0:
        _fail("bare trace", run)
    t = _last_json(run.stdout)
    phases = {
        "start-up": t["t0"] - run.started,
        "import torch+transformers": t["import"] - t["t0"],
        "build model+inputs": t["build"] - t["import"],
        "forward+backward": t["backward"] - t["build"],
        "exit": run.ended - t["backward"],
    }
    return {"run": run, "phases": phases}


def run_ours(target: str, interval: float) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-check-ops-") as tmp:
        report_path = os.path.join(tmp, "report.json")
        cmd = [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            "check-ops",
            target,
            "--format",
            "json",
            "-o",
            report_path,
        ]
        run = measure(cmd, interval)
        if run.code not in (0, 1) or not os.path.isfile(report_path):  # 1: findings at --fail-on
            _fail("check-ops", run)
        with open(report_path, encoding="utf-8") as f:
            report = json.load(f)
    return {"run": run, "report": report}


def run_parent(target: str, interval: float) -> Dict[str, Any]:
    """The CLI again, with stamps: what its own process spends before, during and after the trace child."""
    with tempfile.TemporaryDirectory(prefix="bench-check-ops-") as tmp:
        report_path = os.path.join(tmp, "report.json")
        run = measure(
            [sys.executable, "-c", PARENT, "check-ops", target, "--format", "json", "-o", report_path],
            interval,
        )
    lines = [line for line in run.stderr.splitlines() if line.startswith("BENCH-STAMPS ")]
    if run.code not in (0, 1) or not lines:
        _fail("check-ops (with stamps)", run)
    t = json.loads(lines[-1].split(" ", 1)[1])
    phases = {
        "start-up": t["t0"] - run.started,
        "imports, options, spec (child not started yet)": t["spawn"] - t["t0"],
        "waiting for the trace child": t["reaped"] - t["spawn"],
        "read trace, scan source, build + write report": t["atexit"] - t["reaped"],
        "exit": run.ended - t["atexit"],
    }
    return {"run": run, "phases": phases}


def run_child(target: str, version: str, interval: float) -> Dict[str, Any]:
    """The check-ops child alone, with the spec ``checkops.check_ops`` writes for the CLI's defaults."""
    with tempfile.TemporaryDirectory(prefix="bench-check-ops-") as tmp:
        spec_path, out_path = os.path.join(tmp, "spec.json"), os.path.join(tmp, "trace.json")
        spec = {
            "target": target,
            "entry": None,
            "batch": 1,
            "seq_len": 128,
            "dtype": "fp32",
            "backward": True,
            "torch_npu_version": version,
        }
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        run = measure([sys.executable, "-c", CHILD, spec_path, out_path], interval)
        trace_mb = os.path.getsize(out_path) / MB if os.path.isfile(out_path) else 0.0
    t = _last_json(run.stdout)
    if run.code != 0 or t.get("code") != 0:
        _fail("check-ops child", run)
    main = t["main"] - t["import_ascend"]
    phases = {
        "start-up": t["t0"] - run.started,
        "import torch+transformers": t["import"] - t["t0"],
        "import ascend_tools.opcheck": t["import_ascend"] - t["import"],
        "build model+inputs": t["load"],
        "forward+backward": t["trace"],
        "write trace JSON": main - t["load"] - t["trace"],
        "exit": run.ended - t["main"],
    }
    return {"run": run, "phases": phases, "trace_mb": trace_mb}


def run_import(code: str, interval: float) -> Run:
    run = measure([sys.executable, "-c", code], interval)
    if run.code != 0:
        _fail(code, run)
    return run


# --- statistics and printing ---------------------------------------------------------------------


def stats(values: Sequence[float]) -> Dict[str, float]:
    return {"median": statistics.median(values), "min": min(values)}


def run_stats(runs: Sequence[Run]) -> Dict[str, Dict[str, float]]:
    return {
        "wall_s": stats([r.wall for r in runs]),
        "max1_mb": stats([r.max1 for r in runs]),
        "max1_sampled_mb": stats([r.max1_sampled for r in runs]),
        "sum_mb": stats([r.tree_sum for r in runs]),
    }


def machine() -> Dict[str, Any]:
    return benchlib_machine(
        memory_gb=round(psutil.virtual_memory().total / 1e9, 1),
        torch=version("torch"),
        transformers=version("transformers"),
    )


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(result: Dict[str, Any]) -> List[Dict[str, Any]]:
    ours, ratio = result["ours"], result["ratio"]
    return [
        {
            "target": f"wall <= {TARGET_WALL_S:g} s",
            "value": ours["wall_s"]["median"],
            "unit": "s",
            "pass": ours["wall_s"]["median"] <= TARGET_WALL_S,
        },
        {
            "target": f"peak RSS, summed over the tree <= {TARGET_RSS_MB:g} MB",
            "value": ours["sum_mb"]["median"],
            "unit": "MB",
            "pass": ours["sum_mb"]["median"] <= TARGET_RSS_MB,
        },
        {
            "target": f"peak RSS, largest process <= {TARGET_RSS_MB:g} MB",
            "value": ours["max1_mb"]["median"],
            "unit": "MB",
            "pass": ours["max1_mb"]["median"] <= TARGET_RSS_MB,
        },
        {
            "target": f"wall <= {TARGET_RATIO:g}x bare",
            "value": ratio["wall_s"],
            "unit": "x",
            "pass": ratio["wall_s"] <= TARGET_RATIO,
        },
        {
            "target": f"peak RSS (summed) <= {TARGET_RATIO:g}x bare",
            "value": ratio["sum_mb"],
            "unit": "x",
            "pass": ratio["sum_mb"] <= TARGET_RATIO,
        },
    ]


def render(result: Dict[str, Any]) -> str:
    m, n = result["machine"], result["repeat"]
    out = [
        "check-ops benchmark: {}  ({} runs each, interleaved; median / min)".format(result["target"], n),
        "machine: {} CPUs, {}, {} GB RAM; Python {}, torch {}, transformers {}; {}".format(
            m["nproc"], m["cpu"], m["memory_gb"], m["python"], m["torch"], m["transformers"], m["date"]
        ),
        "traced by check-ops: {ops} ops, {calls} calls ({mode}), trace complete: {complete}".format(
            **result["work"]
        ),
        "",
    ]
    rows = []
    for name, key in (("bare meta fwd+bwd", "bare"), ("ours: check-ops CLI", "ours")):
        s = result[key]
        rows.append(
            [
                name,
                "{:.2f} / {:.2f}".format(s["wall_s"]["median"], s["wall_s"]["min"]),
                "{:.0f} / {:.0f}".format(s["max1_mb"]["median"], s["max1_mb"]["min"]),
                "{:.0f} / {:.0f}".format(s["sum_mb"]["median"], s["sum_mb"]["min"]),
                "{:.0f}".format(s["max1_sampled_mb"]["median"]),
            ]
        )
    r = result["ratio"]
    rows.append(
        [
            "ratio ours/bare (medians)",
            "{:.2f}x".format(r["wall_s"]),
            "{:.2f}x".format(r["max1_mb"]),
            "{:.2f}x".format(r["sum_mb"]),
            "{:.2f}x".format(r["max1_sampled_mb"]),
        ]
    )
    out.append(table(["", "wall s", "max1 RSS MB", "sum RSS MB", "max1 sampled MB"], rows))
    out.append("")
    out.append(
        table(
            ["target", "measured", ""],
            [
                [t["target"], "{:.2f} {}".format(t["value"], t["unit"]), _verdict(t["pass"])]
                for t in result["targets"]
            ],
        )
    )
    if result.get("breakdown"):
        b = result["breakdown"]
        out.append("")
        out.append("where the time goes (medians, s)")
        names = [p for p in PHASES if p in b["bare"] or p in b["child"]]
        rows = [[p, _fmt(b["bare"].get(p)), _fmt(b["child"].get(p))] for p in names]
        rows.append(["total (own wall)", _fmt(b["bare_wall"]), _fmt(b["child_wall"])])
        out.append(table(["phase", "bare", "check-ops child"], rows))
        out.append("")
        rows = [[p, _fmt(v)] for p, v in b["parent"].items()]
        rows.append(["total (own wall)", _fmt(b["parent_wall"])])
        out.append(table(["check-ops CLI process (the parent)", "s"], rows))
        out.append("trace JSON handed from the child to the CLI: {:.1f} MB".format(b["trace_mb"]))
        out.append("")
        out.append(
            table(
                ["import only (fresh interpreter)", "wall s", "max1 RSS MB"],
                [
                    [name, _fmt(v["wall_s"]), "{:.0f}".format(v["max1_mb"])]
                    for name, v in b["imports"].items()
                ],
            )
        )
    return "\n".join(out)


def _fmt(v: Optional[float]) -> str:
    return "" if v is None else f"{v:.2f}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--target",
        default="ascend_tools/examples/llama_7b.py",
        help="Python model file with build_model() and example_inputs(), relative to the repo root",
    )
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement (default 3)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the tables")
    ap.add_argument(
        "--interval", type=float, default=0.05, help="RSS sampling period in seconds (default 0.05)"
    )
    ap.add_argument("--no-breakdown", action="store_true", help="skip the child-phase and import timings")
    ap.add_argument(
        "--warmup", type=int, default=1, help="untimed bare runs first, to warm the page cache (default 1)"
    )
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if not os.path.isfile(os.path.join(ROOT, args.target)):
        ap.error(f"--target {args.target}: no such file under {ROOT}")

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    bare: List[Dict[str, Any]] = []
    ours: List[Dict[str, Any]] = []
    child: List[Dict[str, Any]] = []
    parent: List[Dict[str, Any]] = []
    imports: Dict[str, List[Run]] = {name: [] for name, _ in IMPORTS}
    for _ in range(args.warmup):
        run_bare(args.target, args.interval)
        progress("warm-up run done")
    for i in range(args.repeat):
        bare.append(run_bare(args.target, args.interval))
        progress("[{}/{}] bare  {:.2f} s".format(i + 1, args.repeat, bare[-1]["run"].wall))
        ours.append(run_ours(args.target, args.interval))
        progress("[{}/{}] ours  {:.2f} s".format(i + 1, args.repeat, ours[-1]["run"].wall))
        if not args.no_breakdown:
            parent.append(run_parent(args.target, args.interval))
            progress("[{}/{}] ours with stamps {:.2f} s".format(i + 1, args.repeat, parent[-1]["run"].wall))
            child.append(run_child(args.target, ours[-1]["report"]["torch_npu_version"], args.interval))
            progress("[{}/{}] child {:.2f} s".format(i + 1, args.repeat, child[-1]["run"].wall))
            for name, code in IMPORTS:
                imports[name].append(run_import(code, args.interval))

    summary = ours[-1]["report"]["summary"]
    trace_info = ours[-1]["report"]["trace"] or {}
    result: Dict[str, Any] = {
        "target": args.target,
        "repeat": args.repeat,
        "machine": machine(),
        "work": {
            "ops": summary["ops"],
            "calls": summary["calls"],
            "complete": trace_info.get("complete"),
            "mode": "{}, {}".format(
                trace_info.get("dtype"), "forward+backward" if trace_info.get("backward") else "forward only"
            ),
        },
        "bare": run_stats([b["run"] for b in bare]),
        "ours": run_stats([o["run"] for o in ours]),
    }
    result["ratio"] = {k: result["ours"][k]["median"] / result["bare"][k]["median"] for k in result["ours"]}
    result["targets"] = targets(result)
    if child:
        result["breakdown"] = {
            "bare": {p: statistics.median(b["phases"][p] for b in bare) for p in bare[0]["phases"]},
            "child": {p: statistics.median(c["phases"][p] for c in child) for p in child[0]["phases"]},
            "parent": {p: statistics.median(r["phases"][p] for r in parent) for p in parent[0]["phases"]},
            "parent_wall": statistics.median(r["run"].wall for r in parent),
            "bare_wall": statistics.median(b["run"].wall for b in bare),
            "child_wall": statistics.median(c["run"].wall for c in child),
            "child_max1_mb": statistics.median(c["run"].max1 for c in child),
            "trace_mb": child[-1]["trace_mb"],
            "imports": {
                name: {
                    "wall_s": statistics.median(r.wall for r in runs),
                    "max1_mb": statistics.median(r.max1 for r in runs),
                }
                for name, runs in imports.items()
            },
        }
    result["runs"] = {
        "bare": [
            {
                "wall_s": b["run"].wall,
                "max1_mb": b["run"].max1,
                "sum_mb": b["run"].tree_sum,
                "samples": b["run"].samples,
            }
            for b in bare
        ],
        "ours": [
            {
                "wall_s": o["run"].wall,
                "max1_mb": o["run"].max1,
                "sum_mb": o["run"].tree_sum,
                "samples": o["run"].samples,
            }
            for o in ours
        ],
    }
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
