"""The fake CUDA node of the check-ops script child (opcheck/fake_accelerator.py, fake_streams.py)."""

import pytest
import torch

from ascend_tools.opcheck import fake_accelerator


def test_side_stream_prefetch_and_timing_events_run_on_the_fake_node():
    """apex's ImageNet prefetcher: copies on a side stream, wait_stream, record_stream; step timing with
    events; nvtx ranges and cudart profiler calls. All raise on CPU-only torch."""
    with fake_accelerator.fake_node(2):
        side = torch.cuda.Stream()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.cuda.stream(side):
            x = torch.ones(2, 3).cuda(non_blocking=True)
        torch.cuda.current_stream().wait_stream(side)
        x.record_stream(torch.cuda.current_stream())
        torch.cuda.nvtx.range_push("step")
        torch.cuda.nvtx.range_pop()
        torch.cuda.cudart().cudaProfilerStart()
        end.record()
        end.synchronize()
        assert x.is_meta and x.shape == (2, 3)
        assert start.elapsed_time(end) == 0.0 and end.query()
    with pytest.raises(RuntimeError):
        torch.cuda.Stream()  # the patches are undone on exit


def test_grad_scaler_steps_the_optimizer_on_meta_gradients():
    """GradScaler.step skips the optimizer when its inf check (an .item() on meta, read as 1 by the
    trace) says so: on the fake node the step must run, or the trace never reaches optimizer.step()."""
    from ascend_tools.opcheck import step_trace

    with fake_accelerator.fake_node(1), step_trace.StepTrace().active() as trace:
        model = torch.nn.Linear(4, 2).cuda()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cuda")
        loss = model(torch.ones(3, 4).cuda()).sum()
        scaler.scale(loss).backward()
        with pytest.raises(step_trace.StepDone):
            scaler.step(opt)
    assert trace.optimizer == "SGD" and trace.phase == "done"


def test_torch_accelerator_names_the_fake_cuda_node():
    """pytorch/examples' ImageNet script picks its device with torch.accelerator (torch >= 2.6); on
    CPU-only torch it would train on the CPU and never take its accelerator branches."""
    if not hasattr(torch, "accelerator"):
        pytest.skip("torch.accelerator needs torch >= 2.6")
    with fake_accelerator.fake_node(4):
        assert torch.accelerator.is_available()
        device = torch.accelerator.current_accelerator()
        assert device.type == "cuda" and torch.accelerator.device_count() == 4
        torch.accelerator.set_device_index(2)
        assert torch.accelerator.current_device_index() == 2 == torch.cuda.current_device()
        model = torch.nn.Linear(3, 2).to(device)
        assert model(torch.ones(1, 3).to(device)).is_meta
    assert not torch.accelerator.is_available()


def test_data_parallel_runs_its_module_once():
    """nn.DataParallel(model).cuda() on 8 fake GPUs: the forward runs the module (one replica) instead of
    refusing parameters that are not on cuda:0."""
    with fake_accelerator.fake_node(8):
        model = torch.nn.DataParallel(torch.nn.Linear(3, 2)).cuda()
        out = model(torch.ones(4, 3).cuda())
    assert out.shape == (4, 2) and out.device.type == "meta"


WORLD = """
import torch.distributed as dist
from ascend_tools.opcheck import script_child
script_child._fake_process_group()
dist.init_process_group("nccl", world_size=-1, rank=-1)  # as deepspeed.init_distributed() calls it
print(dist.get_world_size(), dist.get_rank(), dist.get_backend())
"""


def test_nccl_world_of_minus_one_takes_the_launchers_environment():
    """torch's init_process_group reads world_size=-1/rank=-1 as "from the environment"; DeepSpeed passes
    them explicitly. The fake world must size itself from WORLD_SIZE/RANK then, not refuse -1."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, WORLD_SIZE="4", RANK="0", LOCAL_RANK="0")
    proc = subprocess.run([sys.executable, "-c", WORLD], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-3:] == ["4", "0", "fake"]


def test_factories_on_cuda_inside_backward_hooks_go_to_meta():
    """ZeRO's gradient hooks allocate their buckets with torch.empty(device="cuda:0") during backward, where
    the fake node's function mode is off (backward itself went through it): the step trace's dispatch
    mode sends them to meta."""
    from ascend_tools.opcheck import step_trace

    buckets = []
    with fake_accelerator.fake_node(1), step_trace.StepTrace().active():
        model = torch.nn.Linear(4, 2).cuda()
        model.weight.register_hook(lambda g: buckets.append(torch.empty(8, device="cuda:0")))
        model(torch.ones(3, 4).cuda()).sum().backward()
    assert [b.device.type for b in buckets] == ["meta"]


def test_a_yes_no_read_after_backward_says_the_gradients_are_finite():
    """ZeRO's ``is_invalid_grad_norm`` is ``bool((~isfinite(norm) | (norm < 0)).any())``: read as 1 it
    skips every traced step as overflowed. Before the backward a bool reads True (an all-ones mask test),
    after it False; a number still reads 1."""
    from ascend_tools.opcheck import step_trace

    with fake_accelerator.fake_node(1), step_trace.StepTrace().active():
        model = torch.nn.Linear(4, 2).cuda()
        out = model(torch.ones(3, 4).cuda())
        assert bool((out == out).all())
        out.sum().backward()
        norm = model.weight.grad.norm()
        assert not bool((~torch.isfinite(norm) | (norm < 0)).any())
        assert norm.item() == 1.0


def test_cuda_visible_devices_limits_the_fake_node(monkeypatch):
    """CUDA_VISIBLE_DEVICES=0 python train.py sees one GPU (HF Trainer then does not wrap the model in
    nn.DataParallel, which SFTTrainer refuses)."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    with fake_accelerator.fake_node(8):
        assert torch.cuda.device_count() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with fake_accelerator.fake_node(8):
        assert torch.cuda.device_count() == 2
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    with fake_accelerator.fake_node(8):
        assert torch.cuda.device_count() == 8


