"""``ascend-doctor compare TARGET REFERENCE``: align two dumps, measure every pair, name the culprits.

TARGET is the run under suspicion (the NPU run), REFERENCE the truth (GPU/CPU, or an fp32 run); either
may be our dump or msprobe's. The pipeline is ``dumps`` → ``align`` → ``diagnose`` → one Report.
"""

import csv
import io
import math
import sys
from collections import Counter, OrderedDict
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import click

from ..errors import InputError
from ..report import Finding, Heatmap, Report, Series, Severity, Table
from ..report.csvcell import safe_cell
from . import causes, diagnose, drift, heap, near_misses, store
from .align import align
from .causes import Cause, carried_parameters, rank
from .diagnose import PairResult
from .dumps import Dump, open_dump

if TYPE_CHECKING:
    from .replay_pool import ReplayProcesses

SCHEMA = "ascend-doctor/compare/1"
PLOT_CAP = 1e6
PLOT_FLOOR = 1e-3  # an introduced error below it is drawn at it on the log scale
PROBLEMS_LISTED = 20
PAIR_COLUMNS = (
    "order",
    "name",
    "module",
    "phase",
    "how",
    "target_dtype",
    "reference_dtype",
    "shape",
    "cosine",
    "max_abs_err",
    "max_rel_err",
    "mean_rel_err",
    "rel_l2_err",
    "max_ulp_err",
    "within_1e3",
    "verdict",
    "error_ratio",
    "method",
    "introduced",
    "introduced_verdict",
)


def choose_step(target: Dump, reference: Dump, step: Optional[int]) -> int:
    common = sorted(set(target.steps()) & set(reference.steps()))
    if step is not None:
        if step not in common:
            raise InputError(f"--step {step}: not in both dumps (common steps: {_list(common)})")
        return step
    if not common:
        raise InputError(
            f"{target.path} and {reference.path}: no step in common (target has {_list(target.steps())}, reference has {_list(reference.steps())})"
        )
    return common[0]


def _list(steps: List[int]) -> str:
    return ", ".join(map(str, steps)) or "none"


@heap.collector_paused()  # (heap.py: the records held are millions of objects)
def compare_dumps(
    target_path: str,
    reference_path: str,
    rank: Optional[int] = None,
    step: Optional[int] = None,
    replay: str = "auto",
    top: int = 10,
    progress: bool = False,
    stats_only: bool = False,
    replayer: Optional["ReplayProcesses"] = None,
) -> Report:
    """``replay``: which ops off the reference are replayed (``diagnose.REPLAY_MODES``); ``replayer``: processes
    that replay them (the command's), else this process does."""
    target, reference = open_dump(target_path, rank), open_dump(reference_path, rank)
    chosen = choose_step(target, reference, step)
    t_records, r_records = list(target.records(chosen)), list(reference.records(chosen))
    if not t_records:
        why = f" readable ({target.problems[0]})" if target.problems else ""
        raise InputError(f"{target.path}: step {chosen} holds no records{why}")
    pairs = align(t_records, r_records)
    diag = diagnose.Diagnoser(
        target, reference, chosen, replay=replay, tensors=not stats_only, replayer=replayer
    )
    if progress:
        # sys.stderr, not click.get_text_stream("stderr"): deprecated in click 8.5 (a DeprecationWarning
        # on every call), gone in 9.0
        with click.progressbar(length=len(pairs), label="comparing", file=sys.stderr) as bar:
            results = diag.run(pairs, bar.update)
    else:
        results = diag.run(pairs)
    return build_report(target, reference, chosen, results, top)


# --- rows -----------------------------------------------------------------------------------------------


def _num(value: Optional[float]) -> Optional[float]:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def pair_row(order: int, res: PairResult) -> Dict[str, Any]:
    rec = res.record
    t, r = res.pair.target, res.pair.reference
    m = res.error
    return OrderedDict(
        order=order,
        name=rec.key,
        module=rec.module,
        phase=rec.phase,
        how=res.pair.how,
        target_dtype=t.outputs[0].dtype if t is not None and t.outputs else None,
        reference_dtype=r.outputs[0].dtype if r is not None and r.outputs else None,
        shape=list(rec.outputs[0].shape) if rec.outputs else None,
        cosine=_num(m.cosine) if m else None,
        max_abs_err=_num(m.max_abs_err) if m else None,
        max_rel_err=_num(m.max_rel_err) if m else None,
        mean_rel_err=_num(m.mean_rel_err) if m else None,
        rel_l2_err=_num(diagnose.output_error(res)),
        max_ulp_err=_num(m.max_ulp_err) if m else None,
        within_1e3=_num(m.within_1e3) if m else None,
        verdict=res.verdict.level if res.verdict else None,
        error_ratio=res.verdict.ratio if res.verdict else None,
        method=res.method or None,
        introduced=res.score if res.method else None,
        introduced_verdict=res.introduced_verdict.level if res.introduced_verdict else None,
        problems=list(res.problems),
    )


