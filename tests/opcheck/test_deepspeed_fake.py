"""DeepSpeed's compiled ops and overflow checks in the check-ops child (opcheck/deepspeed_fake.py)."""

import importlib.util
import sys
import types

import pytest
import torch

from ascend_tools.opcheck import deepspeed_fake, standins


@pytest.mark.parametrize("adam_w_mode", [1, 0])
def test_multi_tensor_adam_matches_torch_adam(adam_w_mode):
    """FusedAdam's kernel (csrc/adam/multi_tensor_adam.cu): adam_w_mode 1 is torch's AdamW, 0 is Adam with
    L2 weight decay; two steps with bias correction, float64."""
    torch.manual_seed(0)
    params = [torch.randn(5, 3, dtype=torch.float64), torch.randn(4, dtype=torch.float64)]
    grads = [[torch.randn_like(p) for p in params] for _ in range(2)]
    ref = [p.clone().requires_grad_() for p in params]
    opt_cls = torch.optim.AdamW if adam_w_mode else torch.optim.Adam
    opt = opt_cls(ref, lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    mine = [p.clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for step, gs in enumerate(grads, start=1):
        for r, g in zip(ref, gs):
            r.grad = g.clone()
        opt.step()
        deepspeed_fake.multi_tensor_adam(
            2048, None, [gs, mine, m, v], 0.01, 0.9, 0.99, 1e-8, step, adam_w_mode, 1, 0.1
        )
    for r, p in zip(ref, mine):
        torch.testing.assert_close(p, r.detach())


def test_overflow_checks_say_finite():
    """ZeRO's has_overflow reads an inf flag with .item() (1 on meta): the patch makes it answer False."""
    cls = type("DeepSpeedZeroOptimizer", (), {"has_overflow": lambda self, partition_gradients=True: True})
    module = types.SimpleNamespace(DeepSpeedZeroOptimizer=cls)
    deepspeed_fake._patch_overflow(("DeepSpeedZeroOptimizer", "Absent"))(module)
    assert cls().has_overflow() is False


def test_op_builder_load_gives_a_stand_in_with_the_adam_reference():
    if importlib.util.find_spec("deepspeed") is None:
        pytest.skip("deepspeed is not installed")
    from deepspeed.ops.op_builder import builder

    module = types.SimpleNamespace(OpBuilder=type("OpBuilder", (builder.OpBuilder,), {}))
    deepspeed_fake._patch_builder(module)
    finder = standins.StandInFinder(standins.Recorder())
    sys.meta_path.append(finder)
    try:
        loaded = module.OpBuilder.load(types.SimpleNamespace(name="fused_adam"))
        assert loaded.multi_tensor_adam is deepspeed_fake.multi_tensor_adam
        x = torch.ones(2)
        assert loaded.some_other_kernel(x) is x  # opaque: its first tensor
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.startswith("deepspeed.ops.fused_adam")]:
            del sys.modules[name]
