"""A small DDP training script, the job the profiling demo and tests run under
``ascend-doctor profile -o PROF -- torchrun --nproc-per-node N -m ascend_tools.examples.train_ddp``.

It knows nothing of the profiler. Each step does ``--compute-ms`` of "compute" (a sleep: on an NPU the
step's compute runs off the CPU, and a sleep keeps ranks on a loaded 2-core machine comparable), a
forward/backward of a tiny MLP (DDP all-reduces its gradients), an explicit all_reduce of the loss and
an optimizer step. Faults to inject: ``--straggler R --delay-frac F`` (rank R computes (1+F)× longer),
``--skip R:S`` (rank R skips the loss all_reduce of step S and then sleeps: a hang for the others), ``--stall R:S``
(rank R sleeps ``--hang-sleep`` s before the loss all_reduce of step S, then goes on: a stall that resolves, as a
read from slow storage does).
"""

import argparse
import os
import time

import torch
import torch.distributed as dist


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--compute-ms", type=float, default=40.0)
    p.add_argument("--straggler", type=int, default=None, help="rank that computes longer")
    p.add_argument(
        "--delay-frac", type=float, default=0.5, help="its extra compute, as a fraction of --compute-ms"
    )
    p.add_argument(
        "--skip", default=None, help="R:S: rank R skips the loss all_reduce of step S, then sleeps"
    )
    p.add_argument(
        "--stall", default=None, help="R:S: rank R sleeps before the loss all_reduce of step S, then goes on"
    )
    p.add_argument(
        "--hang-sleep", type=float, default=30.0, help="seconds the skipping or stalling rank sleeps"
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse(argv)
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    skip, stall = (tuple(int(x) for x in a.split(":")) if a else None for a in (args.skip, args.stall))
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(
        torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 16))
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    for step in range(args.steps):
        extra = args.delay_frac if rank == args.straggler else 0.0
        time.sleep(args.compute_ms * (1.0 + extra) / 1000.0)
        loss = model(torch.randn(32, 256)).square().mean()
        loss.backward()
        if skip == (rank, step):
            time.sleep(args.hang_sleep)
            os._exit(3)  # the others are stuck in the all_reduce this rank skipped
        if stall == (rank, step):
            time.sleep(args.hang_sleep)  # the others wait in the all_reduce, then the step goes on
        total = loss.detach().clone()
        dist.all_reduce(total)
        opt.step()
        opt.zero_grad()
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
