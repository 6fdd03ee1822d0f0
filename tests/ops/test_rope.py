"""RoPE tiers: the reference against HF's own ``apply_rotary_pos_emb`` (bit-exact in the model dtype) and an
independent fp64 rotation; the npu tier through the documented ``npu_rotary_mul`` double; the triton tier
under the Triton interpreter; golden cases through the registry.

Tolerances (max |a - b| / (1 + |b|) against fp64), per dtype: fp32 1e-6, fp16 2e-3, bf16 1.6e-2 (a few
ulps of 2^-11 / 2^-8 on |out| <= ~2 |x|; the fused tiers round once where HF rounds three times).
"""

import importlib.util

import pytest
import torch

from ascend_tools import backend
from ascend_tools.ops import registry
from ascend_tools.ops import rope as R
from tests.ops.doubles import fake_torch_npu
from tests.ops.doubles import rope as npu_double

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2, torch.float64: 1e-12}
# (B, Hq, Hkv, S, D): head dims 64/80/128, decode (seq 1), GQA 8:1
SHAPES = [(2, 4, 4, 7, 64), (1, 3, 3, 5, 80), (2, 8, 1, 6, 128), (2, 8, 1, 1, 128)]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float(((a - b).abs() / (1 + b.abs())).max())


def make(b, hq, hkv, s, d, dtype, unsqueeze_dim=1, offset=0, cos_batch=None, seed=0):
    gen = torch.Generator().manual_seed(seed)
    positions = torch.arange(offset, offset + s).expand(cos_batch or b, s)
    cos, sin = R.rope_cos_sin(positions, d, dtype=dtype)
    if unsqueeze_dim == 1:  # HF: view(B, S, H, D).transpose(1, 2), a non-contiguous [B, H, S, D]
        q = torch.randn(b, s, hq, d, generator=gen).to(dtype).transpose(1, 2)
        k = torch.randn(b, s, hkv, d, generator=gen).to(dtype).transpose(1, 2)
    else:
        q = torch.randn(b, s, hq, d, generator=gen).to(dtype)
        k = torch.randn(b, s, hkv, d, generator=gen).to(dtype)
    return q, k, cos, sin


def run(fn, x, cos, sin, grad_seed=1, **kw):
    """(output, dx) for sum(out * g) with a fixed g."""
    x = x.detach().clone().requires_grad_(True)
    out = fn(x, cos, sin, **kw)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)).to(out.dtype)
    (dx,) = torch.autograd.grad(out, x, g)
    return out, dx


def rotation_fp64(x, cos, sin, unsqueeze_dim=1):
    """Independent ground truth: pairs (x_i, x_{i+D/2}) rotated by the angle whose cos/sin are given."""
    c, s = cos.double().unsqueeze(unsqueeze_dim), sin.double().unsqueeze(unsqueeze_dim)
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat((x1 * c[..., :h] - x2 * s[..., :h], x2 * c[..., h:] + x1 * s[..., h:]), dim=-1)


# --- reference ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_is_hf_exactly(shape, dtype):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as hf_rope

    q, k, cos, sin = make(*shape, dtype)
    qs, ks = q.detach().clone().requires_grad_(True), k.detach().clone().requires_grad_(True)
    qh, kh = q.detach().clone().requires_grad_(True), k.detach().clone().requires_grad_(True)
    ours = [R.rope_reference(qs, cos, sin), R.rope_reference(ks, cos, sin)]
    theirs = hf_rope(qh, kh, cos, sin)
    gen = torch.Generator().manual_seed(3)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and torch.equal(a, b)
        g = torch.randn(a.shape, generator=gen).to(dtype)
        a.backward(g)
        b.backward(g)
    assert torch.equal(qs.grad, qh.grad) and torch.equal(ks.grad, kh.grad)
    assert qs.grad.stride() == qh.grad.stride()


@pytest.mark.parametrize("cos_dtype", [torch.float32], ids=str)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_reference_is_hf_exactly_with_fp32_cos(dtype, cos_dtype):
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as hf_rope

    q, _, cos, sin = make(2, 4, 2, 5, 64, dtype)
    cos, sin = cos.to(cos_dtype), sin.to(cos_dtype)
    out, dx = run(R.rope_reference, q, cos, sin)
    hf_out, hf_dx = run(lambda x, c, s: hf_rope(x, x, c, s)[0], q, cos, sin)
    assert out.dtype == torch.float32 and torch.equal(out, hf_out) and torch.equal(dx, hf_dx)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_reference_vs_fp64_rotation(shape, dtype):
    q, _, cos, sin = make(*shape, dtype, offset=11)
    out, dx = run(R.rope_reference, q, cos, sin)
    ref, ref_dx = run(rotation_fp64, q.double(), cos, sin)
    assert rel_err(out, ref) <= TOL[dtype]
    assert rel_err(dx, ref_dx) <= TOL[dtype]


