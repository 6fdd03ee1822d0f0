"""Real torch.distributed ranks (gloo on localhost) for the profiling tests: ``spawn(fn, n, *args)`` runs
``fn(rank, n, *args)`` in ``n`` fresh processes with a process group initialised, and re-raises a failure."""

import json
import os
import socket
from typing import Any, Callable, Dict, List

import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, n: int, port: int, done: Any, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    fn(rank, n, *args)
    if dist.is_initialized():
        dist.barrier()  # no rank tears its group down while another still talks to it
        dist.destroy_process_group()
    # rank 0 hosts the store: it exits only once every rank's teardown is over (a rank whose store went
    # away under its gloo threads aborts)
    done.wait(timeout=120)


def spawn(fn: Callable[..., Any], n: int, *args: Any) -> None:
    done = mp.get_context("spawn").Barrier(n)
    mp.spawn(_entry, args=(n, free_port(), done, fn, args), nprocs=n, join=True)


def init(rank: int, n: int) -> None:
    dist.init_process_group("gloo", rank=rank, world_size=n)


def events(prof_dir: str, rank: int, kind: str = "coll") -> List[Dict[str, Any]]:
    """The records of one kind that rank wrote, read straight from events.jsonl (not through analyze)."""
    with open(os.path.join(prof_dir, f"rank{rank}", "events.jsonl"), encoding="utf-8") as f:
        return [r for r in (json.loads(line) for line in f) if r["k"] == kind]


def read_json(path: Any) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)
