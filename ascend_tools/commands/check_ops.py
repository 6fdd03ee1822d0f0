"""``ascend-doctor check-ops``: op support, CUDA-only code and fusion candidates, before having an NPU."""

import sys
from typing import Any, Sequence

import click

from .common import (
    all_rows_option,
    debug_enabled,
    emit,
    exit_code,
    fail_on_option,
    handle_errors,
    output_options,
)


@click.command("check-ops")
@click.argument("target", type=str, nargs=-1)
@click.option("--entry", help="Name of the model object or factory function in TARGET (a .py file).")
@click.option(
    "--torch-npu-version",
    default=None,
    help="torch_npu release to judge against, e.g. 2.14 or 2.6.0 [default: newest in the table].",
)
@click.option(
    "--dtype",
    type=click.Choice(["fp32", "fp16", "bf16"]),
    default="fp32",
    show_default=True,
    help="Cast the model to this dtype before tracing.",
)
@click.option(
    "--autocast",
    is_flag=True,
    help="Trace under torch.autocast with --dtype (fp32 weights, bf16/fp16 compute), as AMP training runs.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Batch size of the generated inputs (Hugging Face configs).",
)
@click.option(
    "--seq-len",
    type=click.IntRange(min=1),
    default=128,
    show_default=True,
    help="Sequence length of the generated inputs (Hugging Face configs).",
)
@click.option("--no-backward", is_flag=True, help="Trace the forward pass only.")
@click.option(
    "--scan-only", is_flag=True, help="Only scan the source for CUDA-only code; do not run the model."
)
@click.option("--no-scan", is_flag=True, help="Do not scan the source for CUDA-only code.")
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="GPUs the fake node reports to a script run after '--' (torch.cuda.device_count()).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds the model process may take to build and trace.",
)
@fail_on_option
@output_options
@all_rows_option
@handle_errors
def check_ops_cmd(
    target: Any,
    entry: Any,
    torch_npu_version: Any,
    dtype: str,
    autocast: bool,
    batch: int,
    seq_len: int,
    no_backward: bool,
    scan_only: bool,
    no_scan: bool,
    devices: int,
    timeout: float,
    fail_on: str,
    fmt: str,
    output: Any,
    all_rows: bool,
) -> None:
    """Which ops of TARGET have no NPU kernel, which code is CUDA-only, what could be fused.

    TARGET is a Python file that defines the model (build_model(), an nn.Module instance, or --entry),
    or a Hugging Face config.json / a directory holding one. The model is traced on the meta device:
    no weights are allocated and no device is needed.

    \b
    Or a training script as it is launched, after '--':
      check-ops [options] -- python train.py ARGS
      (also python -m pkg.mod, torchrun, accelerate launch, deepspeed)

    The script runs unchanged in the
    current directory on a fake CUDA node, missing CUDA-only packages are stood in for, and one training
    step (forward, loss, backward, optimizer.step) is traced.
    """
    from ..opcheck import checkops, support

    if not target:
        raise click.UsageError("expected a TARGET, or a launch command after '--'")
    command = _launch_command(target)
    opts = checkops.Options(
        target=" ".join(target),
        entry=entry,
        torch_npu_version=torch_npu_version or support.DEFAULT_VERSION,
        batch=batch,
        seq_len=seq_len,
        dtype=dtype,
        autocast=autocast,
        backward=not no_backward,
        timeout=timeout,
        scan_source=not no_scan,
        debug=debug_enabled(),
    )
    if command is not None:
        from ..opcheck.check_script import check_script

        report = check_script(opts, command, devices, scan_only=scan_only)
    else:
        report = checkops.scan_only(opts) if scan_only else checkops.check_ops(opts)
    emit(report, fmt, output, all_rows=all_rows)
    sys.exit(exit_code(report, fail_on))


def _launch_command(target: Sequence[str]) -> Any:
    """The parsed launch command when TARGET is one (more than one word, or a launcher's name), else None."""
    from ..opcheck import launch_command

    if len(target) == 1 and not launch_command.is_launcher(target[0]):
        return None
    return launch_command.parse(target)
