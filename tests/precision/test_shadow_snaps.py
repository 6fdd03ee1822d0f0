"""Shadow's shared copies (precision/shadow_snaps.py) and its verdict from the float64 copy
(``screen.judge_output`` given the output's dtype): a copy is reused only while its tensor is unchanged, and the verdict is the
one ``screen.judge_output`` gives on the output itself."""

import gc
import threading

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


def test_a_tensor_read_by_many_ops_is_taken_once(monkeypatch):
    a, b = torch.randn(32, 32), torch.randn(32, 32)
    made = []
    original = Snap.__init__

    def init(self, tensor, versions=None, owner=None):
        made.append(tuple(tensor.shape))
        original(self, tensor, versions, owner)

    monkeypatch.setattr(Snap, "__init__", init)
    with shadow() as sh:
        x = a @ b  # takes a, b and x
        for _ in range(5):
            x @ b  # x and b: already taken; one new output each
    assert sh.compared == 6 and len(made) == 3 + 5


@pytest.fixture
def held_checks(monkeypatch, checks_on_the_worker):
    """Checks, on the worker thread, wait at their start until the returned event is set: the training thread
    runs ahead."""
    gate = threading.Event()
    original = SnapCache.enter

    def enter(self, snaps):
        gate.wait(30)
        return original(self, snaps)

    monkeypatch.setattr(SnapCache, "enter", enter)
    yield gate
    gate.set()


def test_a_cpu_tensor_is_not_copied_until_a_write_meets_a_check_that_holds_it(held_checks, monkeypatch):
    a, b = torch.randn(64, 64), torch.randn(64, 64)
    taken = []
    original = SnapCache.take

    def take(self, t, bumps=0):
        taken.append((t, original(self, t, bumps)))
        return taken[-1][1]

    monkeypatch.setattr(SnapCache, "take", take)
    with shadow() as sh:
        x = a @ b  # its check waits: x's snap is x itself
        assert all(snap.live and snap.tensor.data_ptr() == t.data_ptr() for t, snap in taken)
        x.mul_(3.0)  # written while the check holds it: its snap is copied first
        x.add_(1.0)
        x_snap = taken[2][1]
        assert not x_snap.live and x_snap.tensor.data_ptr() != x.data_ptr()
        held_checks.set()
        assert sh.culprits() == []
    assert torch.equal(x, (a @ b) * 3.0 + 1.0)
    _no_culprits_and_all_compared(sh, 3)
    a_snap = taken[0][1]
    assert a_snap.live and a_snap.tensor.data_ptr() == a.data_ptr()  # never written: never copied


@pytest.mark.parametrize("step_end", [False, True])
def test_a_write_the_shadow_cannot_see_drops_the_check_instead_of_judging_other_values(held_checks, step_end):
    from torch.utils._python_dispatch import _disable_current_modes

    a, b = torch.randn(64, 64), torch.randn(64, 64)
    with shadow() as sh:
        x = a @ b
        with _disable_current_modes():  # below the shadow's view, as a write by another tool would be
            x.mul_(3.0)
        if step_end:  # what a step's end (or the block's) does before the check runs: copy what checks hold
            sh._snaps.clear()
        held_checks.set()
    assert sh.compared == 0 and sh.culprits() == [] and sh.skipped["written unseen"] == 1


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("case", ["close", "far", "zeros", "nan", "tiny", "huge", "odd length"])
@pytest.mark.parametrize("ref_dtype", [None, torch.float32])
def test_the_own_dtype_screen_is_metrics_max_ulp_ratio(dtype, scaled, case, ref_dtype):
    from ascend_tools.precision import metrics as M
    from ascend_tools.precision.screen import _UNDECIDED, _max_ulp_ratio_narrow

    g = torch.Generator().manual_seed(11)
    n = 1001 if case == "odd length" else 1024
    ref = torch.randn(n, generator=g, dtype=torch.float64)
    if case == "tiny":
        ref *= 1e-30 if dtype == torch.float32 else 1e-6
    if case == "huge":
        ref *= 1e30 if dtype != torch.float16 else 1e4
    ref = ref.to(dtype)
    target = ref.clone()
    if case in ("close", "far", "tiny", "huge", "odd length"):
        target = (ref.double() * (1 + (1e-2 if case == "far" else 1e-6) * torch.randn(n, generator=g))).to(
            dtype
        )
    if case == "zeros":
        ref[:100] = 0
    if case == "nan":
        target[7] = float("nan")
    if ref_dtype is not None:  # a bf16/fp16 op's float32 truth
        ref = ref.to(ref_dtype)
    fmt = M.FLOAT_FORMATS[str(dtype).replace("torch.", "")]
    got = _max_ulp_ratio_narrow(target, ref, fmt[1], fmt[2], scaled)
    want = M.max_ulp_ratio(target, ref, fmt[1], fmt[2], scaled)
    assert got == want or (got == _UNDECIDED and case in ("tiny", "huge"))


def test_a_storage_resize_meets_no_check_reading_its_memory(held_checks):
    # FSDP2 frees an unsharded parameter with storage.resize_(0) (no op the dispatch mode sees) and allocates it
    # again before the next all-gather writes it: the check held on it must read the values from before
    original = torch.UntypedStorage.resize_
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    with shadow() as sh:
        x = a @ b  # 1 MB: freed memory is unmapped
        nbytes = x.untyped_storage().nbytes()
        x.untyped_storage().resize_(0)
        x.untyped_storage().resize_(nbytes)
        x.copy_(torch.full_like(x, 7.0))  # the next all-gather
        held_checks.set()
    assert sh.culprits() == [] and [r.name for r in sh.results] == ["aten::mm", "aten::copy_"]
    assert torch.UntypedStorage.resize_ is original  # put back once the shadow ends


def test_a_resize_of_a_storage_no_snap_can_hold_leaves_the_cache_alone(monkeypatch):
    # a device's storages are copied when taken; their resizes may come from the device's autograd thread
    seen = []
    monkeypatch.setattr(SnapCache, "storage_written", lambda self, storage: seen.append(storage))
    with shadow():
        meta = torch.empty(64, device="meta").untyped_storage()
        meta.resize_(0)
        cpu = torch.empty(64).untyped_storage()
        address = cpu.data_ptr()
        cpu.resize_(0)
    assert seen == [address] and meta.nbytes() == 0 and cpu.nbytes() == 0


def test_a_write_after_the_shadowed_steps_does_not_drop_their_pending_checks(held_checks):
    # steps=[0]: the optimizer's update of step 0 is still waiting for its check when step 1 writes the
    # parameter again, with the shadow off (no op seen): the check must judge the values it was taken with
    p = torch.nn.Parameter(torch.randn(32, 32))
    opt = torch.optim.SGD([p], lr=0.1)
    x = torch.randn(8, 32)
    with shadow(steps=[0]) as sh:
        for _ in range(2):
            (x @ p).pow(2).mean().backward()
            opt.step()
            opt.zero_grad()
        held_checks.set()
    assert sh.skipped["written unseen"] == 0 and sh.culprits() == []
    assert [r.phase for r in sh.results if r.name == "aten::add_.Tensor"] == ["optimizer"]
