"""Streaming reader of one large JSON object (an msprobe ``dump.json``, a ``trainer_state.json``).

:func:`members` yields the top-level members one by one and, for the members named in ``descend`` whose
value is an object or an array (``data``, ``log_history``), that value's members or items one by one, so
memory holds one member at a time plus a read chunk, whatever the file size. Each value is decoded by
``json.JSONDecoder.raw_decode`` on the buffered text (C speed); only when that fails (a value cut by the
chunk boundary, or bad JSON) is its extent found by a small scanner that counts brackets outside strings
without recursion, so the work is linear in the file size and nesting depth costs no stack.

A value that is bad JSON, nested deeper than the parser allows, or longer than ``limit`` characters is
skipped and yielded as a :class:`Member` with ``error`` set and the line it starts on; reading goes on with
the next member. Damage to the object's own structure (a missing ``,`` or ``:``, the file cut off) ends
the stream with one such error member whose ``key`` is None: what was read before it is kept. A top level that is not an object
raises ValueError. Bytes that are not UTF-8 are read as U+FFFD.
"""

import codecs
import json
import re
from typing import IO, Any, Collection, Iterator, NamedTuple, Optional, Tuple, Union

from .boundedio import MAX_LINE

_CHUNK = 1 << 20
_DECODER = json.JSONDecoder()
_SPACE = re.compile(r"[ \t\n\r]*")
_STRUCTURAL = re.compile(r'["\[\]{},:]')
_STRING_STOP = re.compile(r'["\\]')
_BLANK = frozenset(" \t\n\r")
_AFTER_VALUE = _BLANK | frozenset(",:]}")
# the separators of the common case, matched in one step (else peek/expect, which also say what is wrong)
_COLON = re.compile(r"[ \t\n\r]*:[ \t\n\r]*")
_NEXT = re.compile(r"[ \t\n\r]*([,\]}])[ \t\n\r]*")


class Member(NamedTuple):
    """One member read: ``parent`` is None at the top level, else the descended member's name; ``key`` the
    member name (an index inside an array). When ``parent`` is None and ``value`` is an empty ``{}`` or
    ``[]`` for a name in ``descend``, the members that follow with that ``parent`` make up its value."""

    parent: Optional[str]
    key: Union[str, int, None]
    value: Any
    line: int
    error: Optional[str] = None


class _Stop(Exception):
    """The object's own structure is broken here: the stream ends with this message."""


