"""``ascend-doctor check-ops``: op support, CUDA-only code and fusion candidates, before having an NPU."""

import sys
from typing import Any

import click

from .common import debug_enabled, emit, exit_code, fail_on_option, handle_errors, output_options


@click.command("check-ops")
@click.argument("target", type=str)
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
    "--timeout",
    type=click.FloatRange(min=1),
    default=300,
    show_default=True,
    help="Seconds the model process may take to build and trace.",
)
@fail_on_option
@output_options
@handle_errors
def check_ops_cmd(
    target: str,
    entry: Any,
    torch_npu_version: Any,
    dtype: str,
    autocast: bool,
    batch: int,
    seq_len: int,
    no_backward: bool,
    scan_only: bool,
    no_scan: bool,
    timeout: float,
    fail_on: str,
    fmt: str,
    output: Any,
) -> None:
    """Which ops of TARGET have no NPU kernel, which code is CUDA-only, what could be fused.

    TARGET is a Python file that defines the model (build_model(), an nn.Module instance, or --entry),
    or a Hugging Face config.json / a directory holding one. The model is traced on the meta device:
    no weights are allocated and no device is needed.
    """
    from ..opcheck import checkops, support

    opts = checkops.Options(
        target=target,
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
    report = checkops.scan_only(opts) if scan_only else checkops.check_ops(opts)
    emit(report, fmt, output)
    sys.exit(exit_code(report, fail_on))
