"""The ``ascend-doctor/analyze/1`` Report: the JSON payload (docs/analyze.md) and the sections a person reads.

Tables that have one row per rank show every rank up to :data:`MAX_ROWS` and the most telling ones beyond
that (the payload always has them all).
"""

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import numpy as np

from ...report import Finding, Report, Section, Series, Severity, Table
from . import charts, memory
from .collectives import size_label
from .steps import per_rank

if TYPE_CHECKING:
    from . import Analysis

SCHEMA = "ascend-doctor/analyze/1"
MAX_ROWS = 32
MAX_PLOT_RANKS = 8


def ms(seconds: Optional[float]) -> Optional[float]:
    """Seconds → milliseconds, 3 significant digits, for table cells."""
    if seconds is None or not math.isfinite(seconds):
        return None
    return float(f"{seconds * 1e3:.3g}")


def gb(value: Optional[float]) -> Optional[float]:
    return None if value is None or not math.isfinite(value) else float(f"{value:.3g}")


def _rank_list(ranks: List[int], limit: int = 16) -> str:
    text = ", ".join(map(str, ranks[:limit]))
    return text + (f" … ({len(ranks)} ranks)" if len(ranks) > limit else "")


def build(a: "Analysis", trace: Optional[str] = None) -> Report:
    """``trace``: the Chrome/Perfetto trace written beside the report, named in the summary."""
    p = a.profile
    rank_rows = _rank_rows(a)
    data: Dict[str, Any] = {
        "path": p.path,
        "world_size": p.world_size,
        "summary": _summary_payload(a, rank_rows),
        "slow_ranks": a.slow["slow_ranks"],
        "suspects": a.slow["suspects"],
        "slow_rank_rule": a.slow["rule"],
        "slow_rank_groups": a.slow["groups"],
        "hangs": a.hangs,
        "collectives": a.collectives,
        "collectives_by_group": a.collectives_by_group,
        "p2p": a.p2p,
        "steps": {"median_step_s": a.steps.median_step(), "ranks": per_rank(a.steps)},
        "memory": a.memory,
        "clocks": {
            "reference": a.clock.reference,
            "unaligned": a.clock.unaligned,
            "residual_p50_s": a.clock.residual_p50,
            "residual_p99_s": a.clock.residual_p99,
        },
        "ranks": rank_rows,
        "problems": [
            {"severity": x.severity, "rank": x.rank, "where": x.where, "message": x.message}
            for x in p.problems
        ],
    }
    report = Report(schema=SCHEMA, title=f"analyze: {p.path}", data=data)
    _summary(report, a, data["summary"])
    if trace is not None:
        report.summary.append(("trace", f"{trace} (open it in https://ui.perfetto.dev or chrome://tracing)"))
    _hangs(report, a)
    _slow(report, a)
    _steps(report, a, data["steps"]["ranks"])
    _collectives(report, a)
    _p2p(report, a)
    _memory(report, a)
    _ranks(report, rank_rows)
    _problems(report, a)
    return report


# --- payload ------------------------------------------------------------------------------------


def _rank_rows(a: "Analysis") -> List[Dict[str, Any]]:
    p = a.profile
    colls = np.bincount(p.colls.rank, minlength=p.world_size)
    steps = np.bincount(p.steps.rank, minlength=p.world_size)
    # every hang resolved (see hangs.find): a rank that wrote a hang report and ended cleanly stalled
    stalls_only = all(h["completed_after_s"] is not None for h in a.hangs)
    rows = []
    for rank, info in p.ranks.items():
        pos = a.positions[rank]
        status = (
            "missing"
            if not info.present
            else ("stalled" if info.closed and stalls_only else "hang")
            if pos["inflight"] or pos["hang_trigger"]
            else "cut short"
            if pos["cut_short"]
            else "ok"
        )
        rows.append(
            {
                "rank": rank,
                "host": info.host if info.present else None,
                "pid": info.meta.get("pid"),
                "status": status,
                "closed": info.closed,
                "records": info.records,
                "collectives": int(colls[rank]),
                "steps": int(steps[rank]),
                "dropped": info.meta.get("dropped"),
                "clock_offset_s": float(a.clock.offsets[rank]) if rank < len(a.clock.offsets) else None,
                **pos,
                "hang_files": info.hang_files,
                "oom": info.oom is not None,
            }
        )
    return rows


