"""Always-on windows on real gloo ranks: async collectives' lateness (issue to completion, as DDP's bucket
all-reduce), and the slow-rank verdict and its charts from the windows alone (no full records)."""

import glob
import html
import os
import re
import shutil
import time

import pytest
import torch
import torch.distributed as dist
from gloo_ranks import init, spawn

from ascend_tools.profiling.analyze import aggregates, analyze, run
from ascend_tools.profiling.analyze.reader import read_profile
from ascend_tools.profiling.profiler import profile
from ascend_tools.report import Bars, Heatmap, render

DELAY = 0.02


def _late_async_rank(rank, n, out):
    init(rank, n)
    slept = 0.0
    with profile(out, memory=False, hang_timeout=None, always_on=True):
        x = torch.ones(256)
        for _ in range(70):  # a full block of 64 seqs and a partial one
            t = time.perf_counter()
            time.sleep(DELAY if rank == 2 else 0.001)
            slept += time.perf_counter() - t
            dist.all_reduce(x, async_op=True).wait()  # only async collectives
    with open(os.path.join(os.path.dirname(out), f"slept{rank}"), "w") as f:
        f.write(repr(slept / 70))


def test_async_collectives_give_the_lateness_in_always_on_mode(tmp_path):
    out = str(tmp_path / "prof")
    spawn(_late_async_rank, 3, out)
    summary = aggregates.summarize(read_profile(out))
    late = {r["rank"]: r for r in summary["ranks"]}
    assert late[2]["blocks"] == 2 and late[2]["last_in_blocks"] == 2
    # every rank issues each all_reduce a sleep after the last one completed; rank 2's sleep is DELAY, the others'
    # 1 ms: its lateness is its sleep minus theirs, as each rank measured its own (a loaded machine oversleeps)
    slept = [float((tmp_path / f"slept{r}").read_text()) for r in range(3)]
    assert late[2]["lateness_mean_s"] == pytest.approx(slept[2] - (slept[0] + slept[1]) / 2, rel=0.25)
    assert max(late[0]["lateness_mean_s"], late[1]["lateness_mean_s"]) < 0.25 * late[2]["lateness_mean_s"]


COMPUTE = 0.008  # s between the collectives of one iteration, on ranks 0 and 1


def _ddp_like_rank(rank, n, out, factor):
    init(rank, n)
    c = COMPUTE * (factor if rank == 2 else 1.0)
    with profile(out, memory=False, hang_timeout=None, always_on=True, window_s=0.5):
        x = torch.ones(1024)
        for _ in range(160):  # 640 collectives: 10 blocks of 64, no step marks
            time.sleep(c / 2)
            work = dist.all_reduce(x, async_op=True)  # a bucket all-reduce: issued, waited for later
            time.sleep(c / 2)
            work.wait()
            dist.all_reduce(x)
            dist.all_reduce(torch.ones(4))  # the loss, the gradient norm
            dist.all_reduce(torch.ones(4))