def test_reference_gradcheck_including_cos_sin():
    q, _, cos, sin = make(1, 2, 2, 3, 8, torch.float64, cos_batch=1)
    args = (
        q.detach().clone().requires_grad_(True),
        cos.clone().requires_grad_(True),
        sin.clone().requires_grad_(True),
    )
    assert torch.autograd.gradcheck(R.rope_reference, args)


def test_reference_saves_only_cos_sin():
    q, _, cos, sin = make(2, 4, 4, 5, 64, torch.bfloat16)
    x = q.detach().clone().requires_grad_(True)
    saved = []

    def pack(t):
        saved.append((tuple(t.shape), t.data_ptr()))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        R.rope_reference(x, cos, sin)
    assert sorted(s for s, _ in saved) == [(2, 1, 5, 64), (2, 1, 5, 64)]
    assert {p for _, p in saved} == {cos.data_ptr(), sin.data_ptr()}  # views, no copies


def test_apply_rotary_pos_emb_signature(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb as hf_rope

    q, k, cos, sin = make(2, 4, 2, 5, 64, torch.float32, unsqueeze_dim=2)
    want = hf_rope(q, k, cos, sin, unsqueeze_dim=2)
    for got in (
        R.apply_rotary_pos_emb(q, k, cos, sin, unsqueeze_dim=2),
        R.apply_rotary_pos_emb(q, k, cos, sin, None, 2),
        R.apply_rotary_pos_emb(q, k, cos, sin, 2),
    ):  # transformers 5.x positional unsqueeze_dim
        assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert registry.select("rope", (q, cos, sin), {"unsqueeze_dim": 2}).name == "reference"


# --- npu tier through the documented double ----------------------------------------------------------------


@pytest.fixture
def fake_npu(monkeypatch):
    mod = fake_torch_npu(npu_rotary_mul=npu_double.npu_rotary_mul)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    npu_double.calls.clear()
    return mod


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("unsqueeze_dim,cos_batch", [(1, None), (1, 1), (2, 1)])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_npu_tier_through_double(fake_npu, shape, unsqueeze_dim, cos_batch, dtype):
    b, _, _, s, d = shape
    q, _, cos, sin = make(*shape, dtype, unsqueeze_dim=unsqueeze_dim, cos_batch=cos_batch)
    out, dx = run(R.rope_npu, q, cos, sin, unsqueeze_dim=unsqueeze_dim)
    ref, ref_dx = run(rotation_fp64, q.double(), cos, sin, unsqueeze_dim=unsqueeze_dim)
    assert out.dtype == dtype and out.shape == q.shape
    assert rel_err(out, ref) <= TOL[dtype] and rel_err(dx, ref_dx) <= TOL[dtype]
    x_shape, r_shape, call_dtype, mode = npu_double.calls[0]
    assert mode == "half" and call_dtype == dtype and x_shape == tuple(q.shape)
    cb = cos_batch or b
    # HF's broadcast goes through as is (B1SD / 11SD / BS1D / 1S1D), never materialized
    assert r_shape == ((cb, 1, s, d) if unsqueeze_dim == 1 else (cb, s, 1, d))


def test_npu_tier_mixed_dtype_and_fallbacks(fake_npu):
    q, _, cos, sin = make(2, 4, 4, 5, 64, torch.bfloat16)
    out = R.rope_npu(q, cos.float(), sin.float())
    assert out.dtype == torch.float32  # HF promotes to cos's dtype; the op gets one dtype
    assert npu_double.calls[-1][2] == torch.float32
    assert rel_err(out, R.rope_reference(q, cos.float(), sin.float())) <= 1e-6
    n = len(npu_double.calls)
    odd = make(1, 2, 2, 3, 896, torch.float32)  # D >= 896: outside the op's envelope -> reference
    assert torch.equal(R.rope_npu(odd[0], odd[2], odd[3]), R.rope_reference(odd[0], odd[2], odd[3]))
    three_d = q[0]
    assert torch.equal(
        R.rope_npu(three_d, cos[0], sin[0], unsqueeze_dim=0),
        R.rope_reference(three_d, cos[0], sin[0], unsqueeze_dim=0),
    )
    assert len(npu_double.calls) == n


def test_npu_tier_cos_sin_gradients(fake_npu):
    q, _, cos, sin = make(2, 3, 3, 4, 16, torch.float32, cos_batch=1)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, cos, sin)]
    ref_leaves = [t.detach().clone().double().requires_grad_(True) for t in (q, cos, sin)]
    R.rope_npu(*leaves).sum().backward()
    R.rope_reference(*ref_leaves).sum().backward()
    for a, b in zip(leaves, ref_leaves):
        assert rel_err(a.grad, b.grad) <= 1e-5


