"""Charts: line plots that fit their data (x axis, mark labels, labelled points), and bar, heatmap and scatter
charts in SVG, terminal text and markdown. Pixel positions are checked against the linear/log maps the
charts document; colours against the documented ramp ends."""

import math
import re

from ascend_tools.report import Bars, Heatmap, Report, Scatter, Series, render
from ascend_tools.report.svg import line_plot
from ascend_tools.report.svg_charts import RAMP, bar_chart, heatmap, scatter_plot
from ascend_tools.report.text_charts import SHADES, chart_lines

XSS = "<script>alert(1)</script>"


def plot_rect(svg: str):
    m = re.search(r'<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)" fill="#fff"', svg)
    x, y, w, h = (float(v) for v in m.groups())
    return x, y, x + w, y + h


def polyline(svg: str):
    m = re.search(r'<polyline[^>]*points="([^"]*)"', svg)
    return [tuple(float(v) for v in p.split(",")) for p in m.group(1).split()]


def texts(svg: str):
    """[(x, y, text)] of every <text> with plain x/y attributes."""
    out = []
    for m in re.finditer(r'<text x="([-\d.]+)" y="([-\d.]+)"[^>]*>([^<]*)', svg):
        out.append((float(m.group(1)), float(m.group(2)), m.group(3)))
    return out


def test_x_axis_ends_with_the_data_not_the_next_nice_tick():
    # 654 points: the old axis ran to 800 (the next "nice" tick)
    svg, _ = line_plot(Series("drift", "op", "err", {"e": [(i, (i % 7) + 1.0) for i in range(654)]}))
    x0, _, x1, _ = plot_rect(svg)
    pts = polyline(svg)
    assert pts[0][0] == x0 and pts[-1][0] == x1
    labels = {t for _, _, t in texts(svg)}
    assert "600" in labels and "800" not in labels


def test_mark_labels_sit_above_the_plot_and_do_not_overlap():
    marks = [(276, "backward"), (280, "optimizer step"), (500, "checkpoint")]
    svg, _ = line_plot(Series("d", "op", "err", {"e": [(i, 1.0 + i) for i in range(654)]}, marks=marks))
    _, top, _, _ = plot_rect(svg)
    placed = [(x, y) for x, y, t in texts(svg) if t in {m[1] for m in marks}]
    assert len(placed) == 3
    assert all(y < top for _, y in placed)  # above the plot area: never over the lines
    # the two close marks are on different rows
    y_by = {t: y for _, y, t in texts(svg) if t in {m[1] for m in marks}}
    assert y_by["backward"] != y_by["optimizer step"]


def test_labelled_points_are_drawn_where_the_line_has_them_and_escaped():
    pts = [(i, 10.0 ** (i % 5)) for i in range(100)]
    svg, _ = line_plot(
        Series(
            "d", "op", "err", {"e": pts}, log_y=True, points=[(42, pts[42][1], f"aten::mm#forward#12 {XSS}")]
        )
    )
    vertex = polyline(svg)[42]
    ((cx, cy),) = [
        (float(a), float(b)) for a, b in re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)" r="4.5"', svg)
    ]
    assert math.isclose(cx, vertex[0], abs_tol=0.02) and math.isclose(cy, vertex[1], abs_tol=0.02)
    assert "aten::mm#forward#12 &lt;script&gt;" in svg and XSS not in svg


def test_close_point_labels_do_not_overlap():
    svg, _ = line_plot(
        Series(
            "d", "x", "y", {"e": [(0, 0), (100, 10)]}, points=[(40, 5, "first culprit"), (41, 5.1, "second")]
        )
    )
    a, b = [(x, y) for x, y, t in texts(svg) if t in ("first culprit", "second")]
    assert abs(a[1] - b[1]) >= 13


def bar_rects(svg: str):
    return [
        (float(x), float(w), title)
        for x, w, title in re.findall(
            r'<rect x="([\d.]+)" y="[\d.]+" width="([\d.]+)" height="\d+" fill="#\w+"[^>]*><title>([^<]*)</title>',
            svg,
        )
    ]


