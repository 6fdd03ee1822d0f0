"""Shadow checks a slice of an attention call's heads: the float64 replay of the slice is that slice of the full
float64 replay (the expectation: the whole op run in float64, then sliced), a wrong kernel is still found, and the
CPU flash forward (tagged random for its dropout) is checked where its dropout_p is 0."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ascend_tools.precision import shadow
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_heads import pick_heads

FWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
BWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default


def _qkv(b, hq, hkv, length, e=8):
    g = torch.Generator().manual_seed(0)
    return [torch.randn(b, h, length, e, generator=g, dtype=torch.float64) for h in (hq, hkv, hkv)]


@pytest.mark.parametrize(
    "b,hq,hkv,length,causal,mask",
    [
        (2, 8, 4, 16, True, None),
        (3, 4, 4, 8, False, None),
        (2, 6, 2, 8, False, "4d"),
        (2, 4, 1, 8, False, "2d"),
    ],
)
def test_the_replay_of_a_slice_is_that_slice_of_the_full_replay(b, hq, hkv, length, causal, mask):
    q, k, v = _qkv(b, hq, hkv, length)
    kwargs = {}
    if mask == "4d":
        kwargs["attn_mask"] = torch.randn(b, 1, length, length, dtype=torch.float64)
    elif mask == "2d":
        kwargs["attn_mask"] = torch.randn(length, length, dtype=torch.float64)
    out, lse = FWD(q, k, v, 0.0, causal, **kwargs)
    grad = torch.randn_like(out)
    calls = [(FWD, (q, k, v, 0.0, causal)), (BWD, (grad, q, k, v, out, lse, 0.0, causal))]
    rng = np.random.default_rng(0)
    for func, args in calls:
        name = "aten::" + func._schema.name.split("::")[1]
        shapes = {id(x): x.shape for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor)}
        for _ in range(6):
            pick = pick_heads(name, args, kwargs, shapes, 4, lambda n: int(rng.integers(n)))
            assert pick is not None
            part = func(*(_cut(pick, x) for x in args), **{n: _cut(pick, x) for n, x in kwargs.items()})
            for whole, sliced in zip(func(*args, **kwargs), part):
                torch.testing.assert_close(sliced, pick.take(whole), rtol=1e-12, atol=1e-12)
            checked, total = pick.checked()
            assert checked == part[0].shape[1] * length and total == b * hq * length


def _cut(pick, x):
    return pick.take(x) if isinstance(x, torch.Tensor) and id(x) in pick.cut else x


def test_a_call_no_larger_than_the_slice_is_checked_whole():
    q, k, v = _qkv(1, 2, 2, 8)
    shapes = {id(x): x.shape for x in (q, k, v)}
    assert pick_heads(FWD.name(), (q, k, v, 0.0, False), {}, shapes, 32, lambda n: 0) is None


def _attention_model():
    torch.manual_seed(0)
    proj = torch.nn.Linear(16, 3 * 16)

    def run(x):
        q, k, v = proj(x).view(2, 12, 3, 4, 4).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)

    return proj, run, torch.randn(2, 12, 16)


@pytest.mark.parametrize("phase", ["forward", "backward"])
@pytest.mark.parametrize("max_numel", [1 << 24, 600])  # 600: each call over it, its slice's copies under it
def test_a_wrong_attention_kernel_is_named_and_a_clean_one_is_not(phase, max_numel):
    name = "aten::_scaled_dot_product_flash_attention_for_cpu" + ("_backward" if phase == "backward" else "")
    _, run, x = _attention_model()
    with shadow(rows=8, max_numel=max_numel) as clean:
        run(x).sum().backward()
    assert not clean.culprits()
    checked = [r for r in clean.results if r.name == name]
    assert len(checked) == 1 and checked[0].rows == [12, 2 * 4 * 12]  # one head of 12 query rows: >= 8
    assert checked[0].input_shapes[1] == [2, 4, 12, 4]  # the whole call's shapes
    # every element of the first output off by 1%: in every head, so in every slice
    fault = Fault(name, call=0, phase=phase, fraction=1.0, scale=0.01)
    with FaultInjector(fault) as inj, shadow(rows=8, max_numel=max_numel) as sh:
        run(x).sum().backward()
    assert inj.hit and [r.key for r in sh.culprits()][:1] == [inj.hit]


def test_attention_with_dropout_is_not_replayed():
    _, _, x = _attention_model()
    q = x.view(2, 12, 4, 4).transpose(1, 2)
    with shadow() as sh:
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.5)
    assert not [r for r in sh.results if "attention" in r.name] and sh.skipped["random"] >= 1
