"""``ascend-doctor shadow``: run a training command with every op compared against a CPU float64 run of
the same op on its own inputs, without changing its code; report the ops that introduced error."""

import os
import shutil
import sys
import tempfile
from typing import Any, Optional, Tuple

import click

from ..errors import InputError
from .common import (
    all_rows_option,
    debug_enabled,
    emit,
    exit_code,
    fail_on_option,
    handle_errors,
    output_options,
)


@click.command(
    "shadow",
    short_help="Run a training command with every op also run on CPU in float64.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--ops", "ops", multiple=True, help="Compare only these ops (aten::mm, mm, matmul). Repeatable."
)
@click.option(
    "--scope",
    multiple=True,
    help="Compare only ops inside modules whose path starts with (or matches the regex) PREFIX. Repeatable.",
)
@click.option("--sample", default=1, type=int, show_default=True, help="Compare every N-th call of each op.")
@click.option(
    "--steps",
    default=None,
    help="Steps to compare, e.g. 0 or 0,2-4 (steps count optimizer.step() calls) [default: all].",
)
@click.option(
    "--max-numel",
    type=click.IntRange(min=1),
    default=None,
    help="Skip ops whose tensors hold more elements than this, but for a matrix product or a pointwise op, "
    "checked on a random block of --rows rows (and columns) of its output [default: 16777216].",
)
@click.option(
    "--rows",
    type=click.IntRange(min=0),
    default=None,
    help="Rows of a matrix product's or pointwise op's output checked per call, drawn at random (and columns, "
    "over --max-numel); 0: every row, and no block [default: 32].",
)
@click.option(
    "--check-process",
    type=click.Choice(["auto", "on", "off"]),
    default="auto",
    show_default=True,
    help="Run the checks in a process of their own, beside the training (auto: where this machine has two "
    "CPUs for it; started after the first step).",
)
@click.option(
    "--records",
    "records_dir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the per-rank records (JSON lines) in DIR [default: a temporary directory].",
)
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Culprits listed in the report."
)
@fail_on_option
@output_options
@all_rows_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def shadow_cmd(
    ops: Tuple[str, ...],
    scope: Tuple[str, ...],
    sample: int,
    steps: Optional[str],
    max_numel: Optional[int],
    rows: Optional[int],
    check_process: str,
    records_dir: Optional[str],
    top: int,
    fail_on: str,
    fmt: str,
    output: Any,
    all_rows: bool,
    command: Tuple[str, ...],
) -> None:
    """Run COMMAND (e.g. -- python train.py ARGS) with each op shadowed on CPU in float64.

    Every aten op (forward and backward) is run again on CPU in float64 on copies of the inputs it got,
    and its output compared at once: the report ranks the ops that introduced error themselves. Works
    for python script.py, python -m module and torchrun (every rank). An op that introduced an error is an
    error finding. Exit status: COMMAND's own when it failed (the report's headline says so first); else
    as for every verb (docs/cli.md).
    """

    from .. import launch, outdir
    from ..precision import options as precision_options
    from ..precision.shadow_session import build_report, read_results, written_ranks

    if not command:
        raise InputError("no command to run: give it after --, e.g. ascend-doctor shadow -- python train.py")
    step_list = precision_options.check_options(steps, sample, scope)
    options = {
        "ops": list(ops),
        "scope": list(scope),
        "sample": sample,
        "steps": step_list,
        "debug": debug_enabled(),
    }
    if max_numel is not None:
        options["max_numel"] = max_numel
    if rows is not None:
        options["rows"] = rows
    if check_process != "auto":
        options["process"] = check_process == "on"
    if shutil.which(command[0]) is None:
        launch.run(
            "shadow", list(command), records_dir or "", options
        )  # the one-line error, before DIR is made
    with tempfile.TemporaryDirectory(prefix="ascend-doctor-shadow-") as tmp:
        out_dir = records_dir or os.path.join(tmp, "records")
        with outdir.lock_run(out_dir, "shadow", option="--records DIR"):
            held = written_ranks(out_dir)
            if held:
                raise InputError(
                    f"{out_dir} already holds shadow records (rank {outdir.ranges(held)}): give another "
                    "--records DIR or delete it first, so that two runs are never mixed"
                )
            rc = launch.run("shadow", list(command), out_dir, options)
            records, metas = read_results(out_dir)
    report = build_report(records, metas, top=top, command=list(command), exit_status=rc)
    if report.headline:
        click.echo(f"ascend-doctor shadow: {report.headline}", err=True)
    emit(report, fmt, output, all_rows=all_rows)
    sys.exit(rc or exit_code(report, fail_on))
