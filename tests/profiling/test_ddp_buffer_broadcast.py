"""DDP broadcasts its buffers before every forward (``broadcast_buffers=True``, the default; a Llama's rotary
``inv_freq``, GPT-2's attention masks, BatchNorm's running stats): a blocking ``dist._broadcast_coalesced``
from C++ bindings, where a punctual rank waits for a late one. Unseen, that wait read as the punctual
rank's compute: a real Hugging Face Trainer DDP job (GPT-2, 2 ranks, rank 1 sleeping 20 ms before each
step) was reported with rank 0 the later and computing more, in full and always-on profiles alike."""

import glob
import json
import os
import time

import pytest
import torch
from gloo_ranks import events, init, spawn

from ascend_tools.profiling import profile
from ascend_tools.profiling.analyze import run

STEPS = 16
DELAY = 0.02


def _job(rank, n, out, always_on):
    init(rank, n)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    with profile(out, memory=False, hang_timeout=None, always_on=always_on, window_s=0.2):
        model = torch.nn.parallel.DistributedDataParallel(
            torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.BatchNorm1d(64), torch.nn.Linear(64, 8))
        )
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        for _ in range(STEPS):
            time.sleep(0.01 + (DELAY if rank == 1 else 0.0))  # rank 1's data loader is slow
            model(torch.randn(16, 64)).square().mean().backward()
            opt.step()
            opt.zero_grad()


def test_the_buffer_broadcast_is_a_recorded_ddp_collective_and_the_late_rank_is_named(tmp_path):
    out = str(tmp_path / "prof")
    spawn(_job, 2, out, False)
    colls = events(out, 0)
    casts = [c for c in colls if c["api"] == "_broadcast_coalesced"]
    # one at construction (parameters and buffers, from torch.distributed.utils, which FSDP shares: not
    # tagged), then the buffers before each forward, from DDP's forward
    assert len(casts) == 1 + STEPS and all(c["op"] == "broadcast" for c in casts)
    assert all(c["via"] == "ddp" for c in casts[1:])
    buffers = sum(b.numel() * b.element_size() for b in torch.nn.BatchNorm1d(64).buffers())
    assert all(c["bytes"] == buffers for c in casts[1:])
    a = run(out)
    assert [s["rank"] for s in a.slow["slow_ranks"]] == [1]
    (group,) = a.slow["groups"]
    rows = {r["rank"]: r for r in group["ranks"]}
    assert rows[1]["compute_per_step_s"] > rows[0]["compute_per_step_s"]  # rank 0's wait is not compute
    assert rows[1]["late_per_step_s"] == pytest.approx(DELAY, rel=0.5)


def test_always_on_counts_the_buffer_broadcast_as_blocking_time(tmp_path):
    out = str(tmp_path / "prof")
    spawn(_job, 2, out, True)
    sync = {}
    for r in range(2):
        windows = []
        for path in glob.glob(os.path.join(out, f"rank{r}", "windows.*.jsonl")):
            with open(path, encoding="utf-8") as f:
                windows += [json.loads(line) for line in f]
        casts = [c for w in windows for c in w["colls"] if c["op"] == "broadcast"]
        assert sum(c["count"] for c in casts) == 1 + STEPS
        sync[r] = sum(w["sync_s"] for w in windows)
    # rank 0 waits DELAY a step for rank 1 in the broadcast
    assert sync[0] - sync[1] == pytest.approx(STEPS * DELAY, rel=0.5)
    a = run(out)
    ddp = next(g for g in a.slow["groups"] if g["window"] == "ddp")
    compute = {r["rank"]: r["compute_per_step_s"] for r in ddp["ranks"]}
    assert compute[1] > compute[0]
