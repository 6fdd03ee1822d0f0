"""The header of a script run says what was traced: one training step, the op calls counted by their outputs'
dtypes and the CUDA autocast regions entered (opcheck/traced_precision.py, script_header.py).

The expectation is the same step run for real on the CPU, CPU autocast's policy agreeing with CUDA's for
linear and mse_loss (test_fake_autocast.py), its op calls counted by output dtype under a dispatch mode, and the
optimizer stepped by the kernels torch picks on CUDA and NPU (foreach: torch's own rule, with the CPU in its list
of the devices that have them)."""

import os
import subprocess
import sys
from collections import Counter

import torch
import torch.optim.optimizer as optimizer_module
from test_script_run import check_ops
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from ascend_tools.dispatch import dtype_name

SETUP = """
import torch
import torch.nn.functional as F

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).to("{device}")
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, target = torch.randn(3, 8).to("{device}"), torch.randn(3, 4).to("{device}")
"""
# the traced part: from the first forward to the return of optimizer.step()
STEP = """
with torch.autocast("{device}", dtype=torch.bfloat16, enabled={autocast}):
    loss = F.mse_loss(model(x), target)
loss.backward()
opt.step()
"""


class OutputDtypes(TorchDispatchMode):
    """Op calls counted by the dtypes of their outputs (a call with two dtypes counts for each)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for dtype in {t.dtype for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)}:
            self.counts[dtype_name(dtype)] += 1
        return out


def on_cpu(autocast: bool) -> Counter:
    scope: dict = {}
    exec(SETUP.format(device="cpu"), scope)
    devices = optimizer_module._get_foreach_kernels_supported_devices
    optimizer_module._get_foreach_kernels_supported_devices = lambda: [*devices(), "cpu"]
    try:
        with OutputDtypes() as rec:
            exec(STEP.format(device="cpu", autocast=autocast), scope)
    finally:
        optimizer_module._get_foreach_kernels_supported_devices = devices
    return rec.counts


def script(path, autocast: bool):
    path.write_text(SETUP.format(device="cuda") + STEP.format(device="cuda", autocast=autocast))
    return path


def test_an_autocast_step_counts_its_bf16_outputs_as_real_autocast_makes_them(tmp_path):
    proc, report = check_ops(tmp_path, "python", str(script(tmp_path / "amp.py", autocast=True)))
    assert report is not None, proc.stderr
    trace = report["trace"]
    assert trace["complete"], trace["stopped"]
    assert trace["autocast_regions"] == ["cuda bfloat16"] and trace["autocast"]
    assert trace["dtype"] is None and trace["backward"]
    expected = on_cpu(autocast=True)
    assert expected["bfloat16"] > 0  # the reference itself ran in mixed precision
    assert trace["output_dtypes"] == dict(expected)


def header(path) -> dict:
    """The text report's summary lines of ``check-ops -- python SCRIPT``, by label."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            "check-ops",
            "--fail-on",
            "never",
            "--",
            "python",
            str(path),
        ],
        cwd=path.parent,
        env={**os.environ, "COLUMNS": "200"},  # one line per summary row
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    pairs = (line.split(":", 1) for line in proc.stdout.splitlines() if ":" in line)
    return {label.strip(): text.strip() for label, text in pairs}


def test_a_float32_step_says_so_in_the_header(tmp_path):
    lines = header(script(tmp_path / "fp32.py", autocast=False))
    expected = on_cpu(autocast=False)
    assert set(expected) == {"float32"}
    assert lines["traced dtypes"] == f"no autocast; op outputs: float32 {expected['float32']}"
    assert lines["traced"].endswith(" calls: one training step (forward, backward, optimizer step (SGD))")
