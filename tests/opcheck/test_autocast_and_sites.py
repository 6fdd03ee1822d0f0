"""check-ops --autocast (fake CPU tensors under torch.autocast) and the "first call" site of each op."""

import json
import os
import textwrap

import pytest
from click.testing import CliRunner

from ascend_tools.cli import main

AMP_MODEL = """
import torch


class Head(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(16, 16)

    def forward(self, x):
        h = self.lin(x)
        loss = torch.nn.functional.mse_loss(h, torch.zeros_like(h))
        return loss.double().sum()


def build_model():
    return Head()


def example_inputs():
    return (torch.randn(4, 16),)
"""


def check_ops(path, *extra):
    result = CliRunner().invoke(
        main, ["check-ops", str(path), "--format", "json", "--fail-on", "never", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


@pytest.fixture(scope="module")
def amp_target(tmp_path_factory):
    path = tmp_path_factory.mktemp("amp") / "amp_model.py"
    path.write_text(textwrap.dedent(AMP_MODEL).lstrip(), encoding="utf-8")
    return path


def ops_by_name(report):
    return {row["op"]: row for row in report["ops"]}


def test_autocast_runs_matmul_in_bf16_and_mse_loss_in_fp32(amp_target):
    ops = ops_by_name(check_ops(amp_target, "--dtype", "bf16", "--autocast"))
    # torch.autocast's CPU policy (PyTorch AMP docs): linear → bf16 (lower-precision list),
    # mse_loss → fp32 (fp32 list), so its bf16 input is cast up first
    assert "bfloat16" in ops["aten::addmm"]["dtypes"]
    assert ops["aten::mse_loss"]["dtypes"] == ["float32"]
    # without autocast the same model stays fp32 throughout
    plain = ops_by_name(check_ops(amp_target))
    assert plain["aten::addmm"]["dtypes"] == ["float32"]


def test_autocast_needs_a_low_precision_dtype(amp_target):
    result = CliRunner().invoke(main, ["check-ops", str(amp_target), "--autocast"])
    assert result.exit_code == 2
    assert "--autocast" in result.output and "bf16" in result.output


def test_first_call_site_points_at_the_model_code(amp_target):
    lines = amp_target.read_text().splitlines()
    mse_line = next(i for i, text in enumerate(lines, 1) if "mse_loss" in text)
    ops = ops_by_name(check_ops(amp_target))
    site = ops["aten::mse_loss"]["site"]
    assert site.endswith(f"amp_model.py:{mse_line} in forward"), site
    # float64 sum is no risk: torch_npu's docs list float64 for torch.sum (risk sites: test_op_restrictions)
    assert "float64" in ops["aten::sum"]["dtypes"] and ops["aten::sum"]["dtype_risks"] == []
    assert ops["aten::sum"]["risk_site"] == ""
    # backward-only ops carry no site
    assert ops["aten::mse_loss_backward"]["site"] == ""
    assert os.path.basename(site.split(":")[0]) == "amp_model.py"
