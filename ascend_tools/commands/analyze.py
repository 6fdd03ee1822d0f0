"""``ascend-doctor analyze DIR``: merge a profile's ranks; collectives, slow ranks, hangs, memory."""

import os
import sys
from typing import Any, Optional

import click

from .common import all_rows_option, emit, exit_code, fail_on_option, handle_errors, output_options


@click.command("analyze")
@click.argument("directory", metavar="DIR", type=str)
@click.option(
    "--trace",
    "trace",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write a Chrome/Perfetto trace (one track per rank) to FILE.",
)
@click.option(
    "--min-share",
    type=click.FloatRange(min=0.0),
    default=0.03,
    show_default=True,
    help="Slow rank: least lateness or extra compute per step (or window), as a share of the median step.",
)
@click.option(
    "--max-p",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.001,
    show_default=True,
    help="Slow rank: largest one-sided t-test p-value over the steps (or windows).",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes reading the ranks (default: the number of CPUs).",
)
@fail_on_option
@output_options
@all_rows_option
@handle_errors
def analyze_cmd(
    directory: str,
    trace: Optional[str],
    min_share: float,
    max_p: float,
    jobs: Optional[int],
    fail_on: str,
    fmt: str,
    output: Any,
    all_rows: bool,
) -> None:
    """Analyse the profile in DIR (written by ascend-doctor profile): collectives by op and size with bus
    bandwidth, point-to-point traffic, per-rank step breakdown, slow ranks, hangs, memory per rank.
    Ranks are read in chunks by worker processes and kept as numpy columns (8,192 ranks × 2,000
    collectives: about 2 GB).

    Findings: a hang, an out-of-memory and a rank file that could not be read are errors; a slow rank and
    unaligned clocks are warnings."""
    from ..profiling.analyze import SlowRankRule, analyze

    bar = _Progress()
    try:
        report = analyze(
            directory,
            progress=bar.update if sys.stderr.isatty() else None,
            rule=SlowRankRule(min_share=min_share, max_p=max_p),
            trace=trace,
            jobs=jobs or os.cpu_count() or 1,
        )
    finally:
        bar.close()
    emit(report, fmt, output, all_rows=all_rows)
    sys.exit(exit_code(report, fail_on))


class _Progress:
    """A click progress bar on stderr, opened when the reader reports how many ranks there are."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._done = 0

    def update(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = click.progressbar(length=total, label="reading ranks", file=sys.stderr)
            self._bar.__enter__()
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
