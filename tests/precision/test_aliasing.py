"""Views read from the op schema (ascend_tools/precision/aliasing.py) and what capture does with them in stats
mode: a view of all of its input's elements shares the input's statistics, any other view (slice, select,
expand, split) gets none when it is made, and the op that reads it gets the view's own statistics."""

import pytest
import torch

from ascend_tools.precision import aliasing, capture, capture_session
from ascend_tools.precision.stats import tensor_stats
from ascend_tools.precision.store import OurDump

aten = torch.ops.aten

# (op, arguments after the input tensor)
CASES = [
    (aten.view.default, ([6, 4],)),
    (aten.t.default, ()),
    (aten.transpose.int, (0, 1)),
    (aten.permute.default, ([1, 0],)),
    (aten.unsqueeze.default, (0,)),
    (aten.detach.default, ()),
    (aten.slice.Tensor, (0, 1, 3)),
    (aten.select.int, (0, 2)),
    (aten.expand.default, ([2, 4, 6],)),
    (aten.diagonal.default, ()),
    (aten.as_strided.default, ([2, 2], [1, 1])),
    (aten.split.Tensor, (2,)),
    (aten.unbind.int, ()),
    (aten.clone.default, ()),
    (aten.add.Tensor, (1.0,)),
    (aten.mul.Tensor, (2.0,)),
    (aten.neg.default, ()),
    (aten.add_.Tensor, (1.0,)),
    (aten.mul_.Tensor, (1.0,)),
]


@pytest.mark.parametrize("op, args", CASES, ids=[str(op) for op, _ in CASES])
def test_schema_view_matches_what_the_op_does(op, args):
    """A view by the schema exactly when the output, at run time, shares the input's storage and is a new
    tensor object (an in-place op returns the input itself: new values, not a view)."""
    x = torch.randn(4, 6)
    out = op(x, *args)
    first = out[0] if isinstance(out, (list, tuple)) else out
    shares = first.untyped_storage().data_ptr() == x.untyped_storage().data_ptr() and first is not x
    assert aliasing.returns_view(op) == shares


def test_only_rearranging_views_never_share():
    assert aliasing.may_share("aten::view") and aliasing.may_share("aten::expand")
    assert not aliasing.may_share("aten::as_strided") and not aliasing.may_share("aten::unfold")


class Rotary(torch.nn.Module):
    """rotate_half of Llama's RoPE: two slices, a neg and a cat, then a mul."""

    def forward(self, x):
        half = x.shape[-1] // 2
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((-x2, x1), dim=-1) * 2.0


def _records(path):
    return list(OurDump.find(str(path)).records(0))


def test_slice_outputs_get_their_statistics_where_read(tmp_path, monkeypatch):
    computed = []
    real = capture_session.cpu_body  # where a stats-mode capture computes a CPU tensor's statistics
    monkeypatch.setattr(capture_session, "cpu_body", lambda t: computed.append(tuple(t.shape)) or real(t))
    x = torch.randn(3, 8)
    with capture(str(tmp_path)):
        Rotary()(x)
    made = list(computed)
    recs = _records(tmp_path)
    slices = [r for r in recs if r.name == "aten::slice.Tensor"]
    assert len(slices) == 2
    assert all(t.stats is None for r in slices for t in r.outputs)  # no statistics when the slice is made
    neg = next(r for r in recs if r.name == "aten::neg")
    got, want = neg.inputs[0].stats, tensor_stats(x[..., 4:])  # the op that reads x2 has x2's statistics
    assert (got.max, got.min, got.mean, got.norm) == pytest.approx((want.max, want.min, want.mean, want.norm))
    cat = next(r for r in recs if r.name == "aten::cat")
    x1 = tensor_stats(x[..., :4])
    assert cat.inputs[1].stats.norm == pytest.approx(x1.norm)
    # x (once), x2 and x1 where read, neg, cat, mul: not the slices when made
    assert made.count((3, 4)) == 3  # x2 (read by neg), neg's output, x1 (read by cat)


def test_full_views_share_the_input_statistics(tmp_path):
    x = torch.randn(4, 6)
    with capture(str(tmp_path)):
        (x.t().expand(6, 4) * 3.0).sum()
    recs = {r.name: r for r in _records(tmp_path)}
    base = tensor_stats(x)
    for name in ("aten::t", "aten::expand"):  # expand(6, 4) of a 6x4 tensor expands nothing
        s = recs[name].outputs[0].stats
        assert (s.max, s.min, s.mean, s.norm) == pytest.approx((base.max, base.min, base.mean, base.norm))


def test_tensor_and_hash_modes_keep_every_view(tmp_path):
    x = torch.randn(3, 8)
    with capture(str(tmp_path / "h"), mode="hash"):
        Rotary()(x)
    slices = [r for r in _records(tmp_path / "h") if r.name == "aten::slice.Tensor"]
    assert slices and all(t.digest for r in slices for t in r.outputs)
