"""``ascend-doctor analyze DIR``: merge every rank of a profile and answer the questions (docs/analyze.md).

One analysis per module, each a function from the merged data to tables (in the spirit of HTA's
analyzers)::

    reader.read_profile ─► instances.group_instances ─► clocks.fit/align ─► skew.measure
        ─► compute_gaps.blocked ─► collectives.tables, p2p.matrix, steps.breakdown, slow_rank.find,
        hangs.find, memory.summarize
        ─► report.build (a Report) and, on request, chrome_trace.write_trace
"""

from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from ...report import Report
from . import (
    aggregates,
    clocks,
    collectives,
    compute_gaps,
    hangs,
    memory,
    p2p,
    pages,
    report,
    slow_rank,
    steps,
    window_slow_rank,
)
from .instances import by_group_rank_seq, group_instances
from .model import Profile
from .reader import Progress, read_profile
from .skew import Skew, measure
from .slow_rank import SlowRankRule

__all__ = ["Analysis", "SlowRankRule", "analyze", "run"]


@dataclass
class Analysis:
    """Everything ``analyze`` computed; ``profile`` times are on the reference rank's clock."""

    profile: Profile
    clock: clocks.ClockFit
    skew: Skew
    steps: steps.StepTable
    slow: Dict[str, Any]
    hangs: List[Dict[str, Any]]
    positions: Dict[int, Dict[str, Any]]
    collectives: List[Dict[str, Any]]
    collectives_by_group: List[Dict[str, Any]]
    p2p: List[Dict[str, Any]]
    memory: Dict[str, Any]


@pages.small_pages()
def run(
    path: str, progress: Optional[Progress] = None, rule: Optional[SlowRankRule] = None, jobs: int = 1
) -> Analysis:
    """Read ``path`` (``progress(done, total)`` after each rank, ``jobs`` worker processes) and run every
    analysis; ``rule`` defaults to ``SlowRankRule()``."""
    profile = read_profile(path, progress, jobs)
    order = by_group_rank_seq(profile)
    instances = group_instances(profile, order)
    clock = clocks.fit(profile, instances)
    clocks.align(profile, clock)
    skew = measure(profile, instances)
    block = compute_gaps.blocked(profile, skew)
    table = steps.breakdown(profile, skew, block)
    by_op, by_group = collectives.tables(profile, skew)
    return Analysis(
        profile=profile,
        clock=clock,
        skew=skew,
        steps=table,
        # always-on windows cover the whole run, the full records only its anomaly dumps
        slow=window_slow_rank.find(profile, rule or SlowRankRule())
        or slow_rank.find(
            profile, skew, table, rule or SlowRankRule(), compute_gaps.gaps(profile, block, order), order
        ),
        hangs=hangs.find(profile),
        positions=hangs.positions(profile),
        collectives=by_op,
        collectives_by_group=by_group,
        p2p=p2p.matrix(profile),
        memory=memory.summarize(
            {r: i.memory for r, i in profile.ranks.items()},
            {r: i.oom for r, i in profile.ranks.items() if i.oom is not None},
        ),
    )


def analyze(
    path: str,
    progress: Optional[Progress] = None,
    rule: Optional[SlowRankRule] = None,
    trace: Optional[str] = None,
    jobs: int = 1,
) -> Report:
    """The ``ascend-doctor/analyze/1`` report of the profile at ``path``; with ``trace``, also write a
    Chrome/Perfetto trace there."""
    result = run(path, progress, rule, jobs)
    if trace is not None:
        from ..chrome_trace import write_trace

        write_trace(result, trace)
    built = report.build(result, trace)
    aggregates.add_section(built, result.profile)  # always-on windows, when the profile has any
    return built
