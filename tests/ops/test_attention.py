"""Attention tiers: the reference against HF's ``eager_attention_forward`` (llama; gemma2 for softcap) bit-exact
in the model dtype, against torch SDPA and its own fp64 run; the npu tier through the documented
``npu_fusion_attention`` double (and proof that wrong mappings fail); the SDPA tier on CPU tensors.

Tolerances (max |a - b| / (1 + |b|) against fp64), per dtype: fp32 1e-5, fp16 4e-3, bf16 3e-2 (forward
and backward; bf16 attention rounds the probabilities to 8 bits before ``@ v``).
"""

import math
import types

import pytest
import torch
import torch.nn.functional as F

from ascend_tools import backend
from ascend_tools.ops import attention as A
from ascend_tools.ops import registry
from tests.ops.doubles import attention as npu_double
from tests.ops.doubles import fake_torch_npu

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2, torch.float64: 1e-12}


def rel_err(a, b, rows=None):
    a, b = a.detach().double(), b.detach().double()
    err = (a - b).abs() / (1 + b.abs())
    if rows is not None:
        err = err * rows
    return float(err.max())


def padding_keep(b, s, skv, pad, side, causal=True):
    """HF-style 4-D bool keep mask [B, 1, S, S_kv]: causal (bottom-right) & key padding of batch row 1."""
    keep = torch.ones(b, 1, s, skv, dtype=torch.bool)
    if causal:
        keep &= A.structural_keep(s, skv, True, None, torch.device("cpu"))
    if side == "left":
        keep[1, :, :, :pad] = False
    elif side == "right":
        keep[1, :, :, skv - pad :] = False
    return keep


def additive(keep, dtype):
    """HF's eager mask: 0 where kept, finfo(dtype).min elsewhere."""
    return torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)


# name -> (B, Hq, Hkv, S, S_kv, D, kwargs builder(dtype))
CASES = {
    "causal_none": (2, 4, 4, 6, 6, 64, lambda dt: {"is_causal": True}),
    "gqa_8to1_causal": (1, 8, 1, 5, 5, 128, lambda dt: {"is_causal": True}),
    "decode_seq1": (2, 8, 2, 1, 9, 64, lambda dt: {"is_causal": True}),
    "causal_s_ne_skv": (1, 4, 2, 3, 8, 80, lambda dt: {"is_causal": True}),
    "right_pad_bool": (2, 4, 2, 6, 6, 64, lambda dt: {"attention_mask": padding_keep(2, 6, 6, 2, "right")}),
    "left_pad_bool": (2, 4, 2, 6, 6, 64, lambda dt: {"attention_mask": padding_keep(2, 6, 6, 2, "left")}),
    "right_pad_float": (
        2,
        4,
        2,
        6,
        6,
        64,
        lambda dt: {"attention_mask": additive(padding_keep(2, 6, 6, 2, "right"), dt)},
    ),
    "left_pad_float": (
        2,
        4,
        2,
        6,
        6,
        64,
        lambda dt: {"attention_mask": additive(padding_keep(2, 6, 6, 2, "left"), dt)},
    ),
    "sliding_window": (1, 4, 2, 8, 8, 64, lambda dt: {"is_causal": True, "sliding_window": 3}),
    "sliding_window_s_ne_skv": (1, 4, 2, 3, 9, 64, lambda dt: {"is_causal": True, "sliding_window": 4}),
    "sliding_window_with_mask": (
        2,
        4,
        2,
        7,
        7,
        64,
        lambda dt: {"attention_mask": padding_keep(2, 7, 7, 1, "left"), "sliding_window": 3},
    ),
    "softcap": (1, 4, 2, 6, 6, 64, lambda dt: {"is_causal": True, "softcap": 5.0}),
    "no_mask_bidirectional": (2, 4, 4, 5, 7, 64, lambda dt: {}),
}


