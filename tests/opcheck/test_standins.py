"""Stand-ins for CUDA-only packages: reference semantics against the documented formulas, the import hook."""

import math

import pytest
import torch

from ascend_tools.opcheck import standins


def attention_by_formula(q, k, v, scale, causal):
    """softmax(q k^T * scale [+ causal mask]) v per head, q/k/v in flash-attn's (batch, seq, heads, dim)."""
    s, h = q.shape[1], q.shape[2]
    groups = h // k.shape[2]
    k, v = k.repeat_interleave(groups, dim=2), v.repeat_interleave(groups, dim=2)
    scores = torch.einsum("bshd,bthd->bhst", q, k) * scale
    if causal:
        scores = scores.masked_fill(torch.ones(s, s, dtype=torch.bool).triu(1), float("-inf"))
    return torch.einsum("bhst,bthd->bshd", scores.softmax(-1), v)


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("scale", [None, 0.3])
def test_flash_attn_func_is_attention_in_bshd_layout(causal, kv_heads, scale):
    torch.manual_seed(0)
    q = torch.randn(2, 5, 4, 8, dtype=torch.float64)
    k, v = (torch.randn(2, 5, kv_heads, 8, dtype=torch.float64) for _ in range(2))
    got = standins.flash_attn_func(q, k, v, softmax_scale=scale, causal=causal)
    want = attention_by_formula(q, k, v, scale if scale is not None else 1 / math.sqrt(8), causal)
    torch.testing.assert_close(got, want)


def test_qkvpacked_and_xformers_agree_with_the_formula():
    torch.manual_seed(0)
    qkv = torch.randn(1, 6, 3, 2, 4, dtype=torch.float64)
    want = attention_by_formula(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], 0.5, True)
    torch.testing.assert_close(standins.flash_attn_qkvpacked_func(qkv, 0.0, 0.5, True), want)
    got = standins.memory_efficient_attention(
        qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2], attn_bias=standins.LowerTriangularMask(), scale=0.5
    )
    torch.testing.assert_close(got, want)


def test_block_diagonal_causal_mask_is_causal_attention_within_each_packed_sequence():
    """mistral-finetune packs sequences into one (1, S, H, D) batch with BlockDiagonalCausalMask: each
    sequence's output is causal attention over that sequence alone; the output is contiguous, as xformers'."""
    torch.manual_seed(0)
    seqlens = [3, 1, 4]
    q, k, v = (torch.randn(1, sum(seqlens), 2, 4, dtype=torch.float64) for _ in range(3))
    mask = standins.BlockDiagonalCausalMask.from_seqlens(seqlens)
    got = standins.memory_efficient_attention(q, k, v, mask, scale=0.5)
    bounds = [0, 3, 4, 8]
    want = torch.cat(
        [
            attention_by_formula(*(t[:, a:b] for t in (q, k, v)), 0.5, True)
            for a, b in zip(bounds, bounds[1:])
        ],
        dim=1,
    )
    torch.testing.assert_close(got, want)
    assert got.view(sum(seqlens), -1).shape == (8, 8)


def test_rms_norm_formula():
    x = torch.randn(3, 8, dtype=torch.float64)
    norm = standins.RMSNorm(8, eps=1e-6).double()
    torch.testing.assert_close(norm(x), x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6))


def test_import_hook_stands_in_and_records_the_user_line(finder):
    import bitsandbytes as bnb
    import my_project_rope_cuda  # a project-built extension, by its name

    layer = bnb.nn.Linear4bit(4, 3)
    assert isinstance(layer, torch.nn.Linear) and layer(torch.ones(2, 4)).shape == (2, 3)
    x = torch.ones(2, 2)
    assert my_project_rope_cuda.forward(x, 3) is x  # opaque: its first tensor argument
    rules = {(u.module, u.what, u.package.rule) for u in finder.uses}
    assert ("bitsandbytes", "import", "lib-bitsandbytes") in rules
    assert ("bitsandbytes.nn", "Linear4bit", "lib-bitsandbytes") in rules
    assert ("my_project_rope_cuda", "import", "cuda-extension") in rules
    assert all(u.site[0] == __file__ for u in finder.uses)


def test_unknown_names_are_left_to_import_error(finder):
    with pytest.raises(ImportError):
        import no_such_module_here  # noqa: F401


def test_an_installed_library_probing_for_a_package_finds_it_absent(finder):
    """torch._dynamo runs ``import triton`` inside try/except (transformers and accelerate probe the same
    way for their optional packages): a stand-in there would send the library down the CUDA package's path
    (torch failed on ``triton.language.dtype``). Only the user's own imports get stand-ins."""
    probe = compile("import mamba_ssm", "/venv/lib/python3.11/site-packages/torch/_dynamo/utils.py", "exec")
    with pytest.raises(ImportError):
        exec(probe, {})
    import mamba_ssm  # the same import from user code (this file)

    assert isinstance(mamba_ssm, standins.StandInModule)


