"""An fp16 training loop whose loss scaler skips its first steps, for the sessions' step-counting tests (capture,
shadow, profiler), with torch's GradScaler or one shaped like torch_npu's."""

import collections

import torch


def npu_style_scaler_class():
    """A GradScaler shaped like torch_npu's (``torch_npu/npu/amp/grad_scaler.py``, ``torch.npu.amp.GradScaler``): it
    overrides ``update()`` and changes the scale in Python (its ``_npu_update_scale``: ``mul_`` by the backoff factor
    after an overflow, ``add_`` to the growth tracker otherwise), never through ``aten::_amp_update_scale_``. Made when
    called: under the CLI torch_npu is imported, and its class made, after the session started."""

    class NpuStyleGradScaler(torch.amp.GradScaler):
        def update(self, new_scale=None):
            found = sum(
                v.item()
                for s in self._per_optimizer_states.values()
                for v in s["found_inf_per_device"].values()
            )
            if found:
                self._scale.mul_(self._backoff_factor)
                self._growth_tracker.zero_()
            else:
                self._growth_tracker.add_(1)
            self._per_optimizer_states = collections.defaultdict(
                torch.amp.grad_scaler._refresh_per_optimizer_state
            )

    return NpuStyleGradScaler


def fp16_scaled_training(session, iterations=4, scaler_class=None):
    """fp16 autocast with a GradScaler whose first scale overflows the gradients: it skips the optimizer step (no
    ``optimizer.step()`` call) and halves its scale until they fit, as an fp16 run's first steps do (Ascend 910A,
    older GPUs). ``scaler_class``: a callable that gives the scaler's class once the session runs (default torch's).
    Returns how many steps the scaler skipped."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    skipped = 0
    with session:
        # fp16 gradients overflow at the first three scales
        scaler = (scaler_class or (lambda: torch.amp.GradScaler))()("cpu", init_scale=2.0**19)
        for _ in range(iterations):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = model(torch.randn(4, 8)).float().square().mean()
            scaler.scale(loss).backward()
            before = scaler.get_scale()
            scaler.step(opt)
            scaler.update()
            skipped += scaler.get_scale() < before
            opt.zero_grad()
    return skipped
