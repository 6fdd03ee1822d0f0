"""``ascend-doctor dump``: run a training command with precision capture on, without changing its code."""

import shutil
import sys
from typing import Any, Tuple

import click

from ..errors import InputError
from .common import debug_enabled, handle_errors


@click.command(
    "dump",
    short_help="Run a training command with precision capture on (no code change).",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Directory to write the dump to (rank{r}/step{n}/..., see docs/dump-format.md).",
)
@click.option(
    "--level",
    type=click.Choice(["op", "module", "mix"]),
    default="op",
    show_default=True,
    help="op: every aten op (forward and backward); module: nn.Module inputs/outputs and gradients; mix: both.",
)
@click.option(
    "--mode",
    type=click.Choice(["stats", "tensor", "hash"]),
    default="stats",
    show_default=True,
    help="stats: max/min/mean/norm/NaN/Inf/saturated per tensor; tensor: also every tensor as .npy; "
    "hash: also a bitwise digest per tensor.",
)
@click.option(
    "--steps",
    default=None,
    help="Steps to record, e.g. 0,2-4 (steps count optimizer.step() calls) [default: all].",
)
@click.option(
    "--scope",
    multiple=True,
    help="Record only inside modules whose path starts with (or matches the regex) PREFIX. Repeatable.",
)
@click.option("--ops", "ops", multiple=True, help="Record only these ops (aten::mm, mm, matmul). Repeatable.")
@click.option("--sample", default=1, type=int, show_default=True, help="Keep every N-th call of each op.")
@click.option("--no-stack", is_flag=True, help="Do not keep the Python stack of each record (faster).")
@click.option(
    "--append",
    is_flag=True,
    help="Add this run's records to a dump already in DIR (default: refuse such a DIR, so runs never mix).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def dump_cmd(
    out_dir: str,
    level: str,
    mode: str,
    steps: Any,
    scope: Tuple[str, ...],
    ops: Tuple[str, ...],
    sample: int,
    no_stack: bool,
    append: bool,
    command: Tuple[str, ...],
) -> None:
    """Run COMMAND (e.g. -- python train.py ARGS) with capture switched on in its Python processes.

    Works for python script.py, python -m module and torchrun (each rank writes rank{RANK}).
    DIR belongs to this run while it runs (a second run into it is refused); a DIR that already holds a
    dump is refused too, unless --append. The exit status is COMMAND's own; when it failed, the first line on stderr says so."""

    from .. import launch, outdir
    from ..precision import options as precision_options

    step_list = precision_options.check_options(steps, sample, scope)
    if append and mode == "tensor":
        # a run's .npy files are named by record id, and every run numbers its records from 0
        raise InputError(
            "--append --mode tensor: the second run's tensors would overwrite the first's; use another -o DIR"
        )
    options = {
        "level": level,
        "mode": mode,
        "steps": step_list,
        "scope": list(scope),
        "ops": list(ops),
        "sample": sample,
        "stack": not no_stack,
        "debug": debug_enabled(),
    }
    if not command or shutil.which(command[0]) is None:
        launch.run("dump", list(command), out_dir, options)  # the one-line error, before DIR is made
    with outdir.lock_run(out_dir, "dump"):
        there = precision_options.existing(out_dir)
        if there and not append:
            raise InputError(
                f"{out_dir} already holds a dump ({there}): give another -o DIR, delete it, "
                "or --append to add this run's records to it"
            )
        if there:
            click.echo(f"ascend-doctor dump: appending to {out_dir}: {there} already there", err=True)
        rc = launch.run("dump", list(command), out_dir, options)
    ranks = [r for r in precision_options.summary(out_dir) if sum(r["steps"].values())]
    if rc:
        before = f"; what it recorded before that is in {out_dir}" if ranks else " before any op was recorded"
        click.echo(f"ascend-doctor dump: {launch.failed(rc)}{before}", err=True)
    elif not ranks:
        click.echo(f"ascend-doctor dump: no records in {out_dir} (did the command run PyTorch?)", err=True)
    for r in ranks:
        steps_text = ", ".join(f"step{s}: {n}" for s, n in sorted(r["steps"].items())) or "no steps"
        total = sum(r["steps"].values())
        click.echo(
            f"ascend-doctor dump: rank {r['rank']}: {total} records in {len(r['steps'])} steps "
            f"({steps_text}) -> {r['path']}",
            err=True,
        )
    compiled = [r for r in ranks if r["compiles"]]
    if compiled:
        click.echo(
            f"ascend-doctor dump: torch.compile was called in {len(compiled)} rank(s) while the capture was on: "
            "torch does not compile under a dispatch mode, so the records are of the eager ops, not of "
            "inductor's kernels",
            err=True,
        )
    sys.exit(rc)
