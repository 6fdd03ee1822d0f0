"""What a capture, a shadow and a profiler session share: a context manager over training steps.

Steps advance at each ``optimizer.step()`` (a global post-hook) until the script calls ``step()`` itself; an
optimizer stepped inside backward (per-parameter optimizers in gradient hooks: GaLore's per-layer optimizers,
torchtune's ``optimizer_in_bwd``, LOMO) advances it once, when that backward ends; a loss scaler's update after a
step it skipped (NaN/Inf in the scaled gradients: an fp16 GradScaler's first steps) advances it too (torch's and
torch_npu's GradScaler and their subclasses: ``scaler_watch.py``; another scaler through ``aten::_amp_update_scale_``,
where a dispatch mode sees it: capture, shadow). ``steps`` filters which steps are recorded; ``scope`` keeps module paths by
prefix or regex; an internal error is counted and logged once, and training goes on.

Ops that run after a backward outside every module (gradient clipping's norms and scaling, a loss scaler's
``unscale_``) are the optimizer's where ``optimizer.step()`` comes next, as inside DeepSpeed's and Megatron's steps,
or a loss scaler skips the step after its ``unscale_``, and stay ``forward`` where a next forward comes first (a next
micro-batch's input under gradient accumulation) or the script's own ``step()``.
Which one is known only later: a session sees them as the *window* (:attr:`StepSession._in_window` is set for
each op in it) and relabels what it kept of them in :meth:`StepSession._window_is_optimizer`.
"""

import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from . import scaler_watch
from .compile_watch import CompileWatch
from .dispatch import graph_task_id
from .failopen import FailOpen

#: ops of the window after a backward whose records a session holds back until it knows their phase: past this
#: many the window is closed as ``forward`` (a script that trains no more, or runs a long loop outside modules)
WINDOW_MAX = 4096


