"""What the profiler costs, measured in one run: all_reduce 1 KB–16 MB on 2 and 4 gloo ranks and a DDP step,
each instrumented vs not (interleaved rounds), and ``ascend-doctor analyze`` on simulated files of many
ranks (wall time, peak RSS). Prints tables (or ``--json``); progress on stderr. See bench/README.md."""

import argparse
import contextlib
import glob
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from benchlib import cpu_pressure_us, machine, table  # noqa: E402

from ascend_tools.profiling.profiler import profile  # noqa: E402

SIZES = [1 << 10, 1 << 14, 1 << 17, 1 << 20, 1 << 22, 1 << 24]  # bytes: 1 KB … 16 MB


BLOCK_S = 0.4  # target length of one timed block


def _block(x: torch.Tensor, n: int, barrier: bool = True) -> float:
    """Seconds per ``dist.all_reduce(x)`` over ``n`` calls."""
    if barrier:
        dist.barrier()
    t = time.perf_counter()
    for _ in range(n):
        dist.all_reduce(x)
    return (time.perf_counter() - t) / n


def added_per_call(rounds: int, calls: int = 5000) -> Dict[str, Any]:
    """The profiler's own cost per call, without the other ranks' noise: a one-rank gloo group in this
    process, all_reduce of 1 KB, bare vs profiled blocks interleaved."""
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        x = torch.ones(256)
        _block(x, 500, barrier=False)
        bare, ours = [], []
        for r in range(rounds):
            bare.append(_block(x, calls, barrier=False))
            with profile(os.path.join(tmp, f"p{r}")):
                ours.append(_block(x, calls, barrier=False))
        hot = hot_path_us(x, rounds, calls)
        funcol_bare, funcol_ours = [], []
        _funcol_block(x, 500)
        for r in range(rounds):
            funcol_bare.append(_funcol_block(x, calls))
            with profile(os.path.join(tmp, f"f{r}")):
                funcol_ours.append(_funcol_block(x, calls))
        dist.destroy_process_group()
    return {
        "funcol_bare_us": 1e6 * statistics.median(funcol_bare),
        "funcol_ours_us": 1e6 * statistics.median(funcol_ours),
        "funcol_added_us": 1e6 * statistics.median(o - b for o, b in zip(funcol_ours, funcol_bare)),
        "calls": calls,
        "bare_us": 1e6 * statistics.median(bare),
        "ours_us": 1e6 * statistics.median(ours),
        "added_us": 1e6 * statistics.median(o - b for o, b in zip(ours, bare)),
        "added_over_bare": statistics.median((o - b) / b for o, b in zip(ours, bare)),
        "hot_path_us": hot,
    }


def _funcol_block(x: torch.Tensor, n: int) -> float:
    """Seconds per functional all_reduce and its wait (DTensor's pair: ``funcol.all_reduce``, ``wait_tensor``)."""
    import torch.distributed._functional_collectives as funcol

    group = dist.group.WORLD
    t = time.perf_counter()
    for _ in range(n):
        funcol.wait_tensor(funcol.all_reduce(x, "sum", group))
    return (time.perf_counter() - t) / n


def hot_path_us(x: torch.Tensor, rounds: int, calls: int) -> float:
    """The interceptor's own work per call (describe, record, stack id, complete, emit) around a collective
    that does nothing: what a call costs us, apart from how the backend reacts to being called less tightly
    (gloo's worker thread falls asleep between calls and takes longer to wake: the bare ``wait`` grows)."""
    from ascend_tools.profiling.comm import CommInterceptor

    def all_reduce(tensor, op=None, group=None, async_op=False):  # all_reduce's signature, no work
        return None

    sink: List[Dict[str, Any]] = []
    comm = CommInterceptor(sink.append, lambda: 0)
    wrapped = comm._wrap("all_reduce", all_reduce)
    comm.active = True
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            wrapped(x)
        times.append((time.perf_counter() - t) / calls)
        recorded = sum(r["k"] == "coll" for r in sink)
        if recorded != calls:  # else the wrapper took its early exit: the figure would be a bare call's
            raise RuntimeError(f"hot path: {recorded} collective records for {calls} calls")
        sink.clear()
    return 1e6 * statistics.median(times)


