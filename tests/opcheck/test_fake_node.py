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
        assert x.device.type == "meta" and x.shape == (2, 3)
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
        assert model(torch.ones(1, 3).to(device)).device.type == "meta"
    assert not torch.accelerator.is_available()


def test_data_parallel_runs_its_module_once():
    """nn.DataParallel(model).cuda() on 8 fake GPUs: the forward runs the module (one replica) instead of
    refusing parameters that are not on cuda:0."""
    with fake_accelerator.fake_node(8):
        model = torch.nn.DataParallel(torch.nn.Linear(3, 2)).cuda()
        out = model(torch.ones(4, 3).cuda())
    assert out.shape == (4, 2) and out.device.type == "meta"
