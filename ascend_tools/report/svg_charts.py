"""Bar, heatmap and scatter charts as inline SVG (no plotting library), for :class:`Bars`,
:class:`Heatmap` and :class:`Scatter`; :func:`chart_svg` picks the one for a chart.

Bars are horizontal (one row per category, its name on the left), so long names (op names, ranks) never
collide; positive parts stack to the right of zero, negative parts to the left. A heatmap colours each
cell on one sequential scale between the matrix's min and max (a legend names both); a cell with no
value is grey. Non-finite values are not drawn and the chart says how many.
"""

import math
from html import escape
from typing import List, Sequence, Tuple

from .model import Bars, Chart, Heatmap, Scatter
from .svg_axes import (
    CHAR_W,
    PALETTE,
    Frame,
    Scale,
    draw_labelled_points,
    draw_legend,
    finite_labels,
    legend_rows,
    num,
    svg_element,
    text_px,
    truncate,
)
from .text_cells import finite

BAR_ROW = 22  # px per category
HEAT_ROW_MAX = 22  # px per heatmap row at most
HEAT_ROW_MIN = 3
CELL_TITLES_MAX = 6000  # cells with a hover title; a larger matrix stays a small file
#: the sequential colour scale of heatmaps (light → dark), interpolated linearly
RAMP = ((255, 247, 236), (253, 212, 158), (252, 141, 89), (215, 48, 31), (127, 0, 0))
NO_VALUE = "#eaeef2"


def _note(n: int, what: str) -> List[str]:
    return [f"{n} non-finite {what}{'s' if n != 1 else ''} not drawn"] if n else []


def _notes_svg(notes: Sequence[str], x: float, y: float) -> List[str]:
    return [
        f'<text class="note" x="{num(x)}" y="{num(y + 16 * k + 8)}" fill="#9a6700">{escape(n)}</text>'
        for k, n in enumerate(notes)
    ]


def bar_chart(chart: Bars, width: int = 760, standalone: bool = False) -> str:
    cats = [str(c) for c in chart.categories]
    stacks = list(chart.stacks.items())
    bad = 0
    parts: List[List[Tuple[int, float, float]]] = []  # per category: (stack index, start, end)
    ends: List[float] = [0.0]
    for ci in range(len(cats)):
        pos = neg = 0.0
        row = []
        for si, (_label, values) in enumerate(stacks):
            if ci >= len(values) or values[ci] is None:
                continue
            v = finite(values[ci])
            if v is None:
                bad += 1
                continue
            if v >= 0:
                row.append((si, pos, pos + v))
                pos += v
            else:
                row.append((si, neg + v, neg))
                neg += v
        parts.append(row)
        ends += [pos, neg]
    label_w = min(220.0, max([text_px(truncate(c, 34)) for c in cats] + [20.0]))
    x0 = 16 + label_w + 8
    x1 = width - 24
    scale = Scale(ends, False, False, x0, x1)
    top = 34
    bottom = top + BAR_ROW * max(1, len(cats))
    legend = legend_rows([label for label, _ in stacks], x0, x1) if len(stacks) > 1 else []
    legend_y = bottom + 50
    notes = _note(bad, "value")
    notes_y = legend_y + 18 * len(legend) + 4
    height = notes_y + 16 * len(notes) + 6
    hl = {str(h) for h in chart.highlight}
    e = escape
    out = [
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="13" font-weight="600" '
        f'fill="#1f2328">{e(chart.title)}</text>',
        '<g class="grid" stroke="#eaeef2">',
    ]
    for t in scale.ticks:
        out.append(f'<line x1="{num(scale(t))}" x2="{num(scale(t))}" y1="{top}" y2="{bottom}"/>')
    out.append("</g>")
    zero = scale(0.0)
    out.append('<g class="bars">')
    for ci, (cat, row) in enumerate(zip(cats, parts)):
        y = top + BAR_ROW * ci
        strong = cat in hl
        if strong:
            out.append(f'<rect x="4" y="{y}" width="{width - 8}" height="{BAR_ROW}" fill="#fff8c5"/>')
        weight = ' font-weight="700"' if strong else ""
        out.append(
            f'<text x="{num(x0 - 8)}" y="{y + BAR_ROW / 2:.1f}" dy="0.32em" text-anchor="end" fill="#1f2328"'
            f"{weight}>{e(truncate(cat, 34))}<title>{e(cat)}</title></text>"
        )
        for si, a, b in row:
            label, _values = stacks[si]
            stroke = ' stroke="#1f2328" stroke-width="1.2"' if strong else ""
            out.append(
                f'<rect x="{num(scale(a))}" y="{y + 4}" width="{num(max(0.5, scale(b) - scale(a)))}" '
                f'height="{BAR_ROW - 8}" fill="{PALETTE[si % len(PALETTE)]}"{stroke}>'
                f"<title>{e(cat)} · {e(label)}: {b - a:.4g}</title></rect>"
            )
    out.append("</g>")
    out.append(f'<line x1="{num(zero)}" x2="{num(zero)}" y1="{top}" y2="{bottom}" stroke="#57606a"/>')
    out.append('<g class="axes" fill="#57606a">')
    for t, lab in zip(scale.ticks, scale.labels):
        out.append(f'<text x="{num(scale(t))}" y="{bottom + 16}" text-anchor="middle">{e(lab)}</text>')
    out.append("</g>")
    out.append(
        f'<text x="{(x0 + x1) / 2:.0f}" y="{bottom + 34}" text-anchor="middle" fill="#1f2328">'
        f"{e(chart.y_label)}</text>"
    )
    if chart.x_label:
        out.append(f'<text x="16" y="{top - 6}" fill="#57606a">{e(chart.x_label)}</text>')
    if not cats:
        out.append(
            f'<text x="{(x0 + x1) / 2:.0f}" y="{top + 14}" text-anchor="middle" fill="#6e7781">no data</text>'
        )
    out.extend(draw_legend(legend, legend_y, swatch="box"))
    out.extend(_notes_svg(notes, x0, notes_y))
    return svg_element(chart.title, width, height, out, standalone)


