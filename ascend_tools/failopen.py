"""The tool never breaks the user's training: an internal error is counted, the first one is logged (with its
traceback under ``--debug``), and the caller goes on."""

import logging
from typing import Any, Callable

log = logging.getLogger("ascend_tools")


class FailOpen:
    """Mixin: ``_fail(exc)`` counts and logs once; ``_guarded(fn, *args)`` calls ``fn`` and fails open (None).
    ``_fail_message()`` says what the failure may cost, for the one log line."""

    internal_errors = 0

    def _fail_message(self) -> str:
        return f"{type(self).__name__}: internal error (training goes on)"

    def _fail(self, exc: BaseException) -> None:
        self.internal_errors += 1
        if self.internal_errors == 1:
            log.warning(
                "%s: %s: %s",
                self._fail_message(),
                type(exc).__name__,
                exc,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )

    def _guarded(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            self._fail(exc)
            return None
