"""GitHub-flavoured markdown rendering of a :class:`Report`, for pasting into an issue or a PR.

Every string from the report is treated as plain text: markdown punctuation and HTML are escaped,
table cells also escape ``|`` and turn newlines into ``<br>``.
"""

import html
import re
from typing import Any, List, Optional

from .columns import columns
from .model import Chart, Finding, Report, Section, Series, Table
from .render_text import ordered_findings
from .svg import prepare
from .text_cells import ID, NUMBER, PATH, TEXT, format_value, is_number
from .text_charts import chart_lines

DETAILS_ROWS = 50  # tables longer than this are folded into <details>
CHART_WIDTH = 100  # columns of a chart's text form

_PUNCT = re.compile(r"([\\`*\[\]|~])")
_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")
_LINE_START = re.compile(r"^(\s*)([#>+=-])")
_ORDERED = re.compile(r"^(\s*\d+)([.)])")


def escape_text(text: str, block: bool = True) -> str:
    """Plain text → markdown that renders as exactly that text (one line or several).

    ``block`` also escapes what would start a heading, quote or list at the start of a line.
    """
    out = []
    for line in str(text).split("\n"):
        line = html.escape(line.rstrip(), quote=False)
        line = _PUNCT.sub(r"\\\1", line)
        line = _UNDERSCORE.sub(r"\\_", line)
        if block:
            line = _LINE_START.sub(lambda m: m.group(1) + "\\" + m.group(2), line)
            line = _ORDERED.sub(lambda m: m.group(1) + "\\" + m.group(2), line)
        out.append(line)
    return "\n".join(out)


def escape_cell(value: Any) -> str:
    """A value as one GFM table cell: escaped text, ``|`` escaped, newlines as ``<br>``."""
    text = format_value(value).replace("\r\n", "\n").replace("\r", "\n")
    return "<br>".join(escape_text(part, block=False) for part in text.split("\n")) if text else ""


def code_span(text: str) -> str:
    """``text`` as an inline code span, using a backtick fence longer than any run inside it."""
    text = " ".join(str(text).split())
    if not text:
        return ""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    if text.startswith("`") or text.endswith("`") or longest:
        return f"{fence} {text} {fence}"
    return f"{fence}{text}{fence}"


def _table_lines(headers: List[str], rows: List[List[Any]], kinds: Optional[List[str]] = None) -> List[str]:
    """A GFM table: numbers right-aligned; ids and paths (``kinds``, see ``columns.py``) as code spans."""
    if kinds is None:
        kinds = [
            NUMBER
            if rows
            and all(is_number(r[i]) or r[i] is None for r in rows)
            and any(is_number(r[i]) for r in rows)
            else TEXT
            for i in range(len(headers))
        ]
    lines = [
        "| " + " | ".join(escape_cell(h) or " " for h in headers) + " |",
        "|" + "|".join("---:" if k == NUMBER else "---" for k in kinds) + "|",
    ]
    for row in rows:
        cells = [
            code_span(v).replace("|", "\\|") if k in (ID, PATH) and isinstance(v, str) else escape_cell(v)
            for v, k in zip(row, kinds)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _table(table: Table) -> List[str]:
    cols = columns(table)
    rows = [[cols.text(r, i) for i in range(len(cols.headers))] for r in cols.rows]
    out: List[str] = []
    title = " ".join(table.title.split())
    if not cols.headers:
        if title:
            out += [f"**{escape_text(title, block=False)}**", ""]
        return [*out, "_(empty table)_", ""]
    body = _table_lines(cols.headers, rows, cols.kinds)
    if len(rows) > DETAILS_ROWS:
        summary = html.escape(f"{title or 'Table'} ({len(rows)} rows)")
        out += ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]
    else:
        if title:
            out += [f"**{escape_text(title, block=False)}**", ""]
        out += [*body, ""]
        if not rows:
            out += ["_(no rows)_", ""]
    if table.note:
        out += [
            f"_{escape_text(table.note, block=False)}_"
            if "\n" not in table.note
            else escape_text(table.note),
            "",
        ]
    return out


def _finding(f: Finding) -> List[str]:
    parts = [f"**{f.severity}**"]
    if f.location:
        parts.append(code_span(f.location))
    if f.rule:
        parts.append(code_span(f.rule))
    head = " ".join(parts) + " — " + escape_text(" ".join(f.message.split()), block=False)
    if not f.suggestion:
        return [f"- {head}"]
    return [f"- {head}\\", f"  → {escape_text(' '.join(f.suggestion.split()), block=False)}"]


def _findings(findings: List[Finding]) -> List[str]:
    out = [f"**Findings ({len(findings)})**", ""]
    for _sev, group in ordered_findings(findings):
        for f in group:
            out += _finding(f)
    return [*out, ""]


def _series(series: Series) -> List[str]:
    scale = ", log y" if series.log_y else ""
    out = [
        f"**{escape_text(series.title, block=False)}** ({escape_text(series.x_label, block=False)} → {escape_text(series.y_label, block=False)}{scale})",
        "",
    ]
    pts, notes = prepare(series)
    rows: List[List[Any]] = []
    for label, keep in pts.items():
        ys = [y for _, y in keep]
        rows.append(
            [
                label,
                len(keep),
                keep[0][0] if keep else None,
                keep[-1][0] if keep else None,
                min(ys) if ys else None,
                max(ys) if ys else None,
                ys[-1] if ys else None,
            ]
        )
    if rows:
        out += [*_table_lines(["line", "points", "x first", "x last", "y min", "y max", "y last"], rows), ""]
    else:
        out += ["_(no data)_", ""]
    if notes:
        out += [f"_{escape_text('; '.join(notes), block=False)}_", ""]
    if series.marks:
        out += [
            "Marks: "
            + ", ".join(
                f"{escape_text(str(lbl), block=False)} at {escape_text(format_value(x), block=False)}"
                for x, lbl in series.marks
            ),
            "",
        ]
    if series.points:
        out += [
            "Marked points: "
            + ", ".join(
                f"{code_span(str(p[2]))} at {escape_text(format_value(p[0]), block=False)} "
                f"({escape_text(format_value(p[1]), block=False)})"
                for p in series.points
            ),
            "",
        ]
    return out


def _chart(chart: Chart) -> List[str]:
    """A chart as its terminal text in a code block (GitHub shows the unicode bars and shades as is)."""
    head, *body = chart_lines(chart, CHART_WIDTH)
    fence = "```"
    while any(fence in line for line in body):
        fence += "`"
    return [f"**{escape_text(head, block=False)}**", "", fence + "text", *body, fence, ""]


def _section(section: Section) -> List[str]:
    out = [f"## {escape_text(' '.join(section.title.split()), block=False)}", ""]
    for para in section.text:
        out += [escape_text(para), ""]
    for table in section.tables:
        out += _table(table)
    if section.findings:
        out += _findings(section.findings)
    for series in section.series:
        out += _series(series)
    for chart in section.charts:
        out += _chart(chart)
    return out


def render_markdown(report: Report) -> str:
    out = [f"# {escape_text(' '.join((report.title or report.schema).split()), block=False)}", ""]
    if report.headline:
        out += [f"**{escape_text(' '.join(report.headline.split()), block=False)}**", ""]
    if report.summary:
        out += [*_table_lines(["Summary", "Value"], [[k, v] for k, v in report.summary]), ""]
    for section in report.sections:
        out += _section(section)
    out += [f"<sub>{html.escape(report.schema)} · generated by ascend-doctor</sub>"]
    return "\n".join(out).rstrip("\n") + "\n"
