"""Convergence, Liger-style: for each family, a tiny model trained 20 AdamW steps with and without the
patch, from the same seed and data: the loss at every step, the final logits and every parameter agree
(fp32). Once with the patch applied before building the model, once with ``apply(model)`` after.

Tolerances (fp32): loss rtol 1e-5 / atol 1e-6 at every step; final logits and parameters atol 5e-3,
rtol 1e-5 (Liger-Kernel's fp32 convergence tolerances: AdamW divides by sqrt(v), so last-ulp differences
in near-zero gradients become visible in the weights after 20 steps)."""

import pytest
import torch
import transformers
from test_patch import FAMILIES, tiny_config

import ascend_tools.patch as patch
from ascend_tools.patch import hf

patch.revert()  # the import patched everything: leave the rest of the session unpatched

STEPS, BATCH, SEQ = 20, 2, 16

pytestmark = pytest.mark.slow


def data():
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 128, (2, BATCH, SEQ), generator=g).repeat(STEPS // 2, 1, 1)  # two batches, in turn
    mask = torch.ones(STEPS, BATCH, SEQ, dtype=torch.long)
    mask[:, 0, :3] = 0  # one left-padded row in every batch
    return ids, mask


def build(family):
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(tiny_config(family)).float()


_REFERENCE = {}


def reference(family):
    """The unpatched run, once per family (both variants compare with it)."""
    if family not in _REFERENCE:
        patch.revert()
        _REFERENCE[family] = train(build(family))
    return _REFERENCE[family]


def train(model):
    ids, mask = data()
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    losses = []
    for step in range(STEPS):
        labels = ids[step].masked_fill(mask[step] == 0, -100)
        labels[0, 3] = -100  # predicted from a pad position, whose output is a convention (HF sdpa: 0)
        pos = (mask[step].cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids[step], attention_mask=mask[step], position_ids=pos, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    model.eval()
    with torch.no_grad():
        final = model(
            input_ids=ids[0], attention_mask=mask[0], position_ids=(mask[0].cumsum(-1) - 1).clamp(min=0)
        ).logits[:, 3:]  # real positions of row 0 from 3 on (row 1 has none masked)
    return losses, final, {n: p.detach().clone() for n, p in model.named_parameters()}


@pytest.fixture(autouse=True)
def clean():
    patch.revert()
    yield
    patch.revert()


@pytest.mark.parametrize("when", ["before_build", "apply_after"])
@pytest.mark.parametrize("family", FAMILIES)
def test_convergence(family, when):
    ref_losses, ref_logits, ref_params = reference(family)

    if when == "before_build":
        hf.patch_all()
        model = build(family)
    else:
        model = patch.apply(build(family))
    assert model.config._attn_implementation == "ascend_fused"
    losses, final, params = train(model)

    torch.testing.assert_close(torch.tensor(losses), torch.tensor(ref_losses), rtol=1e-5, atol=1e-6)
    assert losses[-1] < losses[0]  # it did learn something
    torch.testing.assert_close(final, ref_logits, rtol=1e-5, atol=5e-3)
    assert params.keys() == ref_params.keys()
    for name in params:
        torch.testing.assert_close(params[name], ref_params[name], rtol=1e-5, atol=5e-3, msg=name)
