"""Line plots as inline SVG, built by hand (no plotting library): axes with "nice" ticks and labels,
one ``<polyline>`` per line with a legend, optional log-y, dashed vertical marks labelled above the plot
(never over the lines), and labelled point markers (e.g. the culprits on a drift plot).

Every label is escaped with :func:`html.escape`. Points that cannot be drawn (NaN/Inf, and y <= 0 on a
log scale) are dropped and the plot says so. Lines are drawn in x order. Very long lines are thinned
per pixel column (first/min/max/last) so a 100k-step loss curve stays a small file that looks the same.
"""

import math
from html import escape
from typing import Dict, List, Optional, Tuple

from .model import Series
from .svg_axes import (
    LINE_H,
    PALETTE,
    Frame,
    draw_labelled_points,
    draw_legend,
    finite_labels,
    label_span,
    legend_rows,
    num,
    place_rows,
    svg_element,
    truncate,
)

MAX_POINTS = 4000  # per line; beyond this a line is thinned per pixel column
MARKER_MAX_POINTS = 40  # lines this short also get a dot per point

Point = Tuple[float, float]


def prepare(series: Series) -> Tuple[Dict[str, List[Point]], List[str]]:
    """Drawable points per line (sorted by x) and notes about what was dropped."""
    lines: Dict[str, List[Point]] = {}
    non_finite = non_positive = 0
    for label, pts in series.lines.items():
        keep = []
        for p in pts:
            try:
                x, y = float(p[0]), float(p[1])
            except (TypeError, ValueError, IndexError):
                non_finite += 1
                continue
            if not (math.isfinite(x) and math.isfinite(y)):
                non_finite += 1
            elif series.log_y and y <= 0:
                non_positive += 1
            else:
                keep.append((x, y))
        keep.sort(key=lambda q: q[0])
        lines[str(label)] = keep
    notes = []
    if non_finite:
        notes.append(f"{non_finite} non-finite point{'s' if non_finite != 1 else ''} (NaN/Inf) not drawn")
    if non_positive:
        notes.append(
            f"log scale: {non_positive} non-positive value{'s' if non_positive != 1 else ''} not drawn"
        )
    return lines, notes


def _thin(points: List[Point], sx, limit: int) -> List[Point]:
    """Keep first/min/max/last of each pixel column so the drawn shape is unchanged."""
    if len(points) <= limit:
        return points
    out: List[Point] = []
    bucket: List[Point] = []
    col: Optional[int] = None
    for p in points:
        c = int(sx(p[0]))
        if c != col and bucket:
            out.extend(_extremes(bucket))
            bucket = []
        col = c
        bucket.append(p)
    out.extend(_extremes(bucket))
    return out


def _extremes(bucket: List[Point]) -> List[Point]:
    if len(bucket) <= 4:
        return bucket
    lo = min(range(len(bucket)), key=lambda i: bucket[i][1])
    hi = max(range(len(bucket)), key=lambda i: bucket[i][1])
    idx = sorted({0, lo, hi, len(bucket) - 1})
    return [bucket[i] for i in idx]


def _marks(series: Series) -> List[Tuple[float, str]]:
    out = []
    for m in series.marks:
        try:
            mx = float(m[0])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(mx):
            out.append((mx, str(m[1]) if len(m) > 1 else ""))
    return out


def line_plot(
    series: Series, width: int = 760, plot_height: int = 280, standalone: bool = False
) -> Tuple[str, List[str]]:
    """The series as one ``<svg>`` element, and the notes (dropped points) it shows under the plot."""
    lines, notes = prepare(series)
    marks = _marks(series)
    labelled = finite_labels(series.points, False, series.log_y)
    xs = [p[0] for pts in lines.values() for p in pts] + [m[0] for m in marks] + [p[0] for p in labelled]
    ys = [p[1] for pts in lines.values() for p in pts] + [p[1] for p in labelled]

    # the mark labels sit in rows above the plot: place them once the x scale is known
    probe = Frame(
        series.title, series.x_label, series.y_label, xs, ys, width, plot_height, log_y=series.log_y
    )
    spans = [label_span(probe.sx(mx), truncate(label, 40), probe.px0, width - 4) for mx, label in marks]
    mark_rows = place_rows([(a, b) for _anchor, _tx, a, b in spans])
    n_rows = max(mark_rows) + 1 if any(label for _, label in marks) else 0
    frame = Frame(
        series.title,
        series.x_label,
        series.y_label,
        xs,
        ys,
        width,
        plot_height,
        log_y=series.log_y,
        top_rows=n_rows,
    )
    sx, sy = frame.sx, frame.sy
    legend = legend_rows(list(lines), frame.px0, frame.px1)
    legend_y = frame.py1 + 50
    notes_y = legend_y + 18 * len(legend) + 4
    height = notes_y + 16 * len(notes) + 6

    out = frame.draw()
    if marks:
        out.append('<g class="marks">')
        for (mx, label), (anchor, tx, _a, _b), row in zip(marks, spans, mark_rows):
            x = sx(mx)
            out.append(
                f'<line x1="{num(x)}" x2="{num(x)}" y1="{frame.py0}" y2="{frame.py1}" stroke="#6e7781" '
                f'stroke-width="1" stroke-dasharray="5 4"/>'
            )
            if label:
                ty = frame.py0 - 4 - LINE_H * row
                out.append(
                    f'<text x="{num(tx)}" y="{ty}" text-anchor="{anchor}" fill="#424a53">'
                    f"{escape(truncate(label, 40))}<title>{escape(label)}</title></text>"
                )
        out.append("</g>")
    out.append(
        '<g class="lines" fill="none" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round">'
    )
    for i, (label, pts) in enumerate(lines.items()):
        color = PALETTE[i % len(PALETTE)]
        drawn = _thin(pts, sx, MAX_POINTS)
        coords = " ".join(f"{num(sx(x))},{num(sy(y))}" for x, y in drawn)
        out.append(f'<polyline stroke="{color}" points="{coords}"><title>{escape(label)}</title></polyline>')
        if 0 < len(pts) <= MARKER_MAX_POINTS:
            for x, y in pts:
                out.append(f'<circle cx="{num(sx(x))}" cy="{num(sy(y))}" r="2.2" fill="{color}"/>')
    out.append("</g>")
    out.extend(draw_labelled_points(frame, labelled))
    if not ys:
        out.append(frame.no_data())
    out.extend(draw_legend(legend, legend_y))
    for k, note in enumerate(notes):
        out.append(
            f'<text class="note" x="{frame.px0}" y="{notes_y + 16 * k + 8}" fill="#9a6700">{escape(note)}</text>'
        )
    return svg_element(series.title, width, height, out, standalone), notes