def test_double_rejects_undocumented_arguments():
    x = torch.randn(2, 4, 5, 64)
    c = torch.rand(2, 1, 5, 64)
    with pytest.raises(RuntimeError, match="differ"):
        npu_double.npu_rotary_mul(x, c.half(), c.half())
    with pytest.raises(RuntimeError, match="even"):
        npu_double.npu_rotary_mul(torch.randn(2, 4, 5, 63), c[..., :63], c[..., :63])
    with pytest.raises(RuntimeError, match="documented broadcast"):
        npu_double.npu_rotary_mul(x, torch.rand(1, 4, 5, 64), torch.rand(1, 4, 5, 64))  # 1NSD
    with pytest.raises(RuntimeError, match=r"\[-1, 1\]"):
        npu_double.npu_rotary_mul(x, c * 2, c)
    with pytest.raises(RuntimeError, match="3-D or 4-D"):
        npu_double.npu_rotary_mul(x[None], c[None], c[None])
    with pytest.raises(RuntimeError, match="rotary_mode"):
        npu_double.npu_rotary_mul(x, c, c, rotary_mode="full")


def test_npu_tier_availability(fake_npu, monkeypatch):
    tier = registry.tiers("rope")["npu"]
    npu = torch.device("meta")  # any non-npu device
    assert not tier.available(npu) and registry.why_unavailable(tier, npu).startswith("needs an NPU tensor")

    class Npu:
        type = "npu"

    assert tier.available(Npu())
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (None, "torch_npu is not installed"))
    assert not tier.available(Npu()) and registry.why_unavailable(tier, Npu()) == "torch_npu is not installed"
    assert not registry.tiers("rope")["ascendc"].available(Npu())  # no AscendC loader / library here


# --- triton tier under the interpreter ---------------------------------------------------------------------

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton not installed")


@pytest.fixture
def interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
@pytest.mark.parametrize("shape", [(2, 4, 4, 5, 64), (1, 3, 3, 1, 80), (1, 8, 1, 3, 128)], ids=str)
def test_triton_tier_interpreted(interpreter, shape, unsqueeze_dim, dtype):
    assert registry.tiers("rope")["triton"].available(torch.device("cpu"))
    q, _, cos, sin = make(*shape, dtype, unsqueeze_dim=unsqueeze_dim, offset=5)
    out, dx = run(R.rope_triton, q, cos, sin, unsqueeze_dim=unsqueeze_dim)
    ref, ref_dx = run(rotation_fp64, q.double(), cos, sin, unsqueeze_dim=unsqueeze_dim)
    assert out.dtype == dtype and out.shape == q.shape
    assert all(a == b for a, b, n in zip(out.stride(), q.stride(), q.shape) if n > 1)  # q's layout kept
    assert rel_err(out, ref) <= TOL[dtype] and rel_err(dx, ref_dx) <= TOL[dtype]


@needs_triton
def test_triton_tier_cos_sin_grads_and_self_check(interpreter):
    q, _, cos, sin = make(2, 2, 2, 3, 16, torch.float32, cos_batch=1)
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, cos, sin)]
    ref_leaves = [t.detach().clone().double().requires_grad_(True) for t in (q, cos, sin)]
    R.rope_triton(*leaves).sum().backward()
    R.rope_reference(*ref_leaves).sum().backward()
    for a, b in zip(leaves, ref_leaves):
        assert rel_err(a.grad, b.grad) <= 1e-5
    tier = registry.tiers("rope")["triton"]
    big_q, _, big_cos, big_sin = make(4, 16, 16, 32, 64, torch.bfloat16)
    args, kwargs = R.check_inputs(big_q, big_cos, big_sin)
    fwd, bwd = registry.compare_tiers(tier.forward, registry.tiers("rope")["reference"].forward, args, kwargs)
    assert fwd <= sum(R.tolerance(torch.bfloat16)) and bwd <= sum(R.tolerance(torch.bfloat16))