def ramp(t: float) -> str:
    """The colour at ``t`` in [0, 1] on :data:`RAMP`."""
    t = min(1.0, max(0.0, t)) * (len(RAMP) - 1)
    i = min(len(RAMP) - 2, int(t))
    f = t - i
    rgb = (round(a + (b - a) * f) for a, b in zip(RAMP[i], RAMP[i + 1]))
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _every(n: int, px: float, label_px: float) -> int:
    """Show every k-th of ``n`` tick labels ``px`` apart so that labels ``label_px`` wide do not touch."""
    return max(1, math.ceil((label_px + 8) / max(px, 1e-9))) if n else 1


def heatmap(chart: Heatmap, width: int = 760, standalone: bool = False) -> str:
    rows = [[finite(v) for v in r] for r in chart.values]
    ncols = max([len(r) for r in rows] + [len(chart.x_ticks)])
    nrows = max(len(rows), len(chart.y_ticks))
    flat = [v for r in rows for v in r if v is not None]
    bad = sum(1 for r in chart.values for v in r if v is not None) - len(flat)
    lo, hi = (min(flat), max(flat)) if flat else (0.0, 1.0)
    y_names = [str(t) for t in chart.y_ticks] + [""] * (nrows - len(chart.y_ticks))
    x_names = [str(t) for t in chart.x_ticks] + [""] * (ncols - len(chart.x_ticks))
    label_w = min(160.0, max([text_px(truncate(n, 24)) for n in y_names] + [16.0]))
    x0 = 16 + label_w + 8
    x1 = width - 24
    cw = (x1 - x0) / max(1, ncols)
    rh = max(HEAT_ROW_MIN, min(HEAT_ROW_MAX, 360 / max(1, nrows)))
    top = 34
    bottom = top + rh * max(1, nrows)
    e = escape
    out = [
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="13" font-weight="600" '
        f'fill="#1f2328">{e(chart.title)}</text>',
        f'<rect x="{num(x0)}" y="{top}" width="{num(x1 - x0)}" height="{num(bottom - top)}" fill="{NO_VALUE}"/>',
        '<g class="cells" shape-rendering="crispEdges">',
    ]
    titles = nrows * ncols <= CELL_TITLES_MAX
    span = (hi - lo) or 1.0
    for ri, r in enumerate(rows):
        for ci, v in enumerate(r):
            if v is None:
                continue
            tip = f"<title>{e(y_names[ri])} × {e(x_names[ci])}: {v:.4g}</title>" if titles else ""
            out.append(
                f'<rect x="{num(x0 + cw * ci)}" y="{num(top + rh * ri)}" width="{num(cw + 0.3)}" '
                f'height="{num(rh + 0.3)}" fill="{ramp((v - lo) / span)}">{tip}</rect>'
            )
    out.append("</g>")
    out.append('<g class="axes" fill="#57606a">')
    k = _every(nrows, rh, 11)
    for ri, name in enumerate(y_names):
        if ri % k == 0 and name:
            out.append(
                f'<text x="{num(x0 - 6)}" y="{num(top + rh * (ri + 0.5))}" dy="0.32em" text-anchor="end">'
                f"{e(truncate(name, 24))}<title>{e(name)}</title></text>"
            )
    k = _every(ncols, cw, CHAR_W * max([len(truncate(n, 12)) for n in x_names] + [1]))
    for ci, name in enumerate(x_names):
        if ci % k == 0 and name:
            out.append(
                f'<text x="{num(x0 + cw * (ci + 0.5))}" y="{num(bottom + 14)}" text-anchor="middle">'
                f"{e(truncate(name, 12))}</text>"
            )
    out.append("</g>")
    out.append(
        f'<text x="{(x0 + x1) / 2:.0f}" y="{num(bottom + 32)}" text-anchor="middle" fill="#1f2328">'
        f"{e(chart.x_label)}</text>"
    )
    out.append(f'<text x="16" y="{top - 6}" fill="#57606a">{e(chart.y_label)}</text>')
    # colour legend: a gradient strip from min to max
    ly = bottom + 46
    steps = 40
    sw = 200 / steps
    out.append('<g class="scale">')
    for i in range(steps):
        out.append(
            f'<rect x="{num(x0 + sw * i)}" y="{num(ly)}" width="{num(sw + 0.3)}" height="10" '
            f'fill="{ramp(i / (steps - 1))}"/>'
        )
    unit = f" {chart.value_label}" if chart.value_label else ""
    out.append(f'<text x="{num(x0)}" y="{num(ly + 24)}" fill="#57606a">{lo:.4g}</text>')
    out.append(
        f'<text x="{num(x0 + 200)}" y="{num(ly + 24)}" text-anchor="end" fill="#57606a">{hi:.4g}</text>'
    )
    out.append(f'<text x="{num(x0 + 212)}" y="{num(ly + 9)}" fill="#1f2328">{e(unit.strip())}</text>')
    out.append(
        f'<rect x="{num(x0 + 230 + text_px(unit))}" y="{num(ly)}" width="10" height="10" fill="{NO_VALUE}"/>'
        f'<text x="{num(x0 + 246 + text_px(unit))}" y="{num(ly + 9)}" fill="#57606a">no data</text>'
    )
    out.append("</g>")
    notes = _note(bad, "value")
    out.extend(_notes_svg(notes, x0, ly + 32))
    height = ly + 32 + 16 * len(notes) + 6
    return svg_element(chart.title, width, height, out, standalone)


