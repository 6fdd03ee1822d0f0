"""check-ops on pytorch/examples' FSDP2 script as it is (``tests/data/profiling/pytorch_examples_fsdp2``, byte for
byte; PROVENANCE.md there), run after ``--`` under ``torchrun`` on the fake CUDA node.

The script builds its model on the meta device, shards it with ``fully_shard`` and calls ``reset_parameters()``
on the sharded model: random ops on DTensors. DTensor set up its RNG tracker from ``torch.cuda.get_rng_state()``
(which the fake node did not have: "module 'torch._C' has no attribute '_cuda_getDevice'"), then worked out each
op's output shape on fake ``cuda`` tensors, which abort on CPU-only torch ("PyTorch is not linked with support for
cuda devices"): the trace stopped before its first op. FSDP2's own ops (``fsdp::all_gather_copy_in``,
``fsdp::split_with_sizes_copy``, ``fsdp::chunk_cat``) were called CPU fallbacks; torch registers them for
PrivateUse1, which torch_npu's device is.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch.distributed.fsdp  # (registers the fsdp:: ops in this process: test 2 asks torch about them)

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SOURCE = os.path.join(ROOT, "tests", "data", "profiling", "pytorch_examples_fsdp2")
FSDP_OPS = ("all_gather_copy_in", "split_with_sizes_copy", "chunk_cat")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("fsdp2-check-ops") / "script"
    shutil.copytree(SOURCE, cwd)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            "check-ops",
            "-f",
            "json",
            "--fail-on",
            "never",
            "--",
            "torchrun",
            "--nproc_per_node",
            "2",
            "example.py",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_the_whole_training_step_is_traced(report):
    assert report["trace"]["complete"] and report["trace"]["stopped"] is None and report["trace"]["backward"]
    ops = {op["op"]: op for op in report["ops"]}
    assert {"aten::native_layer_norm", "aten::gelu", "aten::embedding"} <= set(ops)  # the script's model.py
    assert "backward" in ops["aten::native_layer_norm_backward"]["phases"]
    # Adam's update of the parameters, by the foreach kernels torch picks on CUDA and NPU
    assert {"aten::_foreach_addcdiv_.ScalarList", "aten::_foreach_lerp_.Scalar"} <= set(ops)


def test_fsdp_ops_torch_registers_for_privateuse1_are_npu(report):
    status = {op["op"]: op["status"] for op in report["ops"]}
    seen = [f"fsdp::{name}" for name in FSDP_OPS if f"fsdp::{name}" in status]
    assert seen  # the script's FSDP2 gathers and reduce-scatters went through them
    for op in seen:
        registered = torch._C._dispatch_has_kernel_for_dispatch_key(op, "PrivateUse1")
        assert (status[op] == "npu") == registered, op