def always_on_cost_us(calls: int = 20000) -> Dict[str, Any]:
    """The always-on profiler's CPU time per collective, counted per thread (``time.thread_time``: what the
    profiler itself executes, whatever else runs on the machine), less the same calls made bare: in the
    training thread, the wrapper around an all_reduce that does nothing, blocking, and async with its future
    already complete (DDP's bucket all-reduce; the completion callback then runs in that thread); in the
    writer thread, the aggregation of the records into a window; and, at each step end, the read of a DDP
    model's own timers (ddp_stats.py: always-on times DDP's bucket all-reduces so, without a comm hook)."""
    from ascend_tools.profiling.always_on import WindowRecorder
    from ascend_tools.profiling.comm import CommInterceptor

    done: Any = torch.futures.Future()
    done.set_result(None)

    class Done:
        def get_future(self) -> Any:
            return done  # as gloo's work does: the same (complete) future at every call, none built

    def all_reduce(tensor, op=None, group=None, async_op=False):  # all_reduce's signature, no work
        return Done() if async_op else None

    def per_call(fn: Any, **kwargs: Any) -> float:
        t = time.thread_time()
        for _ in range(calls):
            out = fn(x, **kwargs)
            if out is not None:
                out.get_future()  # as DDP's allreduce_hook does
        return (time.thread_time() - t) / calls

    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        sink: List[Dict[str, Any]] = []
        comm = CommInterceptor(sink.append, lambda: 0)
        wrapped = comm._wrap("all_reduce", all_reduce)
        comm.active = True
        x = torch.ones(256)
        per_call(wrapped, async_op=True)  # warm-up: the group and the stack tables
        sink.clear()
        cost = {}
        for kind, kwargs in (("async", {"async_op": True}), ("sync", {})):
            cost[kind] = 1e6 * (per_call(wrapped, **kwargs) - per_call(all_reduce, **kwargs))
        records = [r for r in sink if r["k"] == "coll"]
        if len(records) != 2 * calls:  # else the wrapper took its early exit
            raise RuntimeError(f"always-on cost: {len(records)} collective records for {2 * calls} calls")
        recorder = WindowRecorder(os.path.join(tmp, "rank0"), {}, 60.0)
        t = time.thread_time()
        with recorder._lock:
            recorder._select(records)
        cost["writer"] = 1e6 * (time.thread_time() - t) / len(records)
        recorder.close()
        cost["ddp_read"] = ddp_read_us(calls // 10)
        dist.destroy_process_group()
    return {
        "calls": calls,
        "async_us": cost["async"],
        "sync_us": cost["sync"],
        "writer_us": cost["writer"],
        "ddp_read_us": cost["ddp_read"],
    }


def ddp_read_us(calls: int) -> float:
    """CPU time of one step end's read of DDP's timers, a new iteration each time (the record built)."""
    from ascend_tools.profiling.ddp_stats import DdpRuntimeStats

    stats = DdpRuntimeStats(on_device=False)
    model = ddp_model()
    stats.watch(model)
    for _ in range(2):  # DDP logs an iteration's timers at the next forward
        model(torch.randn(4, 512)).sum().backward()
    t = time.thread_time()
    for _ in range(calls):
        stats._last.clear()  # as if a new iteration had been timed
        if len(stats.read(0)) != 1:
            raise RuntimeError("always-on cost: DDP's timers gave no record")
    return 1e6 * (time.thread_time() - t) / calls


def fine_ratio(x: torch.Tensor, per_call: float, rounds: int, out: str) -> float:
    """Instrumented/bare with the drift of a shared machine cancelled: inside one profiler, short blocks with
    the interceptor switched off and on alternate 8 × ``rounds`` times (every rank switches in step); the
    median of the pairs' ratios. The profiler's threads run in both halves: this is the collectives' cost."""
    n = max(2, int(0.05 / per_call))
    ratios = []
    with profile(out) as prof:
        for _ in range(8 * rounds):
            prof.comm.active = False
            b = _block(x, n)
            prof.comm.active = True
            ratios.append(_block(x, n) / b)
    return statistics.median(ratios)


def allreduce_rank(rank: int, world: int, port: int, rounds: int, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    rows = []
    for size in SIZES:
        x = torch.ones(size // 4)
        per_call = torch.tensor([_block(x, 3)])  # warm-up; every rank must agree on the block length
        dist.all_reduce(per_call, op=dist.ReduceOp.MAX)
        n = max(4, min(4000, int(BLOCK_S / float(per_call))))
        bare, ours = [], []
        for r in range(rounds):
            bare.append(_block(x, n))
            with profile(os.path.join(out, f"s{size}r{r}")):
                ours.append(_block(x, n))
        rows.append(
            {
                "bytes": size,
                "calls": n,
                "bare_us": 1e6 * statistics.median(bare),
                "ours_us": 1e6 * statistics.median(ours),
                "ratio": statistics.median(o / b for o, b in zip(ours, bare)),
                "ratio_fine": fine_ratio(x, float(per_call), rounds, os.path.join(out, f"s{size}fine")),
            }
        )
    if rank == 0:
        with open(result, "w", encoding="utf-8") as f:
            json.dump(rows, f)
    dist.destroy_process_group()


DDP_MODES = ("bare", "full", "always-on")


def ddp_model() -> Any:
    return torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(*[m for _ in range(8) for m in (torch.nn.Linear(512, 512), torch.nn.ReLU())]),
        bucket_cap_mb=1,  # 1 MiB a layer: a bucket all-reduce per layer, as in a real model
    )


def ddp_steps(model: Any, opt: Any, n: int) -> Tuple[float, float, float]:
    """Wall seconds, process CPU seconds (every thread: gloo's, the profiler's) and training-thread CPU
    seconds per step."""
    dist.barrier()
    t, cpu, thread = time.perf_counter(), time.process_time(), time.thread_time()
    for _ in range(n):
        loss = model(torch.randn(128, 512)).square().mean()
        loss.backward()
        dist.all_reduce(loss.detach())  # the logged loss, averaged over the ranks (blocking)
        opt.step()
        opt.zero_grad()
    return (
        (time.perf_counter() - t) / n,
        (time.process_time() - cpu) / n,
        (time.thread_time() - thread) / n,
    )


def ddp_block(mode: str, where: str, n: int = 10) -> Tuple[float, float, float]:
    """``ddp_steps`` of ``n`` steps after 4 warm-up ones (which also take the profiler's start-up: its first
    memory sample, with USS, and its files), bare or profiled (full records, or always-on)."""
    with contextlib.ExitStack() as stack:
        if mode != "bare":
            stack.enter_context(profile(where, always_on=mode == "always-on"))
        model = ddp_model()  # built inside: the profiler watches new DDP instances (full: its comm hook)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        ddp_steps(model, opt, 4)
        return ddp_steps(model, opt, n)


def ddp_blocks(blocks: int, out: str) -> Dict[str, Any]:
    """Bare, full and always-on blocks interleaved (the machine's drift hits the three alike): per mode the
    medians of wall, process CPU and thread CPU per step, and the medians over blocks of profiled/bare wall
    and of profiled − bare CPU; the CPU pressure of these blocks."""
    times: Dict[str, List[Tuple[float, float, float]]] = {m: [] for m in DDP_MODES}
    psi0, t0 = cpu_pressure_us(), time.perf_counter()
    for b in range(blocks):
        for mode in DDP_MODES:
            times[mode].append(ddp_block(mode, os.path.join(out, f"ddp-{mode}{b}")))
    psi1, t1 = cpu_pressure_us(), time.perf_counter()
    res: Dict[str, Any] = {
        "blocks": blocks,
        "cpu_pressure": None if psi0 is None or psi1 is None else (psi1 - psi0) / 1e6 / (t1 - t0),
    }
    bare = times["bare"]
    for mode, rows in times.items():
        res[mode] = {
            "wall_ms": 1e3 * statistics.median(r[0] for r in rows),
            "cpu_ms": 1e3 * statistics.median(r[1] for r in rows),
            "thread_cpu_ms": 1e3 * statistics.median(r[2] for r in rows),
            "ratio": statistics.median(r[0] / b[0] for r, b in zip(rows, bare)),
            "cpu_added_us": 1e6 * statistics.median(r[1] - b[1] for r, b in zip(rows, bare)),
            "thread_cpu_added_us": 1e6 * statistics.median(r[2] - b[2] for r, b in zip(rows, bare)),
        }
    return res


def ddp_rank(rank: int, world: int, port: int, rounds: int, out: str, result: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    res = ddp_blocks(rounds, out)
    # what always-on records per step: DDP's bucket all-reduces are not intercepted (DDP's own timers are
    # read once a step instead), the loss all_reduce is
    windows = []
    for path in glob.glob(os.path.join(out, "ddp-always-on0", f"rank{rank}", "windows.*.jsonl")):
        with open(path, encoding="utf-8") as f:
            windows += [json.loads(line) for line in f]
    steps = sum(w["steps"].get("count", 0) for w in windows)
    colls = [c for w in windows for c in w["colls"]]
    res["async_per_step"] = sum(c["count"] for c in colls if c["async"]) / steps
    res["sync_per_step"] = sum(c["count"] for c in colls if not c["async"]) / steps
    res["ddp_reads_per_step"] = sum((w.get("ddp") or {}).get("count", 0) for w in windows) / steps
    res["disk"] = {mode: disk_per_1000_steps(rank, out, mode) for mode in ("full", "always-on")}
    if rank == 0:
        with open(result, "w", encoding="utf-8") as f:
            json.dump(res, f)
    dist.destroy_process_group()


def ddp_one_rank(blocks: int) -> Dict[str, Any]:
    """The same DDP loop on a one-rank gloo group in this process: no other rank's scheduling in the
    figure, so many short interleaved blocks resolve a 1% difference better than 2 ranks on 2 shared cores
    (in full mode DDP still issues its 8 bucket all-reduces through the profiler's hook, without the division
    by 1; always-on reads DDP's timers instead)."""
    with tempfile.TemporaryDirectory() as tmp:
        dist.init_process_group("gloo", init_method=f"file://{tmp}/store", rank=0, world_size=1)
        torch.manual_seed(0)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return ddp_blocks(blocks, os.path.join(tmp, "prof"))
        finally:
            torch.set_num_threads(threads)
            dist.destroy_process_group()


DISK_STEPS = 1000


def disk_per_1000_steps(rank: int, out: str, mode: str) -> Dict[str, Any]:
    """Bytes this rank wrote for 1,000 steps of a small DDP model (3 all-reduces a step, the loss among
    them), full records or always-on (default 60 s windows), and how long the steps took."""
    where = os.path.join(out, f"disk-{mode}")
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(64, 64))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    t = time.perf_counter()
    with profile(where, always_on=mode == "always-on", memory=True):
        for _ in range(DISK_STEPS):
            loss = model(torch.randn(8, 64)).square().mean()
            loss.backward()
            dist.all_reduce(loss.detach())
            opt.step()
            opt.zero_grad()
    wall = time.perf_counter() - t
    rdir = os.path.join(where, f"rank{rank}")
    files = {
        os.path.relpath(os.path.join(d, n), rdir): os.path.getsize(os.path.join(d, n))
        for d, _, names in os.walk(rdir)
        for n in names
    }
    return {"bytes": sum(files.values()), "files": files, "steps_s": wall}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(fn, world: int, rounds: int) -> Any:
    with tempfile.TemporaryDirectory() as tmp:
        result = os.path.join(tmp, "result.json")
        mp.spawn(
            fn, args=(world, free_port(), rounds, os.path.join(tmp, "prof"), result), nprocs=world, join=True
        )
        with open(result, encoding="utf-8") as f:
            return json.load(f)


def analyze_scale(ranks: int, collectives: int, jobs: int, keep: Optional[str] = None) -> Dict[str, Any]:
    """``ascend-doctor analyze`` of a simulated profile, written into a temporary directory, or once into
    ``keep`` and reused from there by later runs (8,192 ranks take minutes to write)."""
    from ascend_tools.profiling import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        prof = keep or os.path.join(tmp, "prof")
        write_s = None
        if not os.path.exists(os.path.join(prof, f"rank{ranks - 1}", "meta.json")):
            t = time.perf_counter()
            synthetic.write_profile(prof, ranks=ranks, collectives=collectives)
            write_s = time.perf_counter() - t
        t = time.perf_counter()
        load = os.getloadavg()[0]
        log = os.path.join(tmp, "analyze.log")
        with open(log, "wb") as err:  # a file, not a pipe: nobody reads a pipe while we wait
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ascend_tools.cli",
                    "analyze",
                    prof,
                    "-f",
                    "json",
                    "-o",
                    os.path.join(tmp, "a.json"),
                    "--jobs",
                    str(jobs),
                ],
                cwd=ROOT,
                stderr=err,
            )
            total = _peak_tree_rss(proc)
            # os.wait4: the peak RSS of the largest process of the child's tree (RUSAGE_CHILDREN would be the
            # largest of every child so far)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        if os.waitstatus_to_exitcode(status) not in (0, 1):
            with open(log, encoding="utf-8", errors="replace") as f:
                raise SystemExit(f"analyze failed: {f.read().strip()}")
        return {
            "ranks": ranks,
            "collectives": collectives,
            "jobs": jobs,
            "write_s": write_s,
            # a --keep profile written before the columnar files existed is read from its JSON alone
            "columnar_files": os.path.exists(os.path.join(prof, "rank0", "colls.0.npz")),
            "wall_s": wall,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "peak_total_rss_mb": total / (1 << 20),
            # CPU seconds of analyze and its (joined) workers: what a loaded machine does not inflate
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "load_avg_1m": [load, os.getloadavg()[0]],  # before and after: other work on the machine
        }


