"""A stand-in for bitsandbytes' optimizer base class ``Optimizer2State``, which projects subclass.

GaLore's ``GaLoreAdamW8bit`` subclasses ``bitsandbytes.optim.optimizer.Optimizer2State`` and writes its own
``step()`` over the base class's protocol: ``initialized``, ``check_overrides()``, ``to_gpu()``,
``init_state(group, p, gindex, pindex)``, ``prefetch_state(p)``, ``update_step(group, p, gindex, pindex)``.
The stand-in keeps that protocol with the reference semantics of bitsandbytes' 32-bit two-state kernels
(``"adam"``: Adam with decoupled weight decay, as ``torch.optim.AdamW``; the 8-bit block-wise state
quantisation is CUDA-only and has no NPU backend: the import itself is the finding).
"""

import math
from typing import Any, Callable, Optional

import torch


class Optimizer2State(torch.optim.Optimizer):
    def __init__(
        self,
        optimizer_name: str,
        params: Any,
        lr: float = 1e-3,
        betas: Any = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        *args: Any,
        is_paged: bool = False,
        **kwargs: Any,
    ) -> None:
        if optimizer_name not in ("adam", "adamw"):
            raise NotImplementedError(f"bitsandbytes stand-in: Optimizer2State({optimizer_name!r})")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay}
        super().__init__(params, defaults)
        self.optimizer_name = optimizer_name
        self.initialized = False
        self.is_paged = is_paged

    def check_overrides(self) -> None:
        """bitsandbytes' per-parameter overrides (GlobalOptimManager): none here."""

    def to_gpu(self) -> None:
        """bitsandbytes moves the state to the parameters' device: it is created there."""

    def prefetch_state(self, p: torch.Tensor) -> None:
        """Paged state prefetch: no pages here."""

    def init_state(self, group: Any, p: torch.Tensor, gindex: int, pindex: int) -> None:
        state = self.state[p]
        state["step"] = 0
        state["state1"] = torch.zeros_like(p, dtype=torch.float32)
        state["state2"] = torch.zeros_like(p, dtype=torch.float32)

    @torch.no_grad()
    def update_step(self, group: Any, p: torch.Tensor, gindex: int, pindex: int) -> None:
        state = self.state[p]
        state["step"] += 1
        beta1, beta2 = group["betas"]
        assert p.grad is not None  # step() and GaLore's step() skip parameters without a gradient
        grad = p.grad.float()
        state["state1"].mul_(beta1).add_(grad, alpha=1 - beta1)
        state["state2"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        correction1 = 1 - beta1 ** state["step"]
        correction2 = math.sqrt(1 - beta2 ** state["step"])
        if group["weight_decay"] > 0:
            p.mul_(1 - group["lr"] * group["weight_decay"])
        denom = state["state2"].sqrt().add_(group["eps"] * correction2)
        p.addcdiv_(state["state1"], denom, value=-group["lr"] * correction2 / correction1)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], Any]] = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.initialized = True
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                if "state1" not in self.state[p]:
                    self.init_state(group, p, gindex, pindex)
                self.update_step(group, p, gindex, pindex)
        return loss