class _Reader:
    def __init__(self, f: IO[bytes], limit: int) -> None:
        self.f = f
        self.limit = limit
        self.decode = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self._line = 1  # the line number at self._counted (counted only when asked for)
        self._counted = 0

    # ---- buffer ----------------------------------------------------------------------------------
    @property
    def line(self) -> int:
        """The line number at the position."""
        self._line += self.buf.count("\n", self._counted, self.pos)
        self._counted = self.pos
        return self._line

    def advance(self, to: int) -> None:
        self.pos = to

    def fill(self, keep: Optional[int] = None) -> bool:
        """Read one more chunk, dropping the text before ``keep`` (default: the position); False at EOF."""
        if self.eof:
            return False
        start = self.pos if keep is None else keep
        chunk = self.f.read(_CHUNK)
        text = self.decode.decode(chunk, final=not chunk)
        self.eof = not chunk
        if start > self._counted:
            self._line += self.buf.count("\n", self._counted, start)
            self._counted = start
        self.buf = self.buf[start:] + text
        self.pos -= start
        self._counted -= start
        return bool(text) or not self.eof

    def peek(self) -> str:
        """The next non-blank character ("" at EOF), the position left on it."""
        while True:
            m = _SPACE.match(self.buf, self.pos)
            self.advance(m.end() if m else self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def expect(self, chars: str, where: str) -> str:
        c = self.peek()
        if not c or c not in chars:
            found = f"{c!r}" if c else "the end of the file"
            raise _Stop(
                f"line {self.line}: expected {' or '.join(repr(x) for x in chars)} {where}, found {found}"
            )
        self.advance(self.pos + 1)
        return c

    # ---- values ----------------------------------------------------------------------------------
    def value(self) -> Any:
        """Decode the value at the position and move past it; ValueError (after moving past it) when it
        is bad or too long, _Stop when there is no value at all."""
        if (self.pos >= len(self.buf) or self.buf[self.pos] in _BLANK) and not self.peek():
            raise _Stop(f"line {self.line}: the file ends where a value should be")
        try:
            value, end = _DECODER.raw_decode(self.buf, self.pos)
            # a number cut by the chunk's end ("3." of "3.5") decodes too: accept only what a delimiter ends
            if (end < len(self.buf) and self.buf[end] in _AFTER_VALUE) or (end == len(self.buf) and self.eof):
                if end - self.pos > self.limit:
                    self.advance(end)
                    raise ValueError(f"value longer than {self.limit} characters")
                self.advance(end)
                return value
        except RecursionError:
            self.skip_value()
            raise ValueError("nested too deeply") from None
        except json.JSONDecodeError:
            pass
        text = self.extent()
        if text is None:
            raise ValueError(f"value longer than {self.limit} characters")
        try:
            return json.loads(text)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"bad JSON: {exc.msg}") from None

    def extent(self) -> Optional[str]:
        """Move to the end of the value at the position and return its text, or None (skipped without
        keeping it) when it is longer than ``limit``."""
        start = self.pos
        state = (0, False)
        while True:
            done, state = self._scan(state)
            if done:
                return self.buf[start : self.pos]
            if self.pos - start > self.limit:
                self.skip_value(state)
                return None
            if not self.fill(keep=start):
                return self.buf[start : self.pos]  # cut off by the end: the decoder says what is wrong
            start = 0  # the buffer now begins with the value

    def skip_value(self, state: Tuple[int, bool] = (0, False)) -> None:
        """Move past the rest of the value at the position without keeping it."""
        while True:
            done, state = self._scan(state)
            if done or not self.fill():
                return

    def _scan(self, state: Tuple[int, bool]) -> Tuple[bool, Tuple[int, bool]]:
        """Scan the buffer from the position for the end of a value: a ``,``/``]``/``}``/``:`` outside
        strings at depth 0. ``(True, _)`` with the position on it, or ``(False, state)`` at the buffer's end, where
        ``state`` (depth, inside a string) goes on with the next chunk."""
        buf = self.buf
        depth, in_string = state
        pos = self.pos
        while True:
            if in_string:
                m = _STRING_STOP.search(buf, pos)
                if m is None:
                    pos = len(buf)
                    break
                if m.group() == "\\":
                    if m.end() >= len(buf):  # the escaped character is in the next chunk
                        pos = m.start()
                        break
                    pos = m.end() + 1
                    continue
                in_string, pos = False, m.end()
                continue
            m = _STRUCTURAL.search(buf, pos)
            if m is None:
                pos = len(buf)
                break
            c = m.group()
            if c == '"':
                in_string, pos = True, m.end()
            elif c in "[{":
                depth, pos = depth + 1, m.end()
            elif depth == 0:  # the , ] } after the value (: after a member name)
                self.advance(m.start())
                return True, (0, False)
            elif c in ",:":
                pos = m.end()
            else:
                depth, pos = depth - 1, m.end()
        self.advance(pos)
        return False, (depth, in_string)


def members(f: IO[bytes], descend: Collection[str] = (), limit: int = MAX_LINE) -> Iterator[Member]:
    """The members of the JSON object in the binary file ``f`` (see the module docstring)."""
    r = _Reader(f, limit)
    if r.peek() != "{":
        raise ValueError("not a JSON object")
    r.advance(r.pos + 1)
    try:
        yield from _container(r, None, "}", descend)
    except _Stop as stop:
        yield Member(None, None, None, r.line, str(stop))


def _container(r: _Reader, parent: Optional[str], closer: str, descend: Collection[str]) -> Iterator[Member]:
    """The members (closer ``}``) or items (``]``) of the container just opened."""
    if r.peek() == closer:
        r.advance(r.pos + 1)
        return
    index = 0
    while True:
        key: Union[str, int] = index
        if closer == "}":
            line = r.line
            try:
                key = r.value()
            except ValueError as exc:
                raise _Stop(f"line {line}: bad member name: {exc}") from None
            if not isinstance(key, str):
                raise _Stop(f"line {line}: expected a member name, found {type(key).__name__}")
            m = _COLON.match(r.buf, r.pos)
            if m is not None and m.end() < len(r.buf):
                r.pos = m.end()
            else:
                r.expect(":", f"after member {key!r}")
        opener = r.buf[r.pos] if r.pos < len(r.buf) and r.buf[r.pos] not in _BLANK else r.peek()
        line = r.line
        if parent is None and key in descend and opener in ("{", "["):
            r.advance(r.pos + 1)
            yield Member(None, key, {} if opener == "{" else [], line)
            yield from _container(r, str(key), "}" if opener == "{" else "]", ())
        else:
            try:
                yield Member(parent, key, r.value(), line)
            except ValueError as exc:
                yield Member(parent, key, None, line, str(exc))
        index += 1
        m = _NEXT.match(r.buf, r.pos)
        if m is not None and m.end() < len(r.buf) and m.group(1) == ",":
            r.pos = m.end()
        elif r.expect("," + closer, f"after member {key!r}") == closer:
            return
