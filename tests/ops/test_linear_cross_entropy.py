"""Fused linear cross-entropy tiers: loss and gradients against an fp64 ``F.cross_entropy(F.linear(...))``
and against transformers' own ``ForCausalLMLoss``; the full logits never exist; every tier available here
(reference, triton interpreted, npu through a double of torch_npu's documented cross-entropy ops) against
the golden vectors; a tier off by 1% refused.

Tolerances (the registry's ``|a - b| / (max(1, rms(b)) + |b|)``): fp32 2e-5, bf16 3e-2 (logits and their
gradient rounded to bf16 before the matmuls).
"""

import importlib.util
import types

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools import backend
from ascend_tools.ops import linear_cross_entropy as L
from ascend_tools.ops import registry
from tests.ops.doubles import cross_entropy as npu_double
from tests.ops.doubles import fake_torch_npu

rel_err = registry.max_rel_error
TOL = {torch.float32: 2e-5, torch.bfloat16: 3e-2, torch.float16: 4e-3}
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")
OPTIONS = [
    {},
    {"reduction": "sum"},
    {"label_smoothing": 0.1},
    {"softcap": 3.0},
    {"num_items_in_batch": 7},
    {"reduction": "sum", "label_smoothing": 0.2, "softcap": 5.0},
]


def truth(hidden, weight, labels, bias=None, **opts):
    """fp64, the plain formula: cross_entropy of the full logits (softcapped), HF's reductions."""
    logits = F.linear(hidden.double(), weight.double(), None if bias is None else bias.double())
    if opts.get("softcap"):
        logits = torch.tanh(logits / opts["softcap"]) * opts["softcap"]
    items = opts.get("num_items_in_batch")
    reduction = "sum" if items is not None else opts.get("reduction", "mean")
    loss = F.cross_entropy(
        logits,
        labels,
        ignore_index=-100,
        reduction=reduction,
        label_smoothing=opts.get("label_smoothing", 0.0),
    )
    return loss / items if items is not None else loss


def problem(n=13, h=24, v=50, dtype=torch.float32, seed=0, bias=False):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=gen).to(dtype)
    weight = (torch.randn(v, h, generator=gen) / h**0.5 * 3).to(dtype)
    labels = torch.randint(0, v, (n,), generator=gen)
    labels[::4] = -100
    b = torch.randn(v, generator=gen).to(dtype) if bias else None
    return hidden, weight, labels, b


def run(fn, hidden, weight, labels, bias, **opts):
    leaves = [
        t.detach().clone().requires_grad_(True) if t is not None else None for t in (hidden, weight, bias)
    ]
    loss = fn(leaves[0], leaves[1], labels, leaves[2], **opts)
    (loss * 1.5).backward()  # a non-unit upstream gradient
    return [loss.detach()] + [t.grad for t in leaves if t is not None]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk", [None, 1, 4, 64])
def test_reference_matches_fp64_truth(opts, bias, chunk, dtype):
    h, w, y, b = problem(dtype=dtype, bias=bias)
    ours = run(L.linear_cross_entropy_reference, h, w, y, b, chunk_size=chunk, **opts)
    ref = run(truth, h.double(), w.double(), y, None if b is None else b.double(), **opts)
    assert ours[0].dtype == torch.float32
    for a, r in zip(ours, ref):
        assert rel_err(a, r) <= TOL[dtype]


def test_matches_transformers_causal_lm_loss():
    loss_utils = pytest.importorskip("transformers.loss.loss_utils")
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(2, 7, 16, generator=gen, requires_grad=True)
    head = torch.nn.Linear(16, 40, bias=False)
    labels = torch.randint(0, 40, (2, 7), generator=gen)
    labels[0, :3] = -100
    for items in (None, 9):
        hf = loss_utils.ForCausalLMLoss(head(hidden), labels, vocab_size=40, num_items_in_batch=items)
        shifted = F.pad(labels, (0, 1), value=-100)[..., 1:].reshape(-1)
        ours = L.linear_cross_entropy_reference(
            hidden.reshape(-1, 16), head.weight, shifted, num_items_in_batch=items, chunk_size=3
        )
        assert rel_err(ours.detach(), hf.detach()) <= 1e-6
        g_hf = torch.autograd.grad(hf, (hidden, head.weight))
        g_ours = torch.autograd.grad(ours, (hidden, head.weight))
        assert all(rel_err(a, b) <= 1e-6 for a, b in zip(g_ours, g_hf))