def make(name, dtype, seed=0):
    b, hq, hkv, s, skv, d, extra = CASES[name]
    gen = torch.Generator().manual_seed(seed)
    # HF's layout: view(B, S, H, D).transpose(1, 2)
    q = torch.randn(b, s, hq, d, generator=gen).to(dtype).transpose(1, 2)
    k = torch.randn(b, skv, hkv, d, generator=gen).to(dtype).transpose(1, 2)
    v = torch.randn(b, skv, hkv, d, generator=gen).to(dtype).transpose(1, 2)
    return q, k, v, extra(dtype)


def run(fn, q, k, v, grad_seed=1, rows=None, **kw):
    """(out, dq, dk, dv) for sum(out * g) with a fixed g (zero on query rows where ``rows`` is 0: padded
    queries that see no key carry no loss)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (q, k, v)]
    out = fn(*leaves, **kw)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed))
    g = (g if rows is None else g * rows).to(out.dtype)
    return (out, *torch.autograd.grad(out, leaves, g))


def full_keep(q, k, kw):
    """Bool [B|1, 1|H, S, S_kv] of what each query may see (for rows that see nothing)."""
    keep = A.keep_mask(q, k, kw.get("attention_mask"), kw.get("is_causal", False), kw.get("sliding_window"))
    if keep is None:
        keep = torch.ones(q.shape[2], k.shape[2], dtype=torch.bool)
    while keep.dim() < 4:
        keep = keep[None]
    return keep


def valid_rows(q, k, kw):
    return full_keep(q, k, kw).any(-1, keepdim=True).double()


def fp64(kw):
    return {
        k: (v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v) for k, v in kw.items()
    }


# --- reference vs HF eager ---------------------------------------------------------------------------------


def hf_eager(q, k, v, kw, training=False, dropout=0.0):
    from transformers.models.gemma2.modeling_gemma2 import eager_attention_forward as gemma2_eager
    from transformers.models.llama.modeling_llama import eager_attention_forward as llama_eager

    module = types.SimpleNamespace(
        num_key_value_groups=q.shape[1] // k.shape[1], training=training, head_dim=q.shape[-1]
    )
    mask = kw.get("attention_mask")
    if mask is None or mask.dtype == torch.bool:
        keep = A.keep_mask(q, k, mask, kw.get("is_causal", False), kw.get("sliding_window"))
        mask = None if keep is None else additive(keep if keep.dim() == 4 else keep[None, None], q.dtype)
    elif kw.get("sliding_window"):
        window = A.structural_keep(q.shape[2], k.shape[2], False, kw["sliding_window"], q.device)
        mask = mask.masked_fill(~window, torch.finfo(mask.dtype).min)
    if kw.get("softcap") is not None:
        out, _ = gemma2_eager(
            module, q, k, v, mask, dropout=dropout, scaling=q.shape[-1] ** -0.5, softcap=kw["softcap"]
        )
    else:
        out, _ = llama_eager(module, q, k, v, mask, scaling=q.shape[-1] ** -0.5, dropout=dropout)
    return out.transpose(1, 2)  # HF returns [B, S, H, D]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_reference_is_hf_eager_exactly(name, dtype):
    q, k, v, kw = make(name, dtype)
    ours = run(A.attention_reference, q, k, v, **kw)
    theirs = run(lambda a, b, c: hf_eager(a, b, c, kw), q, k, v)
    for a, b in zip(ours, theirs):
        assert a.dtype == b.dtype and torch.equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_reference_vs_fp64(name, dtype):
    q, k, v, kw = make(name, dtype)
    valid = valid_rows(q, k, kw)  # rows seeing no key: HF's "uniform" there depends on rounding
    ours = run(A.attention_reference, q, k, v, rows=valid, **kw)
    truth = run(A.attention_reference, q.double(), k.double(), v.double(), rows=valid, **fp64(kw))
    assert rel_err(ours[0], truth[0], rows=valid) <= TOL[dtype]
    for a, b in zip(ours[1:], truth[1:]):
        assert rel_err(a, b) <= TOL[dtype]


@pytest.mark.parametrize("name", [n for n in CASES if n != "softcap"])
def test_reference_vs_torch_sdpa_fp64(name):
    q, k, v, kw = make(name, torch.float64)
    keep = full_keep(q, k, kw)
    valid = valid_rows(q, k, kw)
    ours = A.attention_reference(q, k, v, **kw)
    g = q.shape[1] // k.shape[1]
    theirs = F.scaled_dot_product_attention(
        q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1), attn_mask=keep
    )
    assert rel_err(ours, theirs.nan_to_num(), rows=valid) <= 1e-12


def test_sliding_window_matches_hf_masking_utils():
    from transformers import masking_utils

    for s, skv, w in [(8, 8, 3), (3, 9, 4), (1, 9, 4), (5, 5, 1)]:
        q_idx, kv_idx = torch.arange(skv - s, skv)[:, None], torch.arange(skv)[None, :]  # cache positions
        zero = torch.tensor(0)
        want = masking_utils.sliding_window_causal_mask_function(w)(zero, zero, q_idx, kv_idx)
        assert torch.equal(A.structural_keep(s, skv, True, w, torch.device("cpu")), want.expand(s, skv))
        causal = masking_utils.causal_mask_function(zero, zero, q_idx, kv_idx)
        assert torch.equal(A.structural_keep(s, skv, True, None, torch.device("cpu")), causal)


def test_fully_masked_rows_are_finite_like_hf():
    keep = padding_keep(2, 6, 6, 3, "left")  # batch row 1: queries 0-2 see only padding
    q, k, v, _ = make("left_pad_bool", torch.bfloat16)
    out, dq, dk, dv = run(A.attention_reference, q, k, v, attention_mask=keep)
    assert all(torch.isfinite(t).all() for t in (out, dq, dk, dv))
    assert torch.equal(out, hf_eager(q, k, v, {"attention_mask": keep}))


def test_dropout_reference_matches_hf_in_training():
    q, k, v, kw = make("causal_none", torch.float32)
    torch.manual_seed(7)
    ours = A.attention_reference(q, k, v, dropout_p=0.3, **kw)
    torch.manual_seed(7)
    theirs = hf_eager(q, k, v, kw, training=True, dropout=0.3)
    assert torch.equal(ours, theirs)
    assert not torch.allclose(ours, A.attention_reference(q, k, v, **kw))


def test_bad_shapes_raise():
    q = torch.randn(1, 3, 4, 8)
    with pytest.raises(ValueError, match="multiple"):
        A.attention(q, torch.randn(1, 2, 4, 8), torch.randn(1, 2, 4, 8))
    with pytest.raises(ValueError, match="4-D"):
        A.attention(q[0], q[0], q[0])


# --- npu tier through the documented double ----------------------------------------------------------------


@pytest.fixture
def fake_npu(monkeypatch):
    mod = fake_torch_npu(npu_fusion_attention=npu_double.npu_fusion_attention)
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (mod, None))
    npu_double.calls.clear()
    return mod


def check_npu_case(name, dtype, fn=A.attention_npu):
    q, k, v, kw = make(name, dtype)
    valid = valid_rows(q, k, kw)
    ours = run(fn, q, k, v, rows=valid, **kw)
    truth = run(A.attention_reference, q.double(), k.double(), v.double(), rows=valid, **fp64(kw))
    assert ours[0].shape == q.shape and ours[0].dtype == dtype
    # fully masked query rows: the op's business; compare the rest (and their gradients)
    errs = [rel_err(ours[0], truth[0], rows=valid)] + [rel_err(a, b) for a, b in zip(ours[1:], truth[1:])]
    return max(errs)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_npu_tier_through_double(fake_npu, name, dtype):
    assert check_npu_case(name, dtype) <= TOL[dtype]
    if name == "softcap":
        assert npu_double.calls == []  # the op has no softcap: the reference ran
        return
    call = npu_double.calls[0]
    b, hq, hkv, s, skv, d, _ = CASES[name]
    assert call["input_layout"] == "BSND" and call["head_num"] == hq
    assert call["query"][0] == (b, s, hq, d) and call["key"][0] == (b, skv, hkv, d)  # GQA: K/V not expanded
    assert call["scale"] == pytest.approx(1 / math.sqrt(d)) and call["keep_prob"] == 1.0
    kw = make(name, dtype)[3]
    if kw.get("attention_mask") is not None:
        assert call["sparse_mode"] == 0 and call["atten_mask"][1] == torch.bool
        assert call["atten_mask"][0] == (b, 1, s, skv)
    elif kw.get("sliding_window") is not None:
        assert call["sparse_mode"] == 4 and call["atten_mask"][0] == (2048, 2048)
        assert (call["pre_tockens"], call["next_tockens"]) == (kw["sliding_window"] - 1, 0)
    elif kw.get("is_causal") and s > 1:
        assert call["sparse_mode"] == 3 and call["atten_mask"][0] == (2048, 2048)
    else:
        assert call["atten_mask"] is None


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", ["left_pad_bool", "left_pad_float"])
def test_npu_left_padding_valid_rows(fake_npu, name, dtype):
    q, k, v, kw = make(name, dtype)
    valid = valid_rows(q, k, kw)
    out = A.attention_npu(q, k, v, **kw)
    truth = A.attention_reference(q.double(), k.double(), v.double(), **fp64(kw))
    assert rel_err(out, truth, rows=valid) <= TOL[dtype]
    assert valid.min() == 0  # the case does have rows that see nothing


def test_npu_dropout_maps_keep_prob(fake_npu):
    q, k, v, kw = make("causal_none", torch.float32)
    out = A.attention_npu(q, k, v, dropout_p=0.25, **kw)
    assert npu_double.calls[-1]["keep_prob"] == 0.75 and torch.isfinite(out).all()
    assert not torch.allclose(out, A.attention_reference(q, k, v, **kw))


def test_npu_double_rejects_undocumented_arguments():
    q = torch.randn(1, 4, 6, 64)
    k = torch.randn(1, 2, 6, 64)
    call = npu_double.npu_fusion_attention
    with pytest.raises(RuntimeError, match="compressed"):
        call(q, k, k, 4, "BNSD", atten_mask=torch.ones(6, 6, dtype=torch.bool).triu(1), sparse_mode=3)
    with pytest.raises(RuntimeError, match="BNSS"):
        call(q, k, k, 4, "BNSD", atten_mask=torch.zeros(1, 2, 6, 6, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="dtype"):
        call(q, k, k, 4, "BNSD", atten_mask=torch.zeros(6, 6))
    with pytest.raises(RuntimeError, match="multiple"):
        call(torch.randn(1, 3, 6, 64), k, k, 3, "BNSD")
    with pytest.raises(RuntimeError, match="head_num"):
        call(q, k, k, 2, "BNSD")
    with pytest.raises(RuntimeError, match="keep_prob"):
        call(q, k, k, 4, "BNSD", keep_prob=0.0)
    with pytest.raises(RuntimeError, match="padding_mask"):
        call(q, k, k, 4, "BNSD", padding_mask=torch.zeros(1))
    with pytest.raises(RuntimeError, match="actual_seq"):
        call(q, k, k, 4, "TND")
    with pytest.raises(RuntimeError, match="overlap"):
        call(
            q,
            k,
            k,
            4,
            "BNSD",
            atten_mask=A.compressed_causal_mask(torch.device("cpu")),
            sparse_mode=4,
            pre_tockens=-3,
            next_tockens=1,
        )
    out = call(q, k, k, 4, "BNSD", scale=0.125)
    assert len(out) == 7 and out[0].shape == q.shape and out[1].shape == (1, 4, 6, 8)
    # the trap the doc states: sparse_mode without atten_mask is full attention
    full = call(q, k, k, 4, "BNSD", sparse_mode=3)[0]
    causal = call(
        q, k, k, 4, "BNSD", sparse_mode=3, atten_mask=A.compressed_causal_mask(torch.device("cpu"))
    )[0]
    assert torch.allclose(full, call(q, k, k, 4, "BNSD")[0]) and not torch.allclose(full, causal)


WRONG_MAPPINGS = {
    "scale left at the op's default 1.0": lambda kw: {**kw, "scale": 1.0},
    "mask not inverted": lambda kw: {
        **kw,
        "atten_mask": ~kw["atten_mask"] if kw.get("sparse_mode") == 0 else None,
    },
    "leftUpCausal (2) for S != S_kv": lambda kw: {
        **kw,
        "sparse_mode": 2 if kw.get("sparse_mode") == 3 else 0,
    },
    "sparse_mode without the compressed mask": lambda kw: {**kw, "atten_mask": None},
    "band off by one": lambda kw: {**kw, "pre_tockens": kw.get("pre_tockens", 0) + 1},
}
TRAP_CASE = {
    "scale left at the op's default 1.0": "causal_none",
    "mask not inverted": "right_pad_bool",
    "leftUpCausal (2) for S != S_kv": "causal_s_ne_skv",
    "sparse_mode without the compressed mask": "causal_s_ne_skv",
    "band off by one": "sliding_window",
}


@pytest.mark.parametrize("wrong", list(WRONG_MAPPINGS))
def test_npu_traps_wrong_mappings_fail(fake_npu, monkeypatch, wrong):
    name = TRAP_CASE[wrong]
    assert check_npu_case(name, torch.float32) <= TOL[torch.float32]  # the tier's mapping passes
    right = A.npu_arguments
    monkeypatch.setattr(A, "npu_arguments", lambda *a, **kw: WRONG_MAPPINGS[wrong](right(*a, **kw)))
    assert check_npu_case(name, torch.float32) > 0.05  # the wrong one does not


def test_npu_trap_wrong_output_element_fails(fake_npu):
    mod = fake_torch_npu(npu_fusion_attention=lambda *a, **kw: npu_double.npu_fusion_attention(*a, **kw)[1:])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(backend, "torch_npu_status", lambda: (mod, None))
        with pytest.raises(RuntimeError):  # softmax_max [B, N, S, 8] transposed is not [B, Hq, S, D]
            check_npu_case("causal_none", torch.float32)


def test_npu_self_check_refuses_a_wrong_mapping(fake_npu, monkeypatch):
    q, k, v, kw = make("right_pad_bool", torch.bfloat16)
    reference = registry.tiers("attention")["reference"].forward
    args, kwargs = A.check_inputs(q, k, v, **kw)
    fwd, bwd = registry.compare_tiers(A.attention_npu, reference, args, kwargs)
    assert max(fwd, bwd) <= sum(A.tolerance(torch.bfloat16))
    right = A.npu_arguments
    monkeypatch.setattr(A, "npu_arguments", lambda *a, **k2: {**right(*a, **k2), "scale": 1.0})
    fwd, bwd = registry.compare_tiers(A.attention_npu, reference, args, kwargs)
    assert max(fwd, bwd) > sum(A.tolerance(torch.bfloat16))


def test_npu_tier_availability(fake_npu, monkeypatch):
    tier = registry.tiers("attention")["npu"]
    assert not tier.available(torch.device("cpu"))

    class Npu:
        type = "npu"

    assert tier.available(Npu())
    monkeypatch.setattr(backend, "torch_npu_status", lambda: (None, "torch_npu is not installed"))
    assert registry.why_unavailable(tier, Npu()) == "torch_npu is not installed"


# --- SDPA tier (run here on CPU tensors) -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32], ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_sdpa_tier(name, dtype):
    q, k, v, kw = make(name, dtype)
    valid = valid_rows(q, k, kw)
    ours = run(A.attention_sdpa, q, k, v, rows=valid, **kw)
    truth = run(A.attention_reference, q.double(), k.double(), v.double(), rows=valid, **fp64(kw))
    assert rel_err(ours[0], truth[0], rows=valid) <= TOL[dtype]
    for a, b in zip(ours[1:], truth[1:]):
        assert rel_err(a, b) <= TOL[dtype]


# --- dispatch, self-check slice, golden cases ---------------------------------------------------------------


def test_public_entry_runs_sdpa_on_cpu_after_its_self_check():
    q, k, v, kw = make("gqa_8to1_causal", torch.float32)
    assert registry.select("attention", (q, k, v), kw).name == "sdpa"
    assert torch.equal(A.attention(q, k, v, **kw), A.attention_sdpa(q, k, v, **kw))
    torch.testing.assert_close(
        A.attention(q, k, v, **kw), A.attention_reference(q, k, v, **kw), rtol=1e-5, atol=1e-5
    )


def test_check_inputs_slice_keeps_positions():
    b, hq, hkv, s, skv, d = 2, 16, 2, 40, 40, 64
    q = torch.randn(b, hq, s, d)
    k, v = torch.randn(b, hkv, skv, d), torch.randn(b, hkv, skv, d)
    mask = padding_keep(2, s, skv, 3, "right")
    (q2, k2, v2), kw = A.check_inputs(q, k, v, attention_mask=mask, dropout_p=0.1)
    assert q2.shape == (1, 16, 16, 64) and k2.shape == (1, 2, 40, 64) and kw["dropout_p"] == 0.0
    assert kw["attention_mask"].shape == (1, 1, 16, 40)
    full = A.attention_reference(q, k, v, attention_mask=mask)
    assert torch.allclose(A.attention_reference(q2, k2, v2, **kw), full[:1, :16, -16:], atol=1e-6)
    (q3, k3, v3), kw3 = A.check_inputs(q, k, v, is_causal=True)
    causal = A.attention_reference(q, k, v, is_causal=True)
    assert torch.allclose(A.attention_reference(q3, k3, v3, **kw3), causal[:1, :16, -16:], atol=1e-6)


@pytest.mark.parametrize("name", ["left_pad_bool", "left_pad_float"])
def test_self_check_accepts_sdpa_on_a_left_padded_batch(name):
    """Pad queries that see no key have no defined output (HF eager: mean of V, torch SDPA: zeros): the
    self-check slice (batch row 0, here the padded one) lets them see every key and judges the rest."""
    q, k, v, kw = make(name, torch.float32)
    mask = kw["attention_mask"].flip(0)  # the padded sequence first: the one check_inputs takes
    assert not full_keep(q, k, {"attention_mask": mask})[0].any(-1).all()  # it has rows that see nothing
    args, kwargs = A.check_inputs(q, k, v, attention_mask=mask)
    checked = full_keep(*args[:2], kwargs)
    assert checked.any(-1).all()
    empty = ~full_keep(q, k, {"attention_mask": mask})[:1].any(-1, keepdim=True)
    assert torch.equal(checked, full_keep(q[:1], k[:1], {"attention_mask": mask[:1]}) | empty)
    reference = registry.tiers("attention")["reference"].forward
    fwd, bwd = registry.compare_tiers(A.attention_sdpa, reference, args, kwargs)
    assert max(fwd, bwd) <= sum(A.tolerance(torch.float32))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_golden_cases_pass_every_tier_here(fake_npu, dtype):
    names = [n for n, _ in A.golden_cases()]
    assert len(names) == len(set(names)) >= 8
    tiers = registry.tiers("attention")
    for name, kwargs in A.golden_cases():
        assert all(
            v.dtype in (torch.float64, torch.bool) for v in kwargs.values() if isinstance(v, torch.Tensor)
        )
        case = registry.make_golden("attention", name, kwargs)
        assert set(case.grads) == {"q", "k", "v"}
        for tier_name in ("reference", "npu", "sdpa"):
            result = registry.check_golden(tiers[tier_name], case, dtype)
            assert result.ok, (name, tier_name, result.reason)