def _summary_payload(a: "Analysis", rank_rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    by_status: Dict[str, int] = {}
    for row in rank_rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
    return {
        "ranks": len(rank_rows),
        "ranks_by_status": by_status,
        "cut_short": [r["rank"] for r in rank_rows if r["cut_short"]],
        "collective_records": len(a.profile.colls),
        "steps": len(np.unique(a.steps.step)),
        "median_step_s": a.steps.median_step(),
        "slow_ranks": [s["rank"] for s in a.slow["slow_ranks"]],
        "hangs": len(a.hangs),
        "ooms": len(a.memory["ooms"]),
        "problems": len(a.profile.problems),
    }


# --- sections -----------------------------------------------------------------------------------


def _steps_summary(a: "Analysis", s: Dict[str, Any]) -> str:
    """The step count with the steps it counts: the rows of the step tables are these (less the warm-up)."""
    if not s["steps"]:
        return "no step records"
    first, last = int(a.steps.step.min()), int(a.steps.step.max())
    span = f"step {first}" if first == last else f"steps {first}–{last}"
    return f"{s['steps']} ({span}), median {ms(s['median_step_s'])} ms"


def _summary(report: Report, a: "Analysis", s: Dict[str, Any]) -> None:
    status = ", ".join(f"{n} {k}" for k, n in sorted(s["ranks_by_status"].items()))
    report.summary = [
        ("ranks", f"{s['ranks']} ({status})"),
        ("collectives", f"{s['collective_records']} records in {len(a.profile.groups)} process group(s)"),
        ("steps", _steps_summary(a, s)),
        ("slow ranks", _slow_summary(a, s["slow_ranks"])),
        (
            "hangs",
            "; ".join(
                f"#{h['seq']} {h['op']} on group {h['group']}: missing rank(s) "
                f"{_rank_list(h['missing_ranks']) or 'none'}"
                + (
                    f", out of step: rank(s) {_rank_list(h['mismatched_ranks'])} at another collective"
                    if h["mismatched_ranks"]
                    else ""
                )
                + (
                    f", completed {h['completed_after_s']:.1f} s later"
                    if h["completed_after_s"] is not None
                    else ""
                )
                for h in a.hangs
            )
            or "none",
        ),
        ("OOMs", s["ooms"]),
        ("problems", s["problems"]),
    ]


def _byte_count(value: Any) -> str:
    """``1,024 B``; a value a hang report gave that is no byte count (hostile or missing) as ``? B``."""
    return f"{value:,} B" if isinstance(value, int) and not isinstance(value, bool) else "? B"


def _slow_summary(a: "Analysis", slow: List[int]) -> str:
    unjudged = [g for g in a.slow["groups"] if not g["judged"]]
    suspects = sorted({x["rank"] for x in a.slow["suspects"]})
    if slow:
        return _rank_list(slow)
    if suspects:
        return f"none established; suspect: {_rank_list(suspects)} (too few windows to establish it, see Slow ranks)"
    if unjudged:
        return "not judged: " + "; ".join(_too_few(g) for g in unjudged[:4])
    return "none"


def _hangs(report: Report, a: "Analysis") -> None:
    if not a.hangs and not any(i.hang for i in a.profile.ranks.values()):
        return
    sec = report.section(
        "Hangs",
        [
            "A collective in flight when a rank's watchdog fired. Missing ranks had not entered it when their hang "
            "reports were written (their highest entered seq on the group was lower); everyone else waits on them. "
            "Completed: when every rank had completed it after all, counted from the first arrival (a stall that "
            "resolved), or never. Each rank's stacks are in rank{r}/hang/."
        ],
    )
    if not a.hangs:
        sec.text.append("Hang reports were written, but no rank was inside a collective.")
    sec.tables.append(
        Table(
            "",
            ["group", "seq", "op", "bytes", "step", "waiting", "missing", "mismatched", "completed"],
            [
                [
                    h["group"],
                    h["seq"],
                    h["op"],
                    h["bytes"],
                    h["step"],
                    _rank_list(h["waiting_ranks"]),
                    _rank_list(h["missing_ranks"]) or "none",
                    _rank_list(h["mismatched_ranks"]),
                    "never" if h["completed_after_s"] is None else f"{h['completed_after_s']:.1f} s later",
                ]
                for h in a.hangs
            ],
        )
    )
    for h in a.hangs:
        if h["completed_after_s"] is not None:
            _stall_finding(sec, a, h)
            continue
        where = []
        for r in h["missing_ranks"][:4]:
            pos = a.positions.get(r, {})
            state = (
                "no data"
                if not pos.get("present", True)
                else f"in flight: {pos['inflight'][0]['op']} #{pos['inflight'][0]['seq']} on group "
                f"{pos['inflight'][0]['group']}"
                if pos.get("inflight")
                else f"last completed {pos['last_collective']['op']} #{pos['last_collective']['seq']}"
                if pos.get("last_collective")
                else "no collective recorded"
            )
            where.append(
                f"rank {r}: {state}" + (f", now at {pos['stack_top']}" if pos.get("stack_top") else "")
            )
        missing = _rank_list(h["missing_ranks"])
        sec.findings.append(
            Finding(
                severity=Severity.ERROR,
                rule="hang",
                message=(
                    f"{h['op']} #{h['seq']} of group {h['group']} never completed: "
                    + (f"rank(s) {missing} never entered it" if missing else "every rank entered it")
                    + (f"; {'; '.join(where)}" if where else "")
                    + (
                        "; at that seq "
                        + "; ".join(
                            f"rank {c['rank']} called {c['op']} ({c['api']}, {_byte_count(c['bytes'])}) instead"
                            for c in h["mismatched_calls"]
                        )
                        if h["mismatched_calls"]
                        else ""
                    )
                ),
                location=f"step {h['step']}" if h["step"] is not None else "",
                suggestion=(
                    f"read rank{h['missing_ranks'][0]}/hang/ (py-spy and faulthandler stacks): why it did not "
                    f"reach this collective"
                    if h["missing_ranks"]
                    else ""
                ),
            )
        )


def _stall_finding(sec: Section, a: "Analysis", h: Dict[str, Any]) -> None:
    """A hang that resolved (``completed_after_s``): the watchdog fired, then the late rank arrived and the
    collective completed. Where the late rank stood is its py-spy stack at the hang, not its last record (it
    went on)."""
    late = _rank_list(h["missing_ranks"])
    where = [
        f"rank {r} was at {a.positions[r]['stack_top']}"
        for r in h["missing_ranks"][:4]
        if (a.positions.get(r) or {}).get("stack_top")
    ]
    sec.findings.append(
        Finding(
            severity=Severity.WARNING,
            rule="stall",
            message=(
                f"{h['op']} #{h['seq']} of group {h['group']} stalled past the watchdog's timeout and completed "
                f"{h['completed_after_s']:.1f} s after the first rank arrived: "
                + (f"rank(s) {late} entered it late" if late else "every rank had entered it")
                + (f"; {'; '.join(where)} when the watchdog fired" if where else "")
            ),
            location=f"step {h['step']}" if h["step"] is not None else "",
            suggestion=(
                f"read rank{h['missing_ranks'][0]}/hang/ (py-spy and faulthandler stacks): what held it"
                if h["missing_ranks"]
                else "read the ranks' hang/ stacks: what the collective waited on"
            ),
        )
    )


def _too_few(g: Dict[str, Any]) -> str:
    what = {
        "step": "steps",
        "sequence": "repeats of the collective sequence",
        "collective": "collectives",
        "block": "always-on blocks of 64 collectives",
        "ddp": "always-on windows with DDP iterations timed",
    }
    return (
        f"group {g['group']}: too few windows to judge: {g['windows']} of the ≥ {g['windows_needed']} needed "
        f"({what[g['window']]}, the first left out as warm-up)"
    )


def _slow(report: Report, a: "Analysis") -> None:
    rule = a.slow["rule"]
    sec = report.section(
        "Slow ranks",
        [
            "Per window (a step; without step records, one repeat of the group's collective sequence; in an "
            "always-on profile, a block of 64 of the group's collectives, from the windows), for each "
            "rank: lateness = its arrivals at the group's collectives minus the mean arrival of the others, summed; "
            "extra compute = its compute between collectives (waits in blocking and async collectives left out) "
            "minus the others' mean. A rank is slow when, for either, the median over windows is ≥ "
            f"{rule['min_share']:.0%} of the median window and a one-sided t-test over the windows gives p ≤ "
            f"{rule['max_p']:g}; it needs ≥ {rule['min_windows']} windows, the first (warm-up) left out. Caused "
            "wait = what the others waited at the collectives it arrived at last."
            + (
                " Group ddp (always-on): per always-on window, the mean DDP iteration from DDP's own timers; "
                "lateness = the others' mean time in DDP's gradient all-reduces minus the rank's (the last "
                "to finish backward waits least), compute = the step less that wait and the blocking "
                "collectives (docs/analyze.md)."
                if any(g["window"] == "ddp" for g in a.slow["groups"])
                else ""
            )
        ],
    )
    for s in a.slow["slow_ranks"]:
        sec.findings.append(
            Finding(
                severity=Severity.WARNING,
                rule="slow-rank",
                message=s["reason"],
                location=f"rank {s['rank']} ({s['host']})",
            )
        )
    unjudged = [g for g in a.slow["groups"] if not g["judged"]]
    for g in unjudged:
        sec.findings.append(Finding(severity=Severity.INFO, rule="slow-rank", message=_too_few(g)))
    for x in a.slow["suspects"]:
        sec.findings.append(
            Finding(
                severity=Severity.INFO, rule="slow-rank", message=x["reason"], location=f"rank {x['rank']}"
            )
        )
    if not a.slow["slow_ranks"]:
        sec.text.append(
            "No slow rank established (see the suspects below)."
            if a.slow["suspects"]
            else "No slow rank."
            if not unjudged
            else "No slow rank among the groups judged."
        )
    rows = []
    for g in a.slow["groups"]:
        for r in sorted(g["ranks"], key=lambda r: -r["late_per_step_s"])[:MAX_ROWS]:
            rows.append(
                [
                    g["group"],
                    r["rank"],
                    r["verdict"],
                    ms(r["late_per_step_s"]),
                    round(100 * r["share_of_step"], 2),
                    f"{r['late_steps']}/{r['steps']}",
                    _p(r["p_late"]),
                    ms(r["compute_per_step_s"]),
                    ms(r["compute_excess_per_step_s"]),
                    _p(r["p_compute"]),
                    ms(r["caused_wait_s"]),
                    r["times_last"],
                    ms(r["collective_p50_s"]),
                ]
            )
    sec.tables.append(
        Table(
            "Per group and rank, per window",
            [
                "group",
                "rank",
                "verdict",
                "late ms",
                "% of window",
                "late windows",
                "p late",
                "compute ms",
                "extra compute ms",
                "p compute",
                "caused wait ms",
                "times last",
                "coll p50 ms",
            ],
            rows,
            status_column="verdict",
            note=f"up to {MAX_ROWS} ranks per group, latest first; windows: "
            + ", ".join(
                f"group {g['group']}: {g['windows']} {'windows' if g['window'] == 'ddp' else g['window']}"
                for g in a.slow["groups"][:8]
            ),
        )
    )
    heat = charts.lateness_heatmap(a)
    if heat is not None:
        sec.charts.append(heat)


def _p(value: float) -> str:
    return f"{value:.2g}"


def _pick_ranks(rows: List[Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    if len(rows) <= MAX_ROWS:
        return rows
    return sorted(sorted(rows, key=lambda r: -(r[key] or 0.0))[:MAX_ROWS], key=lambda r: r["rank"])


def _steps(report: Report, a: "Analysis", rows: List[Dict[str, Any]]) -> None:
    sec = report.section(
        "Step breakdown",
        [
            "Per rank, mean per step: wait = time in collectives waiting for the last rank to arrive, in blocking "
            "collectives and in async ones (from issuing one to the last rank issuing it: a punctual DDP rank sits "
            "there at the end of backward); exposed comm = blocking collective time not spent waiting; compute = "
            "the rest of the step. overlapped = async collectives' time, of which async wait (counted in wait). "
            "The first step (warm-up) is left out."
        ],
    )
    if not rows:
        sec.text.append(
            "No step records: mark steps (the Hugging Face callback, or profile().step()) to get a breakdown "
            "per step; the chart shows the means per window of the slow-rank rule instead."
        )
        bars = charts.breakdown_bars(a, rows)
        if bars is not None:
            sec.charts.append(bars)
        return
    shown = _pick_ranks(rows, "wait_s")
    sec.tables.append(
        Table(
            "",
            [
                "rank",
                "steps",
                "step p50 ms",
                "compute ms",
                "exposed comm ms",
                "wait ms",
                "overlapped ms",
                "async wait ms",
            ],
            [
                [
                    r["rank"],
                    r["steps"],
                    ms(r["step_time_p50_s"]),
                    ms(r["compute_s"]),
                    ms(r["exposed_comm_s"]),
                    ms(r["wait_s"]),
                    ms(r["overlapped_comm_s"]),
                    ms(r["overlapped_wait_s"]),
                ]
                for r in shown
            ],
            note="" if len(shown) == len(rows) else f"{len(shown)} of {len(rows)} ranks: the most wait",
        )
    )
    bars = charts.breakdown_bars(a, rows)
    if bars is not None:
        sec.charts.append(bars)


def _collectives(report: Report, a: "Analysis") -> None:
    sec = report.section(
        "Collectives",
        [
            "By op and message size (S as nccl-tests defines it). time = t1 − t0 per rank; bandwidth from the "
            "time after the last rank arrived; busbw = algbw × nccl-tests' factor (GB = 1e9 bytes)."
        ],
    )
    if not a.collectives:
        sec.text.append("No collective records.")
        return
    cols = [
        "op",
        "size",
        "calls",
        "records",
        "time p50 ms",
        "time p99 ms",
        "wait p50 ms",
        "algbw GB/s",
        "busbw GB/s",
    ]
    sec.tables.append(Table("", cols, [_coll_row(r) for r in a.collectives]))
    if len(a.profile.groups) > 1:
        rows = a.collectives_by_group
        sec.tables.append(
            Table(
                "Per process group",
                ["group", *cols],
                [[r["group"], *_coll_row(r)] for r in rows[:200]],
                note="" if len(rows) <= 200 else f"200 of {len(rows)} rows; all in the JSON",
            )
        )
    scatter = charts.busbw_scatter(a)
    if scatter is not None:
        sec.charts.append(scatter)


def _coll_row(r: Dict[str, Any]) -> List[Any]:
    return [
        r["op"] + (" (async)" if r["async"] else ""),
        r["bucket"],
        r["calls"],
        r["records"],
        ms(r["time_p50_s"]),
        ms(r["time_p99_s"]),
        ms(r["wait_p50_s"]),
        gb(r["algbw_p50_GBps"]),
        gb(r["busbw_p50_GBps"]),
    ]


def _p2p(report: Report, a: "Analysis") -> None:
    if not a.p2p:
        return
    sec = report.section("Point-to-point", ["Bytes sent from each source rank to each destination rank."])
    ranks = sorted({r["src"] for r in a.p2p} | {r["dst"] for r in a.p2p})
    if len(ranks) <= 16:
        cell = {(r["src"], r["dst"]): size_label(r["bytes"]) for r in a.p2p}
        sec.tables.append(
            Table(
                "src \\ dst",
                ["src", *map(str, ranks)],
                [[s, *[cell.get((s, d), "") for d in ranks]] for s in ranks],
            )
        )
    sec.tables.append(
        Table(
            "Pairs",
            ["src", "dst", "bytes", "calls", "time ms", "algbw GB/s"],
            [
                [r["src"], r["dst"], r["bytes"], r["calls"], ms(r["time_s"]), gb(r["algbw_GBps"])]
                for r in a.p2p[:MAX_ROWS]
            ],
            note="" if len(a.p2p) <= MAX_ROWS else f"the {MAX_ROWS} largest of {len(a.p2p)} pairs",
        )
    )


def _memory(report: Report, a: "Analysis") -> None:
    mem = a.memory
    if not mem["ranks"] and not mem["ooms"]:
        return
    primary = mem["primary"]
    sec = report.section(
        "Memory",
        [
            f"Peaks per rank over the samples; the plot shows {primary} over time for the ranks with the highest "
            f"peaks."
        ],
    )
    rows = _pick_ranks([dict(r, peak_primary=r["peak"].get(primary)) for r in mem["ranks"]], "peak_primary")
    if rows:
        headers, cells = memory.peak_columns(rows, primary)
        sec.tables.append(Table("", headers, cells))
        if "fragmentation" in headers:
            sec.text[0] += " Fragmentation = 1 − allocated / reserved when reserved peaked."
    top = sorted(mem["ranks"], key=lambda r: -(r["peak"].get(primary) or 0.0))[:MAX_PLOT_RANKS]
    # (rank, samples); every row is a rank with memory samples (memory.summarize skips the others)
    samples = [(r["rank"], a.profile.ranks[r["rank"]].memory) for r in top]
    plotted = [(rank, m) for rank, m in samples if m is not None]
    t0 = min((float(m.t[0]) for _, m in plotted), default=0.0)
    lines = {}
    for rank, m in plotted:
        if primary in m.series:
            lines[f"rank {rank}"] = [
                (float(t - t0), float(v) / 2**30) for t, v in zip(m.t, m.series[primary]) if v == v
            ]
    if lines:
        sec.series.append(Series(f"{primary} per rank", "seconds since the first sample", "GiB", lines))
    for o in mem["ooms"]:
        sec.findings.append(
            Finding(
                severity=Severity.ERROR,
                rule="oom",
                message=f"out of memory at step {o['step']}: {o['error'] or 'see oom.json'}",
                location=f"rank{o['rank']}/oom.json",
            )
        )


def _ranks(report: Report, rows: List[Dict[str, Any]]) -> None:
    sec = report.section(
        "Where each rank stands",
        [
            "Last completed collective, what was in flight at a hang, last step; clock offset = how far the rank's "
            "host clock was ahead of the reference rank's."
        ],
    )
    shown = rows if len(rows) <= MAX_ROWS else [r for r in rows if r["status"] != "ok"][:MAX_ROWS]
    sec.tables.append(
        Table(
            "",
            ["rank", "host", "status", "last collective", "in flight", "last step", "clock offset ms"],
            [
                [
                    r["rank"],
                    r["host"],
                    r["status"],
                    _coll_text(r["last_collective"]),
                    "; ".join(_coll_text(x) for x in r["inflight"]),
                    r["last_step"],
                    ms(r["clock_offset_s"]),
                ]
                for r in shown
            ],
            status_column="status",
            note=""
            if len(shown) == len(rows)
            else f"{len(shown)} ranks not ok of {len(rows)}; all in the JSON",
        )
    )


def _coll_text(c: Optional[Dict[str, Any]]) -> str:
    if not c:
        return ""
    if c.get("step") is not None:
        when = f", step {c['step']}"
    elif c.get("after_step") is not None:
        when = f", after step {c['after_step']}"
    else:
        when = ""
    return f"{c['op']} #{c['seq']} (group {c['group']}{when})"


def _problems(report: Report, a: "Analysis") -> None:
    problems = a.profile.problems
    clock = a.clock
    if not problems and not clock.unaligned:
        return
    sec = report.section(
        "Problems", ["What could not be read or was missing; none of it stopped the analysis."]
    )
    # errors first, so that the cap never hides what decides the exit status
    for x in sorted(problems, key=lambda x: Severity.parse(x.severity), reverse=True)[:200]:
        sec.findings.append(
            Finding(severity=Severity.parse(x.severity), rule="input", message=x.message, location=x.where)
        )
    if clock.unaligned:
        sec.findings.append(
            Finding(
                severity=Severity.WARNING,
                rule="clocks",
                location="",
                message=f"rank(s) {_rank_list(clock.unaligned)} share no blocking collective "
                "with the reference rank: their clocks are not aligned",
            )
        )
