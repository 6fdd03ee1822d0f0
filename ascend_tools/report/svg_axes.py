"""What every inline-SVG chart shares: "nice" ticks, a plot frame with linear or log axes, a legend, the
``<svg>`` element itself, and labels placed so that they do not overlap one another.

Every label is escaped with :func:`html.escape`. The x axis spans the data (ticks inside it), so 654 points
are not drawn on an axis that runs to 800; the y axis is rounded out to nice ticks.
"""

import math
from html import escape
from typing import List, Sequence, Tuple

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
LINE_H = 13  # one row of 11px labels
FONT = "system-ui, -apple-system, Segoe UI, Roboto, sans-serif"

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


def num(v: float) -> str:
    """A coordinate with at most two decimals."""
    s = f"{v:.2f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def truncate(s: str, n: int) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def text_px(s: str) -> float:
    return CHAR_W * len(s)


class Scale:
    """One axis: data bounds, ticks and the map to pixels (linear or log10)."""

    def __init__(self, values: Sequence[float], log: bool, span_data: bool, p0: float, p1: float):
        self.log = log
        self.p0, self.p1 = p0, p1
        if log:
            self.ticks = log_ticks(min(values), max(values)) if values else [1.0, 10.0]
        else:
            self.ticks = nice_ticks(min(values), max(values)) if values else nice_ticks(0.0, 1.0)
        self.lo, self.hi = self.ticks[0], self.ticks[-1]
        if span_data and values and min(values) < max(values):
            # the axis ends where the data ends; only the ticks inside it are drawn
            self.lo, self.hi = min(values), max(values)
            self.ticks = [t for t in self.ticks if self.lo - 1e-9 * abs(t) <= t <= self.hi + 1e-9 * abs(t)]
        shown = self.ticks or [self.lo, self.hi]
        self.labels = [tick_label(t, shown, log) for t in self.ticks]

    def t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def __call__(self, v: float) -> float:
        return self.p0 + (self.t(v) - self.t(self.lo)) / (self.t(self.hi) - self.t(self.lo)) * (
            self.p1 - self.p0
        )


class Frame:
    """A plot area with a title, x/y axes, grid and axis labels; ``top_rows`` rows of labels (marks) fit
    between the title and the plot, so they never cover the data."""

    def __init__(
        self,
        title: str,
        x_label: str,
        y_label: str,
        xs: Sequence[float],
        ys: Sequence[float],
        width: int,
        plot_height: int,
        log_x: bool = False,
        log_y: bool = False,
        top_rows: int = 0,
    ):
        self.title, self.x_label, self.y_label = title, x_label, y_label
        self.width = width
        probe = Scale(ys, log_y, False, 0, 1)
        left = int(30 + CHAR_W * max([len(s) for s in probe.labels] + [1]))
        self.px0, self.px1 = left, width - 24
        self.py0 = 34 + LINE_H * top_rows
        self.py1 = self.py0 + plot_height
        self.sx = Scale(xs, log_x, True, self.px0, self.px1)
        self.sy = Scale(ys, log_y, False, self.py1, self.py0)
        self.log_y = log_y

    def draw(self) -> List[str]:
        e = escape
        px0, px1, py0, py1 = self.px0, self.px1, self.py0, self.py1
        sx, sy = self.sx, self.sy
        out = [
            f'<rect x="{px0}" y="{py0}" width="{px1 - px0}" height="{py1 - py0}" fill="#fff" stroke="#d0d7de"/>',
            f'<text x="{self.width / 2:.0f}" y="20" text-anchor="middle" font-size="13" font-weight="600" '
            f'fill="#1f2328">{e(self.title)}</text>',
            '<g class="grid" stroke="#eaeef2" stroke-width="1">',
        ]
        for yt in sy.ticks:
            if py0 < sy(yt) < py1:
                out.append(f'<line x1="{px0}" x2="{px1}" y1="{num(sy(yt))}" y2="{num(sy(yt))}"/>')
        for xt in sx.ticks:
            if px0 < sx(xt) < px1:
                out.append(f'<line x1="{num(sx(xt))}" x2="{num(sx(xt))}" y1="{py0}" y2="{py1}"/>')
        out.append("</g>")
        out.append('<g class="axes" fill="#57606a">')
        out.append(f'<line x1="{px0}" x2="{px1}" y1="{py1}" y2="{py1}" stroke="#57606a"/>')
        out.append(f'<line x1="{px0}" x2="{px0}" y1="{py0}" y2="{py1}" stroke="#57606a"/>')
        for yt, lab in zip(sy.ticks, sy.labels):
            y_at = num(sy(yt))
            out.append(f'<line x1="{px0 - 4}" x2="{px0}" y1="{y_at}" y2="{y_at}" stroke="#57606a"/>')
            out.append(f'<text x="{px0 - 7}" y="{y_at}" dy="0.32em" text-anchor="end">{e(lab)}</text>')
        for xt, lab in zip(sx.ticks, sx.labels):
            x_at = num(sx(xt))
            out.append(f'<line x1="{x_at}" x2="{x_at}" y1="{py1}" y2="{py1 + 4}" stroke="#57606a"/>')
            out.append(f'<text x="{x_at}" y="{py1 + 16}" text-anchor="middle">{e(lab)}</text>')
        out.append("</g>")
        log_x = " (log)" if sx.log else ""
        out.append(
            f'<text x="{(px0 + px1) / 2:.0f}" y="{py1 + 34}" text-anchor="middle" fill="#1f2328">'
            f"{e(self.x_label)}{log_x}</text>"
        )
        cy = (py0 + py1) / 2
        out.append(
            f'<text transform="translate(14 {cy:.0f}) rotate(-90)" text-anchor="middle" fill="#1f2328">'
            f"{e(self.y_label)}{' (log)' if self.log_y else ''}</text>"
        )
        return out

    def no_data(self) -> str:
        return (
            f'<text x="{(self.px0 + self.px1) / 2:.0f}" y="{(self.py0 + self.py1) / 2:.0f}" '
            f'text-anchor="middle" fill="#6e7781" font-size="13">no data</text>'
        )