def test_a_lowercase_attribute_is_a_submodule_and_a_function(finder):
    """``apex.parallel.convert_syncbn_model(model)``: ``parallel`` is reached as an attribute of the
    stand-in and must have attributes itself; a function nobody wrote a reference for returns its first
    tensor or module argument, and its call is recorded under its full name."""
    import apex

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    synced = apex.parallel.convert_syncbn_model(model)  # reference: torch's convert_sync_batchnorm
    assert isinstance(synced[1], torch.nn.SyncBatchNorm)
    x = torch.ones(2)
    assert apex.contrib.multihead_attn.fast_mask_softmax(x, 1) is x
    assert apex.contrib.clip_grad.clip_grad_norm_(model) is model
    called = {(u.module, u.what) for u in finder.uses}
    assert ("apex.parallel", "convert_syncbn_model") in called
    assert ("apex.contrib.multihead_attn", "fast_mask_softmax") in called


FP32 = {"rtol": 1e-5, "atol": 1e-6}  # the kernels compute in float32


@pytest.mark.parametrize("rms", [False, True])
def test_dropout_add_layer_norm_matches_the_formula_and_autograd(rms):
    """flash-attn's dropout_layer_norm kernels (TinyLlama's FusedRMSNorm): forward = norm(x0 + residual),
    backward = autograd's gradients of that formula (dropout off)."""
    torch.manual_seed(0)
    x0, res = torch.randn(6, 8, dtype=torch.float64), torch.randn(6, 8, dtype=torch.float64)
    gamma, beta = torch.randn(8, dtype=torch.float64), torch.randn(8, dtype=torch.float64)
    args = (None, None, None, None, 0.0, 1e-5, 1.0, 0, None, False, rms)
    z, x, dmask, mu, rsigma = standins.dropout_add_ln_fwd(x0, res, gamma, beta, *args)
    leaves = [t.clone().requires_grad_() for t in (x0, res, gamma, beta)]
    s = leaves[0] + leaves[1]
    if rms:
        want = s * torch.rsqrt(s.pow(2).mean(-1, keepdim=True) + 1e-5) * leaves[2]
    else:
        want = torch.nn.functional.layer_norm(s, (8,), leaves[2], leaves[3], 1e-5)
    torch.testing.assert_close(z, want.detach(), **FP32)
    dz = torch.randn_like(z)
    want.backward(dz)
    bwd_args = (None, None, None, None, 0.0, 1.0, 0, True, rms)
    dx0, dres, dgamma, dbeta, *_ = standins.dropout_add_ln_bwd(
        dz, None, x, x0, dmask, mu, rsigma, gamma, *bwd_args
    )
    torch.testing.assert_close(dx0, leaves[0].grad, **FP32)
    torch.testing.assert_close(dres, leaves[1].grad, **FP32)
    torch.testing.assert_close(dgamma, leaves[2].grad, **FP32)
    if not rms:
        torch.testing.assert_close(dbeta, leaves[3].grad, **FP32)


def test_xentropy_matches_cross_entropy_and_autograd():
    """flash-attn's xentropy_cuda_lib (TinyLlama's fused cross-entropy): per-row label-smoothed
    cross-entropy and its gradient, as torch's cross_entropy(reduction="none", label_smoothing)."""
    torch.manual_seed(0)
    logits, labels = torch.randn(5, 11, dtype=torch.float64), torch.tensor([0, 3, 10, 7, 2])
    losses, lse = standins.xentropy_forward(logits, labels, 0.1)
    leaf = logits.clone().requires_grad_()
    want = torch.nn.functional.cross_entropy(leaf, labels, reduction="none", label_smoothing=0.1)
    torch.testing.assert_close(losses, want.detach().float(), check_dtype=False)
    torch.testing.assert_close(lse, torch.logsumexp(logits, -1).float(), check_dtype=False)
    grad = torch.randn(5, dtype=torch.float64)
    want.backward(grad)
    torch.testing.assert_close(standins.xentropy_backward(grad, logits, lse, labels, 0.1), leaf.grad, **FP32)


def test_a_use_made_by_an_installed_library_is_not_the_users():
    """DeepSpeed decorates its own Muon helpers with @torch.compile at import: the child must not report
    them as lines of the user's script (they pointed into site-packages)."""
    recorder = standins.Recorder()
    package = standins.PACKAGES["triton"]
    library_call = compile(
        "note('triton', 'jit', package)", "/venv/lib/python3.11/site-packages/ds/x.py", "exec"
    )
    exec(library_call, {"note": recorder.note, "package": package})
    assert recorder.uses == []
    recorder.note("triton", "jit", package)  # from this file: the user's
    assert [u.site[0] for u in recorder.uses] == [__file__]
