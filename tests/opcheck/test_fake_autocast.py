"""CUDA autocast emulated on the fake node's meta tensors (opcheck/fake_autocast.py, cuda_autocast_ops.py).

The expectation is real autocast: CPU autocast, run on real CPU tensors, for the ops whose CPU and CUDA
policies agree (linear/addmm/mm lower precision; mse_loss, nll_loss and cross-entropy's log_softmax in
float32), and the documented CUDA table for the ones where they differ (softmax, layer_norm: float32 on
CUDA, unlisted on the CPU)."""

import pytest
import torch
import torch.nn.functional as F
from test_script_run import check_ops, ops_of
from torch.utils._python_dispatch import TorchDispatchMode

from ascend_tools.dispatch import op_name
from ascend_tools.opcheck import fake_accelerator
from ascend_tools.opcheck.fake_autocast import fake_cuda_autocast


class OpDtypes(TorchDispatchMode):
    """(aten op, input dtypes) of every op, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        flat = [*args, *(kwargs or {}).values()]
        self.ops.append((op_name(func), tuple(str(a.dtype) for a in flat if isinstance(a, torch.Tensor))))
        return func(*args, **(kwargs or {}))


def step(device):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).to(device)
    x, target = torch.randn(3, 8).to(device), torch.randn(3, 4).to(device)
    labels = torch.tensor([0, 1, 3]).to(device)
    return model, x, target, labels


def loss_of(model, x, target, labels):
    out = model(x)
    return F.mse_loss(out, target) + F.cross_entropy(out, labels)


def traced(run):
    with OpDtypes() as rec:
        run()
    return rec.ops


def test_linear_and_losses_cast_as_real_autocast_does():
    cpu = step("cpu")

    def on_cpu():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = loss_of(*cpu)
        loss.backward()

    expected = traced(on_cpu)
    with fake_accelerator.fake_node(1):
        meta = step("cuda")

        def on_meta():
            with fake_cuda_autocast(), torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_of(*meta)
            loss.backward()

        got = traced(on_meta)
    assert ("aten::addmm", ("torch.bfloat16",) * 3) in got
    assert ("aten::mse_loss", ("torch.float32", "torch.float32")) in got
    assert got == expected  # forward and backward, op for op, casts included


def test_softmax_and_layer_norm_run_in_float32_and_enabled_false_restores_float32():
    """CUDA's fp32 list (softmax: fp32_set_opt_dtype, layer_norm: fp32), from autocast_mode.h."""
    with fake_accelerator.fake_node(1):
        lin, norm = torch.nn.Linear(8, 8).cuda(), torch.nn.LayerNorm(8).cuda()
        x = torch.ones(2, 8).cuda()

        def forward():
            with fake_cuda_autocast(), torch.autocast("cuda", dtype=torch.bfloat16):
                h = lin(x)
                probs, normed = h.softmax(-1), norm(h)
                with torch.autocast("cuda", enabled=False):
                    plain = lin(x)
            return h, probs, normed, plain

        ops = traced(forward)
        h, probs, normed, plain = forward()
    assert h.dtype == torch.bfloat16 and probs.dtype == normed.dtype == plain.dtype == torch.float32
    assert ("aten::_softmax", ("torch.float32",)) in ops  # bf16 input cast to fp32 first
    assert ops.count(("aten::addmm", ("torch.bfloat16",) * 3)) == 1
    assert ops.count(("aten::addmm", ("torch.float32",) * 3)) == 1  # the enabled=False region


@pytest.mark.parametrize(
    "region",
    [
        lambda: torch.amp.autocast(device_type="cuda"),
        lambda: torch.cuda.amp.autocast(),  # deprecated, still common; float16 by default
        lambda: torch.autocast("cuda", dtype=torch.float16),
    ],
)
def test_every_spelling_of_a_cuda_region_casts_to_float16(region):
    with fake_accelerator.fake_node(1), fake_cuda_autocast():
        lin = torch.nn.Linear(4, 4).cuda()
        with region():
            out = lin(torch.ones(1, 4).cuda())
    assert out.dtype == torch.float16


def test_outside_a_region_and_on_host_tensors_nothing_changes():
    with fake_accelerator.fake_node(1), fake_cuda_autocast():
        lin = torch.nn.Linear(4, 4)
        assert lin.cuda()(torch.ones(1, 4).cuda()).dtype == torch.float32
        with torch.autocast("cuda", dtype=torch.float16):
            host = torch.ones(2, 2) @ torch.ones(2, 2)  # CUDA autocast leaves CPU tensors alone
            assert host.dtype == torch.float32
            with pytest.raises(RuntimeError, match="unsafe to autocast"):
                F.binary_cross_entropy(torch.ones(2).cuda(), torch.ones(2).cuda())


SCRIPT = """
import torch

model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Softmax(-1)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
with torch.autocast("cuda", dtype=torch.bfloat16):
    loss = model(torch.ones(2, 8).cuda()).sum()
loss.backward()
opt.step()
"""


def test_the_report_rows_show_the_autocast_dtype(tmp_path):
    (tmp_path / "amp.py").write_text(SCRIPT)
    proc, report = check_ops(tmp_path, "python", str(tmp_path / "amp.py"))
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = ops_of(report)
    assert ops["aten::addmm"]["dtypes"] == ["bfloat16"]
    # torch_npu runs softmax.int itself: its row is the call, a bf16 input with dtype=float32
    assert ops["aten::softmax.int"]["dtypes"] == ["bfloat16"]
    assert ops["aten::_softmax_backward_data"]["dtypes"] == ["float32"]


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_checkpointed_block_recomputes_in_the_forwards_dtypes(reentrant):
    """Gradient checkpointing (Trainer's gradient_checkpointing, peft's SFT example) re-runs the forward in
    the backward under the forward's autocast state and checks the recomputed tensors' dtypes."""
    from torch.utils.checkpoint import checkpoint

    with fake_accelerator.fake_node(1), fake_cuda_autocast():
        lin = torch.nn.Linear(8, 8).cuda()
        x = torch.ones(2, 8).cuda().requires_grad_()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = checkpoint(lambda t: lin(t).softmax(-1), x, use_reentrant=reentrant)
        with OpDtypes() as rec:
            out.sum().backward()
    assert lin.weight.grad.dtype == torch.float32
    assert ("aten::addmm", ("torch.bfloat16",) * 3) in rec.ops  # the recomputation, in bf16
