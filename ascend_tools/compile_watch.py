"""``torch.compile`` under a capture or a shadow.

torch compiles nothing while a (non-infra) dispatch mode is on the stack: dynamo skips the frame ("non-infra torch
dispatch mode present, this is not supported today in torch.compile") and the function runs eagerly. So under
``dump`` or ``shadow`` a compiled model runs op by op, and what is recorded or checked are the eager ops, not the
kernels inductor would have generated (their fusions can change the numerics). A session counts the
``torch.compile`` calls (``nn.Module.compile`` goes through it too) made while it is on, says so once, and
writes the count into its meta. A function compiled *before* the session started is not counted.
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

    def install(self) -> None:
        import torch

        orig = getattr(torch, "compile", None)
        if orig is None or self._wrapper is not None:  # torch < 2.0, or installed already
            return

        @functools.wraps(orig)
        def compile(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if self.calls == 1:
                log.warning(
                    "%s: torch.compile was called while the %s is on: torch does not compile under a dispatch "
                    "mode, so the compiled code runs eagerly and what the %s sees are the eager ops, not "
                    "inductor's kernels",
                    self.tool,
                    self.tool,
                    self.tool,
                )
            return orig(*args, **kwargs)

        self._orig, self._wrapper = orig, compile
        torch.compile = compile

    def uninstall(self) -> None:
        import torch

        if self._wrapper is not None and torch.compile is self._wrapper:
            torch.compile = self._orig  # type: ignore[assignment]
        self._orig = self._wrapper = None
