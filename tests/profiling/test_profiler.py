"""The profile() session itself: OOM forensics then re-raise, where a process without a rank writes, and the
records kept from before the rank was known."""

import json
import os

import pytest
import torch
from fp16_scaler import fp16_scaled_training, npu_style_scaler_class
from gloo_ranks import events, read_json

from ascend_tools.profiling import profile


def test_oom_inside_a_profiled_step_writes_forensics_and_reraises(tmp_path):
    out = str(tmp_path / "prof")
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with (
        pytest.raises(torch.OutOfMemoryError, match=r"Tried to allocate 2\.00 GiB"),
        profile(out, comm=False, hang_timeout=None),
    ):
        for step in range(3):
            model(torch.randn(2, 4)).sum().backward()
            if step == 2:
                raise torch.OutOfMemoryError("NPU out of memory. Tried to allocate 2.00 GiB")
            opt.step()
    report = read_json(os.path.join(out, "rank0", "oom.json"))
    assert report["step"] == 2  # two optimizer steps completed before the failing one
    assert report["error"]["type"].endswith("OutOfMemoryError")
    assert report["host_memory"]["process"]["rss"] > 0
    assert read_json(os.path.join(out, "rank0", "meta.json"))["closed_at"] > 0


def test_other_errors_write_no_forensics(tmp_path):
    out = str(tmp_path / "prof")
    with pytest.raises(ValueError), profile(out, comm=False, hang_timeout=None):
        raise ValueError("not memory")
    assert not os.path.exists(os.path.join(out, "rank0", "oom.json"))


def test_single_process_without_rank_writes_rank0_with_early_records(tmp_path, monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    out = str(tmp_path / "prof")
    with profile(out, comm=False, hang_timeout=None, memory_interval=0.01) as prof:
        assert prof.rank_dir is None  # not known yet: no process group, no RANK
        prof.sampler.sample()
        prof.step()
    assert prof.rank_dir == os.path.join(out, "rank0")
    assert [s["step"] for s in events(out, 0, "step")] == [0]
    assert events(out, 0, "mem")  # samples taken before the rank was known are kept


def test_launcher_parent_does_not_overwrite_a_rank(tmp_path, monkeypatch):
    """A parent that spawned the ranks (they wrote rank0, rank1) and never joined a process group writes nothing."""
    monkeypatch.delenv("RANK", raising=False)
    out = str(tmp_path / "prof")
    os.makedirs(os.path.join(out, "rank0"))
    with open(os.path.join(out, "rank0", "meta.json"), "w", encoding="utf-8") as f:
        json.dump({"rank": 0, "pid": 1}, f)
    with profile(out, comm=False, hang_timeout=None):
        pass
    assert read_json(os.path.join(out, "rank0", "meta.json")) == {"rank": 0, "pid": 1}
    assert not os.path.exists(os.path.join(out, "rank0", "events.jsonl"))


def test_a_process_without_a_rank_leaves_no_thread_or_hook_behind(tmp_path):
    """Closing names rank 0 and writes its files, and starts nothing that would outlive the session."""
    import sys
    import threading

    hook = sys.excepthook
    with profile(str(tmp_path / "prof")):
        torch.ones(2).sum()
    assert read_json(tmp_path / "prof" / "rank0" / "meta.json")["rank"] == 0
    assert sys.excepthook is hook
    assert not [t for t in threading.enumerate() if t.name.startswith("ascend-doctor")]


@pytest.mark.parametrize("npu_style", [False, True], ids=["torch", "torch_npu-style"])
def test_a_step_the_loss_scaler_skipped_is_a_profiler_step(tmp_path, npu_style):
    """The profiler has no dispatch mode: it learns that an fp16 scaler skipped a step from the scaler's update()
    (scaler_watch.py), torch's or one shaped like torch_npu's, made after the profiler started."""
    out = str(tmp_path / "prof")
    prof = profile(out, comm=False, hang_timeout=None)
    skipped = fp16_scaled_training(prof, scaler_class=npu_style_scaler_class if npu_style else None)
    assert 1 <= skipped < 4
    assert [s["step"] for s in events(out, 0, "step")] == [0, 1, 2, 3]
