"""Terminal rendering of a :class:`Report` (the ``table`` format).

Also home of the small helpers every renderer shares: :func:`status_class` (a status word →
``bad``/``warn``/``ok``) and :func:`ordered_findings`; one cell's text is ``text_cells.format_value``.
"""

import math
import shutil
import textwrap
from typing import Any, Dict, List, Optional, Sequence, Tuple

import click

from ..severity import Severity
from .columns import columns
from .model import Finding, Report, Section, Series, Table
from .svg import prepare
from .text_cells import PATH, format_value, one_line, pad, shorten, text_width, truncate, wrap
from .text_charts import chart_lines
from .text_table import layout

SPARK = "▁▂▃▄▅▆▇█"
HEADLINE_ROWS = 10  # rows of a table (or chart) shown by default in the terminal
FINDINGS_SHOWN = 20  # findings shown by default in the terminal, worst first
MIN_WIDTH = 40

_BAD = {
    "error",
    "errors",
    "unsupported",
    "not_supported",
    "cpu_fallback",
    "fallback_cpu",
    "fail",
    "failed",
    "failure",
    "hang",
    "hung",
    "timeout",
    "missing",
    "mismatch",
    "diverged",
    "broken",
    "crash",
    "critical",
    "oom",
}
_WARN = {
    "warning",
    "warnings",
    "warn",
    "partial",
    "slow",
    "degraded",
    "fallback",
    "aicpu",
    "unknown",
    "straggler",
    "skipped",
    "skip",
    "drift",
    "approx",
    "approximate",
}
_OK = {
    "info",
    "npu",
    "ok",
    "pass",
    "passed",
    "supported",
    "native",
    "fused",
    "yes",
    "good",
    "success",
    "aicore",
    "match",
    "matched",
    "fast",
    "done",
}
_STYLE = {"bad": "red", "warn": "yellow", "ok": "green"}


# ---------------------------------------------------------------- shared helpers


def status_class(value: Any) -> str:
    """``bad``, ``warn``, ``ok`` for a known status word (``cpu_fallback``, ``warning``, ``npu``...), else ``""``."""
    if not isinstance(value, str):
        return ""
    word = value.strip().lower().replace("-", "_").replace(" ", "_")
    if word in _BAD:
        return "bad"
    if word in _WARN:
        return "warn"
    if word in _OK:
        return "ok"
    return ""


def ordered_findings(findings: Sequence[Finding]) -> List[Tuple[Severity, List[Finding]]]:
    """Findings grouped by severity, worst first; in their own order within a group."""
    groups: Dict[Severity, List[Finding]] = {}
    for f in findings:
        groups.setdefault(f.severity, []).append(f)
    return [(s, groups[s]) for s in sorted(groups, reverse=True)]


# ---------------------------------------------------------------- rendering


class _Out:
    def __init__(self, color: bool, width: int, max_rows: int, all_rows: bool):
        self.color = color
        self.width = width
        self.max_rows = max_rows
        self.all_rows = all_rows
        self.lines: List[str] = []

    def style(self, text: str, **kw: Any) -> str:
        return click.style(text, **kw) if self.color and text else text

    def status(self, text: str, value: Any) -> str:
        fg = _STYLE.get(status_class(value))
        return self.style(text, fg=fg, bold=fg == "red") if fg else text

    def add(self, line: str = "") -> None:
        self.lines.append(line)

    def blank(self) -> None:
        if self.lines and self.lines[-1] != "":
            self.lines.append("")

    def heading(self, text: str, rule: str) -> None:
        text = one_line(text)
        self.blank()
        self.add(self.style(text, bold=True))
        self.add(rule * min(max(1, text_width(text)), self.width))

    def paragraph(self, text: str, indent: str = "") -> None:
        for raw in str(text).splitlines() or [""]:
            if raw[:1] in (" ", "\t") or not raw.strip():
                self.add(indent + raw.rstrip())
            else:
                for w in wrap(raw, max(20, self.width - len(indent))):
                    self.add(indent + w)


def _table(out: _Out, table: Table) -> None:
    cols = columns(table)
    title = one_line(table.title)
    if title:
        out.blank()
        n = len(cols.rows)
        out.add(out.style(title, bold=True) + out.style(f"  ({n} row{'s' if n != 1 else ''})", dim=True))
    if not cols.headers:
        out.add("  (empty table)")
        return
    limit = None if out.all_rows else (table.headline if table.headline is not None else out.max_rows)
    if limit == 0 and cols.rows:  # a reference table (e.g. every pair in execution order): named, not shown
        n_rows, n_cols = len(cols.rows), len(cols.headers)
        out.paragraph(f"… {n_rows} more rows ({n_cols} columns): use --all or -f html")
        return
    lines, notes = layout(
        cols, out.width, limit, lambda t: out.style(t, bold=True), lambda t, v: out.status(t, v)
    )
    for line in lines:
        out.add(line)
    if not cols.rows:
        out.add(out.style("(no rows)", dim=True))
    for note in notes:
        out.paragraph(note)
    if table.note:
        out.paragraph(table.note)


