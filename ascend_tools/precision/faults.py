"""Inject a numerical fault into exactly one op call: the known answer for testing culprit localization.

Used by the demo and the tests: a run with one faulty call, compared against a clean reference (or run
under ``shadow``), must name that call first. Three faults model what goes wrong on real hardware:

* ``perturb``: the output is scaled by ``1 + scale`` on a random ``fraction`` of its elements
  (a wrong kernel, a bad tiling edge);
* ``fp16_saturate``: a softmax computed the naive way (``exp(x) / sum(exp(x))``, no max subtraction) in
  float16 on a part that saturates instead of overflowing: ``exp`` above 65504 is clamped to 65504, so
  large logits flatten to a uniform distribution;
* ``zero``: the output is zeroed (a dropped write).
"""

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ..dispatch import in_backward, op_name
from .failopen_mode import through_subclass

FP16_MAX = 65504.0


@dataclass
class Fault:
    op: str  # "aten::mm", "aten::_softmax", ...
    call: int  # which call of that op (in ``phase``), from 0
    phase: str = "forward"
    kind: str = "perturb"  # "perturb" | "fp16_saturate" | "zero"
    scale: float = 0.5
    fraction: float = 0.1
    seed: int = 0
    output: int = 0  # which output of a multi-output op (native_layer_norm_backward's grad_weight: 1)


def naive_fp16_softmax(x: torch.Tensor, dim: int) -> torch.Tensor:
    """exp(x)/sum(exp(x)) in float16 with saturation at ±65504 instead of overflow to Inf."""
    e = torch.exp(x.float()).clamp(max=FP16_MAX).half()
    total = e.float().sum(dim=dim, keepdim=True).clamp(max=FP16_MAX).half()
    return (e / total).to(x.dtype)


class FaultInjector(TorchDispatchMode):
    """Applies ``fault`` to one call; every other op runs untouched. ``hit`` tells whether it fired."""

    def __init__(self, fault: Fault) -> None:
        super().__init__()
        self.fault = fault
        self.seen = 0
        self.hit: Optional[str] = None

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        kind = through_subclass(types)  # a kernel runs on the plain local tensors: fault those
        if kind == "wrapper":
            return NotImplemented
        out = func(*args, **kwargs)
        if kind == "fake":
            return out
        f = self.fault
        phase = "backward" if in_backward() else "forward"
        if op_name(func) != f.op or phase != f.phase:
            return out
        self.seen += 1
        if self.seen - 1 != f.call:
            return out
        if isinstance(out, tuple) and f.output < len(out) and isinstance(out[f.output], torch.Tensor):
            self.hit = f"{f.op}#{f.phase}#{f.call}"
            faulty = self._apply(out[f.output], args, kwargs)
            return (*out[: f.output], faulty, *out[f.output + 1 :])
        if not isinstance(out, torch.Tensor) or f.output:
            return out
        self.hit = f"{f.op}#{f.phase}#{f.call}"
        return self._apply(out, args, kwargs)

    def _apply(self, out: torch.Tensor, args: Any, kwargs: Any) -> torch.Tensor:
        f = self.fault
        if f.kind == "zero":
            return torch.zeros_like(out)
        if f.kind == "fp16_saturate":
            dim = args[1] if len(args) > 1 else kwargs.get("dim", -1)
            return naive_fp16_softmax(args[0], dim)
        gen = torch.Generator(device="cpu").manual_seed(f.seed)
        mask = (torch.rand(out.shape, generator=gen) < f.fraction).to(out.device)
        return torch.where(mask, out * (1.0 + f.scale), out)
