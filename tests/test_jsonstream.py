"""ascend_tools.jsonstream against json.loads (the reference) on documents split at random chunk sizes."""

import io
import json
from typing import Any, Dict, List, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ascend_tools import jsonstream

_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
_VALUES = st.recursive(
    _SCALARS,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=20,
)
_DOCS = st.dictionaries(
    st.sampled_from(["data", "log_history", "task", 'a\\"}', "x"]) | st.text(max_size=6),
    _VALUES | st.dictionaries(st.text(max_size=6), _VALUES, max_size=5) | st.lists(_VALUES, max_size=5),
    max_size=6,
)


class _Chunks(io.RawIOBase):
    """A file whose read() returns at most the next of ``sizes`` bytes (cycled), as a pipe might."""

    def __init__(self, data: bytes, sizes: List[int]) -> None:
        self.data, self.sizes, self.pos, self.i = data, sizes, 0, 0

    def read(self, n: int = -1) -> bytes:
        size = min(n if n >= 0 else len(self.data), self.sizes[self.i % len(self.sizes)])
        self.i += 1
        out = self.data[self.pos : self.pos + size]
        self.pos += len(out)
        return out


def _rebuild(members: List[jsonstream.Member]) -> Tuple[Dict[str, Any], List[jsonstream.Member]]:
    doc: Dict[str, Any] = {}
    errors = []
    for m in members:
        if m.error is not None:
            errors.append(m)
        elif m.parent is None:
            doc[m.key] = m.value
        elif isinstance(doc[m.parent], list):
            doc[m.parent].append(m.value)
        else:
            doc[m.parent][m.key] = m.value
    return doc, errors


def _read(data: bytes, sizes: List[int], descend=("data", "log_history"), limit: int = 1 << 20):
    return _rebuild(list(jsonstream.members(_Chunks(data, sizes), descend, limit)))  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(
    doc=_DOCS,
    indent=st.sampled_from([None, 1, 2]),
    sizes=st.lists(st.integers(1, 64), min_size=1, max_size=5),
)
def test_equals_json_loads_at_any_chunk_boundaries(doc, indent, sizes) -> None:
    data = json.dumps(doc, indent=indent).encode()
    got, errors = _read(data, sizes)
    assert errors == []
    assert got == json.loads(data)


def test_members_stream_one_at_a_time_with_their_lines() -> None:
    data = b'{"task": "tensor",\n "data": {\n  "a": 1,\n  "b": [2]\n },\n "n": 3}'
    got = [(m.parent, m.key, m.value, m.line) for m in jsonstream.members(io.BytesIO(data), ("data",))]
    assert got == [
        (None, "task", "tensor", 1),
        (None, "data", {}, 2),
        ("data", "a", 1, 3),
        ("data", "b", [2], 4),
        (None, "n", 3, 6),
    ]


@pytest.mark.parametrize("sizes", [[1], [3, 7], [1 << 20]])
def test_bad_values_are_skipped_and_named_the_rest_read(sizes) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    data = (
        b'{"data": {\n"a": 1,\n"b": [1, x, {"}": "\\"]"}],\n"c": '
        + deep
        + b',\n"d": "'
        + b"z" * 300_000
        + b'",\n"e": 4\n},\n"tail": 5}'
    )
    got, errors = _read(data, sizes, limit=250_000)
    assert got == {"data": {"a": 1, "e": 4}, "tail": 5}
    assert [(m.key, m.line) for m in errors] == [("b", 3), ("c", 4), ("d", 5)]
    assert errors[0].error.startswith("bad JSON")
    assert errors[1].error == "nested too deeply"
    assert errors[2].error == "value longer than 250000 characters"


@pytest.mark.parametrize("sizes", [[1], [1 << 20]])
def test_broken_structure_ends_with_one_error_keeping_what_came_before(sizes) -> None:
    got, errors = _read(b'{"log_history": [{"loss": 1.0},\n {"loss": 2.0},\n {"lo', sizes)
    assert got == {"log_history": [{"loss": 1.0}, {"loss": 2.0}]}
    assert [(m.parent, m.key, m.line) for m in errors] == [("log_history", 2, 3), (None, None, 3)]
    assert errors[1].error == "line 3: expected ',' or ']' after member 2, found the end of the file"


def test_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="not a JSON object"):
        list(jsonstream.members(io.BytesIO(b"[1, 2]")))


def test_bad_utf8_is_read_as_replacement() -> None:
    got, errors = _read(b'{"a": "x\xffy"}', [2])
    assert got == {"a": "x\ufffdy"} and errors == []


@settings(max_examples=300, deadline=None)
@given(
    body=st.lists(st.sampled_from([*'{}[],:"\\ \n0123e.-tnx', '"a"', "true", "null", "1.5"]), max_size=60),
    sizes=st.lists(st.integers(1, 16), min_size=1, max_size=3),
)
def test_any_text_ends_without_an_exception(body, sizes) -> None:
    data = ("{" + "".join(body)).encode()
    got = list(jsonstream.members(_Chunks(data, sizes), ("data",), 32))  # type: ignore[arg-type]
    assert all(m.error is None or m.value is None for m in got)
    assert all(m.key is not None for m in got[:-1])  # a broken structure only ends the stream
