"""Bounded reading of files that come from elsewhere (dumps, profiles, loss logs): line by line, each line
at most :data:`MAX_LINE` bytes, JSON nested at most as deep as the parser's recursion allows (deeper is a
bad line, not a ``RecursionError``)."""

import json
from typing import IO, Any, Iterator, Optional, Tuple

#: a line longer than this (bytes) is a bad line, skipped without being held in memory
MAX_LINE = 16 << 20
#: a file read as one JSON document (a dump.json, a trainer_state.json) larger than this is refused
MAX_DOCUMENT = 1 << 30

_CHUNK = 1 << 20


def lines(f: IO[bytes], limit: int = MAX_LINE) -> Iterator[Tuple[int, Optional[bytes], bool]]:
    """``(line number, line without its newline or None when longer than limit, ended by a newline)``
    for each line of the binary file ``f``; memory stays under ``limit`` whatever the file holds."""
    number = 0
    while True:
        line = f.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith(b"\n"):
            ended = False
            while True:  # skip the rest of the long line
                rest = f.readline(_CHUNK)
                if not rest:
                    break
                if rest.endswith(b"\n"):
                    ended = True
                    break
            yield number, None, ended
            continue
        ended = line.endswith(b"\n")
        yield number, (line[:-1] if ended else line), ended


def loads(data: Any) -> Any:
    """``json.loads``; nesting too deep for the parser raises ValueError like any other bad JSON."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_document(f: IO[bytes], limit: int = MAX_DOCUMENT) -> bytes:
    """The whole of ``f``, or ValueError when it holds more than ``limit`` bytes."""
    data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit >> 20} MiB")
    return data


def one_line(exc: BaseException) -> str:
    """Why an input was refused, as one line of at most 200 characters (a hostile file's text is in it)."""
    text = " ".join(str(exc).split())
    return text[:200] or type(exc).__name__