def culprit_row(position: int, cause: Cause, dump: Dump) -> Dict[str, Any]:
    res = cause.result
    rec = res.record
    data = cause.kind in ("data", "random")  # found by its inputs, arguments: no error of its own to show
    return OrderedDict(
        rank=position,
        kind=cause.kind,
        detail=cause.detail,
        arg_diff=list(cause.arg_diff),
        name=rec.key,
        op=rec.name,
        call=rec.call,
        module=rec.module,
        phase=rec.phase,
        introduced_error=None if data else cause.score,
        method=("inputs" if cause.kind == "data" else "arguments") if data else res.method,
        verdict=cause.level,
        error_vs_reference=res.verdict.ratio if res.verdict else None,
        reason=_reason(cause),
        stack=diagnose.stack_lines(dump, rec),
    )


def near_miss_row(position: int, res: PairResult, dump: Dump) -> Dict[str, Any]:
    """An op whose replay put it between one and two tolerances off (``near_misses.py``)."""
    rec = res.record
    stack = diagnose.stack_lines(dump, rec)
    verdict = res.introduced_verdict
    return OrderedDict(
        rank=position,
        name=rec.key,
        op=rec.name,
        call=rec.call,
        module=rec.module,
        phase=rec.phase,
        introduced_error=res.score,
        reason=verdict.reason if verdict else "",
        site=stack[-1] if stack else "",
        stack=stack,
    )


def _reason(cause: Cause) -> str:
    """One line of why ``cause`` is one: a kernel's replay verdict; for a divergence what differs and how far the
    output is off the reference (its replay passed: its own verdict says nothing of the cause); else the cause's
    own words (a target-only op has no verdict)."""
    res = cause.result
    if cause.kind == "kernel" and res.introduced_verdict is not None:
        return res.introduced_verdict.reason
    if cause.kind == "divergence" and res.verdict is not None and res.verdict.reason:
        return f"{cause.detail}; against the reference: {res.verdict.reason}"
    return cause.detail or (res.verdict.reason if res.verdict else "")


# --- report ---------------------------------------------------------------------------------------------