class StepSession(FailOpen):
    """Subclasses set ``tool`` (for the log line), implement ``start``, ``close`` and ``_advance``, and call
    :meth:`_init_session` from their ``__init__``."""

    tool = "session"

    def _init_session(self, steps: Optional[Iterable[int]], scope: Optional[Sequence[str]]) -> None:
        self.steps = None if steps is None else {int(s) for s in steps}
        self.scope = list(scope or [])
        self._scope_re = [re.compile(s) for s in self.scope]
        self.step_no = 0
        self._manual = False
        self._active = False
        self._off = True
        self._handles: List[Any] = []
        self._paths: Any = None  # ModulePath while a dispatch mode is on
        self._calls: Dict[Tuple[str, str], int] = {}  # calls so far this step per (op name, phase)
        self._mode: Any = None  # the session's TorchDispatchMode
        self.compiles = CompileWatch(self.tool)  # torch.compile calls while the mode is on (they run eagerly)
        # optimizer.step() calls running (one may call another's): phase "optimizer"
        self._optimizer_depth = 0
        # the autograd graph task the running optimizer.step() was called in (-1: none)
        self._optimizer_task = -1
        # a boundary waits for the end of the backward that stepped an optimizer
        self._boundary_queued = False
        # that boundary came: the next optimizer.step() outside backward belongs to its iteration
        self._absorb_exit = False
        # a boundary since the last loss-scale update (see _scale_updated)
        self._stepped = False
        self._init = True  # no module forward, backward or optimizer op has run yet: ops are phase "init"
        self._step_used = False  # a module forward, a backward or an optimizer op ran in this step
        self._after_backward = False  # a backward ran, and no module forward since (the window: see above)
        self._in_window = False  # the op of the last _op_phase call is in that window
        self._window_ops = 0  # ops in it so far

    def __enter__(self) -> Any:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def _advance(self) -> None:
        raise NotImplementedError

    def step(self) -> None:
        """Mark a step boundary. Once called, ``optimizer.step()`` no longer advances the step (the
        script's own boundaries win)."""
        self._manual = True
        self._boundary()

    def steps_marked_by_caller(self) -> None:
        """From now on only :meth:`step` advances the step (a caller that knows the boundaries, such as a
        Trainer callback, says so before the first ``optimizer.step()``)."""
        self._manual = True

    def _in_scope(self, module: str) -> bool:
        return any(module.startswith(p) or r.match(module) for p, r in zip(self.scope, self._scope_re))

    def _fail_message(self) -> str:
        return f"{self.tool}: internal error, later records may be missing (training goes on)"

    def _enter_module_paths(self, model: Any, names: Any = None) -> None:
        """Track the module path of every op dispatched from now on, named from ``model`` when given
        (``names``: a ``module_names.ModuleNames`` to share)."""
        from .dispatch import ModulePath

        self._paths = ModulePath(names).__enter__()
        if model is not None:
            self._paths.name_modules(model)

    def _enter_dispatch(self, mode: Any) -> None:
        """Enter ``mode``, the session's dispatch mode, and count the ``torch.compile`` calls made under it."""
        self._mode = mode
        mode.__enter__()
        self.compiles.install()

    def _exit_dispatch(self) -> None:
        """Leave the dispatch mode and the module paths, remove every hook."""
        self.compiles.uninstall()
        if self._mode is not None:
            try:
                self._mode.__exit__(None, None, None)
            except Exception as exc:  # entered in another thread, or the mode stack changed under us
                self._fail(exc)
        if self._paths is not None:
            self._paths.__exit__(None, None, None)
        for h in self._handles:
            h.remove()
        self._handles = []

    def _phase(self) -> str:
        """``optimizer`` (inside ``optimizer.step()``, which runs without grad, also where a gradient hook of the
        backward calls it: a step that raised and left the flag up does not turn the next forward into optimizer
        ops, nor a later backward, which runs without grad too), ``backward`` (the autograd engine is running a graph
        task) or ``forward``."""
        task = graph_task_id()
        if self._optimizer_depth and task == self._optimizer_task and not torch.is_grad_enabled():
            return "optimizer"
        return "forward" if task == -1 else "backward"

    def _op_phase(self) -> str:
        """:meth:`_phase` of an op, or ``init`` before the first module forward, backward or optimizer op of the
        run: building the model and the data (random init, uninitialised memory, a graph's preprocessing) is no
        step's forward, and its ops must not shift the call numbers of step 0's, which capture and shadow both
        name an op by."""
        phase = self._phase()
        in_module = phase == "forward" and self._paths is not None and self._paths.running()
        if not self._step_used and (phase != "forward" or in_module):
            self._step_used = True
            self._init = False
        if phase == "backward":
            self._after_backward = True
        elif in_module and self._after_backward:  # a next forward: the window's ops were the forward's
            self._close_window()
        self._in_window = self._after_backward and phase == "forward"
        if self._in_window:
            self._window_ops += 1
            if self._window_ops > WINDOW_MAX:
                self._close_window()
                self._in_window = False
        return "init" if self._init else phase

    def _close_window(self) -> None:
        """The ops since the last backward stay ``forward`` (subclasses forget what they noted of them)."""
        self._after_backward = False
        self._window_ops = 0

    def _window_is_optimizer(self) -> None:
        """``optimizer.step()`` follows the window: subclasses relabel its ops ``optimizer``, then close it."""
        self._close_window()

    def _optimizer_calls(self, names: Iterable[str]) -> List[int]:
        """The call numbers the window's ops (``names``, in order, each counted as ``forward`` when it ran) take as
        the optimizer's: they come before its own ops, and the forward counts are given back. Subclasses count calls
        per (name, phase) in ``_calls``."""
        calls = self._calls
        numbers = []
        for name in names:
            calls[(name, "forward")] -= 1
            key = (name, "optimizer")
            numbers.append(calls.get(key, 0))
            calls[key] = numbers[-1] + 1
        return numbers

    def _window_to_optimizer(self) -> None:
        """:meth:`_window_is_optimizer` where a window is open; it runs inside the user's ``optimizer.step()`` or loss
        scaler, so an error is the session's (counted, logged once) and the window stays ``forward``."""
        if self._after_backward:
            try:
                self._window_is_optimizer()
            except Exception as exc:
                self._fail(exc)
                self._close_window()

    def _install_step_hook(self) -> None:
        try:
            import torch.optim.optimizer as optmod

            pre = getattr(optmod, "register_optimizer_step_pre_hook", None)
            post = getattr(optmod, "register_optimizer_step_post_hook", None)
            if pre is not None and post is not None:
                self._handles.append(pre(self._optimizer_enter))
            if post is not None:
                self._handles.append(post(self._optimizer_exit))
            self._handles.append(scaler_watch.watch(self))  # skipped steps (scaler_watch.py)
        except Exception as exc:
            self._fail(exc)

    def _optimizer_enter(self, *_args: Any, **_kwargs: Any) -> None:
        task = graph_task_id()
        if not self._optimizer_depth and task == -1:
            self._window_to_optimizer()
        self._optimizer_depth += 1
        self._optimizer_task = task

    def _optimizer_exit(self, *_args: Any, **_kwargs: Any) -> None:
        self._optimizer_depth = max(0, self._optimizer_depth - 1)
        if self._manual or self._optimizer_depth:  # an optimizer that steps another: one boundary
            return
        if graph_task_id() != -1:  # stepped in a gradient hook: one boundary when this backward ends
            self._absorb_exit = False
            if not self._boundary_queued:
                self._boundary_queued = True
                torch.autograd.Variable._execution_engine.queue_callback(self._backward_done)
        elif self._absorb_exit:
            # after a backward that stepped the optimizers, the recipe's own step() (torchtune calls its
            # OptimizerInBackward's no-op step "to prevent a warning"): the same iteration, no empty step
            self._absorb_exit = False
        else:
            self._boundary()

    def _backward_done(self) -> None:
        self._boundary_queued = False
        try:
            self._boundary()
        except Exception as exc:  # raised here, it would fail the user's backward
            self._fail(exc)
        self._absorb_exit = True

    def _scale_updated(self) -> None:
        """A loss scaler updated its scale: the iteration is over. Where no boundary came since the last update, the
        scaler skipped the optimizer step (NaN/Inf in the scaled gradients) and no ``optimizer.step()`` marked it: the
        iterations of an fp16 run's first skipped steps were one step, and its steps no longer those of the reference."""
        stepped, self._stepped = self._stepped, False
        if not (stepped or self._manual):
            self._window_to_optimizer()  # its unscale_ and clipping, as in a step the optimizer took
            self._boundary()
            self._stepped = False

    def _step_skipped(self) -> None:
        """A loss scaler that updates before the optimizer step (DeepSpeed's, Megatron's: ``scaler_watch.py``) found
        NaN/Inf: no ``optimizer.step()`` follows, and this iteration ends here."""
        if not self._manual:
            self._window_to_optimizer()
            self._boundary()

    def _boundary(self) -> None:
        self._close_window()  # no optimizer.step() came (the script's own step()): the window's ops stay forward
        self._stepped = True
        self._advance()
        self._init = False
        self._step_used = False
        if self._paths is not None:
            self._paths.forget()  # the step's backward has run: its forward ops' modules are not needed
