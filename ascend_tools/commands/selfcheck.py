"""``ascend-doctor selfcheck``: every fused-op tier available here against the golden vectors."""

import sys
from typing import Any

import click

from .common import emit, exit_code, fail_on_option, handle_errors, output_options


@click.command("selfcheck")
@fail_on_option
@output_options
@handle_errors
def selfcheck_cmd(fail_on: str, fmt: str, output: Any) -> None:
    """Run every fused-op tier available here (reference, npu, triton, ascendc) on the golden vectors in
    fp32/fp16/bf16 and print the errors against the fp64 reference. A tier that fails is an error."""
    from .. import backend
    from ..ops import selfcheck

    report = selfcheck.build_report(selfcheck.run(backend.device()))
    emit(report, fmt, output)
    sys.exit(exit_code(report, fail_on))
