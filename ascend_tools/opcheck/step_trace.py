"""Trace one training step of a script that runs on its own: from the first forward to ``optimizer.step()``.

The op tracer (``trace.py``) is active for the whole script but records only from the first forward of a
module with trainable parameters (grad enabled; once an optimizer exists, of any module with parameters:
frozen encoders ahead of the trained model) until the first ``optimizer.step()`` returns; then the
global optimizer step hook raises :class:`StepDone` (a BaseException: the script's ``except Exception``
does not catch it) and the script stops. Every optimizer goes through that hook: a plain loop's, HF
Trainer's and Accelerate's wrappers, and DeepSpeed's engine call the torch optimizer's ``step``. An
optimizer stepped inside the backward pass (from a gradient hook) ends the step when that pass ends.
"""

import contextlib
import functools
from typing import Any, Iterator, List, Optional

import torch

from ..dispatch import ModulePath, in_backward, op_name
from ..stacks import user_site
from . import trace
from .fake_accelerator import META, is_accelerator
from .traced_precision import TracedPrecision


class StepDone(BaseException):
    """Raised after the first ``optimizer.step()``: the training step is traced, stop the script."""


class GatedOpTrace(trace.OpTraceMode):
    """The op tracer, passing ops through unrecorded while ``recording`` is off (data loading, setup)."""

    recording = False
    backward_ran = False

    def __init__(self, modules: ModulePath) -> None:
        super().__init__(modules)
        self.precision = TracedPrecision()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if self.recording and not self.backward_ran:
            self.backward_ran = in_backward()
        if self.backward_ran and func is _ITEM and args[0].dtype == torch.bool and args[0].is_meta:
            return self._health_check(args[0])
        if "device" in kwargs and is_accelerator(kwargs["device"]):
            # a factory called where the fake node's function mode is off (inside a torch call that went
            # through it: DeepSpeed's gradient hooks allocate buckets on cuda during backward)
            kwargs = dict(kwargs, device=META)
        if self.recording:
            out = super().__torch_dispatch__(func, types, args, kwargs)
            self.precision.seen(out)
            return out
        if func is torch.ops.prim.device.default:
            return args[0].device
        try:
            return func(*args, **kwargs)
        except Exception:  # setup on meta (DDP reads a flag with .item()): the trace's made-up outputs
            fallback = trace.SHAPE_FALLBACKS.get(op_name(func))
            out = NotImplemented if fallback is None else fallback(*args, **kwargs)
            if out is NotImplemented:
                raise
            return out

    def _health_check(self, flag: torch.Tensor) -> bool:
        """A yes/no read between the backward and the optimizer step asks whether the gradients are bad
        (DeepSpeed's ``bool((~isfinite(norm) | (norm < 0)).any())``; Lightning's and Accelerate's skip
        checks): meta gradients have no values, and the traced step is a finite one, so it reads False
        (every other ``.item()`` reads 1, ``trace.SHAPE_FALLBACKS``)."""
        self.record("aten::_local_scalar_dense", (flag,), {})
        self.assumed.setdefault("aten::_local_scalar_dense", user_site())
        return False


_ITEM = torch.ops.aten._local_scalar_dense.default


class GatedFusedCalls(trace.FusedCallMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if not getattr(self.ops, "recording", False):
            return func(*args, **(kwargs or {}))
        return super().__torch_function__(func, types, args, kwargs)


class StepTrace:
    """Where the step got to: ``phase`` is "setup", "forward", "backward" (once a backward op ran),
    "optimizer" (inside step) or "done"."""

    def __init__(self) -> None:
        self.modules = ModulePath()
        self.ops = GatedOpTrace(self.modules)
        self.phase = "setup"
        self.optimizer: Optional[str] = None
        self._handles: List[Any] = []
        self._ends_with_backward = False
        self.optimizers_made = False

    def _start(self, module: torch.nn.Module, args: Any) -> None:
        if self.ops.recording or not torch.is_grad_enabled():
            return
        # once an optimizer exists, a frozen module's forward is part of the step too (diffusers' VAE encode
        # and CLIP text encoder ahead of the UNet); before, only a trainable one starts it (setup forwards)
        params = list(module.parameters())
        if any(p.requires_grad for p in params) or (self.optimizers_made and params):
            self.ops.recording = True
            self.phase = "forward"

    @contextlib.contextmanager
    def _watch_optimizers(self) -> Iterator[None]:
        """``optimizers_made`` turns True when any ``torch.optim.Optimizer`` is constructed."""
        init = torch.optim.Optimizer.__init__

        @functools.wraps(init)
        def made(optimizer: Any, *args: Any, **kwargs: Any) -> None:
            self.optimizers_made = True
            init(optimizer, *args, **kwargs)

        torch.optim.Optimizer.__init__ = made  # type: ignore[method-assign,assignment]
        try:
            yield
        finally:
            torch.optim.Optimizer.__init__ = init  # type: ignore[method-assign]

    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.ops.recording:
            self.phase = "optimizer"
            self.optimizer = type(optimizer).__name__
            # its ops are the optimizer's, not the forward's (nor, in a hook, backward's); so are those between
            # the backward and the step (gradient clipping)
            self.ops.begin_optimizer()

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        self.ops.in_optimizer = False
        if not self.ops.recording or self._ends_with_backward:
            return
        if in_backward():
            # an optimizer stepped from a gradient hook (torchtune's optimizer_in_bwd, one optimizer per
            # parameter): the training step ends when the backward pass does, after every parameter's step
            self._ends_with_backward = True
            torch.autograd.Variable._execution_engine.queue_callback(self._done)
            return
        self._done()

    def _done(self) -> None:
        self.ops.recording = False
        self.phase = "done"
        raise StepDone()

    def backward_seen(self) -> bool:
        return any(e.phase == "backward" for e in self.ops.events)

    @contextlib.contextmanager
    def active(self) -> Iterator["StepTrace"]:
        from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

        self._handles = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._start),
            register_optimizer_step_pre_hook(self._pre_step),
            register_optimizer_step_post_hook(self._post_step),
        ]
        try:
            with contextlib.ExitStack() as stack:
                for part in (self.modules, trace.meta_autocast_as_cpu(), self.ops, GatedFusedCalls(self.ops)):
                    stack.enter_context(part)
                stack.enter_context(self._watch_optimizers())
                yield self
        finally:
            for h in self._handles:
                h.remove()
