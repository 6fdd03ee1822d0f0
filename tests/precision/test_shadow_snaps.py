"""Shadow's shared copies (precision/shadow_snaps.py) and its verdict from the float64 copy
(``screen.judge_output`` given the output's dtype): a copy is reused only while its tensor is unchanged, and the verdict is the
one ``screen.judge_output`` gives on the output itself."""

import gc

import pytest
import torch

import ascend_tools.precision as precision
from ascend_tools.precision.screen import judge_output
from ascend_tools.precision.shadow_snaps import Snap, SnapCache

shadow = precision.shadow


def _pair(dtype, seed, scale=1e-6, nan=False):
    g = torch.Generator().manual_seed(seed)
    ref = torch.randn(300, 7, generator=g, dtype=torch.float64) * 3
    ref[0, :3] = 0.0  # exact zeros: the ULP floor
    target = (ref * (1 + scale * torch.randn(300, 7, generator=g, dtype=torch.float64))).to(dtype)
    if nan:
        target[5, 5] = float("nan")
    return target, ref


@pytest.mark.parametrize(
    "name", ["aten::mm", "aten::mul.Tensor", "aten::addcdiv_", "aten::silu", "aten::cat"]
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("scale,nan", [(1e-6, False), (3e-2, False), (0.0, False), (1e-6, True)])
def test_the_verdict_from_the_float64_copy_is_screen_s(name, dtype, scale, nan):
    target, ref = _pair(dtype, 7, scale, nan)
    got_m, got_v = judge_output(name, target.to(torch.float64), ref, 64, dtype)
    want_m, want_v = judge_output(name, target, ref, 64)
    assert got_m == want_m and got_v == want_v


def test_integer_outputs_are_compared_exactly():
    target, ref = torch.tensor([1, 2, 3]), torch.tensor([1, 2, 4])
    m, v = judge_output("aten::argmax", target, ref, None, torch.int64)
    assert v.level == "error" and m.mismatch == pytest.approx(1 / 3)


def test_a_copy_is_reused_until_its_tensor_is_written():
    cache = SnapCache(1 << 20)
    t = torch.ones(4)
    snap = Snap(t.clone())
    cache.put(t, snap)
    assert cache.get(t) is snap and cache.get(torch.ones(4)) is None
    t.add_(1)  # bumps the version counter
    assert cache.get(t) is None
    cache.put(t, snap)
    t.data.mul_(2)  # a .data alias has a version counter of its own: only the storage says it
    assert cache.get(t) is snap
    cache.written(t.data)
    assert cache.get(t) is None


def test_copies_are_dropped_with_their_tensor_and_beyond_the_budget():
    cache = SnapCache(3 * 64 * 4)
    kept = [torch.randn(64) for _ in range(4)]
    for i in range(4):
        cache.put(kept[i], Snap(kept[i].clone()))
    assert cache.get(kept[0]) is None and all(cache.get(t) is not None for t in kept[1:])
    assert cache.bytes == 3 * 64 * 4
    del kept[1:]
    gc.collect()
    cache.put(kept[0], Snap(kept[0].clone()))  # the dead ones' entries go first
    assert cache.bytes == 64 * 4


def _no_culprits_and_all_compared(sh, n):
    assert sh.compared == n and sh.culprits() == []
    assert all(r.level == "pass" for r in sh.results)


def test_a_write_through_a_data_alias_is_not_hidden_by_a_shared_copy():
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with shadow() as sh:
        x = a * b  # its output copy is kept for the next reader of x
        x.data.mul_(3.0)  # same storage, its own version counter
        y = x + 1.0  # must see x times 3
    assert torch.equal(y, a * b * 3.0 + 1.0)
    _no_culprits_and_all_compared(sh, 3)


def test_a_write_through_a_view_is_not_hidden_by_a_shared_copy():
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with shadow() as sh:
        x = a * b
        x[3].add_(100.0)  # aten::select (a view), then add_ on it
        x.t()[5].mul_(-2.0)
        y = x * 0.5
    assert torch.equal(y, x * 0.5)
    _no_culprits_and_all_compared(sh, 4)


def test_a_tensor_read_by_many_ops_is_copied_once(monkeypatch):
    a, b = torch.randn(32, 32), torch.randn(32, 32)
    made = []
    original = Snap.__init__

    def init(self, tensor):
        made.append(tuple(tensor.shape))
        original(self, tensor)

    monkeypatch.setattr(Snap, "__init__", init)
    with shadow() as sh:
        x = a @ b  # copies a, b and x
        for _ in range(5):
            x @ b  # x and b: already copied; one new output each
    assert sh.compared == 6 and len(made) == 3 + 5
