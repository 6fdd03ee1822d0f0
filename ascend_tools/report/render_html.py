"""Self-contained HTML rendering of a :class:`Report`: one file, inline CSS and SVG, no external URL.

Every string that comes from the report is passed through :func:`html.escape` (names come from user
models and dumps). Tables are laid out by ``html_table.py``: rows embedded as data, a page of them drawn
by a few lines of inline JavaScript that also filter and sort over all rows; without JavaScript the page
still reads (the first page of each table, the filter box hidden).
"""

from typing import Dict, List

from ..severity import Severity
from .html_table import TABLE_JS, esc, pill, render_table
from .model import Finding, Report, Section, Series
from .render_text import ordered_findings, status_class
from .svg import line_plot
from .svg_charts import chart_svg
from .text_cells import format_value, is_number

CSS = """
:root{--fg:#1f2328;--muted:#59636e;--border:#d1d9e0;--bg:#f6f8fa;--card:#fff;--head:#f6f8fa;
--bad:#cf222e;--bad-bg:#ffebe9;--warn:#9a6700;--warn-bg:#fff8c5;--ok:#1a7f37;--ok-bg:#dafbe1;--link:#0969da}
*{box-sizing:border-box}
[hidden]{display:none!important}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:var(--bg);color:var(--fg);line-height:1.5;font-size:14px;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,"Noto Sans","PingFang SC",
"Microsoft YaHei",sans-serif}
code,.mono{font-family:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,"Liberation Mono",monospace;
font-size:12.5px}
a{color:var(--link);text-decoration:none}
a:hover{text-decoration:underline}
.container{max-width:1200px;margin:0 auto;padding:24px 20px 40px}
header.page h1{font-size:24px;margin:0 0 2px;overflow-wrap:anywhere}
header.page .schema{color:var(--muted);font-size:12px}
.card{background:var(--card);border:1px solid var(--border);border-radius:8px;padding:16px 20px;margin:16px 0}
.summary dl{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:14px 20px;margin:0}
.summary dt{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.03em}
.summary dd{margin:2px 0 0;font-size:18px;font-weight:600;overflow-wrap:anywhere}
.summary dd.long{font-size:14px;font-weight:500}
.counts{margin-top:14px;display:flex;gap:8px;flex-wrap:wrap}
.headline{margin:0 0 14px;font-size:16px;font-weight:600}
nav.toc{font-size:13px}
nav.toc ol{margin:4px 0 0;padding:0;list-style-position:inside;display:flex;flex-wrap:wrap;gap:2px 28px}
section.card h2{font-size:18px;margin:0 0 8px;padding-bottom:6px;border-bottom:1px solid var(--border)}
h3{font-size:15px;margin:18px 0 6px}
h3 .rows{color:var(--muted);font-weight:400;font-size:12px;margin-left:6px}
p{margin:6px 0}
p.text{white-space:pre-wrap;overflow-wrap:anywhere}
.note{color:var(--muted);font-size:12.5px}
.tools{display:flex;align-items:center;gap:10px;margin:4px 0 6px}
input.filter{font:inherit;font-size:13px;padding:4px 8px;border:1px solid var(--border);border-radius:6px;
width:260px;max-width:100%}
.tools .count{color:var(--muted);font-size:12px}
.tools .pager{margin-left:auto;display:flex;align-items:center;gap:8px;font-size:12px;color:var(--muted)}
.tools button{font:inherit;font-size:12px;padding:2px 10px;border:1px solid var(--border);border-radius:6px;
background:#fff;cursor:pointer}
.tools button:disabled{opacity:.45;cursor:default}
details.table-block{margin:12px 0}
details.table-block>summary{cursor:pointer}
details.table-block>summary h3{display:inline-block;margin:6px 0}
.table-wrap{max-height:70vh;overflow:auto;border:1px solid var(--border);border-radius:6px}
table.data{border-collapse:separate;border-spacing:0;table-layout:fixed;min-width:100%;font-size:13px;
font-variant-numeric:tabular-nums}
table.data th{position:sticky;top:0;z-index:1;background:var(--head);text-align:left;font-weight:600;
padding:6px 10px;border-bottom:1px solid var(--border);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
table.data td{padding:4px 10px;border-bottom:1px solid #eef1f4;vertical-align:top}
table.data td.k-id,table.data td.k-path{font-family:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,
"Liberation Mono",monospace;font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
table.data td.k-number,table.data th.k-number{text-align:right;white-space:nowrap;overflow:hidden}
table.data td.k-text{overflow-wrap:anywhere}
table.data tbody tr:last-child td{border-bottom:0}
table.data tbody tr:hover td{background:#f6f8fa}
table.data th.sortable{cursor:pointer;user-select:none}
table.data th.sortable::after{content:" \\2195";color:#afb8c1;font-weight:400}
table.data th[aria-sort=ascending]::after{content:" \\2191";color:var(--fg)}
table.data th[aria-sort=descending]::after{content:" \\2193";color:var(--fg)}
.pill{display:inline-block;padding:0 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap;
background:#eaeef2;color:var(--fg)}
.st-bad{background:var(--bad-bg);color:var(--bad)}
.st-warn{background:var(--warn-bg);color:var(--warn)}
.st-ok{background:var(--ok-bg);color:var(--ok)}
.empty{color:var(--muted);font-style:italic}
ul.findings{list-style:none;padding:0;margin:8px 0}
ul.findings li{border:1px solid var(--border);border-left:4px solid #afb8c1;border-radius:6px;padding:8px 12px;
margin:8px 0;background:#fff}
ul.findings li.sev-error{border-left-color:var(--bad)}
ul.findings li.sev-warning{border-left-color:#d4a72c}
ul.findings li.sev-info{border-left-color:var(--ok)}
.finding-head{display:flex;flex-wrap:wrap;gap:8px;align-items:center}
.finding-head code{background:#f6f8fa;padding:1px 6px;border-radius:4px;overflow-wrap:anywhere}
.finding-head .rule{color:var(--muted)}
.finding-msg{margin-top:4px;overflow-wrap:anywhere;white-space:pre-wrap}
.suggestion{margin-top:2px;color:var(--ok);overflow-wrap:anywhere;white-space:pre-wrap}
figure.plot{margin:16px 0;overflow-x:auto}
figure.plot svg{max-width:100%;height:auto;display:block}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
@media print{body{background:#fff}.tools{display:none!important}.table-wrap{max-height:none;overflow:visible}
.card{border:0;padding:0}}
"""


