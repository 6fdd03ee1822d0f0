"""``torch.compile`` under a capture or a shadow.

torch compiles nothing while a (non-infra) dispatch mode is on the stack: dynamo skips the frame ("non-infra torch
dispatch mode present, this is not supported today in torch.compile") and the function runs eagerly. So under
``dump`` or ``shadow`` a compiled model runs op by op, and what is recorded or checked are the eager ops, not the
kernels inductor would have generated (their fusions can change the numerics). A session counts the
``torch.compile`` calls (``nn.Module.compile`` goes through it too) made while it is on, says so once, and
writes the count into its meta. A function compiled *before* the session started is not counted.

While the session is on, the compiler's stance is ``force_eager`` (``torch.compiler.set_stance``, torch >= 2.6):
a function compiled with ``fullgraph=True`` would otherwise raise at its first call ("torch.compile with
fullgraph=True found no compiled frames") instead of running eagerly. karpathy/nanochat compiles its optimizer's
fused steps that way, and ``dump`` stopped its training at the first ``optimizer.step()``. The stance covers what
was compiled before the session too, and is put back when it ends. Without ``set_stance`` (older torch),
``fullgraph=True`` is dropped from the calls the session sees instead.
"""

import functools
import logging
from typing import Any, Optional

log = logging.getLogger("ascend_tools")


class CompileWatch:
    """``install()`` wraps ``torch.compile`` to count its calls (:attr:`calls`); ``uninstall()`` puts it back
    (unless someone wrapped it again on top of ours, whose wrapper then keeps calling ours)."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.calls = 0
        self._orig: Optional[Any] = None
        self._wrapper: Optional[Any] = None
        self._stance: Optional[Any] = None  # the set_stance whose exit puts the user's stance back

    def install(self) -> None:
        import torch

        orig = getattr(torch, "compile", None)
        if orig is None or self._wrapper is not None:  # torch < 2.0, or installed already
            return

        set_stance = getattr(getattr(torch, "compiler", None), "set_stance", None)

        @functools.wraps(orig)
        def compile(*args: Any, **kwargs: Any) -> Any:
            if args or kwargs.get("model") is not None:  # the decorator form calls again with the function
                self.calls += 1
                if self.calls == 1:
                    log.warning(
                        "%s: torch.compile was called while the %s is on: torch does not compile under a "
                        "dispatch mode, so the compiled code runs eagerly and what the %s sees are the eager "
                        "ops, not inductor's kernels",
                        self.tool,
                        self.tool,
                        self.tool,
                    )
            if set_stance is None and kwargs.get("fullgraph"):  # see the module docstring
                kwargs = dict(kwargs, fullgraph=False)
            return orig(*args, **kwargs)

        self._orig, self._wrapper = orig, compile
        torch.compile = compile
        if set_stance is not None:
            try:
                self._stance = set_stance("force_eager")
            except RuntimeError as exc:  # started inside a compiled region
                log.debug("%s: the compiler's stance is left as it is: %s", self.tool, exc)

    def uninstall(self) -> None:
        import torch

        if self._wrapper is not None and torch.compile is self._wrapper:
            torch.compile = self._orig  # type: ignore[assignment]
        if self._stance is not None:
            self._stance.__exit__(None, None, None)
        self._orig = self._wrapper = self._stance = None
