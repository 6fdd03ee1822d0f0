"""Ops on host tensors (``trace.on_host``): their own rows, status "host", judged by no NPU table.

torch's Adam keeps each parameter's ``step`` counter on the CPU unless ``capturable`` or ``fused`` (its docs, and
``_init_group``: ``torch.tensor(0.0)`` otherwise): the foreach step's ``_foreach_add_`` of the counters and the
``.item()`` that reads each one for the bias corrections run on the host of an NPU node too. The fused kernel
keeps them on the device.
"""

import json
import os
import shutil
import subprocess
import sys

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ascend_tools.opcheck import trace

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = """\
import sys
import torch

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(8, 8), torch.nn.Linear(8, 2)

    def forward(self, x):
        scale = torch.arange(1, 9, dtype=torch.float32)  # made on the host, then moved
        return self.b(torch.relu(self.a(x * scale.to(x.device))))

device = "cpu" if sys.argv[1] == "cpu" else "cuda"  # "cpu": as a script run without its GPU option
model = Net().to(device)
# (fused=False given would choose the per-parameter step, as on CUDA: foreach is the default of neither given)
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, **({"fused": True} if sys.argv[1] == "fused" else {}))
x = torch.randn(4, 8).to(device)
loss = model(x).sum()
loss.backward()
print(loss.item())  # a read of a device value
opt.step()
"""


def _rows(tmp_path, variant):
    (tmp_path / "train.py").write_text(SCRIPT)
    out = tmp_path / f"{variant}.json"
    cmd = [sys.executable, "-m", "ascend_tools.cli", "check-ops", "-f", "json", "-o", str(out)]
    proc = subprocess.run(
        [*cmd, "--", "python", "train.py", variant],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.exists(), proc.stderr
    report = json.loads(out.read_text())
    assert report["trace"]["complete"], report["trace"]["stopped"]
    rows = {}
    for row in report["ops"]:
        assert (row["op"], row["status"] == "host") not in rows, row  # one row per op and side
        rows[row["op"], row["status"] == "host"] = row
    return report, rows


def test_adams_step_counters_are_host_ops_and_device_reads_are_not(tmp_path):
    report, rows = _rows(tmp_path, "foreach")
    counters = rows["aten::_foreach_add_.Tensor", True]
    assert counters["phases"] == ["optimizer"] and counters["dtype_risks"] == []
    assert ("aten::_foreach_add_.Tensor", False) not in rows  # no longer judged as a composite NPU op
    assert rows["aten::_local_scalar_dense", True]["phases"] == ["optimizer"]  # the counters' .item()
    assert rows["aten::_local_scalar_dense", False]["status"] == "npu"  # loss.item(): the device's value
    assert rows["aten::arange.start", True]["phases"] == ["forward"]
    assert rows["aten::_to_copy", False]["status"] == "npu"  # host to device: a device op
    # the update itself stays on the device
    assert rows["aten::_foreach_lerp_.Scalar", False]["status"] == "npu"
    assert report["summary"]["status"]["host"] == sum(1 for op, host in rows if host)
    assert not _host_step(report)  # a few host ops in a step on the device


def test_a_script_that_trains_on_the_cpu_is_a_warning(tmp_path):
    """Run without its GPU option, the script trains on the CPU: every op of its forward and backward is a host
    op, and the verdicts are not those of an NPU run (before, each was judged as an NPU op)."""
    report, rows = _rows(tmp_path, "cpu")
    assert rows["aten::addmm", True]["phases"] == ["forward"] and ("aten::addmm", False) not in rows
    assert _host_step(report) and report["trace"]["host_calls"] == report["trace"]["step_calls"]


def _host_step(report):
    """Whether the report warns that the step trained on the host: most calls of its forward and backward on host
    tensors (``trace.host_calls`` of ``trace.step_calls``), a warning."""
    trace = report["trace"]
    warned = 2 * trace["host_calls"] >= trace["step_calls"]
    assert not warned or report["summary"]["worst_severity"] in ("warning", "error")
    return warned


def test_the_fused_step_keeps_its_counters_on_the_device(tmp_path):
    report, rows = _rows(tmp_path, "fused")
    assert not _host_step(report)
    assert rows["aten::_fused_adamw_", False]["phases"] == ["optimizer"]
    assert not [op for op, host in rows if host and "optimizer" in rows[op, host]["phases"]]


def test_on_host_needs_every_tensor_a_real_host_one():
    cpu, meta = torch.ones(2), torch.ones(2, device="meta")
    assert trace.on_host((cpu,), {}, cpu + 1)
    assert not trace.on_host((meta,), {}, meta + 1)
    assert not trace.on_host((cpu,), {}, meta)  # a copy to the device
    assert not trace.on_host((2, 3), {"dtype": torch.float32}, None)  # no tensor: nothing says where
    with FakeTensorMode() as fake:  # --autocast's fake CPU tensors stand for the device's
        stand_in = fake.from_tensor(cpu)
        assert not trace.on_host((stand_in,), {}, stand_in * 2)


DCGAN = os.path.join(ROOT, "tests", "data", "precision_corpus", "dcgan")  # pytorch/examples, byte for byte
DCGAN_ARGS = ["--dataset", "fake", "--dry-run", "--batchSize", "4", "--ngf", "8", "--ndf", "8", "--nz", "16"]
DCGAN_ARGS += ["--workers", "0", "--manualSeed", "1", "--outf", "out"]


def test_dcgan_trains_on_the_host_unless_given_accel(tmp_path):
    """pytorch/examples' dcgan picks the accelerator only with ``--accel`` (``torch.accelerator``); without it
    every op of its step is a host op and the report warns; with it the convolutions are the NPU's."""
    reports = {}
    for accel in (False, True):
        cwd = tmp_path / f"accel-{accel}"
        shutil.copytree(DCGAN, cwd)
        out = cwd / "report.json"
        cli = [sys.executable, "-m", "ascend_tools.cli", "check-ops", "-f", "json", "-o", str(out)]
        proc = subprocess.run(
            [*cli, "--", sys.executable, "main.py", *DCGAN_ARGS, *(["--accel"] if accel else [])],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=300,
            env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "tests", "precision", "stubs_dcgan")),
        )
        assert out.exists(), proc.stderr[-2000:]
        reports[accel] = json.loads(out.read_text())
        assert reports[accel]["trace"]["complete"], reports[accel]["trace"]["stopped"]
    convolution = {r["status"] for r in reports[False]["ops"] if r["op"] == "aten::convolution"}
    assert _host_step(reports[False]) and convolution == {"host"}
    convolution = {r["status"] for r in reports[True]["ops"] if r["op"] == "aten::convolution"}
    assert not _host_step(reports[True]) and convolution == {"npu"}
