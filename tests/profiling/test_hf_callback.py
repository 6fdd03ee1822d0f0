"""The Trainer callback marks one profiler step per Trainer step, and owns its profiler when given a directory."""

import torch
from gloo_ranks import events
from transformers import TrainerControl, TrainerState

from ascend_tools.profiling.hf import ProfilerCallback
from ascend_tools.profiling.profiler import current, profile


def run_trainer_loop(cb, steps, accumulation=2):
    """What Trainer does around the callback: begin, ``accumulation`` micro-batches and one optimizer step per
    global step, step end, train end."""
    state, control = TrainerState(), TrainerControl()
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    cb.on_train_begin(None, state, control)
    for _ in range(steps):
        for _ in range(accumulation):
            model(torch.randn(2, 4)).sum().backward()
        opt.step()
        opt.zero_grad()
        state.global_step += 1
        cb.on_step_end(None, state, control)
    cb.on_train_end(None, state, control)


def test_callback_with_its_own_profiler(tmp_path):
    out = str(tmp_path / "prof")
    run_trainer_loop(ProfilerCallback(out, comm=False, hang_timeout=None), steps=3)
    assert [s["step"] for s in events(out, 0, "step")] == [0, 1, 2]
    assert current() is None


def test_callback_marks_the_running_profiler(tmp_path):
    out = str(tmp_path / "prof")
    with profile(out, comm=False, hang_timeout=None) as prof:
        run_trainer_loop(ProfilerCallback(), steps=4)
        assert prof.step_no == 4  # the callback's steps, not optimizer.step() as well
    steps = events(out, 0, "step")
    assert [s["step"] for s in steps] == [0, 1, 2, 3]
    assert all(s["t1"] >= s["t0"] for s in steps)
