"""``ascend-doctor selfcheck``: every fused-op tier available here against the golden vectors."""

import sys
from typing import Any

import click

from .common import handle_errors, output_options


@click.command("selfcheck")
@output_options
@handle_errors
def selfcheck_cmd(fmt: str, output: Any) -> None:
    """Run every fused-op tier available here (reference, npu, triton, ascendc) on the golden vectors in
    fp32/fp16/bf16 and print the errors against the fp64 reference. Exit 1 if a tier fails."""
    from .. import backend
    from ..ops import selfcheck
    from ..report import write_report

    data = selfcheck.run(backend.device())
    write_report(selfcheck.build_report(data), fmt, output)
    sys.exit(1 if data["failed"] else 0)
