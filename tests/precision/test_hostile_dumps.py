"""``ascend-doctor compare`` on dumps crafted the way an attacker would (issue 11, docs/security.md).

Each test writes a real dump pair whose one record (or file) asks for something compare must not do, and
runs the CLI on it: a replay never calls an op outside the policy, and a tensor path never leads out of
its rank directory.
"""

import ctypes
import json
import os
import shutil

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision import capture, replay_pool
from ascend_tools.precision.store import decode_args

MSPROBE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "msprobe")


def compare(target, reference):
    """The JSON report of ``compare`` (asserting it ran to a verdict: exit 0 or 1, not a crash)."""
    result = CliRunner().invoke(main, ["compare", str(target), str(reference), "-f", "json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.output)


@pytest.fixture(autouse=True)
def replays_in_this_process(monkeypatch):
    """The command's replays run here, where the canaries these tests plant (``torch.ops.load_library``,
    ``ctypes.CDLL``) would see a call; its replay processes would not share them (tests/precision/
    test_replay_pool.py sends a refusal through one)."""
    init = replay_pool.ReplayProcesses.__init__
    monkeypatch.setattr(
        replay_pool.ReplayProcesses, "__init__", lambda self, processes=1, **kw: init(self, 0)
    )


def our_pair(tmp_path, edit=None):
    """Two one-op dumps (``aten::mm`` of the same inputs; the target's output is then scaled, a kernel fault, so
    compare replays it); ``edit(record)`` rewrites the record in both before they are read."""
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    paths = []
    for side in ("target", "reference"):
        path = tmp_path / side
        with torch.no_grad(), capture(str(path), mode="tensor"):
            torch.mm(a, b)
        records = path / "rank0" / "step0" / "records.jsonl"
        record = json.loads(records.read_text())
        if side == "target":
            out = path / "rank0" / "step0" / record["outputs"][0]["file"]
            np.save(out, np.load(out) * 1.5)
        if edit is not None:
            edit(record)
        records.write_text(json.dumps(record) + "\n")
        paths.append(path)
    return paths


def refusals(report):
    return [p for row in report["pairs"] for p in row["problems"]]


def test_the_crafted_pair_is_replayed_when_untouched(tmp_path):
    """The setup the tests below edit reaches the replay: what they refuse would otherwise be called."""
    (row,) = compare(*our_pair(tmp_path))["pairs"]
    assert row["method"] == "replay" and row["problems"] == []


def test_load_library_is_never_called(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.ops, "load_library", lambda *a: calls.append(a))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: calls.append(a))
    evil = str(tmp_path / "evil.so")

    def edit(record):
        record.update(name="load_library::__call__.__call__", inputs=[], args={"args": [evil]})

    report = compare(*our_pair(tmp_path, edit))
    assert calls == []
    (problem,) = refusals(report)
    assert problem.startswith("not replayed: 'load_library::__call__.__call__': namespace")
    assert report["summary"]["problems"] == 1


@pytest.mark.parametrize("name", ["aten::from_file", "aten::from_file.default"])
def test_from_file_creates_no_file(tmp_path, name):
    planted = tmp_path / "planted.bin"

    def edit(record):
        record.update(name=name, inputs=[], args={"args": [str(planted), True, 1000]})

    report = compare(*our_pair(tmp_path, edit))
    assert not planted.exists()
    (problem,) = refusals(report)
    assert problem.startswith(f"not replayed: {name!r}")


@pytest.mark.parametrize(
    "name, args, why",
    [
        ("aten::mm.__call__", {"args": [{"tensor": 0}, {"tensor": 1}]}, "not a plain"),
        ("aten::mm.default.__call__", {"args": [{"tensor": 0}, {"tensor": 1}]}, "not a plain"),
        ("aten::_pin_memory", {"args": [{"tensor": 0}]}, "pinned"),
        ("aten::set_.source_Storage", {"args": [{"tensor": 0}, {"tensor": 1}]}, "storage"),
        (
            "aten::div.Tensor_mode",
            {"args": [{"tensor": 0}, {"tensor": 1}], "kwargs": {"rounding_mode": "/etc/passwd"}},
            "'/etc/passwd' for argument 'rounding_mode'",
        ),
    ],
)
def test_other_requests_outside_the_policy_are_refused(tmp_path, name, args, why):
    def edit(record):
        record.update(name=name, args=args)

    report = compare(*our_pair(tmp_path, edit))
    assert report["pairs"][0]["method"] != "replay"
    (problem,) = refusals(report)
    assert why in problem


def test_a_dtype_argument_names_only_a_dtype():
    assert decode_args({"args": [{"dtype": "bfloat16"}]}, []) == ((torch.bfloat16,), {})
    for name in ("load", "ops", "__class__", "float32.__class__"):
        with pytest.raises(ValueError, match=r"not a torch\.dtype"):
            decode_args({"args": [{"dtype": name}]}, [])


def msprobe_pair(tmp_path, entry=None):
    """Copies of the committed msprobe tensor dumps; ``entry`` (the key's value) is added to both with an
    output tensor that differs between the two, so compare tries to replay it."""
    paths = []
    for side, src, value in (("target", "bf16_tensor", 1.0), ("reference", "fp32_tensor", 2.0)):
        path = tmp_path / side
        shutil.copytree(os.path.join(MSPROBE, src), path)
        (rank_dir,) = (path / "step0").iterdir()
        if entry is not None:
            key, body = entry
            torch.save(torch.full((4,), value), rank_dir / "dump_tensor_data" / "crafted.pt")
            output = {
                "type": "torch.Tensor",
                "dtype": "torch.float32",
                "shape": [4],
                "data_name": "crafted.pt",
            }
            dump = json.loads((rank_dir / "dump.json").read_text())
            dump["data"][key] = dict(body, output=[output])
            (rank_dir / "dump.json").write_text(json.dumps(dump))
        paths.append(path)
    return paths


def test_an_msprobe_key_cannot_name_load_library(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.ops, "load_library", lambda *a: calls.append(a))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: calls.append(a))
    evil = {"type": "str", "value": str(tmp_path / "evil.so")}
    report = compare(
        *msprobe_pair(tmp_path, ("load_library::__call__.__call__.0.forward", {"input_args": [evil]}))
    )
    assert calls == []
    assert any(p.startswith("not replayed: 'load_library::__call__.__call__'") for p in refusals(report))