def _finding(f: Finding) -> str:
    sev = str(f.severity)
    parts = [pill(sev, sev)]
    if f.location:
        parts.append(f"<code>{esc(f.location)}</code>")
    if f.rule:
        parts.append(f'<span class="rule mono">{esc(f.rule)}</span>')
    body = f'<div class="finding-head">{"".join(parts)}</div><div class="finding-msg">{esc(f.message)}</div>'
    if f.suggestion:
        body += f'<div class="suggestion">→ {esc(f.suggestion)}</div>'
    return f'<li class="finding sev-{sev}">{body}</li>'


def _findings(findings: List[Finding]) -> List[str]:
    out = [f'<h3>Findings<span class="rows">{len(findings)}</span></h3>', '<ul class="findings">']
    for _sev, group in ordered_findings(findings):
        out.extend(_finding(f) for f in group)
    out.append("</ul>")
    return out


def _series(series: Series) -> List[str]:
    svg, _notes = line_plot(series, width=940)  # the notes (dropped points) are drawn inside the plot
    return ['<figure class="plot">', svg, "</figure>"]


def _section(section: Section, idx: int) -> List[str]:
    out = [f'<section class="card" id="s{idx}">', f"<h2>{esc(section.title)}</h2>"]
    out.extend(f'<p class="text">{esc(p)}</p>' for p in section.text)
    for t, table in enumerate(section.tables, 1):
        out.extend(render_table(table, f"s{idx}-t{t}"))
    if section.findings:
        out.extend(_findings(section.findings))
    for series in section.series:
        out.extend(_series(series))
    for chart in section.charts:
        out.extend(['<figure class="plot">', chart_svg(chart, width=940), "</figure>"])
    if not (section.text or section.tables or section.findings or section.series or section.charts):
        out.append('<p class="empty">Nothing to show.</p>')
    out.append("</section>")
    return out


def _summary(report: Report) -> List[str]:
    counts: Dict[Severity, int] = {}
    for f in report.findings():
        counts[f.severity] = counts.get(f.severity, 0) + 1
    if not report.summary and not counts and not report.headline:
        return []
    out = ['<section class="card summary" aria-label="Summary">']
    if report.headline:
        out.append(f'<p class="headline">{esc(report.headline)}</p>')
    if report.summary:
        out.append("<dl>")
        for key, value in report.summary:
            text = format_value(value)
            shown = pill(text, value) if status_class(value) else esc(text)
            long = ' class="long"' if len(text) > 14 and not is_number(value) else ""
            out.append(f"<div><dt>{esc(key)}</dt><dd{long}>{shown}</dd></div>")
        out.append("</dl>")
    if counts:
        pills = "".join(pill(f"{counts[s]} {s}", str(s)) for s in sorted(counts, reverse=True))
        out.append(f'<div class="counts">{pills}</div>')
    out.append("</section>")
    return out


def render_html(report: Report) -> str:
    title = report.title or report.schema
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="generator" content="ascend-doctor">',
        f"<title>{esc(title)}</title>",
        f"<style>{CSS}</style>",
        "</head>",
        "<body>",
        '<main class="container">',
        f'<header class="page"><h1>{esc(title)}</h1><div class="schema mono">{esc(report.schema)}</div></header>',
    ]
    out.extend(_summary(report))
    if len(report.sections) > 1:
        links = "".join(
            f'<li><a href="#s{i}">{esc(s.title)}</a></li>' for i, s in enumerate(report.sections, 1)
        )
        out.append(
            f'<nav class="toc card" aria-label="Contents"><strong>Contents</strong><ol>{links}</ol></nav>'
        )
    for i, section in enumerate(report.sections, 1):
        out.extend(_section(section, i))
    out.append(f"<footer>Generated by ascend-doctor · {esc(report.schema)}</footer>")
    out.append("</main>")
    out.append(f"<script>{TABLE_JS}</script>")
    out.append("</body>")
    out.append("</html>")
    return "\n".join(out) + "\n"
