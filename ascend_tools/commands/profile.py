"""``ascend-doctor profile``: run a (distributed) training command with the profiler on, without changing its code."""

import math
import os
import secrets
import shutil
import sys
from typing import Any, Dict, List, Optional, Tuple

import click

from .. import boundedio
from ..errors import InputError
from .common import debug_enabled, handle_errors


@click.command(
    "profile",
    short_help="Run a (torchrun) training command with the profiler on in every rank.",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Directory to write the profile to (rank{r}/..., see docs/profile-format.md).",
)
@click.option("--no-comm", is_flag=True, help="Do not time collectives.")
@click.option("--no-memory", is_flag=True, help="Do not sample memory (and write no OOM forensics).")
@click.option(
    "--hang-timeout",
    type=float,
    default=300.0,
    show_default=True,
    help="Seconds a collective may stay incomplete before every rank dumps its stacks; 0 = no watchdog.",
)
@click.option(
    "--memory-interval", type=float, default=0.5, show_default=True, help="Seconds between memory samples."
)
@click.option("--native", is_flag=True, help="py-spy stacks with native (C/C++) frames in hang dumps.")
@click.option(
    "--kill-on-hang", is_flag=True, help="After the hang dumps, terminate the hung rank (default: leave it)."
)
@click.option("--no-stack", is_flag=True, help="Do not keep the caller stack of each collective.")
@click.option(
    "--append",
    is_flag=True,
    help="Add this run's ranks to a profile already in DIR (other nodes' ranks); a rank already there is "
    "not written again (default: refuse such a DIR, so runs never mix).",
)
@click.option(
    "--always-on",
    is_flag=True,
    help="Bounded disk for runs of days (<= 45 MiB per rank): one aggregate record per window and the last "
    "full records dumped around an anomaly (slow window, hang, OOM) instead of every record.",
)
@click.option(
    "--window",
    "window_s",
    type=float,
    default=60.0,
    show_default=True,
    help="With --always-on: seconds per window (closed at the first step end after that).",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@handle_errors
def profile_cmd(
    out_dir: str,
    no_comm: bool,
    no_memory: bool,
    hang_timeout: float,
    memory_interval: float,
    native: bool,
    kill_on_hang: bool,
    no_stack: bool,
    append: bool,
    always_on: bool,
    window_s: float,
    command: tuple,
) -> None:
    """Run COMMAND (e.g. -- torchrun --nproc-per-node 8 train.py ARGS) with the profiler on in every rank.

    Each rank writes DIR/rank{r}; read them all with `ascend-doctor analyze DIR`. The exit status is COMMAND's
    own; when it failed, the first line on stderr says so."""
    from .. import launch, outdir

    if not hang_timeout >= 0 or math.isinf(hang_timeout):  # NaN too: a watchdog that never fires
        raise InputError(f"--hang-timeout: must be 0 (off) or a number of seconds, not {hang_timeout}")
    if not memory_interval > 0 or math.isinf(memory_interval):
        raise InputError(f"--memory-interval: must be a positive number of seconds, not {memory_interval}")
    if not window_s > 0 or math.isinf(window_s):
        raise InputError(f"--window: must be a positive number of seconds, not {window_s}")
    options: Dict[str, Any] = {
        "comm": not no_comm,
        "memory": not no_memory,
        "hang_timeout": hang_timeout or None,
        "memory_interval": memory_interval,
        "native": native,
        "kill_on_hang": kill_on_hang,
        "stack": not no_stack,
        "always_on": always_on,
        "window_s": window_s,
        "debug": debug_enabled(),
    }
    run_id = options["run_id"] = secrets.token_hex(4)  # in every rank's meta.json: which run wrote it
    if not command or shutil.which(command[0]) is None:
        launch.run("profile", list(command), out_dir, options)  # the one-line error, before DIR is made
    with outdir.lock_run(out_dir, "profile", shared=append):  # appenders (nodes) may run together
        held = _rank_dirs(out_dir)
        if held and not append:
            names = ", ".join(f"rank{r}" for r, _ in held)
            raise InputError(
                f"{out_dir} already holds a profile ({names}): give another -o DIR or delete it first, "
                "so that two runs are never mixed"
            )
        if held:
            click.echo(
                f"ascend-doctor profile: appending run {run_id} to {out_dir}: {_runs(held)} "
                "already there (a rank already there is not written again)",
                err=True,
            )
        rc = launch.run("profile", list(command), out_dir, options)
    ranks = _summary(out_dir, run_id if append else None)
    trained = any(far for _, far in ranks)
    if rc:
        before = (
            "; what the ranks wrote before that:"
            if trained
            else " before its first training step ended"
            if ranks
            else " before any rank wrote a profile"
        )
        click.echo(f"ascend-doctor profile: {launch.failed(rc)}{before}", err=True)
    elif not ranks and append:
        click.echo(
            f"ascend-doctor profile: run {run_id} wrote no rank to {out_dir} (were its ranks already "
            "there? did the command run PyTorch?)",
            err=True,
        )
    elif not ranks:
        click.echo(
            f"ascend-doctor profile: no rank wrote to {out_dir} (did the command run PyTorch?)", err=True
        )
    for line, _ in ranks:
        click.echo(f"ascend-doctor profile: {line}", err=True)
    if trained or (ranks and not rc):
        what = "where each rank stopped" if rc else "next"
        click.echo(f"ascend-doctor profile: {what}: ascend-doctor analyze {out_dir}", err=True)
    sys.exit(rc)


def _rank_dirs(out_dir: str) -> list:
    """``(rank, path)`` of each rank directory under ``out_dir`` (none, or no such directory: empty)."""
    from ..profiling.analyze.reader import rank_dirs

    try:
        return rank_dirs(out_dir)
    except InputError:
        return []


def _runs(held: List[Tuple[int, str]]) -> str:
    """``rank0-7 of run 1a2b3c4d, rank8 of a run without id`` for the rank directories ``held``."""
    from ..outdir import ranges

    by_run: Dict[str, List[int]] = {}
    for rank, rdir in held:
        run_id = (_read_meta(os.path.join(rdir, "meta.json")) or {}).get("run_id")
        by_run.setdefault(f"run {run_id}" if isinstance(run_id, str) else "a run without id", []).append(rank)
    return ", ".join(f"rank{ranges(ranks)} of {run}" for run, ranks in by_run.items())


def _summary(out_dir: str, run_id: Optional[str] = None) -> List[Tuple[str, bool]]:
    """Per rank directory under ``out_dir`` (written by run ``run_id`` when given): its line, and whether it
    got as far as training (a step done, cut short while running, or hang / OOM forensics written)."""
    out = []
    for rank, rdir in _rank_dirs(out_dir):
        meta = _read_meta(os.path.join(rdir, "meta.json")) or {}
        if run_id is not None and meta.get("run_id") != run_id:
            continue
        closed = "closed_at" in meta
        steps = meta.get("steps", 0) if closed else 0
        kept = f"{meta['windows']} windows" if "windows" in meta else f"{meta.get('records', 0)} records"
        state = f"{kept}, {steps} steps" if closed else "cut short"
        if meta.get("dumps"):
            state += f", {len(meta['dumps'])} anomaly dump(s) in ring/"
        extra = [x for x in ("hang", "oom.json") if os.path.exists(os.path.join(rdir, x))]
        line = f"rank{rank}: {state}" + (f" ({', '.join(extra)} written)" if extra else "")
        out.append((line, bool(steps or not closed or extra)))
    return out


def _read_meta(path: str) -> Optional[dict]:
    try:
        with open(path, "rb") as f:
            meta = boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None
