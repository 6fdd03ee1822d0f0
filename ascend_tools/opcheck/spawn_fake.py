"""``torch.multiprocessing.spawn`` in the check-ops child: rank 0's worker runs in this process.

Scripts that start their ranks themselves (``mp.spawn(worker, nprocs=torch.cuda.device_count())``) would
start fresh Python processes, outside the fake node, the fake process group and the tracer. Every rank
runs the same step, so rank 0's is the one traced: its worker is called here, with the script's own
arguments, as ``spawn`` would call it in the first process.
"""

from typing import Any, Callable, Tuple

import torch.multiprocessing as mp


def spawn(
    fn: Callable[..., Any], args: Tuple[Any, ...] = (), nprocs: int = 1, join: bool = True, *a: Any, **k: Any
) -> None:
    fn(0, *args)


def start_processes(
    fn: Callable[..., Any], args: Tuple[Any, ...] = (), nprocs: int = 1, join: bool = True, *a: Any, **k: Any
) -> None:
    fn(0, *args)


def install() -> None:
    mp.spawn = spawn
    mp.start_processes = start_processes
