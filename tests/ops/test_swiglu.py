"""SwiGLU tiers: the reference against an fp64 ground truth and against HF's own MLP arithmetic
(``act_fn(gate) * up`` with ``nn.SiLU``, autograd's backward) bit for bit; the memory it saves; the npu
tier through the documented torch_npu double; the triton tier under the Triton interpreter; every tier
available here against the golden vectors, and a tier that scales by 1.01 refused.

Tolerances (the registry's ``|a - b| / (max(1, rms(b)) + |b|)``): fp32 1e-5, fp16 2.5e-3, bf16 2e-2
(two roundings of the output, three on the gate's gradient).
"""

import importlib.util
import types

import pytest
import torch

from ascend_tools import backend
from ascend_tools.ops import registry
from ascend_tools.ops import swiglu as S
from tests.ops.doubles import fake_torch_npu
from tests.ops.doubles import swiglu as npu_double

TOL = {torch.float32: 1e-5, torch.float16: 2.5e-3, torch.bfloat16: 2e-2}
DTYPES = list(TOL)
rel_err = registry.max_rel_error
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")


def truth(gate, up):
    """fp64 SwiGLU, written from the formula: g * sigmoid(g) * u."""
    g = gate.double()
    return g / (1 + torch.exp(-g)) * up.double()


def inputs(shape, dtype, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=gen) * scale).to(dtype), torch.randn(shape, generator=gen).to(dtype)


def run(fn, gate, up, seed=1):
    gate = gate.detach().clone().requires_grad_(True)
    up = up.detach().clone().requires_grad_(True)
    out = fn(gate, up)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)).to(out.dtype))
    return out.detach(), gate.grad, up.grad


def hf(gate, up):
    return torch.nn.SiLU()(gate) * up


SHAPES = [(4, 64), (3, 37), (2, 3, 40), (1,)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_matches_fp64_truth(shape, dtype):
    gate, up = inputs(shape, dtype)
    out, dg, du = run(S.swiglu_reference, gate, up)
    t_out, t_dg, t_du = run(truth, gate.double(), up.double())
    assert out.dtype == dtype
    assert rel_err(out, t_out) <= TOL[dtype]
    assert rel_err(dg, t_dg) <= TOL[dtype] and rel_err(du, t_du) <= TOL[dtype]


def test_reference_gradcheck_fp64():
    gate, up = inputs((3, 8), torch.float64)
    assert torch.autograd.gradcheck(S.swiglu_reference, (gate.requires_grad_(), up.requires_grad_()))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_reference_matches_hf_autograd_exactly(dtype):
    gate, up = inputs((5, 96), dtype)
    for ours, theirs in zip(run(S.swiglu_reference, gate, up), run(hf, gate, up)):
        assert torch.equal(ours, theirs)


def test_reference_saves_two_tensors_where_hf_saves_three():
    gate, up = inputs((8, 256), torch.float32)

    def saved_bytes(fn):
        seen = {}

        def pack(t):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        g, u = gate.clone().requires_grad_(True), up.clone().requires_grad_(True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(g, u)
        return sum(seen.values())

    one = gate.numel() * gate.element_size()
    assert saved_bytes(hf) == 3 * one
    assert saved_bytes(S.swiglu_reference) == 2 * one


@pytest.fixture
def fake_npu(monkeypatch):
    mod = fake_torch_npu(npu_swiglu=npu_double.npu_swiglu)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    return mod


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(4, 64), (2, 3, 40)], ids=str)
def test_npu_tier_through_double(fake_npu, shape, dtype):
    npu_double.calls.clear()
    gate, up = inputs(shape, dtype)
    out, dg, du = run(S.swiglu_npu, gate, up)
    r_out, r_dg, r_du = run(S.swiglu_reference, gate, up)
    assert npu_double.calls == [((*shape[:-1], 2 * shape[-1]), dtype, -1)]
    assert out.shape == shape and out.dtype == dtype
    assert (
        rel_err(out, r_out) <= TOL[dtype]
        and rel_err(dg, r_dg) <= TOL[dtype]
        and rel_err(du, r_du) <= TOL[dtype]
    )