def build_report(target: Dump, reference: Dump, step: int, results: List[PairResult], top: int) -> Report:
    matched = [r for r in results if r.pair.target is not None and r.pair.reference is not None]
    rows = [pair_row(i, r) for i, r in enumerate(results)]
    optimizers = causes.optimizer_kernels_differ(results)
    ranked = rank(results, optimizers)
    found = [c for c in ranked if c.level != "hint"]
    hints = [c for c in ranked if c.level == "hint"]
    hint_rows = [culprit_row(i + 1, c, target) for i, c in enumerate(hints[:top])]
    errors = [c for c in found if c.level == "error"]
    named = {id(c.result) for c in found}
    near = sorted(
        (r for r in results if r.replay is not None and r.replay.level == "warning" and id(r) not in named),
        key=lambda r: -r.score,
    )
    # no replay (and none needed): amplification ranks
    stats_only = not any(r.method == "replay" or r.within_reference or r.explained for r in results)
    with_tensors = any(r.error is not None for r in results)
    method = (
        "replay in float64"
        if not stats_only
        else "error amplification ({})".format("tensors" if with_tensors else "statistics only")
    )
    # one ranking in both modes (causes.py): the kind of cause first, proven before suspected, then score
    culprits = [culprit_row(i + 1, c, target) for i, c in enumerate(found[:top])]
    near_rows = [near_miss_row(i + 1, r, target) for i, r in enumerate(near[: near_misses.LISTED])]
    first = found[0] if found else None
    levels = Counter(r.verdict.level for r in matched if r.verdict)
    how = Counter(r.pair.how for r in results)
    matched_by = {k: how.get(k, 0) for k in ("key", "sequence", "module")}
    unmatched_target = sum(1 for r in results if r.pair.reference is None)
    unmatched_reference = sum(1 for r in results if r.pair.target is None)
    verdicts = {k: levels.get(k, 0) for k in ("pass", "warning", "error")}
    summary = OrderedDict(
        pairs=len(matched),
        matched_by=matched_by,
        unmatched_target=unmatched_target,
        unmatched_reference=unmatched_reference,
        verdicts=verdicts,
        culprits=len(errors),
        suspects=len(found) - len(errors),
        hints=len(hints),
        method=method,
        first_culprit=first.result.record.key if first else None,
        cause=headline(first, target, carried_parameters(results)),
        problems=sum(len(r.problems) for r in results) + len(target.problems) + len(reference.problems),
    )
    data = OrderedDict(
        target=_side(target),
        reference=_side(reference),
        step=step,
        summary=summary,
        culprits=culprits,
        hints=hint_rows,
        first_culprit=culprit_row(0, first, target) if first else None,
        near_misses=near_rows,
        pairs=rows,
        unreadable=target.problems + reference.problems,  # bad lines of the dumps' files, one line each
    )
    title = f"compare: {drift.short_run_name(target.path)} vs {drift.short_run_name(reference.path)}"
    report = Report(schema=SCHEMA, title=title, data=data)
    report.summary = [
        ("target", f"{target.path} ({target.format})"),
        ("reference", f"{reference.path} ({reference.format})"),
        ("step", step),
        (
            "pairs",
            "{} matched ({}), {} unmatched".format(
                len(matched),
                ", ".join(f"{n} by {k}" for k, n in matched_by.items() if n),
                unmatched_target + unmatched_reference,
            ),
        ),
        ("vs reference", ", ".join(f"{n} {k}" for k, n in verdicts.items())),
        (
            "culprits",
            "{} proven, {} suspected ({})".format(len(errors), summary["suspects"], summary["method"]),
        ),
        ("first culprit", summary["first_culprit"] or "none"),
        ("cause", summary["cause"]),
    ]
    if near and not found:
        report.summary.append(("top near miss", f"{near[0].record.key} ({near[0].score:.3g} tolerances)"))
    if summary["problems"]:
        report.summary.append(("refused", f"{summary['problems']} requests of the dumps (see Refused)"))
    _recording_section(report, target, reference)
    _optimizer_section(report, optimizers)
    _culprit_section(report, culprits, method if stats_only else "", len(near))
    near_misses.add_section(report, near_rows, len(near))
    _hint_section(report, hint_rows, len(hints))
    _problem_section(report, results)
    if target.problems or reference.problems:
        sec = report.section("Unreadable")
        for problem in target.problems + reference.problems:
            sec.findings.append(Finding(severity=Severity.WARNING, rule="unreadable", message=problem))
    _drift_section(report, results, found)
    sec = report.section("All pairs")
    sec.tables.append(
        Table(
            "",
            list(PAIR_COLUMNS),
            [[_cell(row[c]) for c in PAIR_COLUMNS] for row in rows],
            status_column="verdict",
            headline=0,  # in execution order: the culprit sections above are the headline
        )
    )
    return report


def headline(cause: Optional[Cause], dump: Dump, carried: Sequence[Tuple[str, float]] = ()) -> str:
    """The top cause in one sentence that names its kind; ``carried``: parameters that differ by drift the earlier
    steps carried into them (``causes.carried_parameters``), named when nothing else is found."""
    if cause is None:
        if carried:
            name, err = carried[0]
            return (
                f"none found in this step; {len(carried)} parameter{' differs' if len(carried) == 1 else 's differ'} "
                f"from the reference's at its start (largest: {name}, error {err:.3g}): drift carried "
                "from earlier steps (compare an earlier step, or step 0, to find where it began)"
            )
        return "none found"
    rec = cause.result.record
    stack = diagnose.stack_lines(dump, rec)
    where = "at {}{}".format(rec.module or "<root>", f" ({stack[-1]})" if stack else "")
    if cause.kind == "data":
        return (
            f"the runs were given different data: {rec.key} {where}: {cause.detail} "
            "(check the seeds, the data order and shuffling, the dataset and the tokenizer)"
        )
    if cause.kind == "nonfinite":
        return f"{cause.detail} first produced by {rec.key} {where}"
    if cause.kind == "random":
        return f"the runs drew different random numbers: {rec.key} {where}: {cause.detail}"
    if cause.kind == "parameter":
        return f"parameter {cause.detail}; first read by {rec.key} {where}"
    if cause.kind == "kernel":
        return f"kernel error: {rec.key} {where} is off against its own float64 replay"
    if cause.kind == "divergence":
        return f"output diverges while inputs agree: {rec.key} {where}; {cause.detail}"
    return f"target-only op: {rec.key} {where} has no counterpart in the reference run"


