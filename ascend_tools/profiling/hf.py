"""A Hugging Face ``TrainerCallback`` that marks the profiler's steps at the Trainer's own step boundaries.

``Trainer(..., callbacks=[ProfilerCallback()])`` under ``ascend-doctor profile`` marks the steps of the
profiler the launch started; ``ProfilerCallback("PROF")`` starts one itself at ``on_train_begin`` and closes
it at ``on_train_end``. Importing this module needs transformers.
"""

from typing import Any, Optional

from transformers import TrainerCallback

from .profiler import Profiler, current, profile


class ProfilerCallback(TrainerCallback):
    """Steps = optimizer steps as the Trainer counts them (``state.global_step``), so gradient accumulation
    micro-batches fall inside one step."""

    def __init__(self, out_dir: Optional[str] = None, **profile_kwargs: Any) -> None:
        self.out_dir = out_dir
        self.profile_kwargs = profile_kwargs
        self.profiler: Optional[Profiler] = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.out_dir is not None and self.profiler is None:
            self.profiler = profile(self.out_dir, **self.profile_kwargs)
            self.profiler.start()
        prof = self.profiler or current()
        if prof is not None:
            prof.steps_marked_by_caller()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        prof = self.profiler or current()
        if prof is not None:
            prof.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is not None:
            self.profiler.close()
            self.profiler = None
