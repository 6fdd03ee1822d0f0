"""Charts as a few lines of plain text, for the terminal and (in a code block) markdown.

Bars: one line per category, a unicode bar per stack (``█ ▓ ▒ ░``) scaled to the widest total.
Heatmap: one line per row, each cell a shade (``░ ▒ ▓ █``, quartiles of the min..max range, blank: no
value); wider matrices are bucketed, each character showing the maximum of its columns. Scatter: one
summary line per legend label, then the labelled points.
"""

import math
from typing import List, Optional, Sequence

from .model import Bars, Chart, Heatmap, Scatter
from .text_cells import finite, format_value, one_line, pad, shorten, text_width

STACK_CHARS = "█▓▒░"
SHADES = "░▒▓█"


def _more(n: int) -> List[str]:
    return [f"  … {n} more: use --all or -f html"] if n > 0 else []


def _names(names: Sequence[str], cap: int) -> List[str]:
    w = min(cap, max([text_width(one_line(n)) for n in names] + [1]))
    return [pad(shorten(one_line(n), w), w) for n in names]


def bars_lines(chart: Bars, width: int, max_rows: Optional[int]) -> List[str]:
    stacks = list(chart.stacks.items())
    cats = [str(c) for c in chart.categories]
    totals = []
    for ci in range(len(cats)):
        vals = [finite(v[ci]) if ci < len(v) else None for _, v in stacks]
        totals.append([max(0.0, v or 0.0) for v in vals])
    big = max([sum(t) for t in totals] + [0.0])
    shown = cats if max_rows is None else cats[:max_rows]
    names = _names(shown, 28)
    out = []
    if len(stacks) > 1:
        out.append(
            "  "
            + "  ".join(
                f"{STACK_CHARS[i % len(STACK_CHARS)]} {one_line(label)}"
                for i, (label, _) in enumerate(stacks)
            )
        )
    values = [format_value(float(f"{sum(t):.4g}")) for t in totals[: len(shown)]]
    val_w = max([text_width(v) for v in values] + [1])
    bar_w = max(8, width - 2 - text_width(names[0] if names else "") - 2 - 2 - val_w - 2)
    hl = {str(h) for h in chart.highlight}
    for name, cat, parts, value in zip(names, shown, totals, values):
        bar, start = "", 0.0
        for si, v in enumerate(parts):  # cumulative rounding: the bar's length is its total's, to a char
            n = round((start + v) / big * bar_w) - round(start / big * bar_w) if big > 0 else 0
            bar += STACK_CHARS[si % len(STACK_CHARS)] * n
            start += v
        mark = " ◀" if cat in hl else ""
        out.append(f"  {name}  {pad(bar, bar_w)}  {pad(value, val_w, right=True)}{mark}")
    if not cats:
        out.append("  (no data)")
    return out + _more(len(cats) - len(shown))


def heatmap_lines(chart: Heatmap, width: int, max_rows: Optional[int]) -> List[str]:
    rows = [[finite(v) for v in r] for r in chart.values]
    ncols = max([len(r) for r in rows] + [len(chart.x_ticks), 0])
    flat = [v for r in rows for v in r if v is not None]
    if not flat:
        return ["  (no data)"]
    lo, hi = min(flat), max(flat)
    y_names = [str(t) for t in chart.y_ticks] + [""] * (len(rows) - len(chart.y_ticks))
    shown = rows if max_rows is None else rows[:max_rows]
    names = _names(y_names[: len(shown)], 20)
    room = max(8, width - 2 - text_width(names[0]) - 3 - 1)
    per = max(1, math.ceil(ncols / room))
    out = []
    for name, r in zip(names, shown):
        cells = []
        for c in range(0, ncols, per):
            bucket = [v for v in r[c : c + per] if v is not None]
            if not bucket:
                cells.append(" ")
                continue
            t = (max(bucket) - lo) / (hi - lo) if hi > lo else 1.0
            cells.append(SHADES[min(len(SHADES) - 1, int(t * len(SHADES)))])
        out.append(f"  {name} │{''.join(cells)}│")
    xt = [str(t) for t in chart.x_ticks]
    axis = f"{chart.x_label}: {xt[0]} … {xt[-1]}" if xt else chart.x_label
    if per > 1:
        axis += f" ({per} per character, the maximum shown)"
    out.append("  " + " " * text_width(names[0]) + "  " + one_line(axis))
    unit = f" {chart.value_label}" if chart.value_label else ""
    out.append(f"  shades {SHADES}: {format_value(lo)} … {format_value(hi)}{unit} (blank: no value)")
    return out + _more(len(rows) - len(shown))


def scatter_lines(chart: Scatter, width: int, max_rows: Optional[int]) -> List[str]:
    groups = list(chart.points.items())
    names = _names([str(k) for k, _ in groups], 24)
    out = []
    for name, (_label, pts) in zip(names, groups):
        good = [
            (x, y)
            for x, y in ((finite(p[0]), finite(p[1])) for p in pts)
            if x is not None
            and y is not None
            and not (chart.log_x and x <= 0)
            and not (chart.log_y and y <= 0)
        ]
        if not good:
            out.append(f"  {name}  (no points to draw)")
            continue
        xs, ys = [p[0] for p in good], [p[1] for p in good]
        dropped = f"  ({len(pts) - len(good)} not drawn)" if len(good) < len(pts) else ""
        out.append(
            f"  {name}  n={len(good)}  x {format_value(min(xs))}..{format_value(max(xs))}"
            f"  y {format_value(min(ys))}..{format_value(max(ys))}{dropped}"
        )
    if not groups:
        out.append("  (no data)")
    marked = chart.labels if max_rows is None else chart.labels[:max_rows]
    for x, y, label in marked:
        out.append(
            f"  ● {shorten(one_line(str(label)), max(20, width - 30))} at x={format_value(x)}, y={format_value(y)}"
        )
    return out + _more(len(chart.labels) - len(marked))


def chart_lines(chart: Chart, width: int, max_rows: Optional[int] = None) -> List[str]:
    """The chart's heading and body as text lines at most about ``width`` wide; ``max_rows`` caps the
    categories/rows/labels shown (None: all)."""
    log = [
        a
        for a, on in (("log x", getattr(chart, "log_x", False)), ("log y", getattr(chart, "log_y", False)))
        if on
    ]
    scale = f"  ({', '.join(log)})" if log else ""
    head = f"{one_line(chart.title)}  [{one_line(chart.x_label)} → {one_line(chart.y_label)}]{scale}"
    if isinstance(chart, Bars):
        body = bars_lines(chart, width, max_rows)
    elif isinstance(chart, Heatmap):
        body = heatmap_lines(chart, width, max_rows)
    else:
        body = scatter_lines(chart, width, max_rows)
    return [head, *body]