def _side(dump: Dump) -> Dict[str, Any]:
    keys = ("backend", "device_name", "rank", "world_size", "level", "mode", "torch", "torch_npu")
    return OrderedDict(
        [("path", dump.path), ("format", dump.format)]
        + [(k, dump.meta.get(k)) for k in keys if k in dump.meta]
    )


def _culprit_section(report: Report, culprits: List[Dict[str, Any]], ranking: str, near: int) -> None:
    """``ranking`` names the amplification method when there was no replay ("" otherwise); ``near``: how many
    near misses there are (``near_misses.py``)."""
    suspects_only = bool(ranking)
    title = f"Suspects (no replay: ranked by {ranking})" if suspects_only else "Culprits"
    # the table lists the ranking; findings only for what passed the culprit threshold
    sec = report.section(title)
    if not culprits:
        sec.text.append(near_misses.no_culprit_text(near))
        return
    sec.text.append(
        "Ranked by the error each op introduced itself (its output against a float64 replay on its own inputs, "
        "in tolerances), or by how much it amplified the error its inputs carried when there are no tensors."
    )
    sec.tables.append(
        Table(
            "",
            ["#", "kind", "call", "module", "phase", "introduced", "method", "vs reference", "where"],
            [
                [
                    c["rank"],
                    c["kind"],
                    c["name"],
                    c["module"],
                    c["phase"],
                    _cell(c["introduced_error"]),
                    c["method"],
                    _cell(c["error_vs_reference"]),
                    c["stack"][-1] if c["stack"] else "",
                ]
                for c in culprits
            ],
        )
    )
    for c in [c for c in culprits if c["verdict"]][:3]:
        sec.findings.append(
            Finding(
                severity=Severity.ERROR if c["verdict"] == "error" else Severity.WARNING,
                rule="culprit",
                message="{} in {} ({}): {}".format(
                    c["name"], c["module"] or "<root>", c["phase"], c["reason"]
                ),
                location=c["stack"][-1] if c["stack"] else "",
                suggestion="",
            )
        )


def recording(dump: Dump) -> Optional[int]:
    """The recording rules our dump was written by (``store.RECORDING``; 1 where meta.json predates the field),
    None for another tool's dump or a value that is no small integer (meta.json is input)."""
    if dump.format != store.OurDump.format:
        return None
    value = dump.meta.get("recording", 1)
    return value if type(value) is int and 0 < value < 1 << 20 else None


def _recording_section(report: Report, target: Dump, reference: Dump) -> None:
    """Two of our dumps whose records name ops by different rules (written by versions of ascend-doctor on
    either side of a change of module paths or call counting) can pair the wrong ops: said before anything else
    is trusted, and both values kept in the JSON report."""
    a, b = recording(target), recording(reference)
    report.data["summary"]["recording"] = [a, b]
    if a is None or b is None or a == b:
        return
    versions = [d.meta.get("versions", {}) for d in (target, reference)]
    tools = [v.get("ascend_doctor") if isinstance(v, dict) else None for v in versions]
    message = (
        f"the dumps were written by different recording rules (target {a}, reference {b}; ascend-doctor "
        f"{str(tools[0] or 'version not recorded')[:40]} and {str(tools[1] or 'version not recorded')[:40]}): "
        "module paths or call counts can differ between them and pair the wrong ops"
    )
    report.summary.append(("warning", message))
    sec = report.section("Dumps")
    sec.findings.append(
        Finding(
            severity=Severity.WARNING,
            rule="recording-differs",
            message=message,
            suggestion="dump both runs with one version of ascend-doctor",
        )
    )


def _optimizer_section(report: Report, differ: Optional[Tuple[str, str]]) -> None:
    """The two runs' optimizers stepped by different kernels (``causes.optimizer_kernels_differ``)."""
    report.data["summary"]["optimizer_kernels"] = list(differ) if differ else None
    if differ is None:
        return
    message = (
        f"the optimizers stepped by different kernels (target {differ[0]}, reference {differ[1]}): their ops do "
        "not pair one to one, and none of them is listed for being unpaired; the next step's parameters show "
        "whether the updates agree"
    )
    report.summary.append(("note", message))
    report.section("Dumps").findings.append(
        Finding(
            severity=Severity.INFO,
            rule="optimizer-kernels-differ",
            message=message,
            suggestion="pass the same foreach=/fused= to the optimizer in both runs to compare its ops one by one "
            "(torch picks foreach on CUDA and NPU, single-tensor ops on the CPU)",
        )
    )


