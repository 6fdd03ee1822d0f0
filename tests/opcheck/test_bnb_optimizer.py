"""The bitsandbytes Optimizer2State stand-in (opcheck/bnb_optimizer.py): GaLore subclasses it and drives its
protocol from its own step()."""

import torch

from ascend_tools.opcheck import bnb_optimizer


def _params(seed):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.nn.Parameter(torch.randn(4, 3, generator=g)),
        torch.nn.Parameter(torch.randn(3, generator=g)),
    ]


def _run(optimizer_cls, params, steps=3, **kwargs):
    opt = optimizer_cls(params, **kwargs)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()
    return [p.detach().clone() for p in params]


def test_adam_state_steps_as_torch_adamw():
    """bitsandbytes' 32-bit two-state "adam" kernel: Adam moments, bias correction, decoupled weight decay."""
    hyper = {"lr": 0.01, "betas": (0.8, 0.95), "eps": 1e-6, "weight_decay": 0.1}
    ours = _run(lambda ps, **k: bnb_optimizer.Optimizer2State("adam", ps, **k), _params(0), **hyper)
    ref = _run(torch.optim.AdamW, _params(0), **hyper)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


class _GaLoreStyle:
    """The protocol GaLore's AdamW8bit.step() drives (galore_torch/adamw8bit.py), without the projection."""

    @torch.no_grad()
    def step(self, closure=None):
        if not self.initialized:
            self.check_overrides()
            self.to_gpu()
            self.initialized = True
        for gindex, group in enumerate(self.param_groups):
            for pindex, p in enumerate(group["params"]):
                if p.grad is None:
                    continue
                state = self.state[p]
                if "step" not in state:
                    state["step"] = 0
                if "state1" not in state:
                    self.init_state(group, p, gindex, pindex)
                self.prefetch_state(p)
                self.update_step(group, p, gindex, pindex)
        return None


def test_a_subclass_of_the_stood_in_base_steps_through_its_protocol(finder):
    from bitsandbytes.optim.optimizer import Optimizer2State

    class AdamW8bit(_GaLoreStyle, Optimizer2State):
        def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
            super().__init__(
                "adam", params, lr, betas, eps, weight_decay, 8, None, 4096, 100, True, is_paged=False
            )

    ours = _run(AdamW8bit, _params(2), lr=0.02, weight_decay=0.05)
    ref = _run(torch.optim.AdamW, _params(2), lr=0.02, weight_decay=0.05)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    assert ("bitsandbytes.optim.optimizer", "Optimizer2State") in {(u.module, u.what) for u in finder.uses}
