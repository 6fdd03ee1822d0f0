"""FSDP1 on the check-ops fake node (opcheck/fsdp1_fake.py): HF Trainer's --fsdp full_shard wraps a module
whose parameters are on meta (the fake accelerator) and whose buffers are on the host, with device_id
cuda:0."""

import os
import subprocess
import sys

STEP = """
import torch
import torch.distributed as dist
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from ascend_tools.opcheck import fake_accelerator, fsdp1_fake, script_child

script_child._fake_process_group()
dist.init_process_group("nccl")
fsdp1_fake.install()
with fake_accelerator.fake_node(2):
    inner = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    inner.register_buffer("scale", torch.ones(2))  # a host buffer, as RoPE's inv_freq
    model = FSDP(inner, device_id=torch.device("cuda", 0), use_orig_params=True)
    out = model(torch.ones(3, 4).cuda()) * inner.scale
    out.sum().backward()
    opt = torch.optim.AdamW(model.parameters())
    opt.step()
print(*out.shape, out.device.type, inner.scale.device.type)
"""


def test_fsdp1_wraps_a_meta_module_with_a_cuda_device_id_and_steps():
    """Without the patches FSDP refuses ("Inconsistent compute device and `device_id` on rank 0: meta vs
    cuda:0"), then cannot set a host buffer's .data to a meta tensor, then asks for torch.meta's device
    handle."""
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, "-c", STEP], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-4:] == ["3", "2", "meta", "meta"]


def test_fsdp1_takes_an_integer_device_id_as_a_fake_cuda_index():
    """pytorch/examples' FSDP T5 passes device_id=torch.cuda.current_device(): FSDP's torch.device(0) asks
    for a real accelerator ("Cannot access accelerator device when none is available") without the patch."""
    step = STEP.replace('device_id=torch.device("cuda", 0)', "device_id=torch.cuda.current_device()")
    assert step != STEP
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, "-c", step], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-4:] == ["3", "2", "meta", "meta"]


def test_fsdp1_unit_without_own_parameters_computes_on_meta():
    """mistral-finetune's LoRA wrap policy (a unit for every module whose parameters all require grad) also
    wraps LoRA's parameterless Dropout: FSDP gives a unit without parameters the current device,
    torch.device(index), which asks for a real accelerator unless the fake node answers meta."""
    step = STEP.replace(
        'device_id=torch.device("cuda", 0), use_orig_params=True',
        "device_id=torch.cuda.current_device(), auto_wrap_policy=ModuleWrapPolicy({torch.nn.ReLU})",
    ).replace("import torch\n", "import torch\nfrom torch.distributed.fsdp.wrap import ModuleWrapPolicy\n", 1)
    step = step.replace(
        'inner.register_buffer("scale", torch.ones(2))  # a host buffer, as RoPE\'s inv_freq', ""
    )
    step = step.replace(" * inner.scale", "").replace(", inner.scale.device.type", "")
    env = dict(os.environ, WORLD_SIZE="2", RANK="0", LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, "-c", step], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-3:] == ["3", "2", "meta"]
