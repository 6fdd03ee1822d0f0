"""The fused ops under ``torch.autocast``: what torch's own ops give there is the expectation.

Mixed-precision training keeps fp32 weights under autocast (HF ``Trainer(bf16=True)``, Accelerate). Autocast casts
``scaled_dot_product_attention``'s and ``linear``'s floating inputs to its dtype; HF's RoPE leaves q and k in
float32 beside a bf16 v there. The ops cast as autocast does and run their tiers outside it (their self-checks too:
under the user's autocast both tiers of a check ran in bf16 and a float32 tier was refused).
"""

import pytest
import torch
import torch.nn.functional as F

from ascend_tools.ops import attention as A
from ascend_tools.ops import linear_cross_entropy as L
from ascend_tools.ops import registry
from ascend_tools.ops.autocast import autocast_dtype, autocast_inputs, autocast_off

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    monkeypatch.setattr(registry._STATE, "checks", {})


def test_the_autocast_state_is_read_and_switched_off():
    assert autocast_dtype("cpu") is None and autocast_dtype("meta") is None
    x, d = torch.ones(2, 2), torch.ones(2, dtype=torch.float64)
    assert autocast_inputs("cpu", x, d, None, 3) == (x, d, None, 3)
    with torch.autocast(**BF16):
        assert autocast_dtype("cpu") == torch.bfloat16
        cast = autocast_inputs("cpu", x, d, torch.ones(2, dtype=torch.long))
        assert [t.dtype for t in cast] == [torch.bfloat16, torch.float64, torch.long]  # as autocast: not fp64
        with autocast_off("cpu"):
            assert autocast_dtype("cpu") is None and (x @ x).dtype == torch.float32
        assert (x @ x).dtype == torch.bfloat16


def test_attention_of_float32_q_k_and_a_bf16_v_is_sdpas_under_autocast():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 4, 8, 16, generator=g), torch.randn(2, 2, 8, 16, generator=g)
    v = torch.randn(2, 2, 8, 16, generator=g).bfloat16()
    with torch.autocast(**BF16):
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        got = A.attention(q, k, v, is_causal=True)
    assert got.dtype == want.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want.float(), rtol=2e-2, atol=2e-2)
    checks = registry.status()
    assert [(c.tier, c.dtype, c.ok) for c in checks] == [("sdpa", "bfloat16", True)]


def test_linear_cross_entropy_is_an_autocast_linear_then_a_float32_loss():
    g = torch.Generator().manual_seed(1)
    hidden = torch.randn(12, 32, generator=g)
    weight = torch.randn(64, 32, generator=g, requires_grad=True)
    labels = torch.randint(0, 64, (12,), generator=g)
    with torch.autocast(**BF16):
        want = F.cross_entropy(F.linear(hidden, weight).float(), labels)
    (want_grad,) = torch.autograd.grad(want, weight)
    with torch.autocast(**BF16):
        got = L.linear_cross_entropy(hidden, weight, labels)
    (got_grad,) = torch.autograd.grad(got, weight)
    assert got.dtype == torch.float32 and got_grad.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(got_grad, want_grad, rtol=2e-2, atol=2e-3)