def test_npu_tier_availability(fake_npu, monkeypatch):
    tier = registry.tiers("swiglu")["npu"]
    assert "needs an NPU tensor" in registry.why_unavailable(tier, torch.device("cpu"))
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (fake_torch_npu(), None))
    assert S._npu_unavailable(types.SimpleNamespace(type="npu")) == "torch_npu has no npu_swiglu"


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("shape", [(5, 123), (2, 3, 700), (1,)], ids=str)
def test_triton_tier_interpreted(monkeypatch, shape, dtype):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    gate, up = inputs(shape, dtype)
    out, dg, du = run(S.swiglu_triton, gate, up)
    r_out, r_dg, r_du = run(S.swiglu_reference, gate, up)
    assert out.dtype == dtype and out.shape == shape
    for a, b in ((out, r_out), (dg, r_dg), (du, r_du)):
        assert rel_err(a, b) <= TOL[dtype]
    if dtype == torch.float32:
        assert rel_err(out, r_out) <= 1e-6 and rel_err(dg, r_dg) <= 1e-6


@needs_triton
def test_triton_tier_takes_non_contiguous_inputs(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    gate_up = torch.randn(6, 128)
    gate, up = gate_up.chunk(2, dim=-1)  # views with a row stride of 128: Phi-3's fused gate_up_proj
    out, dg, du = run(S.swiglu_triton, gate, up)
    r_out, r_dg, r_du = run(truth, gate.double(), up.double())
    assert rel_err(out, r_out) <= 1e-5 and rel_err(dg, r_dg) <= 1e-5 and rel_err(du, r_du) <= 1e-5


def test_public_entry_and_fused_form_run_reference_on_plain_cpu(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    gate, up = inputs((2, 16), torch.float32)
    assert registry.select("swiglu", (gate, up), {}).name == "reference"
    assert torch.equal(S.swiglu(gate, up), hf(gate, up))
    gate_up = torch.cat([gate, up], -1)
    assert torch.equal(S.swiglu_fused(gate_up), hf(*gate_up.chunk(2, -1)))


def test_bad_arguments_raise():
    gate, up = inputs((2, 16), torch.float32)
    with pytest.raises(ValueError, match="one shape and dtype"):
        S.swiglu_reference(gate, up[:, :8])
    with pytest.raises(ValueError, match="one shape and dtype"):
        S.swiglu_reference(gate, up.double())


def test_check_inputs_are_small_and_leave_the_rng_alone():
    gate, up = inputs((64, 512), torch.bfloat16)
    gate[0, 0] = float("inf")
    state = torch.random.get_rng_state()
    (g, u), kw = S.check_inputs(gate, up)
    assert torch.equal(state, torch.random.get_rng_state())
    assert g.shape == u.shape == (2 * S.CHECK_ELEMENTS // 64, 64) and g.dtype == torch.bfloat16
    assert torch.isfinite(g).all() and kw == {}


GOLDEN = registry.golden_files("swiglu")


def available_tiers(monkeypatch):
    names = ["reference", "npu"]
    monkeypatch.setattr(
        backend, "torch_npu_status", lambda: (fake_torch_npu(npu_swiglu=npu_double.npu_swiglu), None)
    )
    if importlib.util.find_spec("triton") is not None:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        names.append("triton")
    return [registry.tiers("swiglu")[n] for n in names]


def test_golden_files_cover_the_cases():
    assert {f.name for f in GOLDEN} == {f"swiglu_{n}.npz" for n, _ in S.golden_cases()}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("file", GOLDEN, ids=lambda f: f.name)
def test_every_tier_matches_golden(monkeypatch, file, dtype):
    case = registry.load_golden(file, "swiglu")
    assert set(case.grads) == {"gate", "up"}
    for tier in available_tiers(monkeypatch):
        result = registry.check_golden(tier, case, dtype)
        assert result.ok, f"{tier.name} {dtype}: {result.reason}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_golden_refuses_a_tier_off_by_one_percent(dtype):
    off = registry.Tier(
        "swiglu", "triton", forward=lambda g, u: S.swiglu_reference(g, u) * 1.01, tolerance=S.tolerance
    )
    for file in GOLDEN:
        assert not registry.check_golden(off, registry.load_golden(file, "swiglu"), dtype).ok
