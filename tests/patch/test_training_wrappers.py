"""The patch under what real training wraps a model in: activation checkpointing, ``torch.compile``, FSDP2.

A fused op's tier proves itself on its first call (``ops/registry.py``), and that first call happens inside the
user's forward, wherever it runs. Under non-reentrant activation checkpointing (``gradient_checkpointing_kwargs=
{"use_reentrant": False}``, what TRL and PyTorch recommend) the check's saved tensors went to the checkpoint's
hooks and its backward set off a recomputation inside the forward: ``CheckpointError: A different number of
tensors was saved during the original forward and recomputation``, the user's step failed. Traced by
``torch.compile``, the check's backward met a freed graph and the SDPA tier was refused for the rest of the
process (the reference attention ran, ~4x slower to compile and run here). Each test starts with no check cached.
FSDP2 with the head a unit of its own: see the last test.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
import transformers
from test_fused_mlp_loss import batch
from test_patch import tiny_config

import ascend_tools.patch as patch
from ascend_tools.ops import registry
from ascend_tools.patch import hf


@pytest.fixture(autouse=True)
def fresh_checks(monkeypatch):
    monkeypatch.setattr(registry._STATE, "checks", {})
    patch.revert()
    yield
    patch.revert()


def train_step(patched, wrap, family="llama", autocast=None):
    patch.revert()
    if patched:
        hf.patch_all()
    torch.manual_seed(0)
    # the reference is HF's eager attention, the architecture's own math: transformers 4.x builds Gemma 2 with SDPA
    # by default, which leaves out its attention softcapping (the patched attention keeps it, as eager does)
    kwargs = {} if patched else {"attn_implementation": "eager"}
    model = transformers.AutoModelForCausalLM.from_config(tiny_config(family), **kwargs)
    model = wrap(model)
    model.train()
    ids, mask, labels = batch()  # padding masked in the labels, as a collator does
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
    out.loss.backward()
    # (a compiled model's parameters are its original module's: "_orig_mod.model...")
    grads = {
        n.replace("_orig_mod.", "", 1): p.grad for n, p in model.named_parameters() if p.grad is not None
    }
    return out.loss.detach(), grads


def assert_same_step(wrap, ref_wrap=None):
    ref_loss, ref_grads = train_step(False, ref_wrap or wrap)
    loss, grads = train_step(True, wrap)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == ref_grads.keys() and grads
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    checks = registry.status()
    assert checks and all(c.ok for c in checks), [(c.op, c.tier, c.reason) for c in checks if not c.ok]


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_activation_checkpointing_trains_as_unpatched(reentrant):
    def checkpointed(model):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        if reentrant:
            model.enable_input_require_grads()  # what HF does for PEFT: the checkpointed input needs a grad
        return model

    assert_same_step(checkpointed)


@pytest.mark.parametrize("family", ["llama", "qwen3", "gemma2", "mixtral"])
def test_autocast_bf16_trains_as_unpatched(family):
    """HF ``Trainer(bf16=True)`` and Accelerate's bf16 mixed precision: fp32 weights under ``torch.autocast``. The
    fused loss's in-place gradient products met a bf16 hidden state and the fp32 head weight (``mat1 and mat2 must
    have the same dtype``: the step failed), and the SDPA tier's self-check, run under the user's autocast, was
    refused. Now the ops cast as autocast casts ``linear`` and ``sdpa`` and run outside it."""
    ref_loss, ref_grads = train_step(False, lambda m: m, family, torch.bfloat16)
    loss, grads = train_step(True, lambda m: m, family, torch.bfloat16)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-4, atol=1e-4)
    assert grads.keys() == ref_grads.keys() and grads
    for name in grads:  # bf16 products: within a few bf16 steps of the largest gradient
        assert (grads[name] - ref_grads[name]).abs().max() <= 3e-2 * ref_grads[name].abs().max(), name
    checks = registry.status()
    assert checks and all(c.ok for c in checks), [(c.op, c.tier, c.reason) for c in checks if not c.ok]


def test_a_compiled_model_keeps_every_tier_its_self_check_passes():
    torch._dynamo.reset()
    assert_same_step(torch.compile, ref_wrap=lambda model: model)  # against HF eager: one compile, not two


FSDP2_SCRIPT = """
import json, os, socket, sys
import torch, torch.distributed as dist, transformers
sys.path.insert(0, {tests!r})
from test_fused_mlp_loss import batch
from test_patch import tiny_config
from torch.distributed.device_mesh import init_device_mesh
import ascend_tools.patch as patch
from ascend_tools.patch import hf
try:
    from torch.distributed.fsdp import fully_shard