def _peak_tree_rss(proc: "subprocess.Popen[bytes]", every: float = 0.1) -> int:
    """The largest sum of the RSS of ``proc`` and its worker processes, polled until ``proc`` exits (not
    reaped: the caller's wait4 does that)."""
    import psutil

    peak = 0
    try:
        parent = psutil.Process(proc.pid)
        while parent.status() != psutil.STATUS_ZOMBIE:
            tree = [parent, *parent.children(recursive=True)]
            total = 0
            for p in tree:
                with contextlib.suppress(psutil.Error):  # a worker that just exited
                    total += p.memory_info().rss
            peak = max(peak, total)
            time.sleep(every)
    except psutil.Error:
        pass
    return peak


def print_ddp(d: Dict[str, Any], title: str) -> None:
    """The wall ratio and the CPU the profiler adds per step, full and always-on, of one ``ddp_blocks``."""
    bare = d["bare"]
    pressure = "n/a" if d["cpu_pressure"] is None else f"{d['cpu_pressure']:.0%}"
    print(
        f"\nDDP step, {title}, {d['blocks']} interleaved blocks of 10 steps (CPU pressure {pressure}): bare "
        f"{bare['wall_ms']:.1f} ms wall, {bare['cpu_ms']:.1f} ms CPU ({bare['thread_cpu_ms']:.1f} ms in the "
        "training thread)"
    )
    for mode in DDP_MODES[1:]:
        m = d[mode]
        print(
            f"  {mode:9s}: wall {m['wall_ms']:.1f} ms, ratio {m['ratio']:.3f}; CPU added per step "
            f"{m['cpu_added_us']:.0f} us = {m['cpu_added_us'] / (1e3 * bare['cpu_ms']):.2%} of the bare step's "
            f"CPU (training thread {m['thread_cpu_added_us']:.0f} us) (target <= 1%)"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--rounds", type=int, default=5, help="interleaved bare/instrumented rounds per measurement"
    )
    p.add_argument("--worlds", default="2,4", help="gloo world sizes for the all_reduce sweep")
    p.add_argument("--ranks", type=int, default=1024, help="simulated ranks for analyze")
    p.add_argument(
        "--ranks-also",
        type=int,
        default=None,
        help="a second, larger simulated profile analysed in the same run (e.g. 8192)",
    )
    p.add_argument("--collectives", type=int, default=2000, help="simulated collectives per rank for analyze")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="analyze --jobs")
    p.add_argument(
        "--keep",
        default=None,
        help="write the simulated profiles once into KEEP/ranksN and reuse them (not committed: GBs)",
    )
    p.add_argument(
        "--skip", default="", help="comma list of parts to skip: percall,allreduce,ddp,ddp1,analyze"
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    out: Dict[str, Any] = {"machine": machine(torch=torch.__version__)}
    if "percall" not in skip:
        print("added cost per call, one rank in this process ...", file=sys.stderr)
        out["percall"] = added_per_call(args.rounds)
    if "allreduce" not in skip:
        out["allreduce"] = {}
        for world in map(int, args.worlds.split(",")):
            print(f"all_reduce sweep on {world} gloo ranks ...", file=sys.stderr)
            out["allreduce"][world] = run_ranks(allreduce_rank, world, args.rounds)
    if "ddp" not in skip:
        print("always-on CPU time per collective, one rank in this process ...", file=sys.stderr)
        out["always_on_cost"] = always_on_cost_us()
        print("DDP step on 2 gloo ranks ...", file=sys.stderr)
        out["ddp"] = run_ranks(ddp_rank, 2, args.rounds)
    if "ddp1" not in skip:
        print("DDP step on one gloo rank in this process ...", file=sys.stderr)
        out["ddp1"] = ddp_one_rank(4 * args.rounds)
    if "analyze" not in skip:
        print(
            f"analyze on {args.ranks} simulated ranks x {args.collectives} collectives ...", file=sys.stderr
        )
        out["analyze"] = [
            analyze_scale(
                n, args.collectives, args.jobs, os.path.join(args.keep, f"ranks{n}") if args.keep else None
            )
            for n in [args.ranks] + ([args.ranks_also] if args.ranks_also else [])
        ]
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(" ".join(f"{k}={v}" for k, v in out["machine"].items()))
    if "percall" in out:
        c = out["percall"]
        print(
            f"\nadded per call (1 KB all_reduce, one gloo rank in-process, {c['calls']} calls per block): bare "
            f"{c['bare_us']:.1f} us, profiled {c['ours_us']:.1f} us, added {c['added_us']:.1f} us = "
            f"{c['added_over_bare']:.2f}x a bare call; the interceptor's own work around a no-op collective: "
            f"{c['hot_path_us']:.1f} us (target <= 20 us)"
        )
        print(
            f"functional collective (funcol.all_reduce + wait_tensor, 1 KB, same group): bare "
            f"{c['funcol_bare_us']:.1f} us, profiled {c['funcol_ours_us']:.1f} us, added {c['funcol_added_us']:.1f} us"
        )
    for world, rows in out.get("allreduce", {}).items():
        print(
            f"\nall_reduce, {world} gloo ranks (median over {args.rounds} interleaved rounds; target: <= 2% at >= 1 MB, "
            "<= 20 us added per call)"
        )
        print(
            table(
                [
                    "bytes",
                    "calls/block",
                    "bare us/call",
                    "profiled us/call",
                    "added us",
                    "ratio",
                    "ratio, fine",
                ],
                [
                    [
                        r["bytes"],
                        r["calls"],
                        f"{r['bare_us']:.1f}",
                        f"{r['ours_us']:.1f}",
                        f"{r['ours_us'] - r['bare_us']:.1f}",
                        f"{r['ratio']:.3f}",
                        f"{r['ratio_fine']:.3f}",
                    ]
                    for r in rows
                ],
            )
        )
    for key, title in (("ddp", "2 gloo ranks"), ("ddp1", "one gloo rank in this process")):
        if key in out:
            print_ddp(out[key], title)
    if "ddp" in out:
        d = out["ddp"]
        c = out["always_on_cost"]
        per_step = (
            (c["async_us"] + c["writer_us"]) * d["async_per_step"]
            + (c["sync_us"] + c["writer_us"]) * d["sync_per_step"]
            + (c["ddp_read_us"] + c["writer_us"]) * d["ddp_reads_per_step"]
        )
        print(
            f"always-on CPU time per collective (thread_time, less a bare call): async {c['async_us']:.1f} us, "
            f"blocking {c['sync_us']:.1f} us, + writer thread {c['writer_us']:.1f} us; a read of DDP's timers "
            f"{c['ddp_read_us']:.1f} us; x {d['async_per_step']:.0f} async + {d['sync_per_step']:.0f} blocking "
            f"+ {d['ddp_reads_per_step']:.1f} DDP reads per step = {per_step:.0f} us = "
            f"{per_step / (1e3 * d['bare']['cpu_ms']):.2%} of the bare step's CPU time (the collectives alone)"
        )
        for mode, disk in d["disk"].items():
            print(
                f"disk per rank for {DISK_STEPS} steps ({disk['steps_s']:.1f} s), {mode}: "
                f"{disk['bytes'] / 1024:.1f} KiB ({', '.join(f'{k} {v}' for k, v in sorted(disk['files'].items()))})"
            )
    for a in out.get("analyze", []):
        wrote = f"{a['write_s']:.1f} s" if a["write_s"] is not None else "reused"
        print(
            f"\nanalyze {a['ranks']} ranks x {a['collectives']} collectives, --jobs {a['jobs']}: {a['wall_s']:.1f} s, "
            f"{a['cpu_s']:.1f} CPU s, peak RSS {a['peak_rss_mb']:.0f} MB (largest process), "
            f"{a['peak_total_rss_mb']:.0f} MB (all processes), load average {a['load_avg_1m'][0]:.1f} -> "
            f"{a['load_avg_1m'][1]:.1f} (target <= 60 s, <= 4 GB; writing the simulated files: {wrote}"
            f"{'' if a['columnar_files'] else '; no columnar files: read from the JSON alone'})"
        )


if __name__ == "__main__":
    main()
