"""DeepSpeed's compiled ops in the check-ops child: an op builder's ``load()`` gives a stand-in module.

``FusedAdamBuilder().load()`` and the other builders JIT-compile CUDA sources with nvcc, which neither this
machine nor an NPU has; on Ascend, DeepSpeed's NPU accelerator brings its own builders for the same ops, so
their use is portable and no finding. ``multi_tensor_adam`` (FusedAdam's kernel) gets its reference
semantics, the update of DeepSpeed's ``csrc/adam/multi_tensor_adam.cu``, so the traced optimizer step holds
the update ops; any other op is an opaque callable (``standins.py``). ZeRO's and the loss scalers'
overflow checks answer "no overflow", as ``fake_accelerator`` does for torch's GradScaler.
"""

import sys
from typing import Any, List, Sequence

import torch

from . import patch_on_import, standins


def multi_tensor_adam(
    chunk_size: int,
    noop_flag: Any,
    tensor_lists: Sequence[List[torch.Tensor]],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    step: int,
    adam_w_mode: int,
    bias_correction: int,
    weight_decay: float,
) -> None:
    """Adam over [grads, params, exp_avgs, exp_avg_sqs]: adam_w_mode 1 decays the weights decoupled (AdamW),
    0 adds ``weight_decay * p`` to the gradient (L2)."""
    c1 = 1 - beta1**step if bias_correction else 1.0
    c2 = 1 - beta2**step if bias_correction else 1.0
    for g, p, m, v in zip(*tensor_lists):
        if not adam_w_mode and weight_decay:
            g = g + weight_decay * p
        m.mul_(beta1).add_(g, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        update = (m / c1) / (v / c2).sqrt().add_(eps)
        if adam_w_mode and weight_decay:
            update = update + weight_decay * p
        p.add_(update, alpha=-lr)


REFERENCE = {"multi_tensor_adam": multi_tensor_adam}


def _load(self: Any, verbose: bool = False) -> Any:
    module = standins.StandInModule(
        f"deepspeed.ops.{self.name}", standins.PACKAGES["deepspeed.ops"], standins.Recorder()
    )
    for name, value in REFERENCE.items():
        setattr(module, name, value)
    return sys.modules.setdefault(module.__name__, module)  # its attributes import as submodules


def _patch_builder(module: Any) -> None:
    module.OpBuilder.load = _load


def _no_overflow(*args: Any, **kwargs: Any) -> bool:
    return False


#: module -> classes whose ``has_overflow`` reads an inf/NaN flag with ``.item()`` (1 on meta, see
#: trace.SHAPE_FALLBACKS): ZeRO 1/2/3 and the fp16 loss scalers would skip every traced step as overflowed
OVERFLOW_CHECKS = {
    "deepspeed.runtime.zero.stage_1_and_2": ("DeepSpeedZeroOptimizer",),
    "deepspeed.runtime.zero.stage3": ("DeepSpeedZeroOptimizer_Stage3",),
    "deepspeed.runtime.fp16.loss_scaler": ("LossScaler", "DynamicLossScaler"),
}


def _patch_overflow(classes: Sequence[str]) -> Any:
    """Meta gradients have no values: the traced step is a finite one (as for torch's GradScaler)."""

    def patch(module: Any) -> None:
        for name in classes:
            cls = getattr(module, name, None)
            if cls is not None and hasattr(cls, "has_overflow"):
                cls.has_overflow = _no_overflow

    return patch


def install() -> None:
    patches = {name: _patch_overflow(classes) for name, classes in OVERFLOW_CHECKS.items()}
    patch_on_import.install({**patches, "deepspeed.ops.op_builder.builder": _patch_builder})
