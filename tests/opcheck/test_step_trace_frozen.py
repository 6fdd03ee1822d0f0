"""Where the traced step starts (step_trace.py): a frozen encoder run in the training loop ahead of the
trained model (diffusers' text-to-image: the VAE encode and the CLIP text encoder, then the UNet) is part
of the step; a frozen module's forward before any optimizer exists (setup, a warm-up) is not."""

import pytest
import torch

from ascend_tools.opcheck import fake_accelerator, step_trace


def _frozen_then_trained(trace_setup_forward: bool):
    with fake_accelerator.fake_node(1), step_trace.StepTrace().active() as trace:
        encoder = torch.nn.Conv1d(4, 4, 3, padding=1).cuda().requires_grad_(False)
        head = torch.nn.Linear(4, 2).cuda()
        if trace_setup_forward:
            encoder(torch.ones(1, 4, 5).cuda())  # before the optimizer: setup, not the step
        opt = torch.optim.SGD(head.parameters(), lr=0.1)
        with pytest.raises(step_trace.StepDone):
            latents = encoder(torch.ones(2, 4, 5).cuda())  # the frozen encoder inside the step
            head(latents.mean(-1)).sum().backward()
            opt.step()
    return [e.op for e in trace.ops.events if e.phase == "forward"]


def test_a_frozen_encoder_in_the_training_loop_is_traced():
    ops = _frozen_then_trained(trace_setup_forward=False)
    assert ops.count("aten::convolution") == 1 and "aten::addmm" in ops


def test_a_frozen_forward_before_the_optimizer_is_not():
    assert _frozen_then_trained(trace_setup_forward=True).count("aten::convolution") == 1
