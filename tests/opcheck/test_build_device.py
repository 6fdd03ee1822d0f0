"""Old form (model.py with build_model()): CUDA moves and legacy constructors while the model builds."""

import json
import textwrap

import pytest
import torch
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.opcheck.build_device import on_trace_device

CUDA_MODEL = """
import torch


class Legacy(torch.nn.Module):
    def __init__(self, dim=16):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.Tensor(dim, dim))
        self.scale = torch.nn.Parameter(torch.FloatTensor(dim))
        self.idx = torch.cuda.LongTensor([0, 1])
        self.register_buffer("mask", torch.ones(dim, device="cuda"))
        torch.nn.init.normal_(self.weight)
        self.cuda()

    def forward(self, x):
        return (x @ self.weight) * self.scale * self.mask


def build_model():
    return Legacy().to("cuda")


def example_inputs():
    return (torch.randn(2, 16),)
"""


@pytest.mark.parametrize("extra", [(), ("--autocast", "--dtype", "bf16")])
def test_cuda_moves_and_legacy_constructors_do_not_stop_the_trace(tmp_path, extra):
    path = tmp_path / "cuda_model.py"
    path.write_text(textwrap.dedent(CUDA_MODEL).lstrip(), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["check-ops", str(path), "--format", "json", "--fail-on", "never", *extra]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["trace"]["complete"] and report["trace"]["stopped"] is None
    phases = {r["op"]: r["phases"] for r in report["ops"]}
    # x @ weight's backward is an mm: forward and backward were both traced
    assert "backward" in phases["aten::mm"]


def test_legacy_constructors_allocate_on_meta_and_isinstance_still_works():
    with on_trace_device("meta"), torch.device("meta"):
        made = [
            torch.Tensor(2, 3),
            torch.FloatTensor(2, 3),
            torch.Tensor([1.0, 2.0]),
            torch.cuda.LongTensor(3),
            torch.HalfTensor(torch.Size([4])),
        ]
        moved = torch.zeros(2).to("cuda", torch.float16)
        assert torch.zeros(2).cuda().device.type == "meta"
        assert torch.zeros(2, device="cuda").device.type == "meta"
        assert isinstance(torch.FloatTensor(1), torch.Tensor)
    assert [t.device.type for t in made] == ["meta"] * 5
    assert [t.dtype for t in made] == [
        torch.float32,
        torch.float32,
        torch.float32,
        torch.int64,
        torch.float16,
    ]
    assert [tuple(t.shape) for t in made] == [(2, 3), (2, 3), (2,), (3,), (4,)]
    assert moved.dtype == torch.float16 and moved.device.type == "meta"
    # everything is restored afterwards
    assert torch.Tensor(2).device.type == "cpu"
    assert "__new__" not in vars(torch.Tensor)
    assert isinstance(torch.FloatTensor, type) and torch.nn.Module.cuda.__name__ == "cuda"