def test_autocast_queries_on_meta_answer_as_cpu():
    """trl's chunked log-prob asks torch.is_autocast_enabled(hidden.device.type): on meta torch raises
    'unknown device type for autocast'; autocast never applies to meta tensors, so it answers as the CPU."""
    from ascend_tools.opcheck import trace

    if not hasattr(torch, "get_autocast_dtype"):
        pytest.skip("torch.get_autocast_dtype needs torch >= 2.4")
    with trace.meta_autocast_as_cpu():
        assert torch.is_autocast_enabled("meta") is False
        assert torch.get_autocast_dtype("meta") == torch.get_autocast_dtype("cpu")
        assert torch.is_autocast_enabled() is False


def test_is_cuda_is_true_on_the_fake_accelerator():
    """flash-attn's fused cross-entropy asserts input.is_cuda; model code branches on it."""
    with fake_accelerator.fake_node(1):
        assert torch.ones(2).cuda().is_cuda and not torch.ones(2).is_cuda
    assert not torch.ones(2, device="meta").is_cuda


def test_lightning_meta_parameter_checks_say_none():
    """Fabric.setup_optimizers refuses an optimizer holding meta parameters: on the fake node every
    parameter is on meta, standing for the accelerator's."""
    import types

    from ascend_tools.opcheck import lightning_fake, script_child

    module = types.SimpleNamespace(_has_meta_device_parameters_or_buffers=lambda obj: True)
    lightning_fake._patch(module)
    assert module._has_meta_device_parameters_or_buffers(torch.nn.Linear(1, 1)) is False
    assert script_child.OFFLINE["WANDB_MODE"] == "disabled"  # wandb's login would stop TinyLlama's run


def test_the_fake_node_is_a_cuda_build():
    """CPU-only torch says torch.version.cuda is None: transformers' TrainingArguments(tf32=True) then
    raises ('--tf32 requires Ampere or a newer GPU arch, cuda>=11'), as LongLoRA's and Alpaca's commands
    pass it, and pytorch/examples' FSDP T5 gates bf16 on it. The fake node is a CUDA build while active."""
    from transformers.utils import is_torch_tf32_available  # what TrainingArguments(tf32=True) asks

    # cached (lru_cache) in transformers 5, a plain function in 4.x
    clear_cache = getattr(is_torch_tf32_available, "cache_clear", lambda: None)

    original = torch.version.cuda
    clear_cache()
    try:
        with fake_accelerator.fake_node(1):
            assert torch.version.cuda == fake_accelerator.cuda_version()
            assert is_torch_tf32_available()
    finally:
        clear_cache()
    assert torch.version.cuda == original


def test_the_fake_cuda_version_matches_a_cuda_built_torchvision(tmp_path, monkeypatch):
    """A CUDA-built torchvision (PyPI's default, 0.28.0+cu130) beside CPU torch refuses to import when
    torch.version.cuda names another major version: the node answers torchvision's."""
    import importlib.machinery

    (tmp_path / "version.py").write_text("__version__ = '0.28.0+cu130'\n")
    spec = importlib.machinery.ModuleSpec("torchvision", None, is_package=True)
    spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: spec if name == "torchvision" else None)
    assert fake_accelerator.cuda_version() == "13.0"
    (tmp_path / "version.py").write_text("__version__ = '0.28.0'\n")
    assert fake_accelerator.cuda_version() == fake_accelerator.CUDA_VERSION
    monkeypatch.setattr(torch.version, "cuda", "12.8")  # a CUDA torch keeps its own
    assert fake_accelerator.cuda_version() == "12.8"


class _MergedLinear(torch.nn.Linear):
    """loralib's MergedLinear in miniature: a boolean mask over the output features, built from the weight
    in the constructor, picks the columns the adapter writes."""

    def __init__(self) -> None:
        super().__init__(4, 6)
        self.lora_ind = self.weight.new_zeros((2, 3), dtype=torch.bool)
        self.lora_ind[0, :] = True
        self.lora_ind = self.lora_ind.view(-1)
        self.adapter = torch.nn.Linear(4, 3, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = x.new_zeros((x.shape[0], 6))
        extra[:, self.lora_ind] = self.adapter(x)
        return super().forward(x) + extra


def test_an_index_mask_built_in_a_constructor_keeps_its_values():
    """On the user's node the weight is on the host in the constructor, so the mask has values; built from
    a meta weight it would have none, and x[mask] no size (torch.nonzero's meta kernel refuses)."""
    with fake_accelerator.fake_node(1):
        layer = _MergedLinear().cuda()
        assert layer.lora_ind.device.type == "cpu"
        assert layer.lora_ind.tolist() == [True] * 3 + [False] * 3
        layer(torch.ones(2, 4).cuda()).sum().backward()
        assert layer.adapter.weight.grad.shape == (3, 4)
        assert layer.weight.new_zeros(3, dtype=torch.long).device.type != "cpu"  # outside a constructor


def test_the_fake_node_has_nccl_for_bf16_gates():
    """pytorch/examples' FSDP T5 trains in bf16 only when ``dist.is_nccl_available()`` and
    ``torch.cuda.nccl.version() >= (2, 10)``, as on a CUDA node (CPU-only torch: False, and no version)."""
    import torch.cuda.nccl as nccl
    import torch.distributed as dist

    before = dist.is_nccl_available()
    with fake_accelerator.fake_node():
        assert dist.is_nccl_available()
        assert nccl.version() >= (2, 10)
    assert dist.is_nccl_available() == before
