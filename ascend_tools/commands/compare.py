"""``ascend-doctor compare``: two dumps (ours or msprobe's), every pair measured, the culprit named."""

import contextlib
import os
import sys
from typing import TYPE_CHECKING, Any, Optional

import click

from .common import all_rows_option, emit, exit_code, fail_on_option, handle_errors, report_output

if TYPE_CHECKING:
    from ..precision.store import OurDump


@click.command("compare")
@click.argument("target", type=str)
@click.argument("reference", type=str)
@click.option(
    "--step", type=click.IntRange(min=0), default=None, help="Step to compare [default: the first in both]."
)
@click.option(
    "--rank", type=click.IntRange(min=0), default=None, help="Rank to compare [default: the lowest]."
)
@click.option(
    "--replay",
    "replay",
    type=click.Choice(["auto", "all", "none"]),
    default="auto",
    show_default=True,
    help="Which ops off the reference are replayed in float64 on the target's inputs: those whose error their "
    "inputs' error does not explain (auto), all, or none (rank by error amplification only).",
)
@click.option("--no-replay", is_flag=True, help="Same as --replay none.")
@click.option(
    "--stats-only", is_flag=True, help="Compare statistics only, even where the dumps hold tensors (faster)."
)
@click.option("--top", type=click.IntRange(min=1), default=10, show_default=True, help="Culprits listed.")
@fail_on_option
@report_output(extra_formats=("csv",), format_help="Report format (csv: the per-pair table).")
@all_rows_option
@handle_errors
def compare_cmd(
    target: str,
    reference: str,
    step: Optional[int],
    rank: Optional[int],
    replay: str,
    no_replay: bool,
    stats_only: bool,
    top: int,
    fail_on: str,
    fmt: str,
    output: Any,
    all_rows: bool,
) -> None:
    """Compare TARGET (the run under suspicion, e.g. the NPU dump) with REFERENCE (the GPU/CPU or fp32 dump).

    Either is an ascend-doctor dump directory (ascend-doctor dump / capture()) or an msprobe dump
    (a directory holding dump.json). Pairs records, measures each with dtype-aware metrics, and ranks the
    ops that introduced error: replayed in float64 on the target's own inputs when the dump holds tensors,
    by error amplification when it holds statistics only.
    """
    from ..precision import pairpool, replay_pool

    if no_replay:
        replay = "none"
    replayer = None
    dump = None if replay == "none" or stats_only else _ours(target, rank)
    if dump is not None:
        replayer = replay_pool.ReplayProcesses(
            pairpool.default_workers() if replay == "all" else 1,
            start=_tensor_bytes(dump.path, EAGER_REPLAY_BYTES) >= EAGER_REPLAY_BYTES,
        )
    from ..precision import compare, heap

    heap.retain_freed_memory()  # this process only: thousands of same-sized float64 buffers, reused
    with replayer or contextlib.nullcontext():
        report = compare.compare_dumps(
            target,
            reference,
            rank=rank,
            step=step,
            replay=replay,
            top=top,
            progress=sys.stderr.isatty(),
            stats_only=stats_only,
            replayer=replayer,
        )
    with heap.collector_paused():  # (a report of every pair: ~100 objects a row)
        emit(report, fmt, output, text=compare.to_csv(report) if fmt == "csv" else None, all_rows=all_rows)
    sys.exit(exit_code(report, fail_on))


def _ours(target: str, rank: Optional[int]) -> Optional["OurDump"]:
    """TARGET's rank when it is our dump, whose tensors a replay process reads from their files, else None.
    msprobe's are read here, with torch (``.pt`` files), and the rare replayable record among them is replayed
    here too: a replay process would spend a second of CPU importing torch for nothing."""
    from ..errors import InputError
    from ..precision import store

    try:
        return store.OurDump.find(target, rank)
    except (InputError, OSError):
        return None  # compare_dumps names the problem


#: a target whose tensor files hold this much starts its replay process at once: its ``import torch`` (1-3 s of
#: CPU) then runs while the pairs are measured. A smaller one is measured in a few tenths of a second, and the
#: process is started only when the first replay is known: that costs at most those tenths, and saves the import
#: where nothing needs a replay (a clean run, a dump compared with itself)
EAGER_REPLAY_BYTES = 128 << 20


def _tensor_bytes(rank_dir: str, enough: int) -> int:
    """The bytes of the files under ``rank_dir`` (links not followed), counted until ``enough``."""
    total = 0
    for root, _dirs, files in os.walk(rank_dir):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
            if total >= enough:
                return total
    return total
