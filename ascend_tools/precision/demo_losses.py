"""The demo's loss-compare: a MindSpore run on Ascend, logged the way TechGPT-style MindSpore training logs
are (``LossMonitor``: ``epoch: 2 step: 35, loss is 2.1234``, the step counted within the epoch, with
``TimeMonitor``'s epoch lines between), against a GPU reference's Hugging Face ``trainer_state.json``
logged every 5 steps. The NPU run tracks the reference within bf16 noise (0.4 %) until a drift starts at
step ``DRIFT_AT``, in the second epoch; the curves are made here, deterministically."""

import json
import math
import os
import random
from typing import List, Tuple

from ..report import Report
from . import losscurve

STEPS_PER_EPOCH = 120
EPOCHS = 2
DRIFT_AT = 183  # global step: epoch 2, step 63
LOGGING_STEPS = 5  # the reference's Trainer logging_steps


def reference_loss(step: int) -> float:
    return 1.9 + 1.6 * math.exp(-step / 45.0) + 0.05 * math.sin(step / 6.0)


def write_logs(out_dir: str) -> Tuple[str, str]:
    """Write ``npu_mindspore.log`` and ``gpu_trainer_state.json`` into ``out_dir``; return their paths."""
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(13)
    lines: List[str] = []
    for epoch in range(1, EPOCHS + 1):
        for step in range(1, STEPS_PER_EPOCH + 1):
            g = (epoch - 1) * STEPS_PER_EPOCH + step
            drift = 1 + 0.004 * max(0, g - DRIFT_AT + 1)
            loss = reference_loss(g) * (1 + rng.gauss(0, 0.004)) * drift
            lines.append(f"epoch: {epoch} step: {step}, loss is {loss:.7f}")
        lines.append(f"epoch time: {STEPS_PER_EPOCH * 512.3:.3f} ms, per step time: 512.300 ms")
    npu = os.path.join(out_dir, "npu_mindspore.log")
    with open(npu, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    total = EPOCHS * STEPS_PER_EPOCH
    history = [
        {
            "epoch": round(s / STEPS_PER_EPOCH, 4),
            "grad_norm": 1.2,
            "learning_rate": 2e-5,
            "loss": round(reference_loss(s), 4),
            "step": s,
        }
        for s in range(LOGGING_STEPS, total + 1, LOGGING_STEPS)
    ]
    gpu = os.path.join(out_dir, "gpu_trainer_state.json")
    with open(gpu, "w", encoding="utf-8") as f:
        json.dump({"global_step": total, "epoch": float(EPOCHS), "log_history": history}, f, indent=2)
    return npu, gpu


def run(out_dir: str) -> Report:
    """loss-compare of the two logs written into ``out_dir``, with the default rule."""
    npu, gpu = write_logs(out_dir)
    return losscurve.loss_compare(npu, gpu, label_a="910B MindSpore", label_b="A100 reference")
