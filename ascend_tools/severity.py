"""How bad a finding is: the one severity scale of every report and of ``--fail-on``.

Ordered ``INFO < WARNING < ERROR`` (the order of definition). A member's value is the word reports show
and JSON payloads hold (``Severity.ERROR.value == str(Severity.ERROR) == "error"``), so a payload keeps
its strings; :meth:`Severity.parse` reads a word back.
"""

import enum
import functools
from typing import Any, Iterable, Optional


@functools.total_ordering
class Severity(enum.Enum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    def __lt__(self, other: Any) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        order = list(Severity)
        return order.index(self) < order.index(other)

    @classmethod
    def parse(cls, word: str) -> "Severity":
        """``"error"`` → ``Severity.ERROR``; ValueError naming the choices for any other word."""
        try:
            return cls(word)
        except ValueError:
            raise ValueError(f"{word!r} is not a severity ({', '.join(map(str, cls))})") from None


def worst(severities: Iterable[Severity]) -> Optional[Severity]:
    """The highest of ``severities``; None when there is none."""
    return max(severities, default=None)
