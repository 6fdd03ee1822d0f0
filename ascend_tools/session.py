"""What a capture, a shadow and a profiler session share: a context manager over training steps.

Steps advance at each ``optimizer.step()`` (a global post-hook) until the script calls ``step()`` itself;
``steps`` filters which steps are recorded; ``scope`` keeps module paths by prefix or regex; an internal
error is counted and logged once, and training goes on.
"""

import re
from typing import Any, Iterable, List, Optional, Sequence

import torch

from .compile_watch import CompileWatch
from .dispatch import graph_task_id
from .failopen import FailOpen


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
        self._mode: Any = None  # the session's TorchDispatchMode
        self.compiles = CompileWatch(self.tool)  # torch.compile calls while the mode is on (they run eagerly)
        self._optimizer_depth = (
            0  # optimizer.step() calls running (one may call another's): phase "optimizer"
        )

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
        """``backward`` (the autograd engine is running a graph task), ``optimizer`` (inside
        ``optimizer.step()``, which runs without grad: a step that raised and left the flag up does not
        turn the next forward into optimizer ops) or ``forward``."""
        if graph_task_id() != -1:
            return "backward"
        if self._optimizer_depth and not torch.is_grad_enabled():
            return "optimizer"
        return "forward"

    def _install_step_hook(self) -> None:
        try:
            import torch.optim.optimizer as optmod

            pre = getattr(optmod, "register_optimizer_step_pre_hook", None)
            post = getattr(optmod, "register_optimizer_step_post_hook", None)
            if pre is not None and post is not None:
                self._handles.append(pre(self._optimizer_enter))
            if post is not None:
                self._handles.append(post(self._optimizer_exit))
        except Exception as exc:
            self._fail(exc)

    def _optimizer_enter(self, *_args: Any, **_kwargs: Any) -> None:
        self._optimizer_depth += 1

    def _optimizer_exit(self, *_args: Any, **_kwargs: Any) -> None:
        self._optimizer_depth = max(0, self._optimizer_depth - 1)
        if not self._manual and not self._optimizer_depth:  # an optimizer that steps another: one boundary
            self._boundary()

    def _boundary(self) -> None:
        self._advance()
        if self._paths is not None:
            self._paths.forget()  # the step's backward has run: its forward ops' modules are not needed
