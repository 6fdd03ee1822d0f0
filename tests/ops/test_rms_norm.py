"""RMSNorm tiers: the reference against an fp64 ground truth and against HF's own LlamaRMSNorm /
GemmaRMSNorm; the npu tier through the documented torch_npu double; the triton tier under the Triton
interpreter; every tier available here against the golden vectors.

Tolerances, as ``|a - b| / (max(1, rms(b)) + |b|)`` max over elements (the registry's metric), per dtype:
fp32 1e-5 (unit roundoff 6e-8, reductions of ~100 terms), fp16 2.5e-3 and bf16 2.4e-2 (llama rounds the
output twice and dx once more: 3-4 units of roundoff, u = 4.9e-4 / 3.9e-3). The Triton interpreter
truncates casts instead of rounding, so triton vs reference in bf16/fp16 is held to the same few-ulp
bounds, never to equality.
"""

import importlib.util
import os
import sys
import types

import pytest
import torch

from ascend_tools import backend
from ascend_tools.ops import registry
from ascend_tools.ops import rms_norm as R
from tests.ops.doubles import fake_torch_npu
from tests.ops.doubles import rms_norm as npu_double

TOL = {torch.float32: 1e-5, torch.float16: 2.5e-3, torch.bfloat16: 2.4e-2}
DTYPES = list(TOL)
CASTINGS = [("llama", 0.0), ("gemma", 1.0)]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


rel_err = registry.max_rel_error  # |a - b| / (max(1, rms(b)) + |b|), max over elements


def truth(x, weight, eps, offset):
    """fp64 RMSNorm, written independently of the module under test."""
    x64, w64 = x.double(), weight.double()
    return x64 / torch.sqrt((x64 * x64).mean(-1, keepdim=True) + eps) * (offset + w64)


def inputs(shape, dtype, casting, seed=0, weight_dtype=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen).to(dtype)
    noise = 0.1 * torch.randn(shape[-1], generator=gen)
    weight = (noise if casting == "gemma" else 1.0 + noise).to(weight_dtype or dtype)
    return x, weight


def grads(fn, x, weight, seed=1):
    x = x.detach().clone().requires_grad_(True)
    weight = weight.detach().clone().requires_grad_(True)
    out = fn(x, weight)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype)
    out.backward(g)
    return out.detach(), x.grad, weight.grad


# --- reference vs fp64 ground truth ---------------------------------------------------------------------

