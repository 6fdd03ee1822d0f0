"""FSDP2 and Accelerate's FSDP2 preparation on the fake node (opcheck/fsdp2_fake.py, accelerate_fake.py)."""

import os
import subprocess
import sys

import pytest
import torch

from ascend_tools.opcheck import accelerate_fake

SHARD = """
import torch
import torch.distributed as dist
from ascend_tools.opcheck import fake_accelerator, fsdp2_fake, script_child, step_trace
script_child._fake_process_group()
fsdp2_fake.install()
from torch.distributed.fsdp import fully_shard

class Rotary(torch.nn.Module):  # a host buffer beside meta parameters, as RoPE's inv_freq
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.register_buffer("inv_freq", torch.arange(4.0), persistent=False)

    def forward(self, x):
        return self.lin(x) * self.inv_freq

dist.init_process_group("nccl")
with fake_accelerator.fake_node(8), step_trace.StepTrace().active():  # as in the script child
    model = Rotary()
    fully_shard(model)
    model(torch.ones(2, 4, device="cuda")).sum().backward()
grad = model.lin.weight.grad
print(model.inv_freq.device.type, grad.device.type, grad.shape == model.lin.weight.shape)
"""


def test_fully_shard_trains_on_the_fake_accelerator():
    """Without a mesh fully_shard shards over torch's accelerator (the CPU on this machine, which would give
    host gradients to meta parameters); it moves a host buffer by setting ``.data`` (refused for meta), and
    refuses meta parameters at the first forward. On the fake node it shards over ``cuda``: buffer and
    gradients on meta. (Each of the three stopped accelerate's FSDP2 example before fsdp2_fake.)"""
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, "-c", SHARD], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[-3:] == ["meta", "meta", "True"]


def _accelerates_rule(param):
    """accelerate's ``_get_parameter_id``: a meta parameter's identity, else its data pointer."""
    return id(param) if param.is_meta else param.data_ptr()


def test_a_wrapped_meta_weight_matches_the_weight_it_wraps():
    """torchao's float8 wrapper (``_tensor``: the weight the optimizer holds) replaces each Linear weight
    after the optimizer was built; on real tensors both share the data pointer, so accelerate matches
    them. On meta the match is by identity: the wrapped weight's, not the wrapper's."""
    weight = torch.nn.Parameter(torch.empty(4, 4, device="meta"))
    wrapper = torch.empty(4, 4, device="meta")
    wrapper._tensor = weight
    assert _accelerates_rule(wrapper) != _accelerates_rule(weight)  # the mismatch on the fake node
    parameter_id = accelerate_fake._parameter_id(_accelerates_rule)
    assert parameter_id(wrapper) == parameter_id(weight) == id(weight)
    host = torch.ones(3)
    assert parameter_id(host) == host.data_ptr()  # real tensors: accelerate's own rule


def test_the_patch_wraps_accelerates_own_rule():
    modeling = pytest.importorskip("accelerate.utils.modeling")
    if not hasattr(modeling, "_get_parameter_id"):
        pytest.skip("this accelerate matches FSDP2 parameters by data_ptr()")
    weight = torch.nn.Parameter(torch.empty(2, device="meta"))
    wrapper = torch.empty(2, device="meta")
    wrapper._tensor = weight
    assert modeling._get_parameter_id(wrapper) != id(weight)
    assert accelerate_fake._parameter_id(modeling._get_parameter_id)(wrapper) == id(weight)