def test_an_msprobe_key_cannot_name_from_file(tmp_path):
    planted = tmp_path / "planted.bin"
    args = [
        {"type": "str", "value": str(planted)},
        {"type": "bool", "value": True},
        {"type": "int", "value": 1000},
    ]
    report = compare(*msprobe_pair(tmp_path, ("aten::from_file.0.forward", {"input_args": args})))
    assert not planted.exists()
    assert any(p.startswith("not replayed: 'aten::from_file'") for p in refusals(report))


SECRET = 1234.5


@pytest.mark.parametrize("absolute", [False, True])
def test_a_tensor_file_outside_the_dump_is_never_read(tmp_path, absolute):
    secret = tmp_path / "target" / "secret.npy"  # rank0/step0/../../secret.npy, seen from the target

    def edit(record):
        record["outputs"][0]["file"] = str(secret) if absolute else "../../secret.npy"

    target, reference = our_pair(tmp_path, edit)
    for side in (target, reference):
        np.save(side / "secret.npy", np.full((4, 4), SECRET, dtype=np.float32))
    report = compare(target, reference)
    (row,) = report["pairs"]
    assert row["max_abs_err"] is None and row["cosine"] is None  # no metric of the secret's values
    assert "1234" not in json.dumps(report["pairs"])
    assert len(row["problems"]) == 2 and all("secret.npy" in p for p in row["problems"])  # both sides
    assert report["summary"]["problems"] == 2


@pytest.mark.parametrize("link", ["file", "step dir"])
def test_a_symlinked_tensor_file_or_step_dir_is_not_followed(tmp_path, link):
    """The tensor file itself, or the step directory holding it, is a link to the same name outside."""
    target, reference = our_pair(tmp_path)
    outside = tmp_path / "outside"
    step = target / "rank0" / "step0"
    if link == "file":
        record = json.loads((step / "records.jsonl").read_text())
        name = record["outputs"][0]["file"]
        (outside / name).parent.mkdir(parents=True)
        np.save(outside / name, np.full((4, 4), SECRET, dtype=np.float32))
        (step / name).unlink()
        os.symlink(outside / name, step / name)
    else:
        shutil.move(str(step), str(outside))
        os.symlink(outside, step)
    report = compare(target, reference)
    assert "1234" not in json.dumps(report["pairs"])
    problems = refusals(report)
    assert problems and all("leads out of" in p for p in problems)


def test_a_symlinked_msprobe_tensor_dir_is_not_followed(tmp_path):
    target, reference = msprobe_pair(tmp_path)
    (rank_dir,) = (target / "step0").iterdir()
    outside = tmp_path / "outside"
    shutil.move(str(rank_dir / "dump_tensor_data"), str(outside))
    os.symlink(outside, rank_dir / "dump_tensor_data")
    report = compare(target, reference)
    assert all(row["cosine"] is None for row in report["pairs"])  # no target tensor was read
    problems = refusals(report)
    assert problems and all("leads out of" in p for p in problems)
    assert report["summary"]["problems"] == len(problems)
