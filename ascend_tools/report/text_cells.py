"""One cell as display text: :func:`format_value` (the same text in every format), display widths of
wide (CJK) characters, and :func:`shorten`, which cuts a cell to a width while keeping the part that tells
rows apart: the call suffix of an op key (``aten::empty.memory_format#fwd#0``, not ``aten::e…``), the end of
a path or module path (``…/llama/modeling_llama.py:106 in forward``).
"""

import math
import re
import textwrap
import unicodedata
from typing import Any, List, Optional, Sequence

ELLIPSIS = "…"

#: column kinds (see ``columns.py``): how a cell is aligned, wrapped and shortened
ID, PATH, NUMBER, TEXT = "id", "path", "number", "text"
KINDS = (ID, PATH, NUMBER, TEXT)

_ABBREV = ((re.compile(r"\bforward\b"), "fwd"), (re.compile(r"\bbackward\b"), "bwd"))
_NAMESPACE = re.compile(r"^[A-Za-z_]\w*::")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: object) -> Optional[float]:
    """A chart value as a float, or None when it is not a finite number (drawn as no data)."""
    try:
        f = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def format_value(value: Any) -> str:
    """One cell or summary value as display text (the same in every format)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value == 0:
            return "0"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value)) if abs(value) >= 1e6 else f"{value:g}"
        mag = abs(value)
        return f"{value:.6g}" if 1e-3 <= mag < 1e6 else f"{value:.4g}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return ", ".join(format_value(v) for v in items)
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value)


def char_width(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_width(s: str) -> int:
    return len(s) if s.isascii() else sum(char_width(c) for c in s)


def truncate(s: str, width: int) -> str:
    """Cut ``s`` to at most ``width`` display columns, marking the cut with an ellipsis."""
    if text_width(s) <= width:
        return s
    if s.isascii():
        return s[: max(0, width - 1)] + ELLIPSIS
    out, used = [], 0
    for ch in s:
        w = char_width(ch)
        if used + w > width - 1:
            break
        out.append(ch)
        used += w
    return "".join(out) + ELLIPSIS


def pad(s: str, width: int, right: bool = False) -> str:
    fill = " " * max(0, width - text_width(s))
    return fill + s if right else s + fill


def one_line(s: str) -> str:
    return " ".join(s.split()) if ("\n" in s or "\r" in s or "\t" in s) else s


def _cut_left(s: str, width: int) -> str:
    """``…`` + the end of ``s``, starting at a path separator when that keeps most of the room."""
    if width <= 1:
        return ELLIPSIS[:width]
    if s.isascii():
        tail = s[len(s) - (width - 1) :]
    else:
        out, used = [], 0
        for ch in reversed(s):
            w = char_width(ch)
            if used + w > width - 1:
                break
            out.append(ch)
            used += w
        tail = "".join(reversed(out))
    for sep in ("/", "\\", "."):
        k = tail.find(sep)
        if 0 < k <= len(tail) // 3:
            return ELLIPSIS + tail[k:]
    return ELLIPSIS + tail


def _cut_middle(s: str, width: int) -> str:
    """The start and the distinguishing suffix (``#fwd#0``, ``:106``) of an id, with ``…`` between."""
    k = s.find("#")
    k = k if k > 0 else max(s.rfind(":"), s.rfind("/"))
    suffix = s[k:] if k > 0 else ""
    if not suffix or text_width(suffix) > (width - 1) // 2 + 1:
        suffix = s[-max(1, (width - 1) // 3) :]
    head = truncate(s[: len(s) - len(suffix)], width - text_width(suffix))
    if not head.endswith(ELLIPSIS):
        head += ELLIPSIS
    return head + suffix


def abbreviate(s: str) -> str:
    """An id with its long words short: ``forward`` → ``fwd``, ``backward`` → ``bwd``."""
    for pattern, short in _ABBREV:
        s = pattern.sub(short, s)
    return s


def shorten(s: str, width: int, kind: str = TEXT) -> str:
    """``s`` in at most ``width`` display columns, keeping what tells it apart: a path from the left
    (``…/models/llama/modeling_llama.py:106``), an id abbreviated (forward → fwd, namespace dropped) and
    then cut in the middle, keeping its suffix; other text cut at the end."""
    if text_width(s) <= width:
        return s
    if kind == PATH:
        return _cut_left(s, width)
    if kind == ID:
        s = abbreviate(s)
        if text_width(s) > width:
            s = _NAMESPACE.sub("", s)
        return s if text_width(s) <= width else _cut_middle(s, width)
    return truncate(s, width)


def wrap(text: str, width: int) -> List[str]:
    """``text`` wrapped at spaces into lines of at most ``width`` columns; a word longer than a line (a
    path, most often) is shortened from the left rather than broken."""
    width = max(8, width)
    words = [shorten(w, width, PATH) for w in text.split()]
    return textwrap.wrap(" ".join(words), width=width, break_long_words=False, break_on_hyphens=False)


def shorten_column(values: Sequence[str], width: int, kind: str) -> List[str]:
    """Each value as :func:`shorten` makes it, spelled one way down a column: when one id needs its words
    abbreviated or its namespace dropped, every id in the column gets the same."""
    out = list(values)
    if kind == ID and any(text_width(v) > width for v in out):
        out = [abbreviate(v) for v in out]
        if any(text_width(v) > width for v in out):
            out = [_NAMESPACE.sub("", v) for v in out]
    return [shorten(v, width, kind) for v in out]


_BREAK_AFTER = ".,_:#/(-"


def wrap_cell(s: str, width: int, kind: str, lines: int) -> List[str]:
    """``s`` in at most ``lines`` lines of ``width`` columns: text at spaces, an id after its punctuation
    (``torch_npu.`` / ``npu_rms_norm``); what does not fit is shortened on the last line. Text with wide
    characters is shortened to one line."""
    if text_width(s) <= width or not s.isascii() or kind not in (TEXT, ID):
        return [shorten(s, width, kind)]
    if kind == TEXT:
        out = textwrap.wrap(s, width, break_on_hyphens=False) or [""]
    else:
        out, rest = [], s
        while len(rest) > width:
            cut = max((k + 1 for k, ch in enumerate(rest[:width]) if ch in _BREAK_AFTER), default=0)
            cut = cut if cut > width // 2 else width
            out.append(rest[:cut])
            rest = rest[cut:]
        out.append(rest)
    if len(out) > lines:
        joint = " " if kind == TEXT else ""
        out = [*out[: lines - 1], shorten(joint.join(out[lines - 1 :]), width, kind)]
    return out
