#!/usr/bin/env python
"""compare on a step of many small ops (an LSTM unrolled in Python), ours next to msprobe's, in one run.

    python bench/compare_many_ops.py [--repeat 3] [--steps-in-time 200]

``bench_precision.py`` measures compare in GB/s on a tiny Llama (1,341 records, 1.5 GB of tensors): bound by
reading and measuring tensors. A model that loops over time in Python makes the other kind of dump: tens of
thousands of records of small tensors, where compare's time is its per-record work. The model is the one of
pytorch/examples' ``time_sequence_prediction/train.py`` (two LSTM cells of 51 units and a ``Linear``, one
cell step per time step), its cells written out of ``Linear`` layers and pointwise ops (msprobe's L1 records
nothing of an ``nn.LSTMCell``: a dump of the script's own model held 52 entries, the final ``Linear``'s and the
loss's, for 20 time steps), in float32 on a batch of 8 sine waves of ``--steps-in-time`` steps, one SGD step
(forward, MSE loss, backward, ``optimizer.step()``), CPU, one thread. It is dumped with statistics only by
each tool in its own process: ours with ``capture(DIR, level="op", mode="stats", model=model)``, msprobe with
task "statistics", level L1 (as ``bench_precision.py``); the target run is the same step in bfloat16 (the
float32 initial weights cast), the reference in float32. Then, interleaved over ``--repeat`` rounds, each a
fresh process:

* ``python -m ascend_tools.cli compare BF16 FP32 -f json -o X`` on our dumps;
* ``msprobe compare -tp BF16/step0 -gp FP32/step0 -o OUT`` on msprobe's (run the bench with the bench
  virtualenv's python, bench/README.md; skipped with the reason where ``import msprobe.pytorch`` fails);
* ours on msprobe's dumps.

Records/s = records of the target dump / wall time (msprobe's: the entries of its ``dump.json``).
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
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_precision import ROOT, _env, machine, msprobe_command, msprobe_debugger, timed

SCRIPT = os.path.abspath(__file__)
SEED = 0
BATCH = 8
HIDDEN = 51


def build(dtype_name: str, steps_in_time: int) -> Any:
    """``(model, input, target)``: time_sequence_prediction's ``Sequence`` (float32 init from SEED, then cast)
    and a batch of sine waves."""
    import torch
    from torch import nn

    class Cell(nn.Module):
        """``nn.LSTMCell``'s arithmetic out of ``Linear`` layers and pointwise ops, as a hand-written cell is
        (msprobe's L1 hooks nothing of ``nn.LSTMCell`` itself: its ``torch._VF.lstm_cell`` is no API it wraps)."""

        def __init__(self, n_in: int, n: int) -> None:
            super().__init__()
            self.ih, self.hh = nn.Linear(n_in, 4 * n), nn.Linear(n, 4 * n)

        def forward(self, x: Any, state: Any) -> Any:
            h, c = state
            i, f, g, o = (self.ih(x) + self.hh(h)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c

    class Sequence(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm1 = Cell(1, HIDDEN)
            self.lstm2 = Cell(HIDDEN, HIDDEN)
            self.linear = nn.Linear(HIDDEN, 1)

        def forward(self, x: Any) -> Any:
            zeros = x.new_zeros(x.size(0), HIDDEN)
            h, c, h2, c2 = zeros, zeros, zeros, zeros
            outputs = []
            for x_t in x.split(1, dim=1):
                h, c = self.lstm1(x_t, (h, c))
                h2, c2 = self.lstm2(h, (h2, c2))
                outputs.append(self.linear(h2))
            return torch.cat(outputs, dim=1)

    torch.manual_seed(SEED)
    dtype = getattr(torch, dtype_name)
    model = Sequence().to(dtype)
    t = torch.arange(steps_in_time + 1, dtype=torch.float64) + 80.0 * torch.arange(BATCH).unsqueeze(1)
    waves = torch.sin(t / 20.0).to(dtype)
    return model, waves[:, :-1], waves[:, 1:]


def worker_dump(tool: str, dtype_name: str, out_dir: str, steps_in_time: int) -> Dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    model, x, y = build(dtype_name, steps_in_time)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step() -> None:
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()

    start = time.perf_counter()
    if tool == "ours":
        from ascend_tools.precision import capture

        with capture(out_dir, level="op", mode="stats", model=model):
            step()
    else:
        debugger = msprobe_debugger(out_dir, "statistics", "L1")
        debugger.start(model)
        step()
        debugger.stop()
        debugger.step()
    return {"dump_s": time.perf_counter() - start}


def run_dump(tool: str, dtype_name: str, out_dir: str, steps_in_time: int) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-many-ops-") as tmp:
        result = os.path.join(tmp, "result.json")
        cmd = [sys.executable, SCRIPT, "--worker", tool, "--dtype", dtype_name, "--out", out_dir]
        cmd += ["--steps-in-time", str(steps_in_time), "--result", result]
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not os.path.isfile(result):
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
            sys.exit(f"bench: dump {tool} {dtype_name} failed (exit {proc.returncode}):\n{tail}")
        with open(result, encoding="utf-8") as f:
            return json.load(f)


def our_records(dump: str) -> int:
    with open(os.path.join(dump, "rank0", "step0", "records.jsonl"), "rb") as f:
        return sum(1 for _ in f)


def msprobe_records(dump: str) -> int:
    """The entries of msprobe's ``dump.json`` (``step0/rank/`` or, outside torch.distributed, ``step0/proc<pid>/``)."""
    (path,) = glob.glob(os.path.join(dump, "step0", "*", "dump.json"))
    with open(path, encoding="utf-8") as f:
        return len(json.load(f)["data"])


def _msprobe_skip() -> Optional[str]:
    if not msprobe_command():
        return "no msprobe command on PATH (pip install mindstudio-probe)"
    probe = subprocess.run(
        [sys.executable, "-c", "import msprobe.pytorch"], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    if probe.returncode != 0:
        return "import msprobe.pytorch: " + (probe.stderr.strip().splitlines() or ["failed"])[-1]
    return None


def bench(repeat: int, steps_in_time: int, work: str) -> Dict[str, Any]:
    skip = _msprobe_skip()
    tools = ["ours"] + ([] if skip else ["msprobe"])
    dirs = {t: {d: os.path.join(work, f"{t}-{d}") for d in ("float32", "bfloat16")} for t in tools}
    dump_s = {
        t: {d: run_dump(t, d, path, steps_in_time)["dump_s"] for d, path in ds.items()}
        for t, ds in dirs.items()
    }
    records = {"ours": our_records(dirs["ours"]["bfloat16"])}
    if "msprobe" in dirs:
        records["msprobe"] = msprobe_records(dirs["msprobe"]["bfloat16"])
    rows: Dict[str, List[float]] = {"ours CLI, our dumps": []}
    if "msprobe" in dirs:
        rows.update({"msprobe CLI, msprobe dumps": [], "ours CLI, msprobe dumps": []})
    out_dir = os.path.join(work, "out")

    def ours_cli(target: str, reference: str) -> float:
        cli = [sys.executable, "-m", "ascend_tools.cli", "compare", target, reference]
        return timed([*cli, "-f", "json", "-o", os.path.join(work, "ours.json")])

    for i in range(repeat):
        rows["ours CLI, our dumps"].append(ours_cli(dirs["ours"]["bfloat16"], dirs["ours"]["float32"]))
        if "msprobe" in dirs:
            ms_t = os.path.join(dirs["msprobe"]["bfloat16"], "step0")
            ms_r = os.path.join(dirs["msprobe"]["float32"], "step0")
            shutil.rmtree(out_dir, ignore_errors=True)
            os.makedirs(out_dir)
            msprobe = str(msprobe_command())
            rows["msprobe CLI, msprobe dumps"].append(
                timed([msprobe, "compare", "-tp", ms_t, "-gp", ms_r, "-o", out_dir], timeout=3600)
            )
            rows["ours CLI, msprobe dumps"].append(ours_cli(ms_t, ms_r))
        print(
            f"[{i + 1}/{repeat}] " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()),
            file=sys.stderr,
            flush=True,
        )
    table = {}
    for name, walls in rows.items():
        n = records["msprobe" if name.endswith("msprobe dumps") else "ours"]
        table[name] = {
            "wall_s": statistics.median(walls),
            "min_s": min(walls),
            "records": n,
            "records_per_s": n / statistics.median(walls),
        }
    return {"rows": table, "skipped": skip, "dump_s": dump_s, "records": records}


def render(result: Dict[str, Any]) -> str:
    args = result["args"]
    lines = [
        f"compare on many small ops: time_sequence_prediction's LSTM, {args['steps_in_time']} time steps, batch "
        f"{BATCH}, one SGD step, bf16 target vs fp32 reference, statistics dumps; {args['repeat']} rounds",
        "machine: {nproc} CPUs, {cpu}; Python {python}, torch {torch}; {date}".format(**result["machine"]),
        "",
        f"{'compare':<28} {'wall s (median / min)':>22} {'records':>8} {'records/s':>10}",
    ]
    for name, row in result["rows"].items():
        walls = f"{row['wall_s']:.2f} / {row['min_s']:.2f}"
        lines.append(f"{name:<28} {walls:>22} {row['records']:>8} {row['records_per_s']:>10.0f}")
    rows = result["rows"]
    if "msprobe CLI, msprobe dumps" in rows:
        ours, theirs = rows["ours CLI, our dumps"], rows["msprobe CLI, msprobe dumps"]
        lines.append("")
        lines.append(
            f"records/s, ours CLI / msprobe CLI: {ours['records_per_s'] / theirs['records_per_s']:.2f}x"
        )
    elif result["skipped"]:
        lines.append(f"msprobe skipped: {result['skipped']}")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3, help="rounds of every compare (default 3)")
    ap.add_argument("--steps-in-time", type=int, default=200, help="time steps of the sequence (default 200)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    for hidden in ("--dtype", "--out", "--result"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res = worker_dump(args.worker, args.dtype, args.out, args.steps_in_time)
        with open(args.result, "w", encoding="utf-8") as f:
            json.dump(res, f)
        return 0
    if args.repeat < 1 or args.steps_in_time < 1:
        ap.error("--repeat and --steps-in-time must be at least 1")
    work = tempfile.mkdtemp(prefix="bench-many-ops-")
    try:
        result = bench(args.repeat, args.steps_in_time, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["args"] = {"repeat": args.repeat, "steps_in_time": args.steps_in_time}
    result["machine"] = machine()
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