SHAPES = [(4, 64), (3, 123), (1, 123), (123,), (2, 3, 123), (2, 2, 3, 40)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("casting,offset", CASTINGS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_matches_fp64_truth(shape, casting, offset, dtype):
    x, w = inputs(shape, dtype, casting)
    eps = 1e-5
    out, dx, dw = grads(lambda a, b: R.rms_norm_reference(a, b, eps, offset, casting), x, w)
    t_out, t_dx, t_dw = grads(lambda a, b: truth(a, b, eps, offset), x.double(), w.double())
    assert out.dtype == dtype and out.shape == x.shape
    assert rel_err(out, t_out) <= TOL[dtype]
    assert rel_err(dx, t_dx) <= TOL[dtype]
    assert dw.dtype == w.dtype and dw.shape == w.shape
    # dweight sums over all rows: compare relative to its own scale
    assert rel_err(dw / (1 + t_dw.abs().max()), t_dw / (1 + t_dw.abs().max())) <= TOL[dtype]


@pytest.mark.parametrize("casting,offset", CASTINGS)
def test_reference_gradcheck_fp64(casting, offset):
    x, w = inputs((3, 7), torch.float64, casting)
    x.requires_grad_(True)
    w.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: R.rms_norm_reference(a, b, 1e-3, offset, casting), (x, w))
    x4, w4 = inputs((2, 1, 2, 5), torch.float64, casting, seed=3)
    assert torch.autograd.gradcheck(
        lambda a, b: R.rms_norm_reference(a, b, 1e-3, offset, casting),
        (x4.requires_grad_(True), w4.requires_grad_(True)),
    )


# --- reference vs Hugging Face's modules ------------------------------------------------------------------


def hf_module(casting, hidden, eps, dtype, weight):
    if casting == "llama":
        from transformers.models.llama.modeling_llama import LlamaRMSNorm

        mod = LlamaRMSNorm(hidden, eps=eps)
    else:
        from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

        mod = GemmaRMSNorm(hidden, eps=eps)
    with torch.no_grad():
        mod.weight.copy_(weight.float())
    return mod.to(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("casting,offset", CASTINGS)
@pytest.mark.parametrize("shape", [(3, 123), (1, 123), (2, 3, 256), (2, 2, 3, 40)], ids=str)
def test_reference_matches_hf_exactly(shape, casting, offset, dtype):
    x, w = inputs(shape, dtype, casting)
    mod = hf_module(casting, shape[-1], 1e-6, dtype, w)
    out, dx, dw = grads(lambda a, b: R.rms_norm_reference(a, b, 1e-6, offset, casting), x, w)
    x_hf = x.clone().requires_grad_(True)
    out_hf = mod(x_hf)
    out_hf.backward(torch.randn(out_hf.shape, generator=torch.Generator().manual_seed(1)).to(out_hf.dtype))
    assert out.dtype == out_hf.dtype
    assert torch.equal(out, out_hf), "forward must be bit-identical to HF"
    assert rel_err(dx, x_hf.grad) <= TOL[dtype]
    scale = 1 + mod.weight.grad.double().abs().max()
    assert rel_err(dw / scale, mod.weight.grad / scale) <= TOL[dtype]


def test_reference_matches_hf_llama_mixed_dtypes():
    """bf16 activations with an fp32 weight: HF promotes the output to fp32, and so do we."""
    x, w = inputs((4, 123), torch.bfloat16, "llama", weight_dtype=torch.float32)
    mod = hf_module("llama", 123, 1e-6, torch.float32, w)
    out = R.rms_norm_reference(x, w, 1e-6)
    assert out.dtype == torch.float32
    assert torch.equal(out, mod(x))


# --- memory-lean: what the reference saves for backward ---------------------------------------------------


def saved(fn, *args):
    packed = []

    def pack(t):
        packed.append((tuple(t.shape), t.dtype))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(*args)
    return packed


@pytest.mark.parametrize("casting,offset", CASTINGS)
def test_reference_saves_only_x_weight_rstd(casting, offset):
    x, w = inputs((2, 5, 64), torch.bfloat16, casting)
    x.requires_grad_(True)
    w.requires_grad_(True)
    ours = saved(lambda a, b: R.rms_norm_reference(a, b, 1e-6, offset, casting), x, w)
    assert sorted(ours, key=str) == sorted(
        [((2, 5, 64), torch.bfloat16), ((64,), torch.bfloat16), ((2, 5, 1), torch.float32)], key=str
    )
    hf = saved(hf_module(casting, 64, 1e-6, torch.bfloat16, w.detach()), x)
    assert len(hf) > len(ours)  # HF's graph keeps fp32 copies of x besides
    full_rows = sum(torch.Size(s).numel() for s, d in hf if d == torch.float32 and s == (2, 5, 64))
    assert full_rows >= 2 * 5 * 64


# --- npu tier through the torch_npu double ------------------------------------------------------------------


@pytest.fixture
def fake_npu(monkeypatch):
    mod = fake_torch_npu(npu_rms_norm=npu_double.npu_rms_norm)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    npu_double.calls.clear()
    return mod


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("casting,offset", CASTINGS)
@pytest.mark.parametrize("shape", [(3, 123), (123,), (2, 3, 64)], ids=str)
def test_npu_tier_through_double(fake_npu, shape, casting, offset, dtype):
    x, w = inputs(shape, dtype, casting)
    out, dx, dw = grads(lambda a, b: R.rms_norm_npu(a, b, 1e-6, offset, casting), x, w)
    r_out, r_dx, r_dw = grads(lambda a, b: R.rms_norm_reference(a, b, 1e-6, offset, casting), x, w)
    assert out.dtype == r_out.dtype and out.shape == r_out.shape and dw.dtype == w.dtype
    x_shape, x_dtype, g_shape, g_dtype, eps = npu_double.calls[-1]
    assert 2 <= len(x_shape) <= 8 and g_shape == (shape[-1],) and eps == 1e-6 and x_dtype == dtype
    if casting == "gemma":
        assert g_dtype == torch.float32  # 1 + weight kept in fp32, as GemmaRMSNorm computes it
        assert torch.equal(out, r_out), "gemma: one rounding at the end, same as HF"
    else:
        assert g_dtype == dtype
        # HF rounds twice (normalised x, then the product); the fused op once: <= 1 ulp apart
        assert rel_err(out, r_out) <= TOL[dtype]
    assert rel_err(dx, r_dx) <= TOL[dtype]
    scale = 1 + r_dw.double().abs().max()
    assert rel_err(dw / scale, r_dw / scale) <= TOL[dtype]


def test_npu_tier_llama_mixed_dtypes_is_exact(fake_npu):
    x, w = inputs((4, 123), torch.bfloat16, "llama", weight_dtype=torch.float32)
    out = R.rms_norm_npu(x, w, 1e-6)
    assert out.dtype == torch.float32
    assert torch.equal(out, R.rms_norm_reference(x, w, 1e-6))
    assert npu_double.calls[-1][3] == torch.bfloat16  # normalised with gamma = 1 in x's dtype


def test_npu_tier_availability(fake_npu, monkeypatch):
    tier = registry.tiers("rms_norm")["npu"]
    npu = types.SimpleNamespace(type="npu", index=0)  # torch.device("npu") parses only with torch_npu
    assert not tier.available(torch.device("cpu"))
    assert "NPU" in registry.why_unavailable(tier, torch.device("cpu"))
    assert tier.available(npu)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (None, "torch_npu is not installed"))
    assert not tier.available(npu)
    assert registry.why_unavailable(tier, npu) == "torch_npu is not installed"


def test_double_rejects_undocumented_dtype_pairs():
    with pytest.raises(RuntimeError, match="unsupported dtypes"):
        npu_double.npu_rms_norm(torch.randn(2, 8, dtype=torch.float32), torch.ones(8, dtype=torch.float16))
    with pytest.raises(RuntimeError, match="2-8 dims"):
        npu_double.npu_rms_norm(torch.randn(8), torch.ones(8))


# --- triton tier under the interpreter --------------------------------------------------------------------

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")


@pytest.fixture
def interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("casting,offset", CASTINGS)
@pytest.mark.parametrize("shape", [(5, 123), (1, 64), (2, 3, 40)], ids=str)
def test_triton_tier_interpreted(interpreter, shape, casting, offset, dtype):
    assert registry.tiers("rms_norm")["triton"].available(torch.device("cpu"))
    x, w = inputs(shape, dtype, casting)
    out, dx, dw = grads(lambda a, b: R.rms_norm_triton(a, b, 1e-6, offset, casting), x, w)
    r_out, r_dx, r_dw = grads(lambda a, b: R.rms_norm_reference(a, b, 1e-6, offset, casting), x, w)
    assert out.dtype == r_out.dtype and out.shape == r_out.shape and dw.dtype == w.dtype
    assert rel_err(out, r_out) <= TOL[dtype]
    assert rel_err(dx, r_dx) <= TOL[dtype]
    scale = 1 + r_dw.double().abs().max()
    assert rel_err(dw / scale, r_dw / scale) <= TOL[dtype]
    if dtype == torch.float32:
        assert rel_err(out, r_out) <= 1e-6


@needs_triton
def test_triton_tier_llama_mixed_dtypes(interpreter):
    x, w = inputs((3, 64), torch.bfloat16, "llama", weight_dtype=torch.float32)
    out, dx, dw = grads(lambda a, b: R.rms_norm_triton(a, b, 1e-6), x, w)
    r_out, r_dx, _ = grads(lambda a, b: R.rms_norm_reference(a, b, 1e-6), x, w)
    assert out.dtype == torch.float32 and dw.dtype == torch.float32
    assert rel_err(out, r_out) <= TOL[torch.bfloat16] and rel_err(dx, r_dx) <= TOL[torch.bfloat16]


def test_triton_needs_interpreter_on_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    tier = registry.tiers("rms_norm")["triton"]
    assert not tier.available(torch.device("cpu"))
    assert registry.why_unavailable(tier, torch.device("cpu"))


# --- dispatch, validation ------------------------------------------------------------------------------------


def test_public_entry_runs_reference_on_plain_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x, w = inputs((2, 16), torch.float32, "llama")
    assert registry.select("rms_norm", (x, w), {}).name == "reference"
    assert torch.equal(R.rms_norm(x, w, eps=1e-6), R.rms_norm_reference(x, w, 1e-6))


def test_bad_arguments_raise():
    x, w = inputs((2, 16), torch.float32, "llama")
    with pytest.raises(ValueError, match="casting"):
        R.rms_norm_reference(x, w, casting="t5")
    with pytest.raises(ValueError, match="does not match"):
        R.rms_norm_reference(x, w[:8])


def test_check_inputs_are_small_and_leave_the_rng_alone():
    x = torch.randn(64, 32, 48)
    x[0, 0, 0] = float("nan")
    state = torch.random.get_rng_state()
    (small, _), kw = R.check_inputs(x, torch.ones(48), eps=1e-5, casting="gemma", offset=1.0)
    assert torch.equal(state, torch.random.get_rng_state())
    assert small.shape == (2 * R.CHECK_ROWS, 48) and torch.isfinite(small).all()
    assert kw == {"eps": 1e-5, "offset": 1.0, "casting": "gemma"}


# --- golden vectors ----------------------------------------------------------------------------------------

GOLDEN = registry.golden_files("rms_norm")


def test_golden_files_exist_and_are_current():
    assert {f.name for f in GOLDEN} == {f"rms_norm_{n}.npz" for n, _ in R.golden_cases()}
    assert sum(len(f.read_bytes()) for f in GOLDEN) < 200_000
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import gen_golden_vectors as gen
    finally:
        sys.path.pop(0)
    assert gen.stale(gen.generate(("rms_norm",)), str(registry.golden_dir()), ("rms_norm",)) == []


def available_tiers(monkeypatch):
    """Every tier that runs on this machine's CPU: reference, npu through the double, triton interpreted."""
    names = ["reference", "npu"]
    mod = fake_torch_npu(npu_rms_norm=npu_double.npu_rms_norm)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    if importlib.util.find_spec("triton") is not None:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        names.append("triton")
    return [registry.tiers("rms_norm")[n] for n in names]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("file", GOLDEN, ids=lambda f: f.name)
def test_every_tier_matches_golden(monkeypatch, file, dtype):
    case = registry.load_golden(file, "rms_norm")
    assert set(case.grads) == {"x", "weight"}
    for tier in available_tiers(monkeypatch):
        result = registry.check_golden(tier, case, dtype)
        assert result.ok, f"{tier.name} {dtype}: {result.reason}"
        assert result.max_err_forward <= TOL[dtype] and result.max_err_backward <= TOL[dtype]


def test_golden_catches_a_tier_that_forgets_eps():
    case = registry.load_golden(registry.golden_path("rms_norm", "llama_h123"), "rms_norm")
    wrong = registry.Tier(
        "rms_norm",
        "wrong",
        forward=lambda x, weight, eps=1e-6, offset=0.0, casting="llama": R.rms_norm_reference(
            x, weight, 0.0, offset, casting
        ),
        tolerance=R.tolerance,
    )
    for dtype in DTYPES:
        assert not registry.check_golden(wrong, case, dtype).ok