except ImportError:  # torch < 2.6
    from torch.distributed._composable.fsdp import fully_shard

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{{port}}", rank=0, world_size=1)
mesh = init_device_mesh("cpu", (1,))

def step(patched):
    patch.revert()
    if patched:
        hf.patch_all()
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama"))
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model.lm_head, mesh=mesh)  # the head a unit of its own, as torchtitan shards its output layer
    fully_shard(model, mesh=mesh)
    model.train()
    ids, mask, _ = batch()
    out = model(input_ids=ids, attention_mask=mask, labels=ids)
    out.loss.backward()
    return out.loss.item(), model.lm_head.weight.grad.full_tensor().norm().item()

print(json.dumps([step(False), step(True)]))
dist.destroy_process_group()
"""


def test_an_fsdp2_sharded_head_trains_through_hfs_forward(tmp_path):
    """FSDP2 with ``lm_head`` a unit of its own: outside the head's forward its weight is a sharded ``DTensor`` of
    the global shape, and the fused loss, which swaps the head out and reads the weight, raised in the user's step
    (``aten.mm.default got mixed torch.Tensor and DTensor``). HF's forward runs there, gathering the head."""
    script = tmp_path / "fsdp2_head.py"
    script.write_text(FSDP2_SCRIPT.format(tests=os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ref_loss, ref_grad), (loss, grad) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loss == pytest.approx(ref_loss, rel=1e-6) and grad == pytest.approx(ref_grad, rel=1e-5)


class _Tokens(torch.utils.data.Dataset):
    def __len__(self):
        return 16

    def __getitem__(self, i):
        ids = torch.randint(1, 128, (12,), generator=torch.Generator().manual_seed(i))
        return {"input_ids": ids, "labels": ids.clone(), "attention_mask": torch.ones_like(ids)}


@pytest.mark.parametrize("bf16,checkpointing", [(True, False), (False, True)], ids=["bf16", "checkpointing"])
def test_hf_trainer_trains_a_patched_model_as_an_unpatched_one(tmp_path, bf16, checkpointing):
    """HF ``Trainer`` as fine-tuning scripts run it: ``bf16=True`` (autocast) and ``gradient_checkpointing=True``
    (non-reentrant in transformers 5) each failed the first step of a patched model before."""

    def losses(patched):
        patch.revert()
        if patched:
            hf.patch_all()
        torch.manual_seed(0)
        kwargs = {} if patched else {"attn_implementation": "eager"}
        model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama"), **kwargs)
        args = transformers.TrainingArguments(
            output_dir=str(tmp_path / str(patched)),
            per_device_train_batch_size=4,
            gradient_accumulation_steps=2,
            max_steps=2,
            learning_rate=1e-3,
            logging_steps=1,
            report_to=[],
            use_cpu=True,
            save_strategy="no",
            seed=0,
            bf16=bf16,
            gradient_checkpointing=checkpointing,
        )
        trainer = transformers.Trainer(model=model, args=args, train_dataset=_Tokens())
        trainer.train()
        return [h["loss"] for h in trainer.state.log_history if "loss" in h]

    want = losses(False)
    got = losses(True)
    assert len(got) == len(want) == 2
    # (transformers 4.x logs the loss rounded to 4 decimals: one unit of the last either way)
    assert got == pytest.approx(want, rel=1e-3 if bf16 else 1e-5, abs=1.5e-4)