def _hint_section(report: Report, hints: List[Dict[str, Any]], total: int) -> None:
    """Divergences seen in statistics only, below the bar where statistics can prove anything."""
    if not hints:
        return
    sec = report.section(f"Hints (statistics only, not proven: {total})")
    sec.text.append(
        "Ops whose output error grew past their inputs' by less than a statistics-only compare can tell "
        f"from rounding noise ({causes.STATS_DIVERGENCE:g}x). Dump tensors (--mode tensor) to prove or clear them."
    )
    sec.tables.append(
        Table(
            "",
            ["#", "call", "module", "phase", "amplification"],
            [[h["rank"], h["name"], h["module"], h["phase"], _cell(h["introduced_error"])] for h in hints],
        )
    )


def _problem_section(report: Report, results: List[PairResult]) -> None:
    """What the dumps asked for and did not get (an op outside the replay policy, a path leading out)."""
    problems = [(r.record.key, p) for r in results for p in r.problems]
    if not problems:
        return
    sec = report.section("Refused")
    sec.text.append("Dumps are untrusted input: these records asked for what compare does not do.")
    for key, problem in problems[:PROBLEMS_LISTED]:
        sec.findings.append(Finding(severity=Severity.WARNING, rule="refused", message=f"{key}: {problem}"))
    if len(problems) > PROBLEMS_LISTED:
        sec.text.append(f"... and {len(problems) - PROBLEMS_LISTED} more (in the JSON report's pairs).")


def _drift_section(report: Report, results: List[PairResult], found: List[Cause]) -> None:
    vs_ref, introduced = [], []
    marks: List[Tuple[float, str]] = []  # where each phase after the forward begins
    marked = {"forward"}
    order = {id(r): i for i, r in enumerate(results)}
    # one unit on the line: replay scores (tolerances) where there were replays, else amplifications
    method = "replay" if any(r.method == "replay" for r in results) else "amplification"
    for i, r in enumerate(results):
        if r.verdict is not None and r.verdict.ratio:
            vs_ref.append((float(i), min(r.verdict.ratio, PLOT_CAP)))
        if r.method == method and r.score:
            introduced.append((float(i), min(r.score, PLOT_CAP)))
        if r.record.phase not in marked:
            marked.add(r.record.phase)
            marks.append((float(i), r.record.phase))
    points = drift.culprit_points(
        (
            (float(order[id(c.result)]), c.score or PLOT_FLOOR, c.result.record.key)
            for c in found
            if id(c.result) in order
        ),
        PLOT_FLOOR,
        PLOT_CAP,
    )
    sec = report.section("Drift along the run")
    first = (
        "The error each replayed op introduced itself, in units of its dtype tolerance (1 = at tolerance; an op "
        "whose inputs' error explains its own is not replayed, not drawn)"
        if method == "replay"
        else "How much each op amplified the error its inputs carried (no replays)"
    )
    sec.text.append(
        f"{first}, in execution order, with the culprits labelled; and the error of the outputs against the reference, "
        f"as the running median over {drift.TREND_WINDOW} ops (single ops jump by orders of magnitude: an "
        f"exact op has a zero tolerance; capped at {PLOT_CAP:g}). Error that only propagates raises the "
        "second line but not the first."
    )
    lines = OrderedDict([("introduced", introduced), ("vs reference (median)", drift.running_median(vs_ref))])
    sec.series.append(
        Series(
            "error in tolerances",
            "execution order",
            "error / tolerance",
            OrderedDict((k, v) for k, v in lines.items() if v),
            marks=marks,
            log_y=True,
            points=points,
        )
    )
    errors = [
        (r.record.module, r.record.phase, "introduced", r.score or None)
        for r in results
        if r.method == method
    ]
    errors += [
        (r.record.module, r.record.phase, "vs reference (median)", r.verdict.ratio)
        for r in results
        if r.verdict
    ]
    layers, columns, values = drift.per_layer(errors, PLOT_FLOOR, PLOT_CAP)
    if len(layers) > 1:
        sec.charts.append(
            Heatmap(
                "error per layer (introduced: the largest; vs reference: the median)",
                "phase and error",
                "layer",
                columns,
                [str(layer) for layer in layers],
                values,
                "log10(error / tolerance)",
            )
        )


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, list):
        return "x".join(map(str, value))
    return value


def to_csv(report: Report) -> str:
    """The per-pair table as CSV (for spreadsheets); a string cell that a spreadsheet would run as a formula
    (a hostile dump's module named ``=HYPERLINK(...)``) starts with ``'`` (:func:`safe_cell`)."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(PAIR_COLUMNS)
    for row in report.data["pairs"]:
        writer.writerow(["" if row[c] is None else safe_cell(_cell(row[c])) for c in PAIR_COLUMNS])
    return buf.getvalue()
