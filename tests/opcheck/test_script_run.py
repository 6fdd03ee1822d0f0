"""``check-ops -- LAUNCH COMMAND``: the user's script runs unchanged (real subprocesses of the CLI).

The scripts in tests/data/scripts import flash_attn, bitsandbytes and apex unconditionally (none is
installed here), build the model in main() from argparse, branch on torch.cuda.is_available(), call
.cuda(), and one runs DDP under torchrun with an nccl process group. Expectations come from the scripts
themselves: the ops their step must issue (the backward kernels of the layers they use, the update ops
of the optimizer they build), the lines that use each CUDA-only package, their own exit status.
"""

import json
import os
import subprocess
import sys

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "scripts")


def check_ops(tmp_path, *command, fail_on="error"):
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ascend_tools.cli",
            "check-ops",
            "--torch-npu-version",
            "2.14",
            "--fail-on",
            fail_on,
            "-f",
            "json",
            "-o",
            str(out),
            "--",
            *command,
        ],
        cwd=SCRIPTS,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.read_text()) if out.exists() else None
    return proc, report


def ops_of(report):
    return {r["op"]: r for r in report["ops"]}


def at(report, rule):
    return {(f["file"], f["line"]) for f in report["source_findings"] if f["rule"] == rule}


def test_plain_loop_with_cuda_only_packages(tmp_path):
    proc, report = check_ops(tmp_path, "python", "train_flash.py", "--layers", "3", "--dim", "32")
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = ops_of(report)
    # backward kernels of the layers the script uses, AdamW8bit's stand-in update (torch AdamW, foreach
    # off on meta: lerp_/addcmul_/addcdiv_), and flash_attn_func's reference (SDPA)
    for op in (
        "aten::embedding_dense_backward",
        "aten::native_layer_norm_backward",
        "aten::nll_loss_backward",
    ):
        assert "backward" in ops[op]["phases"], op
    for op in (
        "aten::_foreach_lerp_.Scalar",
        "aten::_foreach_addcmul_.Scalar",
        "aten::_foreach_addcdiv_.ScalarList",
    ):
        assert ops[op]["phases"] == ["optimizer"], (
            op
        )  # AdamW's foreach kernels, torch's default on CUDA and NPU
    assert "aten::scaled_dot_product_attention" in ops
    # the script's own argv reached it: --layers 3 built three blocks
    assert "blocks.[0-2]" in ", ".join(ops["aten::native_layer_norm"]["modules"])
    assert ("train_flash.py", 25) in at(report, "lib-flash-attn")  # flash_attn_func(...)
    assert {("train_flash.py", 20), ("train_flash.py", 53)} <= at(report, "lib-bitsandbytes")
    assert ("train_flash.py", 18) in at(report, "lib-apex")
    assert proc.returncode == 1  # the CUDA-only packages are errors


def test_exit_in_user_code_keeps_the_scan_and_fails(tmp_path):
    proc, report = check_ops(tmp_path, "python", "train_flash.py", "--exit-early")
    assert report is not None, proc.stderr
    stopped = report["trace"]["stopped"]
    assert not report["trace"]["complete"]
    assert "exited with status 3 at train_flash.py:55" in stopped and "only 0 ops seen" in stopped
    assert at(report, "lib-flash-attn")  # the static scan is kept
    assert proc.returncode == 1


def test_incomplete_trace_fails_even_without_other_errors(tmp_path):
    (tmp_path / "eval_only.py").write_text(
        "import torch\nmodel = torch.nn.Linear(4, 4).cuda()\nprint(model(torch.ones(2, 4).cuda()).sum())\n"
    )
    proc, report = check_ops(tmp_path, "python", str(tmp_path / "eval_only.py"))
    assert "ended without calling optimizer.step()" in report["trace"]["stopped"]
    assert report["summary"]["worst_severity"] == "error"  # the trace-incomplete finding: nothing else is
    assert proc.returncode == 1


def test_torchrun_ddp_with_nccl(tmp_path):
    proc, report = check_ops(tmp_path, "torchrun", "--nproc_per_node", "2", "train_ddp.py")
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = ops_of(report)
    assert ops["c10d::allreduce_"]["phases"] == ["backward"]  # DDP's gradient all-reduce
    assert "backward" in ops["aten::gelu_backward"]["phases"]
    assert ops["aten::_foreach_add_.List"]["phases"] == ["optimizer"]  # SGD with momentum's update, foreach


def test_bad_launch_command_is_one_line(tmp_path):
    proc, report = check_ops(tmp_path, "bash", "run.sh")
    assert proc.returncode == 2 and report is None
    assert proc.stderr.strip().count("\n") == 0 and "unknown launcher" in proc.stderr


def test_missing_script_is_bad_input(tmp_path):
    proc, report = check_ops(tmp_path, "python", "missing.py")
    assert proc.returncode == 2 and report is None
    assert proc.stderr.strip() == "ascend-doctor: error: missing.py: no such file"


def test_missing_module_is_bad_input(tmp_path):
    proc, report = check_ops(tmp_path, "python", "-m", "no_such_pkg.train")
    assert proc.returncode == 2 and report is None
    assert "error: -m no_such_pkg.train: no such module" in proc.stderr and proc.stderr.count("\n") == 1


def test_model_file_form_with_incomplete_trace_fails(tmp_path):
    """The old form: a model whose forward stops after its first op gave exit 0 under --fail-on error."""
    model = tmp_path / "stops.py"
    model.write_text(
        "import torch\n\n\nclass Stops(torch.nn.Module):\n"
        "    def forward(self, x):\n        y = x * 2\n        raise RuntimeError('no further')\n\n\n"
        "def build_model():\n    return Stops()\n\n\ndef example_inputs():\n    return (torch.ones(2, 2),)\n"
    )
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_tools.cli", "check-ops", str(model), "-f", "json", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(out.read_text())
    assert report["trace"]["stopped"].startswith("trace stopped at aten::mul.Tensor")
    assert report["summary"]["worst_severity"] == "error"
    assert proc.returncode == 1


def test_hf_from_pretrained_of_a_local_config_and_fused_adamw(tmp_path):
    """from_pretrained of a directory holding only config.json builds the model (no weights here);
    device_map="cuda" and AdamW(fused=True) take the accelerator path."""
    proc, report = check_ops(tmp_path, "python", "train_hf.py", "--seq", "16")
    assert report is not None, proc.stderr
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = ops_of(report)
    assert ops["aten::_fused_adamw_"]["dtypes"] == ["bfloat16", "float32"]  # bf16 params, fp32 step
    assert "backward" in ops["aten::silu_backward"]["phases"]  # the Llama MLP's backward
    assert "aten::scaled_dot_product_attention" in ops


def test_from_pretrained_without_a_config_offline_is_one_line(tmp_path):
    proc, report = check_ops(tmp_path, "python", "train_hf.py", "--model", "no-such-org/no-such-model")
    assert proc.returncode == 2 and report is None
    assert "from_pretrained('no-such-org/no-such-model'): no config reachable offline" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_other_launchers_run_the_script_with_their_world(tmp_path):
    """accelerate launch and deepspeed are not run themselves: the script is, with the environment they set."""
    for command in (
        ("accelerate", "launch", "--multi_gpu", "--num_processes", "4", "train_ddp.py"),
        ("deepspeed", "--num_gpus", "2", "train_ddp.py"),
    ):
        proc, report = check_ops(tmp_path, *command)
        assert report is not None, proc.stderr
        assert report["trace"]["complete"], report["trace"]["stopped"]
        assert "c10d::allreduce_" in ops_of(report)