def test_bars_widths_are_proportional_and_stack_in_order():
    chart = Bars(
        "time", "rank", "s", ["r0", "r1"], {"compute": [1.0, 2.0], "wait": [0.5, 3.0]}, highlight=["r1"]
    )
    svg = bar_chart(chart)
    rects = bar_rects(svg)
    assert [t.split(":")[0] for _, _, t in rects] == [
        "r0 · compute",
        "r0 · wait",
        "r1 · compute",
        "r1 · wait",
    ]
    (x_a, w_a, _), (x_b, _, _), (x_c, w_c, _), (_, w_d, _) = rects
    assert x_a == x_c  # both start at zero
    assert math.isclose(w_c / w_a, 2.0, rel_tol=0.01) and math.isclose(w_d / w_a, 3.0, rel_tol=0.01)
    assert math.isclose(x_b, x_a + w_a, abs_tol=0.02)  # wait stacks after compute
    assert 'font-weight="700">r1' in svg  # the highlighted category
    lines = chart_lines(chart, 80)
    r0, r1 = [line for line in lines if line.strip().startswith(("r0", "r1"))]
    full = r1.count("█") + r1.count("▓")  # r1 has the largest total, 5: its bar is the full width
    for line, value in ((r0, 1.0), (r0, 1.5), (r1, 2.0), (r1, 5.0)):
        drawn = line.count("█") + (line.count("▓") if value in (1.5, 5.0) else 0)
        assert abs(drawn - value / 5.0 * full) <= 1  # each end rounded to a character
    assert r1.endswith("◀") and "5" in r1


def test_bars_negative_values_go_left_of_zero_and_non_finite_are_noted():
    svg = bar_chart(Bars("delta", "op", "ms", ["a", "b", "c"], {"d": [2.0, -1.0, float("nan")]}))
    (x_a, w_a, _), (x_b, w_b, _) = bar_rects(svg)
    assert math.isclose(x_b + w_b, x_a, abs_tol=0.02) and math.isclose(w_a / w_b, 2.0, rel_tol=0.01)
    assert "1 non-finite value not drawn" in svg


def test_heatmap_cells_colours_and_missing_values():
    values = [[0.0, 1.0, None], [0.5, float("inf"), 1.0]]
    svg = heatmap(Heatmap("late", "step", "rank", ["0", "1", "2"], ["rank0", "rank1"], values, "ms"))
    cells = re.findall(
        r'<rect x="[\d.]+" y="[\d.]+" width="[\d.]+" height="[\d.]+" fill="(#\w+)"><title>([^<]*)', svg
    )
    assert len(cells) == 4  # None and inf are not drawn
    by_title = {t: c for c, t in cells}
    assert by_title["rank0 × 0: 0"] == "#{:02x}{:02x}{:02x}".format(*RAMP[0])
    assert by_title["rank0 × 1: 1"] == "#{:02x}{:02x}{:02x}".format(*RAMP[-1])
    assert "1 non-finite value not drawn" in svg
    text = chart_lines(Heatmap("late", "step", "rank", ["0", "1", "2"], ["rank0", "rank1"], values), 80)
    row0 = next(line for line in text if "rank0" in line)
    assert row0.split("│")[1] == SHADES[0] + SHADES[-1] + " "


def test_heatmap_text_buckets_wide_matrices_by_maximum():
    values = [[0.0] * 1000]
    values[0][737] = 9.0
    text = chart_lines(Heatmap("late", "step", "rank", [str(i) for i in range(1000)], ["r"], values), 80)
    cells = next(line for line in text if line.strip().startswith("r ")).split("│")[1]
    assert len(cells) < 80 and cells.count(SHADES[-1]) == 1
    assert "per character, the maximum shown" in "\n".join(text)


def test_scatter_log_x_positions_and_labels():
    chart = Scatter(
        "busbw",
        "bytes",
        "GB/s",
        {"allreduce": [(10.0**k, 1.0) for k in range(3, 9)] + [(0.0, 1.0)]},
        log_x=True,
        labels=[(1e6, 1.0, "slow allreduce")],
    )
    svg = scatter_plot(chart)
    xs = sorted(float(x) for x in re.findall(r'<circle cx="([\d.]+)" cy="[\d.]+" r="3"', svg))
    steps = [b - a for a, b in zip(xs, xs[1:])]
    assert len(xs) == 6 and max(steps) - min(steps) < 0.05  # equal ratios → equal steps on a log axis
    assert "1 point not drawn" in svg and "slow allreduce" in svg
    text = "\n".join(chart_lines(chart, 80))
    assert "n=6" in text and "(log x)" in text and "● slow allreduce at x=1000000, y=1" in text


def test_charts_in_every_format():
    r = Report(schema="s/1", title="t")
    sec = r.section("charts")
    sec.charts += [
        Bars(f"bars {XSS}", "rank", "s", [XSS], {"a": [1.0]}),
        Heatmap("heat", "step", "rank", ["0"], ["r0"], [[1.0]]),
        Scatter("sc", "x", "y", {"k": [(1.0, 2.0)]}),
    ]
    html = render(r, "html")
    assert html.count('<svg class="plot"') == 3 and XSS not in html
    md = render(r, "markdown")
    assert md.count("```text") == 3 and "█" in md
    text = render(r, "table")
    assert "bars <script>" in text and "█" in text
