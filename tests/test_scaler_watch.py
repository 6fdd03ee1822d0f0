"""scaler_watch.py leaves torch's GradScaler as it found it once the last session ends."""

import torch

from ascend_tools.precision import capture
from ascend_tools.profiling import profile


def wrapped(cls) -> bool:
    return getattr(cls.__dict__.get("update"), "_ascend_doctor_update", False)


def test_the_last_session_to_end_takes_the_hooks_away(tmp_path):
    original = torch.amp.GradScaler.__dict__["update"]
    prof = profile(str(tmp_path / "prof"), comm=False, hang_timeout=None, memory=False)
    with capture(str(tmp_path / "dump")):
        prof.start()

        class Made(torch.amp.GradScaler):  # a subclass made while sessions run (torch_npu's, under the CLI)
            def update(self, new_scale=None):
                return None

        assert wrapped(torch.amp.GradScaler) and wrapped(Made)
    assert wrapped(torch.amp.GradScaler) and wrapped(Made)  # the profiler still runs
    prof.close()
    assert torch.amp.GradScaler.__dict__["update"] is original
    assert not wrapped(Made)
    assert "__init_subclass__" not in torch.amp.GradScaler.__dict__

    class After(torch.amp.GradScaler):
        def update(self, new_scale=None):
            return None

    assert not wrapped(After)
