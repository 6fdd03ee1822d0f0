"""A DDP loop that prints its rank's own loss every step (no all-reduce of the loss), as many hand-written loops
do; under torchrun --tee 3 each rank's lines carry its prefix. With WORLD_SIZE 1 the same global batch is one
rank's: its loss is the mean of the ranks' losses. LOSS_FLUSH=0 prints as a plain ``print`` does: with stdout
redirected to a file, each rank's lines reach it in blocks (Python buffers them)."""

import os

import torch
import torch.distributed as dist

dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
ddp = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
data = torch.Generator().manual_seed(1)
for step in range(1, 21):
    x = torch.randn(8, 16, generator=data)  # the global batch of 8, split across the ranks
    y = x.sum(dim=1, keepdim=True).sin()
    per = 8 // world
    xs, ys = x[rank * per : (rank + 1) * per], y[rank * per : (rank + 1) * per]
    loss = torch.nn.functional.mse_loss(ddp(xs), ys)
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"step {step} | loss {loss.item():.6f}", flush=os.environ.get("LOSS_FLUSH", "1") != "0")
dist.destroy_process_group()
