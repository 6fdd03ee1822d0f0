"""Line plots as inline SVG, built by hand (no plotting library): axes with "nice" ticks and labels,
one ``<polyline>`` per line with a legend, optional log-y, dashed vertical marks with labels.

Every label is escaped with :func:`html.escape`. Points that cannot be drawn (NaN/Inf, and y <= 0 on a
log scale) are dropped and the plot says so. Lines are drawn in x order. Very long lines are thinned
per pixel column (first/min/max/last) so a 100k-step loss curve stays a small file that looks the same.
"""

import math
from html import escape
from typing import Dict, List, Optional, Sequence, Tuple

from .model import Series

PALETTE = (
    "#4e79a7",
    "#e15759",
    "#59a14f",
    "#f28e2b",
    "#b07aa1",
    "#76b7b2",
    "#edc948",
    "#ff9da7",
    "#9c755f",
    "#5f6b6d",
)
CHAR_W = 6.4  # average glyph width at font-size 11, for layout estimates
MAX_POINTS = 4000  # per line; beyond this a line is thinned per pixel column
MARKER_MAX_POINTS = 40  # lines this short also get a dot per point

Point = Tuple[float, float]
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _nice(x: float, round_: bool) -> float:
    exp = math.floor(math.log10(x))
    f = x / 10**exp
    if round_:
        nf = 1 if f < 1.5 else 2 if f < 3 else 5 if f < 7 else 10
    else:
        nf = 1 if f <= 1 else 2 if f <= 2 else 5 if f <= 5 else 10
    return nf * 10**exp


def nice_ticks(lo: float, hi: float, target: int = 6) -> List[float]:
    """Ticks at 1/2/5 x 10^k steps covering [lo, hi]; the first and last tick bound the axis."""
    if hi < lo:
        lo, hi = hi, lo
    if hi == lo:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
    step = _nice(_nice(hi - lo, False) / max(1, target - 1), True)
    start = math.floor(lo / step + 1e-9) * step
    count = int(math.ceil(hi / step - 1e-9) - math.floor(lo / step + 1e-9))
    return [_clean(start + i * step, step) for i in range(count + 1)]


def _clean(v: float, step: float) -> float:
    digits = max(0, -math.floor(math.log10(step)) + 1)
    v = round(v, digits)
    return 0.0 if v == 0 else v


def log_ticks(lo: float, hi: float) -> List[float]:
    """Ticks for a log axis covering [lo, hi] (both > 0): powers of ten, with 2 and 5 when few decades."""
    e0, e1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    if e1 == e0:
        e1 += 1
    decades = e1 - e0
    if decades <= 2:
        ticks = [m * 10.0**e for e in range(e0, e1) for m in (1, 2, 5)] + [10.0**e1]
        return [t for t in ticks if t >= 10.0**e0]
    every = max(1, math.ceil(decades / 8))
    e1 = e0 + math.ceil(decades / every) * every
    return [10.0**e for e in range(e0, e1 + 1, every)]


def tick_label(v: float, ticks: Sequence[float], log: bool = False) -> str:
    if v == 0:
        return "0"
    if log:
        e = math.floor(math.log10(v) + 1e-9)
        m = round(v / 10**e, 6)
        if 0 <= e <= 3:
            return f"{v:g}"
        power = "10" + str(e).translate(_SUPERSCRIPT)
        return power if m == 1 else f"{m:g}×{power}"
    big = max(abs(t) for t in ticks)
    step = abs(ticks[1] - ticks[0]) if len(ticks) > 1 else abs(v)
    if big >= 1e6 or step < 1e-4:
        return f"{v:.3g}"
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step < 1 else 0
    return f"{v:.{decimals}f}"


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