def test_a_compute_straggler_is_named_from_the_windows_alone(tmp_path):
    out = str(tmp_path / "prof")
    spawn(_ddp_like_rank, 3, out, 1.2)
    for ring in glob.glob(os.path.join(out, "rank*", "ring")):  # a slow window on a loaded machine dumps some
        shutil.rmtree(ring)
    a = run(out)
    assert len(a.profile.colls) == 0  # no full record: everything below comes from the windows
    assert a.slow["source"] == "windows"
    (group,) = a.slow["groups"]
    assert group["window"] == "block" and group["judged"] and group["windows"] == 9  # block 0: warm-up
    assert [s["rank"] for s in a.slow["slow_ranks"]] == [2]
    slow = a.slow["slow_ranks"][0]
    assert "compute" in slow["signals"]
    rows = {r["rank"]: r for r in group["ranks"]}
    # 16 iterations a block: rank 2 sleeps 16 × 1.2 × COMPUTE; the gaps read less where an async all-reduce
    # completed while the rank slept (and more where a loaded machine overslept)
    assert 0.5 <= rows[2]["compute_per_step_s"] / (16 * 1.2 * COMPUTE) <= 1.5
    assert rows[2]["compute_per_step_s"] > max(rows[0]["compute_per_step_s"], rows[1]["compute_per_step_s"])
    assert "mean arrival was the last in" in slow["reason"]

    report = analyze(out)
    charts = [c for sec in report.sections for c in sec.charts]
    assert {type(c) for c in charts} == {Bars, Heatmap}  # no busbw scatter: that needs full records
    heat = next(c for c in charts if isinstance(c, Heatmap))
    assert heat.y_ticks == ["rank 0", "rank 1", "rank 2"] and len(heat.x_ticks) == 9
    # rank 2 is late on the whole and the latest in more blocks than any other rank (not in every block: on a
    # loaded machine a descheduled rank 0 or 1 can be the last to arrive for a whole block)
    means = [sum(row) / len(row) for row in heat.values]
    assert means[2] > 0 and means[2] == max(means)
    latest = [max(range(3), key=lambda r: heat.values[r][w]) for w in range(9)]
    assert latest.count(2) > max(latest.count(0), latest.count(1))
    page = render(report, "html")
    for chart in charts:
        assert html.escape(chart.title) in page
    compute = {
        int(r): float(v) for r, v in re.findall(r"<title>rank (\d+) · compute: ([\d.eE+-]+)</title>", page)
    }
    assert set(compute) == {0, 1, 2} and max(compute, key=compute.get) == 2


def _ddp_rank(rank, n, out):
    init(rank, n)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with profile(out, memory=False, hang_timeout=None, always_on=True, window_s=0.5):
        model = torch.nn.parallel.DistributedDataParallel(
            torch.nn.Sequential(*[torch.nn.Linear(256, 256) for _ in range(4)]),
            bucket_cap_mb=0.25,  # a bucket per layer: 4 async all-reduces a step, then the loss all_reduce
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.001)
        for _ in range(100):  # 500 collectives: 7 full blocks of 64
            time.sleep(0.03 * (1.2 if rank == 2 else 1.0))  # the data loader, the forward
            loss = model(torch.randn(16, 256)).square().mean()
            loss.backward()
            dist.all_reduce(loss.detach())
            opt.step()
            opt.zero_grad()


def test_a_ddp_compute_straggler_is_pointed_at_from_the_windows_and_computes_the_most(tmp_path):
    """Real DDP in always-on mode: its bucket all-reduces are timed by DDP's own timers (no comm hook), in
    windows of ~14 steps. On a loaded 2-core machine the rule names rank 2 or, when the windows vary too
    much, calls it a suspect; never another rank. Its compute reads the highest and it waits least in DDP's
    all-reduces: the others' waits are not compute."""
    out = str(tmp_path / "prof")
    spawn(_ddp_rank, 3, out)
    for ring in glob.glob(os.path.join(out, "rank*", "ring")):
        shutil.rmtree(ring)
    a = run(out)
    assert len(a.profile.colls) == 0 and a.slow["source"] == "windows"
    named = [s["rank"] for s in a.slow["slow_ranks"]] + [s["rank"] for s in a.slow["suspects"]]
    assert named == [2]
    groups = {g["window"]: g for g in a.slow["groups"]}
    group = groups["ddp"]  # the loss all_reduce alone fills one block of 64: too few to judge
    assert group["judged"] and group["windows"] >= 4
    rows = {r["rank"]: r for r in group["ranks"]}
    compute = {r: row["compute_per_step_s"] for r, row in rows.items()}
    assert max(compute, key=compute.get) == 2
    # rank 2 sleeps 6 ms a step longer; the others wait that long for it in DDP's bucket all-reduces
    assert 0.5 * 0.006 <= compute[2] - max(compute[0], compute[1]) <= 2 * 0.006
    wait = {r: row["wait_per_step_s"] for r, row in rows.items()}
    assert min(wait, key=wait.get) == 2
    page = render(analyze(out), "html")  # the bars are the ddp group's: rank 2's compute the tallest
    bars = {
        int(r): float(v) for r, v in re.findall(r"<title>rank (\d+) · compute: ([\d.eE+-]+)</title>", page)
    }
    assert set(bars) == {0, 1, 2} and max(bars, key=bars.get) == 2
