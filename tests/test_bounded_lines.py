"""Bad lines of stacks.jsonl are counted (and surface with compare's other unreadable lines); a line over
boundedio's 16 MiB limit is skipped and counted with its line number, the next line still read."""

import io
import json

from ascend_tools import boundedio
from ascend_tools.precision.store import OurDump


def test_line_over_the_limit_is_skipped_and_the_next_read():
    data = b'{"a": 1}\n' + b"x" * (boundedio.MAX_LINE + 5) + b'\n{"b": 2}\nlast'
    got = list(boundedio.lines(io.BytesIO(data)))
    assert got == [(1, b'{"a": 1}', True), (2, None, True), (3, b'{"b": 2}', True), (4, b"last", False)]


def test_line_exactly_at_the_limit_is_kept():
    line = b"y" * boundedio.MAX_LINE
    assert list(boundedio.lines(io.BytesIO(line + b"\nz\n"))) == [(1, line, True), (2, b"z", True)]


def test_unreadable_stack_lines_are_counted(tmp_path):
    rank = tmp_path / "rank0"
    rank.mkdir()
    (rank / "meta.json").write_text(json.dumps({"rank": 0, "mode": "stats"}))
    lines = [
        json.dumps({"id": 0, "frames": ["a.py:1 in f"]}),
        "{not json",
        json.dumps({"id": 1}),  # no frames
        json.dumps({"id": 2, "frames": ["b.py:2 in g", "c.py:3 in h"]}),
    ]
    (rank / "stacks.jsonl").write_text("\n".join(lines) + "\n")
    dump = OurDump(str(rank))
    assert dump.stack(2) == ["b.py:2 in g", "c.py:3 in h"] and dump.stack(0) == ["a.py:1 in f"]
    assert dump.problems == [f"{rank / 'stacks.jsonl'}: 2 unreadable stack line(s) skipped (first: line 2)"]


def test_deep_or_huge_meta_and_pyspy_files_are_unreadable_not_internal_errors(tmp_path):
    from ascend_tools.commands.profile import _read_meta
    from ascend_tools.profiling.analyze.hangs import stack_top

    deep = b"[" * 100_000 + b"]" * 100_000
    (tmp_path / "meta.json").write_bytes(deep)
    assert _read_meta(str(tmp_path / "meta.json")) is None  # before: RecursionError out of json.load
    (tmp_path / "hang").mkdir()
    (tmp_path / "hang" / "pyspy.json").write_bytes(deep)
    assert stack_top(str(tmp_path)) is None
    good = [{"thread_name": "MainThread", "frames": [{"filename": "/u/train.py", "line": 7, "name": "step"}]}]
    (tmp_path / "hang" / "pyspy.json").write_text(json.dumps(good))
    assert stack_top(str(tmp_path)) == "/u/train.py:7 in step"
