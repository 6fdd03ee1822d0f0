"""``mp.spawn`` in the check-ops child (opcheck/spawn_fake.py): rank 0's worker runs in this process."""

import torch.multiprocessing as mp

from ascend_tools.opcheck import spawn_fake


def test_spawn_calls_rank_zeros_worker_here_once(monkeypatch):
    monkeypatch.setattr(mp, "spawn", mp.spawn)  # restored after the test
    monkeypatch.setattr(mp, "start_processes", mp.start_processes)
    spawn_fake.install()
    calls = []

    def worker(rank, world_size, tag):  # a local function: a real spawn could not even pickle it
        calls.append((rank, world_size, tag))

    assert mp.spawn(worker, args=(8, "policy"), nprocs=8, join=True) is None
    mp.start_processes(worker, args=(4, "x"), nprocs=4, start_method="spawn")
    assert calls == [(0, 8, "policy"), (0, 4, "x")]