def scatter_plot(chart: Scatter, width: int = 760, plot_height: int = 280, standalone: bool = False) -> str:
    groups = []
    dropped = 0
    for label, pts in chart.points.items():
        keep = []
        for p in pts:
            x, y = finite(p[0]) if len(p) > 0 else None, finite(p[1]) if len(p) > 1 else None
            if x is None or y is None or (chart.log_x and x <= 0) or (chart.log_y and y <= 0):
                dropped += 1
            else:
                keep.append((x, y))
        groups.append((str(label), keep))
    labelled = finite_labels(chart.labels, chart.log_x, chart.log_y)
    xs = [x for _, g in groups for x, _ in g] + [p[0] for p in labelled]
    ys = [y for _, g in groups for _, y in g] + [p[1] for p in labelled]
    frame = Frame(
        chart.title, chart.x_label, chart.y_label, xs, ys, width, plot_height, chart.log_x, chart.log_y
    )
    out = frame.draw()
    out.append('<g class="points" fill-opacity="0.75">')
    for i, (_label, pts) in enumerate(groups):
        color = PALETTE[i % len(PALETTE)]
        for x, y in pts:
            out.append(f'<circle cx="{num(frame.sx(x))}" cy="{num(frame.sy(y))}" r="3" fill="{color}"/>')
    out.append("</g>")
    out.extend(draw_labelled_points(frame, labelled))
    if not ys:
        out.append(frame.no_data())
    legend = legend_rows([g[0] for g in groups], frame.px0, frame.px1)
    legend_y = frame.py1 + 50
    notes = (
        [f"{dropped} point{'s' if dropped != 1 else ''} not drawn (non-finite, or ≤ 0 on a log axis)"]
        if dropped
        else []
    )
    notes_y = legend_y + 18 * len(legend) + 4
    out.extend(draw_legend(legend, legend_y, swatch="dot"))
    out.extend(_notes_svg(notes, frame.px0, notes_y))
    return svg_element(chart.title, width, notes_y + 16 * len(notes) + 6, out, standalone)


def chart_svg(chart: Chart, width: int = 760) -> str:
    """The one ``<svg>`` for a chart of any kind."""
    if isinstance(chart, Bars):
        return bar_chart(chart, width)
    if isinstance(chart, Heatmap):
        return heatmap(chart, width)
    return scatter_plot(chart, width)
