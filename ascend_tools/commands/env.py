"""``ascend-doctor env``: versions, CANN, driver and the HCCL / allocator variables that are set."""

from typing import Any

import click

from .common import emit, handle_errors, output_options


@click.command("env")
@output_options
@handle_errors
def env_cmd(fmt: str, output: Any) -> None:
    """Versions of torch, torch_npu, CANN, driver and the HCCL / allocator variables that are set."""
    from .. import env

    emit(env.build_report(env.collect()), fmt, output)
