"""Data read back from the fake accelerator (meta) to the host: ZeRO-3 with CPU offload copies each parameter
into a host partition (``host.copy_(param)``) and checks ranks agree through ``.cpu()``; neither may stop the
trace (trace.SHAPE_FALLBACKS)."""

import torch

from ascend_tools.dispatch import ModulePath
from ascend_tools.opcheck import step_trace, trace


def test_host_copy_of_a_meta_tensor_keeps_the_host_values_during_setup():
    host = torch.arange(4.0)
    with step_trace.GatedOpTrace(ModulePath()):  # not recording: the setup phase
        out = host.copy_(torch.empty(4, device="meta"))
    assert out is host
    assert host.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_meta_tensor_to_host_is_zeros_of_its_shape_and_dtype():
    with step_trace.GatedOpTrace(ModulePath()):
        a = torch.empty(2, 3, device="meta", dtype=torch.bfloat16).cpu()
        b = torch.empty(5, device="meta").to("cpu", dtype=torch.float64)
    assert a.device.type == "cpu" and a.dtype == torch.bfloat16 and a.shape == (2, 3)
    assert torch.equal(a, torch.zeros(2, 3, dtype=torch.bfloat16))
    assert b.dtype == torch.float64 and torch.equal(b, torch.zeros(5, dtype=torch.float64))


def test_read_back_while_recording_is_an_op_and_reported_as_assumed():
    mode = trace.OpTraceMode(ModulePath())
    host, param = torch.ones(3), torch.empty(3, device="meta")
    with mode:
        host.copy_(param)
        param.cpu()
    assert [e.op for e in mode.events] == ["aten::copy_", "aten::_to_copy"]
    assert set(mode.assumed) == {"aten::copy_", "aten::_to_copy"}
    assert host.tolist() == [1.0, 1.0, 1.0]