def _findings(out: _Out, findings: Sequence[Finding]) -> None:
    out.blank()
    out.add(out.style(f"Findings ({len(findings)})", bold=True))
    sev_w = max(text_width(str(f.severity)) for f in findings)
    loc_w = min(40, max(text_width(one_line(f.location)) for f in findings))
    rule_w = min(30, max(text_width(one_line(f.rule)) for f in findings))
    ordered = [f for _sev, group in ordered_findings(findings) for f in group]
    limit = len(ordered) if out.all_rows else FINDINGS_SHOWN
    for f in ordered[:limit]:
        location = shorten(one_line(f.location), loc_w, PATH)
        head = "  ".join([pad(location, loc_w), pad(shorten(one_line(f.rule), rule_w), rule_w)])
        sev = out.status(pad(str(f.severity), sev_w), str(f.severity))
        prefix = f"{sev}  {head}  "
        indent = sev_w + 2 + text_width(head) + 2
        message = one_line(f.message)
        if indent > out.width // 2:
            out.add(prefix.rstrip())
            out.paragraph(message, indent="    ")
        else:
            wrapped = textwrap.wrap(message, width=max(20, out.width - indent), break_long_words=False) or [
                ""
            ]
            out.add(prefix + wrapped[0])
            for w in wrapped[1:]:
                out.add(" " * indent + w)
        if f.suggestion:
            out.paragraph("→ " + one_line(f.suggestion), indent=" " * (sev_w + 2))
    if len(ordered) > limit:
        out.add(f"… {len(ordered) - limit} more findings: use --all or -f html")


def sparkline(ys: Sequence[float], width: int = 32, log: bool = False) -> str:
    vals = [math.log10(y) for y in ys] if log else list(ys)
    if not vals:
        return ""
    if len(vals) > width:  # bucket means
        buckets = []
        for b in range(width):
            chunk = vals[b * len(vals) // width : (b + 1) * len(vals) // width]
            buckets.append(sum(chunk) / len(chunk))
        vals = buckets
    lo, hi = min(vals), max(vals)
    if hi == lo:
        return SPARK[3] * len(vals)
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / (hi - lo) * len(SPARK)))] for v in vals)


def _series(out: _Out, series: Series) -> None:
    out.blank()
    scale = "  (log y)" if series.log_y else ""
    out.add(
        out.style(one_line(series.title), bold=True)
        + out.style(f"  [{series.x_label} → {series.y_label}]{scale}", dim=True)
    )
    pts, notes = prepare(series)
    if not pts:
        out.add("  (no data)")
    label_w = min(24, max(text_width(one_line(k)) for k in pts)) if pts else 0
    for label, keep in pts.items():
        name = pad(truncate(one_line(label), label_w), label_w)
        if not keep:
            out.add(f"  {name}  (no points to draw)")
            continue
        ys = [y for _, y in keep]
        line = f"  {name}  {sparkline(ys, log=series.log_y)}"
        for stat in (
            f"n={len(keep)}",
            f"x {format_value(keep[0][0])}..{format_value(keep[-1][0])}",
            f"min {format_value(min(ys))}",
            f"max {format_value(max(ys))}",
            f"last {format_value(ys[-1])}",
        ):
            if text_width(line) + 2 + text_width(stat) > out.width:
                break
            line += "  " + stat
        out.add(line)
    for note in notes:
        out.add(f"  ({note})")
    if series.marks:
        out.add(
            "  marks: " + ", ".join(f"{one_line(str(lbl))} @ {format_value(x)}" for x, lbl in series.marks)
        )
    for p in series.points:
        out.add(f"  ● {one_line(str(p[2]))} at x={format_value(p[0])}, y={format_value(p[1])}")


def _section(out: _Out, section: Section) -> None:
    out.heading(section.title, "-")
    for para in section.text:
        out.blank()
        out.paragraph(para)
    for table in section.tables:
        _table(out, table)
    if section.findings:
        _findings(out, section.findings)
    for series in section.series:
        _series(out, series)
    for chart in section.charts:
        out.blank()
        head, *body = chart_lines(chart, out.width, None if out.all_rows else out.max_rows)
        out.add(out.style(head, bold=True))
        for line in body:
            out.add(line)


def terminal_width() -> int:
    return max(MIN_WIDTH, shutil.get_terminal_size((100, 24)).columns)


def render_text(
    report: Report, color: bool = False, width: Optional[int] = None, all_rows: bool = False
) -> str:
    """The report as aligned plain text for a terminal; ANSI colour only when ``color``. Each table and
    chart shows its headline rows (``Table.headline``, else the first :data:`HEADLINE_ROWS`) unless
    ``all_rows``."""
    out = _Out(color, max(MIN_WIDTH, width) if width else terminal_width(), HEADLINE_ROWS, all_rows)
    title = wrap(report.title, out.width) or [report.schema]
    for line in title:
        out.add(out.style(line, bold=True))
    out.add("=" * min(max(1, max(text_width(line) for line in title)), out.width))
    if report.headline:
        out.blank()
        out.add(out.style(one_line(report.headline), bold=True))
    if report.summary:
        out.blank()
        label_w = max(text_width(one_line(str(k))) + 1 for k, _ in report.summary)
        for key, value in report.summary:
            text = one_line(format_value(value))
            wrapped = wrap(text, max(20, out.width - label_w - 1))
            if len(wrapped) <= 1:
                out.add(f"{pad(one_line(str(key)) + ':', label_w)} {out.status(text, value)}")
                continue
            out.add(f"{pad(one_line(str(key)) + ':', label_w)} {wrapped[0]}")
            for more in wrapped[1:]:
                out.add(" " * (label_w + 1) + more)
    for section in report.sections:
        _section(out, section)
    return "\n".join(out.lines).rstrip("\n") + "\n"
