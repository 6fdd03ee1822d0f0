"""Writers below a run's output directory follow no symlink at any level (issue 11, finding 5): a directory
link planted at ``rank0``, ``step0``, ``tensors`` (dump) or ``rank0`` (profile) is
refused, the directory it points to stays empty, and the user's code runs on. Each case failed before
``atomic.OutputDir`` (only the last name was opened ``O_NOFOLLOW``; the records landed in the target)."""

import errno
import os

import pytest
import torch

from ascend_tools import atomic
from ascend_tools.precision import capture
from ascend_tools.profiling import profile


def plant_dir_link(link, tmp_path):
    """A symlink at ``link`` to an empty directory outside the output; returns that directory."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    os.makedirs(os.path.dirname(link), exist_ok=True)
    os.symlink(str(target), link)
    return target


def files_under(d):
    return sorted(os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs)


@pytest.mark.parametrize("level", ["a", "a/b", "a/b/c"])
def test_output_dir_refuses_a_symlink_at_every_level(tmp_path, level):
    out = atomic.OutputDir(str(tmp_path / "out"))
    target = plant_dir_link(str(tmp_path / "out" / level), tmp_path)
    try:
        with pytest.raises(OSError) as err:
            out.open_append("a/b/c/records.jsonl")
        assert err.value.errno in (errno.ELOOP, errno.ENOTDIR)
        with pytest.raises(OSError), out.open_atomic("a/b/c/meta.json") as f:
            f.write("x")
    finally:
        out.close()
    assert files_under(target) == []


def test_output_dir_writes_below_itself_and_refuses_dotdot(tmp_path):
    out = atomic.OutputDir(str(tmp_path / "out"))
    with out.open_append("r/s/x.jsonl") as f:
        f.write("1\n")
    out.write_json("r/meta.json", {"a": 1})
    with pytest.raises(OSError):
        out.open_append("../escaped.jsonl")
    out.close()
    assert files_under(tmp_path) == ["out/r/meta.json", "out/r/s/x.jsonl"]


def test_output_dir_keeps_writing_where_it_was_opened(tmp_path):
    """The path of the directory swapped for a link after the start: writes still go to the directory opened."""
    out = atomic.OutputDir(str(tmp_path / "out"))
    os.rename(tmp_path / "out", tmp_path / "moved")
    target = plant_dir_link(str(tmp_path / "out"), tmp_path)
    out.write_json("rank0/meta.json", {"a": 1})
    out.close()
    assert files_under(target) == []
    assert files_under(tmp_path / "moved") == ["rank0/meta.json"]


@pytest.mark.parametrize("level", ["rank0/step0", "rank0/step0/tensors"])
def test_a_capture_writes_nothing_through_a_linked_directory(tmp_path, level):
    out = tmp_path / "dump"
    target = plant_dir_link(str(out / level), tmp_path)
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.no_grad(), capture(str(out), mode="tensor") as cap:
        c = torch.mm(a, b)
    assert torch.equal(c, a @ b)  # the user's code ran
    assert files_under(target) == []
    assert cap.internal_errors >= 1


def test_a_capture_refuses_a_linked_rank_directory(tmp_path):
    out = tmp_path / "dump"
    target = plant_dir_link(str(out / "rank0"), tmp_path)
    with torch.no_grad(), capture(str(out)):
        torch.mm(torch.randn(2, 2), torch.randn(2, 2))
    assert files_under(target) == []


def test_a_profile_writes_nothing_through_a_linked_rank_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    out = tmp_path / "prof"
    target = plant_dir_link(str(out / "rank0"), tmp_path)
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with profile(str(out), comm=False, hang_timeout=None) as prof:
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
    assert prof.step_no == 1
    assert files_under(target) == []


def test_a_profile_recorder_refuses_a_rank_link_planted_after_the_lock(tmp_path):
    """The rank directory's lock opens it O_NOFOLLOW, but the recorder's own files are reached from the
    profile directory's descriptor too: a link swapped in afterwards is refused as well."""
    from ascend_tools.profiling.recorder import RankRecorder

    out = tmp_path / "prof"
    target = plant_dir_link(str(out / "rank0"), tmp_path)
    rec = RankRecorder(str(out / "rank0"), {"rank": 0})
    rec.emit({"k": "step", "step": 0})
    rec.close(steps=1)
    assert files_under(target) == []
    assert rec.internal_errors >= 1
