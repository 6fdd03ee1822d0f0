"""compare says when two of our dumps were written by different recording rules (``store.RECORDING``): a reference
dumped once with an older ascend-doctor and a target dumped later can pair the wrong ops (seen: a module path scheme
changed under activation checkpointing and gave a false "Inf first produced by ..." headline)."""

import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from ascend_tools import __version__
from ascend_tools.cli import main
from ascend_tools.precision import capture, store


@pytest.fixture(scope="module")
def dump(tmp_path_factory):
    path = tmp_path_factory.mktemp("d") / "run"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    with capture(str(path), model=model):
        model(torch.randn(4, 8)).sum().backward()
    return path


def with_meta(src, dst, **changes):
    """A copy of dump ``src`` whose rank 0 meta.json has ``changes`` (None: the key removed)."""
    shutil.copytree(src, dst)
    meta_path = dst / "rank0" / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = value
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    return dst


def compare(*args):
    return CliRunner().invoke(main, ["compare", *map(str, args)])


def test_the_meta_names_the_recording_and_the_tool_version(dump):
    meta = json.loads((dump / "rank0" / "meta.json").read_text(encoding="utf-8"))
    assert meta["recording"] == store.RECORDING and meta["versions"]["ascend_doctor"] == __version__


def test_dumps_of_one_recording_say_nothing(dump):
    result = compare(dump, dump, "-f", "json")
    report = json.loads(result.output)
    assert result.exit_code == 0 and report["summary"]["recording"] == [store.RECORDING] * 2
    assert "recording" not in compare(dump, dump, "--fail-on", "warning").output


def test_a_reference_of_an_earlier_recording_is_named_and_fails_at_warning(dump, tmp_path):
    old = with_meta(dump, tmp_path / "old", recording=None, versions={"python": "3.9.18", "torch": "2.1.0"})
    result = compare(dump, old, "--fail-on", "warning")
    assert result.exit_code == 1, result.output
    text = " ".join(result.output.split())  # wrapped where the paths' column ends: a longer tmp path moves it
    assert f"different recording rules (target {store.RECORDING}, reference 1" in text
    assert "version not recorded" in text and __version__ in text
    report = json.loads(compare(dump, old, "-f", "json").output)
    assert report["summary"]["recording"] == [store.RECORDING, 1]


@pytest.mark.parametrize("value", ["2", True, 1e300, -1, [2], {"a": 1}, 10**30])
def test_a_hostile_recording_value_is_no_recording(dump, tmp_path, value):
    odd = with_meta(dump, tmp_path / "odd", recording=value)
    result = compare(dump, odd, "-f", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["summary"]["recording"] == [store.RECORDING, None]
