"""Our dump reader and the replayable argument encoding."""

import json
import os

import numpy as np
import pytest
import torch

from ascend_tools.errors import InputError
from ascend_tools.precision import capture
from ascend_tools.precision.replay_policy import resolve
from ascend_tools.precision.store import OurDump, decode_args, encode_call, read_npy


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: torch.mm(a, b),
        lambda a, b: torch.add(a, b, alpha=0.5),
        lambda a, b: torch.softmax(a, dim=-1),
        lambda a, b: a.to(torch.float64),
        lambda a, b: a.view([8, 2]),
    ],
)
def test_decode_args_replays_op(tmp_path, call):
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.no_grad(), capture(str(tmp_path), mode="tensor"):
        expect = call(a, b)
    d = OurDump.find(str(tmp_path))
    rec = list(d.records(0))[-1]
    tensors = [d.load_tensor(t, 0) for t in rec.inputs]
    args, kwargs = decode_args(json.loads(json.dumps(rec.args)), tensors)
    got = resolve(rec.name)(*args, **kwargs)
    assert got.dtype == expect.dtype and torch.equal(got, expect)


def test_encoding_forms():
    tensors = []
    raw = encode_call(
        (
            torch.ones(1),
            [1, 2],
            None,
            1.5,
            float("inf"),
            torch.bfloat16,
            torch.device("cpu"),
            torch.channels_last,
            True,
            "x",
        ),
        {"layout": torch.strided},
        tensors,
    )
    text = json.dumps(raw)
    args, kwargs = decode_args(json.loads(text), tensors)
    assert args[1:] == (
        [1, 2],
        None,
        1.5,
        float("inf"),
        torch.bfloat16,
        torch.device("cpu"),
        torch.channels_last,
        True,
        "x",
    )
    assert args[0] is tensors[0] and kwargs == {"layout": torch.strided}


def test_find_paths_and_truncated_line(tmp_path):
    with torch.no_grad(), capture(str(tmp_path)) as cap:
        torch.ones(3).add(1)
        cap.step()
        torch.ones(3).mul(2)
    assert OurDump.find(str(tmp_path / "nothing")) is None
    with pytest.raises(InputError, match=r"has no rank 5 \(ranks: 0\)"):  # not "not a dump"
        OurDump.find(str(tmp_path), rank=5)
    for p in (tmp_path, tmp_path / "rank0", tmp_path / "rank0" / "step1"):
        assert OurDump.find(str(p)).steps() == [0, 1]
    path = tmp_path / "rank0" / "step1" / "records.jsonl"
    n = len(list(OurDump.find(str(tmp_path)).records(1)))
    with open(path, "a") as f:
        f.write('{"id": 99, "name": "aten::trunc')
    assert len(list(OurDump.find(str(tmp_path)).records(1))) == n


@pytest.mark.parametrize(
    "array",
    [
        np.arange(12, dtype=np.float32).reshape(3, 4),
        np.arange(5, dtype=np.int64),
        np.array(3.5),
        np.zeros((0, 3), np.float16),
        np.arange(6.0).reshape(2, 3).T,  # Fortran order: the np.load path
        np.arange(4, dtype=np.uint16).reshape(2, 2),
        np.array([True, False]),
        np.arange(7000.0).astype(">f8"),
    ],
    ids=["f32", "i64", "0d", "empty", "fortran", "u16-bits", "bool", "big-endian"],
)
def test_read_npy_matches_np_load(tmp_path, array):
    path = str(tmp_path / "t.npy")
    np.save(path, array)
    got, want = read_npy(path), np.load(path, allow_pickle=False)
    assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    assert got.flags.writeable  # torch.from_numpy needs no copy


def test_read_npy_truncated_file_raises_like_np_load(tmp_path):
    path = str(tmp_path / "t.npy")
    np.save(path, np.arange(100.0))
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - 8)
    with pytest.raises(ValueError):
        read_npy(path)


def test_a_mistyped_record_line_is_skipped_and_the_first_one_says_why(tmp_path):
    with capture(str(tmp_path), mode="stats"):
        torch.ones(3).mul(2)
    path = tmp_path / "rank0" / "step0" / "records.jsonl"
    good = [json.loads(line) for line in path.read_text().splitlines()]
    bool_call = dict(good[0], call=True)  # JSON true where an int goes: bool is not int here
    negative = dict(good[0], outputs=[dict(good[0]["outputs"][0], shape=[-1])])
    huge = dict(good[0], name=["x" * 10_000])  # a hostile name: the reason stays one short line
    lines = [json.dumps(r) for r in (*good, bool_call, negative, huge)]
    path.write_text("\n".join(lines) + "\n")
    dump = OurDump.find(str(tmp_path))
    assert [r.name for r in dump.records(0)] == [r["name"] for r in good]
    (problem,) = dump.problems
    first = len(good) + 1
    assert problem.endswith(f"3 unreadable record line(s) skipped (first: line {first}: call: True)"), problem
    for bad, why in ((negative, "tensor: shape"), (huge, "name: ['xxx")):
        path.write_text(json.dumps(bad) + "\n")
        dump = OurDump.find(str(tmp_path))
        assert list(dump.records(0)) == [] and f"(first: line 1: {why}" in dump.problems[0]
        assert len(dump.problems[0]) < len(str(path)) + 300
