"""The accelerator path (CPU tensors treated as device tensors) when an op writes a tensor whose statistics are
still on the device: the record keeps the counts of the values it was made from, only a suspect tensor is
counted (a handful of kernels on a GPU or NPU), and one host transfer serves every tensor one op writes."""

import torch

from ascend_tools.precision import capture, capture_session
from ascend_tools.precision import stats as stats_mod
from ascend_tools.precision.dumps import open_dump

FLUSH = 10_000  # one flush, at the end: every row below waits on the "device" until an op writes its tensor


def _device_path(monkeypatch):
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: False)
    # the first op through a dispatch mode imports torch._dynamo: over FLUSH_AFTER on a loaded machine
    monkeypatch.setattr(capture_session, "FLUSH_AFTER", 3600.0)
    counted, moved = [], []
    real_counts, real_host = stats_mod._counts, stats_mod.to_host
    monkeypatch.setattr(stats_mod, "_counts", lambda x: counted.append(x.shape) or real_counts(x))
    monkeypatch.setattr(stats_mod, "to_host", lambda t: moved.append(t.shape) or real_host(t))
    return counted, moved


def _outputs(path, name):
    recs = [r for r in open_dump(str(path)).records(0) if r.name == name]
    return [r.outputs[0].stats for r in recs]


def test_counts_are_those_of_the_values_before_the_write(tmp_path, monkeypatch):
    counted, moved = _device_path(monkeypatch)
    nan, inf = float("nan"), float("inf")
    base = torch.tensor([1.0, nan, inf, 2.0, -inf])
    with capture(str(tmp_path), level="op", mode="stats", flush_every=FLUSH):
        a = base * 2.0  # 1 NaN, 2 Inf
        b = base.nan_to_num(0.0, 0.0, 0.0) + 1.0  # finite
        c = b * 1.0  # finite, not written: left for the flush
        a.nan_to_num_(0.0, 0.0, 0.0)  # a now finite
        b.div_(0.0)  # b now all +Inf
        del c
    mul, add = _outputs(tmp_path, "aten::mul.Tensor"), _outputs(tmp_path, "aten::add.Tensor")
    assert (mul[0].nan, mul[0].inf) == (1, 2)  # a as it was made, not as nan_to_num_ left it
    assert (add[0].nan, add[0].inf, add[0].max) == (0, 0, 3.0)  # b as it was made
    (fixed,) = _outputs(tmp_path, "aten::nan_to_num_")
    (divided,) = _outputs(tmp_path, "aten::div_.Tensor")
    assert (fixed.nan, fixed.inf) == (0, 0)
    assert (divided.nan, divided.inf) == (0, 5)
    # counted on the device: a (suspect, about to be written), then at the flush `base` (an input no op made) and
    # div_'s output; b, written too, was not suspect
    assert counted == [(5,), (5,), (5,)]
    # one transfer of rows per writing op (nan_to_num_: a's, then a's counts; div_: b's) and the flush's (its rows,
    # then the counts of base and of div_'s output)
    assert [tuple(s) for s in moved] == [(4,), (1, 4), (4,), (20,), (2, 4)]


def test_one_transfer_for_every_tensor_a_foreach_op_writes(tmp_path, monkeypatch):
    counted, moved = _device_path(monkeypatch)
    with capture(str(tmp_path), level="op", mode="stats", flush_every=FLUSH):
        xs = [torch.full((3,), float(i)) + 0.5 for i in range(4)]  # four recorded outputs
        before = len(moved)
        torch._foreach_mul_(xs, 2.0)  # writes all four
        assert len(moved) == before + 1
    adds = _outputs(tmp_path, "aten::add.Tensor")
    assert [s.max for s in adds] == [0.5, 1.5, 2.5, 3.5]  # the values before the write
    assert counted == []