def legend_rows(labels: Sequence[str], x0: float, x1: float) -> List[List[Tuple[str, str, float]]]:
    """Legend entries (label, colour, x) wrapped into rows that fit between ``x0`` and ``x1``."""
    rows: List[List[Tuple[str, str, float]]] = [[]] if labels else []
    cursor = x0
    for i, label in enumerate(labels):
        w = 22 + text_px(truncate(label, 48)) + 18
        if rows[-1] and cursor + w > x1:
            rows.append([])
            cursor = x0
        rows[-1].append((label, PALETTE[i % len(PALETTE)], cursor))
        cursor += w
    return rows


def draw_legend(rows: List[List[Tuple[str, str, float]]], y0: float, swatch: str = "line") -> List[str]:
    """The legend at ``y0``, one row per 18 px; ``swatch`` is ``line``, ``dot`` or ``box``."""
    if not rows:
        return []
    out = ['<g class="legend" fill="#1f2328">']
    for r, row in enumerate(rows):
        ly = y0 + 18 * r
        for label, color, lx in row:
            if swatch == "line":
                out.append(
                    f'<line x1="{num(lx)}" x2="{num(lx + 16)}" y1="{ly}" y2="{ly}" stroke="{color}" '
                    f'stroke-width="3"/>'
                )
            elif swatch == "dot":
                out.append(f'<circle cx="{num(lx + 8)}" cy="{ly}" r="4" fill="{color}"/>')
            else:
                out.append(f'<rect x="{num(lx + 2)}" y="{ly - 5}" width="12" height="10" fill="{color}"/>')
            out.append(
                f'<text x="{num(lx + 22)}" y="{ly}" dy="0.32em">{escape(truncate(label, 48))}'
                f"<title>{escape(label)}</title></text>"
            )
    out.append("</g>")
    return out


def svg_element(title: str, width: int, height: float, body: List[str], standalone: bool) -> str:
    ns = ' xmlns="http://www.w3.org/2000/svg"' if standalone else ""
    head = (
        f'<svg{ns} class="plot" viewBox="0 0 {width} {num(height)}" width="{width}" height="{num(height)}" '
        f'role="img" font-family="{FONT}" font-size="11">'
    )
    return "\n".join([head, f"<title>{escape(title)}</title>", *body, "</svg>"])


def place_rows(spans: Sequence[Tuple[float, float]], gap: float = 6) -> List[int]:
    """A row index per horizontal span (x0, x1) so that spans in one row never overlap: the first row
    that is free at that place (greedy, in the given order)."""
    ends: List[float] = []
    rows = []
    for a, b in spans:
        for r, end in enumerate(ends):
            if a >= end + gap:
                ends[r] = b
                rows.append(r)
                break
        else:
            ends.append(b)
            rows.append(len(ends) - 1)
    return rows


def label_span(x: float, text: str, lo: float, hi: float) -> Tuple[str, float, float, float]:
    """Where a label at ``x`` goes: (anchor, text x, span start, span end), kept inside [lo, hi]."""
    w = text_px(text)
    if x + 4 + w <= hi:
        return "start", x + 4, x, x + 4 + w
    if x - 4 - w >= lo:
        return "end", x - 4, x - 4 - w, x
    return "start", lo, lo, lo + w


def finite_labels(
    points: Sequence[Tuple[float, float, str]], log_x: bool, log_y: bool
) -> List[Tuple[float, float, str]]:
    """The labelled points that can be drawn: numeric, finite, and positive on a log axis."""
    out = []
    for p in points:
        try:
            x, y, label = float(p[0]), float(p[1]), str(p[2]) if len(p) > 2 else ""
        except (TypeError, ValueError, IndexError):
            continue
        if math.isfinite(x) and math.isfinite(y) and not (log_x and x <= 0) and not (log_y and y <= 0):
            out.append((x, y, label))
    return out


def draw_labelled_points(frame: Frame, points: Sequence[Tuple[float, float, str]]) -> List[str]:
    """Each point as a ring marker with its label above it; a label that would cover one placed before
    it goes a row higher."""
    if not points:
        return []
    out = ['<g class="labelled-points">']
    boxes: List[Tuple[float, float, float]] = []  # (x0, x1, baseline) of the labels placed so far
    for x, y, label in sorted(points, key=lambda p: p[0]):
        cx, cy = frame.sx(x), frame.sy(y)
        out.append(
            f'<circle cx="{num(cx)}" cy="{num(cy)}" r="4.5" fill="#cf222e" stroke="#fff" stroke-width="1.5">'
            f"<title>{escape(label)}</title></circle>"
        )
        if not label:
            continue
        shown = truncate(label, 40)
        anchor, tx, a, b = label_span(cx, shown, frame.px0, frame.px1)
        ty = cy - 9
        while any(a < bx1 + 4 and bx0 < b + 4 and abs(ty - by) < LINE_H for bx0, bx1, by in boxes):
            ty -= LINE_H
        ty = max(frame.py0 + 10, ty)
        boxes.append((a, b, ty))
        out.append(
            f'<text x="{num(tx)}" y="{num(ty)}" text-anchor="{anchor}" fill="#cf222e" font-weight="600" '
            f'paint-order="stroke" stroke="#fff" stroke-width="3">{escape(shown)}</text>'
        )
    out.append("</g>")
    return out
