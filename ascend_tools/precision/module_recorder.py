"""Module-level records of a capture (``level="module"`` and ``"mix"``), made by global module hooks.

Each module call gets a record of its tensor inputs and outputs; the gradients arriving at its outputs in
backward get one (a multi-grad hook on the outputs: the autograd graph is not changed), and so does each
parameter's accumulated gradient (``<param path>.grad``). A module without a name entered while another
runs (a hub-kernel function module such as transformers 5's ``apply_rotary_pos_emb``, a module kept in a
plain list) gets no record of its own: its work belongs to the caller's record, as in ``ModulePath`` and
msprobe. With nothing running it is a root, named with everything below it.
"""

import weakref
from typing import TYPE_CHECKING, Any, List, Optional, Sequence

import torch
from torch.utils.weak import WeakIdKeyDictionary

from ..dispatch import flat_tensors

if TYPE_CHECKING:
    from .capture_session import Capture


class ModuleRecorder:
    """Hooks that record modules and parameter gradients into ``cap`` (its counters, tensors and batch)."""

    def __init__(self, cap: "Capture") -> None:
        self.cap = cap
        self._running: List[bool] = []  # per module running now: does it get a record
        # parameters given their gradient hook; weakly (by identity), as a freed model's ids are reused
        self._param_hooked = WeakIdKeyDictionary()

    def install(self) -> None:
        cap = self.cap
        self._running = []
        mm = torch.nn.modules.module
        # names are given when a module starts (outermost first): the forward hook runs innermost first
        cap._handles.append(mm.register_module_forward_pre_hook(self._enter))
        try:
            cap._handles.append(mm.register_module_forward_hook(self._record_call, with_kwargs=True))
        except TypeError:  # torch without kwargs in global hooks
            cap._handles.append(
                mm.register_module_forward_hook(lambda m, a, o: self._record_call(m, a, {}, o))
            )
        # after the record hook; always_call: a forward that raises still leaves
        try:
            cap._handles.append(mm.register_module_forward_hook(self._leave, always_call=True))
        except TypeError:  # torch without always_call
            cap._handles.append(mm.register_module_forward_hook(self._leave))

    def _enter(self, module: torch.nn.Module, _args: Any) -> None:
        """Forward pre-hook (must return None: anything else would replace the module's inputs)."""
        recorded = True
        try:
            if module not in self.cap._names:
                recorded = not self._running
                if recorded:
                    self.cap._module_name(module)
        except Exception as exc:
            self.cap._fail(exc)
        self._running.append(recorded)

    def _leave(self, _module: torch.nn.Module, _args: Any, _output: Any) -> None:
        if self._running:
            self._running.pop()

    def _record_call(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if self.cap._off or not (self._running and self._running[-1]):
            return
        self.cap._guarded_busy(self._record_module, module, args, kwargs, output)

    def _record_module(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        cap = self.cap
        path = cap._module_name(module)
        if cap.scope and not cap._in_scope(path):
            return
        name = path or "<root>"
        self._hook_params(module, path)
        call = cap._count_call((name, "forward"))
        if cap.sample > 1 and call % cap.sample:
            return
        ins: List[torch.Tensor] = []
        flat_tensors((args, kwargs), ins)
        outs: List[torch.Tensor] = []
        flat_tensors(output, outs)
        rid = cap._new_id()
        sid = cap._stack_id()
        inputs = [cap._tensor(t, rid, "in", i) for i, t in enumerate(ins)]
        outputs = [cap._tensor(t, rid, "out", i) for i, t in enumerate(outs)]
        cap._emit((rid, name, "module", "forward", call, path, inputs, outputs, None, sid))
        grads_of = [t for t in outs if t.requires_grad]
        if grads_of and torch.is_grad_enabled():
            from torch.autograd.graph import register_multi_grad_hook

            step = cap.step_no
            register_multi_grad_hook(grads_of, lambda grads: self._module_grad(name, path, grads, step))

    def _module_grad(self, name: str, path: str, grads: Sequence[Optional[torch.Tensor]], step: int) -> None:
        cap = self.cap
        if cap._off or step != cap.step_no:
            return
        cap._guarded_busy(self._record_grads, name, path, grads)

    def _record_grads(self, name: str, path: str, grads: Sequence[Optional[torch.Tensor]]) -> None:
        cap = self.cap
        call = cap._count_call((name, "backward"))
        rid = cap._new_id()
        inputs = [cap._tensor(g, rid, "in", i) for i, g in enumerate(grads) if g is not None]
        cap._emit((rid, name, "module", "backward", call, path, inputs, [], None, None))

    def _hook_params(self, module: torch.nn.Module, path: str) -> None:
        cap = self.cap
        for pname, p in module.named_parameters(recurse=False):
            if p in self._param_hooked or not p.requires_grad:
                continue
            self._param_hooked[p] = True
            full = f"{path}.{pname}" if path else pname
            register = getattr(p, "register_post_accumulate_grad_hook", None)
            if register is not None:
                cap._handles.append(
                    register(lambda param, full=full: self._param_grad(full, param, param.grad))
                )
            else:
                ref = weakref.ref(p)
                cap._handles.append(
                    p.register_hook(lambda g, full=full, ref=ref: self._param_grad(full, ref(), g))
                )

    def _param_grad(self, full: str, param: Optional[torch.Tensor], grad: Optional[torch.Tensor]) -> None:
        """``full``: the parameter's path when its hook was set; a root found later may have renamed it."""
        if self.cap._off or grad is None:
            return
        self.cap._guarded_busy(self._record_param_grad, full, param, grad)

    def _record_param_grad(self, full: str, param: Optional[torch.Tensor], grad: torch.Tensor) -> None:
        cap = self.cap
        full = (cap._names.param(param) if param is not None else None) or full
        name = f"{full}.grad"
        if cap.scope and not cap._in_scope(full):
            return
        call = cap._count_call((name, "backward"))
        rid = cap._new_id()
        outputs = [cap._tensor(grad, rid, "out", 0)]
        cap._emit((rid, name, "module", "backward", call, full.rpartition(".")[0], [], outputs, None, None))
