"""A DeepSpeed fp16 run on the CPU, one process: ``python ds_fp16_train.py STAGE ITERATIONS`` (ZeRO stage 1 or 2).

DeepSpeed's engine, its ZeRO optimizer and its ``DynamicLossScaler`` run unmodified, from a scale of 2**32: the first
sixteen or so iterations overflow the fp16 gradients and are skipped. Prints ``skipped N global M`` at the end.
"""

import os
import sys

import deepspeed
import torch

for key, value in (("MASTER_ADDR", "127.0.0.1"), ("RANK", "0"), ("WORLD_SIZE", "1"), ("LOCAL_RANK", "0")):
    os.environ.setdefault(key, value)
os.environ.setdefault("MASTER_PORT", "29533")
deepspeed.init_distributed(dist_backend="gloo")

from deepspeed.accelerator import get_accelerator  # noqa: E402

# the driver's one liberty: DeepSpeed's CPU accelerator says it has no fp16; torch runs fp16 on the CPU
accelerator = get_accelerator()
accelerator.is_fp16_supported = lambda: True
_dtypes = accelerator.supported_dtypes
accelerator.supported_dtypes = lambda: list(dict.fromkeys([*_dtypes(), torch.float16]))

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
config = {
    "train_micro_batch_size_per_gpu": 4,
    "optimizer": {"type": "SGD", "params": {"lr": 1e-3}},
    "fp16": {
        "enabled": True,
        "loss_scale": 0,
        "initial_scale_power": 32,
        "hysteresis": 1,
        "min_loss_scale": 1,
    },
    "zero_optimization": {"stage": int(sys.argv[1])},
    "zero_allow_untested_optimizer": True,
}
engine, _, _, _ = deepspeed.initialize(model=model, model_parameters=model.parameters(), config=config)
for _ in range(int(sys.argv[2])):
    loss = engine(torch.randn(4, 8, dtype=torch.half)).float().square().mean()
    engine.backward(loss)
    engine.step()
print("skipped", engine.skipped_steps, "global", engine.global_steps)