@needs_triton
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("unsqueeze_dim", [1, 2])
@pytest.mark.parametrize("shape", [(2, 8, 2, 5, 64), (1, 3, 3, 1, 80), (3, 4, 1, 2, 128)], ids=str)
def test_apply_rotary_pos_emb_rotates_q_and_k_in_one_launch_each_way(
    interpreter, monkeypatch, shape, unsqueeze_dim, dtype
):
    """The public entry on the triton tier: q and k (GQA: different head counts) in one kernel launch
    forward and one backward (Liger-Kernel's count; two tensors used to take two each), each equal to the
    fp64 rotation in the dtype's tolerance and keeping its own memory layout."""
    q, k, cos, sin = make(*shape, dtype, unsqueeze_dim=unsqueeze_dim, offset=3)
    assert registry.select("rope", (q, cos, sin), {"unsqueeze_dim": unsqueeze_dim}).name == "triton"
    launches = []
    launch = R._triton_launch
    monkeypatch.setattr(R, "_triton_launch", lambda *a, **kw: launches.append(a) or launch(*a, **kw))
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k)]
    outs = R.apply_rotary_pos_emb(*leaves, cos, sin, unsqueeze_dim=unsqueeze_dim)
    gen = torch.Generator().manual_seed(4)
    grads = [torch.randn(o.shape, generator=gen).to(dtype) for o in outs]
    torch.autograd.backward(outs, grads)
    assert len(launches) == 2
    for x, out, g, leaf in zip((q, k), outs, grads, leaves):
        xd = x.double().requires_grad_(True)
        ref = rotation_fp64(xd, cos, sin, unsqueeze_dim)
        (ref_dx,) = torch.autograd.grad(ref, xd, g.double())
        assert out.dtype == dtype and out.shape == x.shape
        assert all(a == b for a, b, n in zip(out.stride(), x.stride(), x.shape) if n > 1)
        assert rel_err(out, ref) <= TOL[dtype] and rel_err(leaf.grad, ref_dx) <= TOL[dtype]


def test_check_inputs_slice():
    q, _, cos, sin = make(4, 16, 16, 32, 64, torch.bfloat16)
    (x, c, s), kw = R.check_inputs(q, cos, sin, unsqueeze_dim=1)
    assert x.shape == (2, 8, 8, 64) and c.shape == (2, 8, 64) and kw == {"unsqueeze_dim": 1}
    assert torch.equal(R.rope_reference(x, c, s), R.rope_reference(q, cos, sin)[:2, :8, :8])


# --- golden cases through the registry ---------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_golden_cases_pass_every_tier_here(fake_npu, monkeypatch, dtype):
    if importlib.util.find_spec("triton") is not None:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    names = [n for n, _ in R.golden_cases()]
    assert len(names) == len(set(names)) >= 5
    tiers = registry.tiers("rope")
    run_tiers = ["reference", "npu"] + (["triton"] if importlib.util.find_spec("triton") else [])
    for name, kwargs in R.golden_cases():
        assert all(v.dtype == torch.float64 for v in kwargs.values() if isinstance(v, torch.Tensor))
        case = registry.make_golden("rope", name, kwargs)
        assert set(case.grads) == {"x", "cos", "sin"}
        for tier_name in run_tiers:
            result = registry.check_golden(tiers[tier_name], case, dtype)
            assert result.ok, (name, tier_name, result.reason)


def _torch_says_broadcasts_to(shape, target):
    try:
        return torch.broadcast_shapes(shape, target) == torch.Size(target)
    except RuntimeError:
        return False


def test_shape_check_agrees_with_torch_broadcast_shapes():
    """The plain-Python check on the launch path (torch.broadcast_shapes costs more than a small kernel)
    gives torch's answer on every pair of shapes of up to 4 dims from {1, 2, 3}."""
    import itertools

    shapes = [s for n in range(5) for s in itertools.product((1, 2, 3), repeat=n)]
    targets = [s for s in shapes if len(s) >= 3]
    for shape in shapes:
        for target in targets:
            assert R._broadcasts_to(shape, target) == _torch_says_broadcasts_to(shape, target), (
                shape,
                target,
            )
