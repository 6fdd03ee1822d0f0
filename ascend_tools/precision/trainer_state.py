"""Hugging Face ``trainer_state.json``, streamed (:mod:`ascend_tools.jsonstream`): ``log_history`` is read one
entry at a time and only its ``(step, loss)`` pairs are kept, so memory does not grow with the file's other
metrics. An entry that is bad JSON is skipped and named with its line; a file cut off keeps the entries
before the cut."""

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from .. import jsonstream

Entry = Tuple[Optional[int], float]


@dataclass
class LogHistory:
    entries: List[Entry]
    unreadable: List[str] = field(default_factory=list)  # "line N: why", one per entry skipped


def read_log_history(path: str, convert: Callable[[Any], Optional[Entry]]) -> Optional[LogHistory]:
    """The entries of ``log_history`` that ``convert`` turns into ``(step, loss)``; None when the file is
    not a JSON object with a ``log_history`` array (read it another way). OSError passes through."""
    out = LogHistory([])
    found = False
    with open(path, "rb") as f:
        try:
            for m in jsonstream.members(f, ("log_history",)):
                if m.parent is None and m.key == "log_history":
                    found = found or isinstance(m.value, list)
                elif m.error is not None:
                    if m.parent == "log_history" or m.key is None:
                        out.unreadable.append(f"line {m.line}: {m.error}")
                elif m.parent == "log_history":
                    entry = convert(m.value)
                    if entry is not None:
                        out.entries.append(entry)
        except ValueError:  # not a JSON object
            return None
    return out if found else None


def global_step(path: str) -> Optional[int]:
    """``global_step`` of a trainer_state.json (Trainer writes it before ``log_history``), or None."""
    try:
        with open(path, "rb") as f:
            for m in jsonstream.members(f, ("log_history",)):
                if m.parent is None and m.key == "global_step":
                    step = m.value
                    return step if isinstance(step, int) and not isinstance(step, bool) else None
    except (OSError, ValueError):
        return None
    return None