def test_all_rows_ignored_gives_nan_mean_and_zero_sum_as_torch():
    h, w, y, _ = problem()
    y[:] = -100
    assert torch.isnan(L.linear_cross_entropy_reference(h, w, y)) and torch.isnan(truth(h, w, y))
    loss, gh, gw = run(L.linear_cross_entropy_reference, h, w, y, None, reduction="sum")
    assert loss == 0 and not gh.any() and not gw.any()


class LargestTensor(TorchDispatchMode):
    """The largest tensor any op produced, in bytes (the Triton interpreter copies arguments as bytes)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel() * t.element_size())
        return out


@pytest.mark.parametrize("name", ["reference", "triton"])
def test_full_logits_never_exist(name, monkeypatch):
    if name == "triton":
        if importlib.util.find_spec("triton") is None:
            pytest.skip("triton not installed")
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    # two chunks of MIN_CHUNK_ROWS; a small ragged vocabulary: the interpreter's time grows with it (192 s at 2000)
    n, h, v = 1024, 16, 100
    hidden, weight, labels, _ = problem(n=n, h=h, v=v)
    hidden.requires_grad_(True)
    weight.requires_grad_(True)
    fn = registry.tiers("linear_cross_entropy")[name].forward
    with LargestTensor() as mode:
        fn(hidden, weight, labels).backward()
    chunk = L.chunk_rows(n, v, h)
    assert chunk < n and mode.largest <= 4 * max(chunk * v, v * h) < 4 * n * v  # fp32
    with LargestTensor() as mode:  # what the unfused loss materialises, for contrast
        truth(hidden.float(), weight, labels).backward()
    assert mode.largest >= 4 * n * v


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_triton_tier_interpreted(monkeypatch, opts, dtype):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    h, w, y, b = problem(v=70, dtype=dtype, bias=True)  # 70: the kernel's row loop has a ragged last block
    ours = run(L.linear_cross_entropy_triton, h, w, y, b, chunk_size=5, **opts)
    ref = run(truth, h.double(), w.double(), y, b.double(), **opts)
    for a, r in zip(ours, ref):
        assert rel_err(a, r) <= TOL[dtype]


@pytest.fixture
def fake_npu(monkeypatch):
    mod = fake_torch_npu(
        npu_cross_entropy_loss=npu_double.npu_cross_entropy_loss,
        npu_cross_entropy_loss_backward=npu_double.npu_cross_entropy_loss_backward,
    )
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    npu_double.calls.clear()
    return mod


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("opts", OPTIONS, ids=str)
def test_npu_tier_through_double(fake_npu, opts, dtype):
    h, w, y, b = problem(v=70, dtype=dtype, bias=True)
    ours = run(L.linear_cross_entropy_npu, h, w, y, b, chunk_size=5, **opts)
    ref = run(truth, h.double(), w.double(), y, b.double(), **opts)
    for a, r in zip(ours, ref):
        assert rel_err(a, r) <= TOL[dtype]
    # fp32 logits (HF upcasts before the loss), per-row losses, one forward and one backward per chunk
    eps = opts.get("label_smoothing", 0.0)
    assert npu_double.calls[:2] == [
        ("forward", (5, 70), torch.float32, "none", eps),
        ("backward", (5, 70), torch.float32, "none", eps),
    ]
    assert len(npu_double.calls) == 2 * 3  # 13 rows in chunks of 5


def test_npu_tier_splits_chunks_past_the_documented_row_limit(fake_npu, monkeypatch):
    monkeypatch.setattr(L, "NPU_MAX_ROWS", 4)
    h, w, y, _ = problem()
    y[:] = -100  # every row ignored: targets handed to the op stay in [0, V), sum is 0
    y[5] = 3
    ours = run(L.linear_cross_entropy_npu, h, w, y, None, chunk_size=10, reduction="sum")
    ref = run(truth, h.double(), w.double(), y, None, reduction="sum")
    assert [c[1][0] for c in npu_double.calls if c[0] == "forward"] == [4, 4, 2, 3]
    for a, r in zip(ours, ref):
        assert rel_err(a, r) <= TOL[torch.float32]


def test_npu_tier_fp64_and_no_grad_paths(fake_npu):
    h, w, y, _ = problem(dtype=torch.float64)
    ours = run(L.linear_cross_entropy_npu, h, w, y, None, chunk_size=4)
    ref = run(truth, h, w, y, None)
    assert all(rel_err(a, r) <= 1e-10 for a, r in zip(ours, ref))
    assert npu_double.calls == []  # no fp64 on the NPU: the reference's step
    h32, w32 = h.float(), w.float()
    with torch.no_grad():
        loss = L.linear_cross_entropy_npu(h32, w32, y, chunk_size=4)
    assert rel_err(loss, truth(h, w, y)) <= 1e-6
    assert {c[0] for c in npu_double.calls} == {"forward"}


def test_npu_tier_availability(fake_npu, monkeypatch):
    tier = registry.tiers("linear_cross_entropy")["npu"]
    assert "needs an NPU tensor" in registry.why_unavailable(tier, torch.device("cpu"))
    npu = types.SimpleNamespace(type="npu")
    assert L._npu_unavailable(npu) is None
    partial = fake_torch_npu(npu_cross_entropy_loss=npu_double.npu_cross_entropy_loss)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (partial, None))
    assert L._npu_unavailable(npu) == "torch_npu has no npu_cross_entropy_loss_backward"


def test_chunk_rows_follows_the_vocab_to_hidden_ratio_with_a_floor():
    assert L.chunk_rows(65536, 151936, 896) == 512  # ceil(65536 / ceil(151936 / 896) = 170) = 386 -> 512
    assert L.chunk_rows(65536, 32000, 4096) == 8192  # ceil(65536 / 8) = 8192
    assert L.chunk_rows(4096, 151936, 256) == 512  # Liger's rule alone: 8 rows
    assert L.chunk_rows(8, 100, 1000) == 8
    assert L.chunk_rows(0, 10, 10) == 1


def test_bad_arguments_raise():
    h, w, y, _ = problem()
    with pytest.raises(ValueError, match="reduction"):
        L.linear_cross_entropy_reference(h, w, y, reduction="none")
    with pytest.raises(ValueError, match=r"\(N, H\)"):
        L.linear_cross_entropy_reference(h, w[:, :5], y)
    with pytest.raises(ValueError, match="labels"):
        L.linear_cross_entropy_reference(h, w, y[:3])


def test_public_entry_self_checks_and_runs_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    h, w, y, _ = problem()
    assert registry.select("linear_cross_entropy", (h, w, y), {}).name == "reference"
    assert rel_err(L.linear_cross_entropy(h, w, y), truth(h, w, y)) <= 1e-6


def test_check_inputs_are_small_and_keep_the_options():
    h, w, y, b = problem(n=40, v=2000, bias=True)
    state = torch.random.get_rng_state()
    (sh, sw, sy), kw = L.check_inputs(h, w, y, bias=b, num_items_in_batch=99, softcap=3.0)
    assert torch.equal(state, torch.random.get_rng_state())
    assert (
        sh.shape == (L.CHECK_ROWS, 24)
        and sw.shape == (L.CHECK_VOCAB, 24)
        and kw["bias"].shape == (L.CHECK_VOCAB,)
    )
    assert ((sy == -100) | ((sy >= 0) & (sy < L.CHECK_VOCAB))).all() and sy[-1] == -100
    assert kw["softcap"] == 3.0 and kw["num_items_in_batch"] == int((sy != -100).sum())


GOLDEN = registry.golden_files("linear_cross_entropy")


def test_golden_files_cover_the_cases():
    assert {f.name for f in GOLDEN} == {f"linear_cross_entropy_{n}.npz" for n, _ in L.golden_cases()}


def available_tiers(monkeypatch):
    names = ["reference", "npu"]
    mod = fake_torch_npu(
        npu_cross_entropy_loss=npu_double.npu_cross_entropy_loss,
        npu_cross_entropy_loss_backward=npu_double.npu_cross_entropy_loss_backward,
    )
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    if importlib.util.find_spec("triton") is not None:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        names.append("triton")
    return [registry.tiers("linear_cross_entropy")[n] for n in names]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("file", GOLDEN, ids=lambda f: f.name)
def test_every_tier_matches_golden(monkeypatch, file, dtype):
    case = registry.load_golden(file, "linear_cross_entropy")
    for tier in available_tiers(monkeypatch):
        result = registry.check_golden(tier, case, dtype)
        assert result.ok, f"{tier.name} {dtype}: {result.reason}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
def test_golden_refuses_a_tier_off_by_one_percent(dtype):
    off = registry.Tier(
        "linear_cross_entropy",
        "triton",
        forward=lambda *a, **k: L.linear_cross_entropy_reference(*a, **k) * 1.01,
        tolerance=L.tolerance,
        forward_tolerance=L.forward_tolerance,
    )
    for file in GOLDEN:
        assert not registry.check_golden(off, registry.load_golden(file, "linear_cross_entropy"), dtype).ok
