"""The demo's loss-compare part: a TechGPT-style MindSpore LossMonitor log (per-epoch step counter, two
epochs) against a GPU trainer_state.json logged every 5 steps; the drift starts in epoch 2."""

import json
import re

from ascend_tools.demo import _loss_part
from ascend_tools.precision import demo_losses


def test_demo_mindspore_log_is_compared_on_global_steps(tmp_path):
    said = []
    _loss_part(str(tmp_path), said.append)
    npu = (tmp_path / "loss-logs" / "npu_mindspore.log").read_text(encoding="utf-8")
    per_epoch = demo_losses.STEPS_PER_EPOCH
    a = {}
    for e, s, v in re.findall(r"^epoch: (\d+) step: (\d+), loss is (\S+)$", npu, re.M):
        a[(int(e) - 1) * per_epoch + int(s)] = float(v)  # LossMonitor's step is within the epoch
    state = json.loads((tmp_path / "loss-logs" / "gpu_trainer_state.json").read_text(encoding="utf-8"))
    b = {h["step"]: h["loss"] for h in state["log_history"]}
    common = sorted(set(a) & set(b))
    first_raw = next(s for s in common if abs(a[s] - b[s]) > 0.02 * abs(b[s]))
    report = json.loads((tmp_path / "loss-compare.json").read_text(encoding="utf-8"))
    assert report["run_a"]["steps"] == 2 * per_epoch and report["steps"]["compared"] == len(common)
    assert report["verdict"] == "diverged"
    assert report["first_divergent_step"] == first_raw
    assert demo_losses.DRIFT_AT <= first_raw < demo_losses.DRIFT_AT + 2 * demo_losses.LOGGING_STEPS
    assert any(line.startswith("  verdict:") and str(first_raw) in line for line in said)