def _num(v: float) -> str:
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _truncate(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def line_plot(
    series: Series, width: int = 760, plot_height: int = 280, standalone: bool = False
) -> Tuple[str, List[str]]:
    """The series as one ``<svg>`` element, and the notes (dropped points) it shows under the plot."""
    lines, notes = prepare(series)
    log = series.log_y
    marks = []
    for m in series.marks:
        try:
            mx = float(m[0])
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(mx):
            marks.append((mx, str(m[1]) if len(m) > 1 else ""))

    xs = [p[0] for pts in lines.values() for p in pts] + [m[0] for m in marks]
    ys = [p[1] for pts in lines.values() for p in pts]
    has_data = bool(ys)
    xticks = nice_ticks(min(xs), max(xs)) if xs else nice_ticks(0.0, 1.0)
    if log:
        yticks = log_ticks(min(ys), max(ys)) if has_data else [1.0, 10.0]
    else:
        yticks = nice_ticks(min(ys), max(ys)) if has_data else nice_ticks(0.0, 1.0)
    x0, x1 = xticks[0], xticks[-1]
    y0, y1 = yticks[0], yticks[-1]
    ylabels = [tick_label(t, yticks, log) for t in yticks]
    xlabels = [tick_label(t, xticks) for t in xticks]

    # layout
    left = int(30 + CHAR_W * max(len(s) for s in ylabels))
    right, top = 24, 34
    px0, px1 = left, width - right
    py0, py1 = top, top + plot_height
    legend_rows: List[List[Tuple[str, str, float]]] = [[]]
    cursor: float = px0
    for i, label in enumerate(lines):
        shown = _truncate(label, 48)
        w = 22 + CHAR_W * len(shown) + 18
        if legend_rows[-1] and cursor + w > px1:
            legend_rows.append([])
            cursor = px0
        legend_rows[-1].append((label, PALETTE[i % len(PALETTE)], cursor))
        cursor += w
    if not lines:
        legend_rows = []
    legend_y = py1 + 50
    notes_y = legend_y + 18 * len(legend_rows) + 4
    height = notes_y + 16 * len(notes) + 6

    def t(y: float) -> float:
        return math.log10(y) if log else y

    def sx(x: float) -> float:
        return px0 + (x - x0) / (x1 - x0) * (px1 - px0)

    def sy(y: float) -> float:
        return py1 - (t(y) - t(y0)) / (t(y1) - t(y0)) * (py1 - py0)

    e = escape
    out = []
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    out.append(
        f'<svg{ns} class="plot" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif" font-size="11">'
    )
    out.append(f"<title>{e(series.title)}</title>")
    out.append(
        f'<rect x="{px0}" y="{py0}" width="{px1 - px0}" height="{py1 - py0}" fill="#fff" stroke="#d0d7de"/>'
    )
    out.append(
        f'<text x="{width / 2:.0f}" y="20" text-anchor="middle" font-size="13" font-weight="600" '
        f'fill="#1f2328">{e(series.title)}</text>'
    )
    # grid + ticks
    out.append('<g class="grid" stroke="#eaeef2" stroke-width="1">')
    for yt in yticks[1:-1]:
        out.append(f'<line x1="{px0}" x2="{px1}" y1="{_num(sy(yt))}" y2="{_num(sy(yt))}"/>')
    for xt in xticks[1:-1]:
        out.append(f'<line x1="{_num(sx(xt))}" x2="{_num(sx(xt))}" y1="{py0}" y2="{py1}"/>')
    out.append("</g>")
    out.append('<g class="axes" fill="#57606a">')
    out.append(f'<line x1="{px0}" x2="{px1}" y1="{py1}" y2="{py1}" stroke="#57606a"/>')
    out.append(f'<line x1="{px0}" x2="{px0}" y1="{py0}" y2="{py1}" stroke="#57606a"/>')
    for yt, lab in zip(yticks, ylabels):
        y_at = _num(sy(yt))
        out.append(f'<line x1="{px0 - 4}" x2="{px0}" y1="{y_at}" y2="{y_at}" stroke="#57606a"/>')
        out.append(f'<text x="{px0 - 7}" y="{y_at}" dy="0.32em" text-anchor="end">{e(lab)}</text>')
    for xt, lab in zip(xticks, xlabels):
        x_at = _num(sx(xt))
        out.append(f'<line x1="{x_at}" x2="{x_at}" y1="{py1}" y2="{py1 + 4}" stroke="#57606a"/>')
        out.append(f'<text x="{x_at}" y="{py1 + 16}" text-anchor="middle">{e(lab)}</text>')
    out.append("</g>")
    out.append(
        f'<text x="{(px0 + px1) / 2:.0f}" y="{py1 + 34}" text-anchor="middle" fill="#1f2328">'
        f"{e(series.x_label)}</text>"
    )
    cy = (py0 + py1) / 2
    out.append(
        f'<text transform="translate(14 {cy:.0f}) rotate(-90)" text-anchor="middle" fill="#1f2328">'
        f"{e(series.y_label)}{' (log)' if log else ''}</text>"
    )
    # marks
    if marks:
        out.append('<g class="marks">')
        for i, (mx, label) in enumerate(marks):
            x = sx(mx)
            out.append(
                f'<line x1="{_num(x)}" x2="{_num(x)}" y1="{py0}" y2="{py1}" stroke="#6e7781" '
                f'stroke-width="1" stroke-dasharray="5 4"/>'
            )
            if label:
                anchor, tx = ("end", x - 4) if x > px1 - 90 else ("start", x + 4)
                ty = py0 + 13 + 13 * (i % 3)
                out.append(
                    f'<text x="{_num(tx)}" y="{ty}" text-anchor="{anchor}" fill="#424a53" paint-order="stroke" '
                    f'stroke="#fff" stroke-width="3">{e(_truncate(label, 40))}</text>'
                )
        out.append("</g>")
    # lines
    out.append(
        '<g class="lines" fill="none" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round">'
    )
    for i, (label, pts) in enumerate(lines.items()):
        color = PALETTE[i % len(PALETTE)]
        drawn = _thin(pts, sx, MAX_POINTS)
        coords = " ".join(f"{_num(sx(x))},{_num(sy(y))}" for x, y in drawn)
        out.append(f'<polyline stroke="{color}" points="{coords}"><title>{e(label)}</title></polyline>')
        if 0 < len(pts) <= MARKER_MAX_POINTS:
            for x, y in pts:
                out.append(f'<circle cx="{_num(sx(x))}" cy="{_num(sy(y))}" r="2.2" fill="{color}"/>')
    out.append("</g>")
    if not has_data:
        out.append(
            f'<text x="{(px0 + px1) / 2:.0f}" y="{cy:.0f}" text-anchor="middle" fill="#6e7781" '
            f'font-size="13">no data</text>'
        )
    # legend
    if legend_rows:
        out.append('<g class="legend" fill="#1f2328">')
        for r, row in enumerate(legend_rows):
            ly = legend_y + 18 * r
            for label, color, lx in row:
                out.append(
                    f'<line x1="{_num(lx)}" x2="{_num(lx + 16)}" y1="{ly}" y2="{ly}" stroke="{color}" '
                    f'stroke-width="3"/>'
                )
                out.append(
                    f'<text x="{_num(lx + 22)}" y="{ly}" dy="0.32em">{e(_truncate(label, 48))}'
                    f"<title>{e(label)}</title></text>"
                )
        out.append("</g>")
    for k, note in enumerate(notes):
        out.append(f'<text class="note" x="{px0}" y="{notes_y + 16 * k + 8}" fill="#9a6700">{e(note)}</text>')
    out.append("</svg>")
    return "\n".join(out), notes
