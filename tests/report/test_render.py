"""Rendering one Report to terminal text, markdown, JSON and self-contained HTML, and writing it."""

import json
import math
import os
import re
from pathlib import Path

import click
import pytest

from ascend_tools.errors import InputError
from ascend_tools.report import FORMATS, Finding, Report, Series, Severity, Table, render, write_report
from ascend_tools.report.render_text import render_text
from ascend_tools.report.svg import line_plot
from ascend_tools.report.svg_axes import log_ticks, nice_ticks

XSS = "<script>alert(1)</script>"


def polylines(svg: str):
    """[(label, [(x, y), ...])] for every polyline in ``svg``."""
    out = []
    for m in re.finditer(r'<polyline[^>]*points="([^"]*)"[^>]*>(?:<title>(.*?)</title>)?', svg):
        pts = [tuple(float(v) for v in p.split(",")) for p in m.group(1).split()]
        out.append((m.group(2), pts))
    return out


def make_report(n_rows: int = 5) -> Report:
    r = Report(
        schema="ascend-doctor/test/1",
        title=f"Check {XSS}",
        summary=[("model", "examples/llama.py"), ("ops", 412), ("status", "warning"), (f"label {XSS}", XSS)],
        data={"ops": [{"name": "aten::mm", "verdict": "npu"}], "count": 3},
    )
    sec = r.section(f"Ops {XSS}", [f"paragraph {XSS} with | pipe"])
    rows = [
        [f"aten::op_{i}", ["npu", "cpu_fallback", "unsupported"][i % 3], i * 10, i / 7] for i in range(n_rows)
    ]
    rows.append([XSS, "npu", 1, 0.5])
    sec.tables.append(
        Table(
            f"Table {XSS}",
            ["op", f"status {XSS}", "calls", "ms"],
            rows,
            note=f"note {XSS}",
            status_column=f"status {XSS}",
        )
    )
    sec.findings += [
        Finding(Severity.INFO, "dtype", "bf16 only on A2"),
        Finding(
            Severity.WARNING,
            "cuda-call",
            "torch.cuda.synchronize() is CUDA-only",
            "train.py:41",
            "use backend.synchronize()",
        ),
        Finding(Severity.ERROR, f"rule {XSS}", f"message {XSS}", f"loc {XSS}", f"fix {XSS}"),
    ]
    sec.series.append(
        Series(
            f"Loss {XSS}",
            f"step {XSS}",
            "loss",
            {
                "gpu": [(float(i), 3.0 / (i + 1)) for i in range(20)],
                f"npu {XSS}": [(float(i), 3.1 / (i + 1)) for i in range(20)],
            },
            marks=[(10.0, f"backward {XSS}")],
        )
    )
    return r


# ---------------------------------------------------------------- JSON


def test_json_round_trips_and_equals_payload_with_schema():
    r = make_report()
    out = render(r, "json")
    assert json.loads(out) == {"schema": r.schema, **r.data}
    assert list(json.loads(out)) == ["schema", "ops", "count"]  # insertion order kept
    assert out.startswith('{\n  "schema"')  # indent 2


def test_json_puts_a_row_on_a_line_and_nests_everything_else_as_indent_2():
    rows = [
        {"name": f"aten::mm#{i}", "shape": [2, 3], "err": i / 7, "ok": i % 2 == 0, "note": None}
        for i in range(3)
    ]
    data = {
        "summary": {"pairs": 3, "by": {"key": 3}},
        "pairs": rows,
        "dims": [4, 5],
        "empty": [],
        "nested": [[1]],
    }
    out = render(Report(schema="s/1", title="t", data=data), "json")
    assert json.loads(out) == {"schema": "s/1", **data}
    lines = out.splitlines()
    for i, row in enumerate(
        rows
    ):  # each row whole on its own line, as json.dumps writes it with ", " and ": "
        assert "    " + json.dumps(row) + ("," if i < 2 else "") in lines
    assert (
        '  "summary": {' in lines and '    "pairs": 3,' in lines and '      "key": 3' in lines
    )  # as indent=2
    assert '  "dims": [4, 5],' in lines and '  "empty": [],' in lines
    assert lines[-4:] == ['  "nested": [', "    [1]", "  ]", "}"]


def test_json_converts_non_json_values():
    r = Report(
        schema="s/1",
        title="t",
        data={
            "nan": float("nan"),
            "inf": float("inf"),
            "ninf": -math.inf,
            "nested": [{"v": float("nan")}],
            "tuple": (1, 2),
            "set": {3, 1, 2},
            "path": Path("/tmp/x.json"),
            "text": "中文 ✓",
            "z": 1,
            "a": 2,
        },
    )
    out = render(r, "json")
    back = json.loads(out)
    assert back["nan"] is None and back["inf"] is None and back["ninf"] is None
    assert back["nested"] == [{"v": None}]
    assert back["tuple"] == [1, 2]
    assert back["set"] == [1, 2, 3]
    assert back["path"] == "/tmp/x.json"
    assert "中文 ✓" in out  # ensure_ascii=False
    assert "NaN" not in out and "Infinity" not in out
    assert list(back) == ["schema", "nan", "inf", "ninf", "nested", "tuple", "set", "path", "text", "z", "a"]


def test_json_mixed_type_set_is_deterministic():
    r = Report(schema="s/1", title="t", data={"s": {"b", 1, "a", 2.5}})
    assert render(r, "json") == render(r, "json")
    assert sorted(json.loads(render(r, "json"))["s"], key=str) == sorted([1, 2.5, "a", "b"], key=str)


# ---------------------------------------------------------------- HTML


def test_html_is_self_contained_and_escaped():
    out = render(make_report(), "html")
    assert out.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", out, re.I)
    assert "http://" not in out and "https://" not in out
    assert "<script>alert" not in out.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "<link" not in out and "@import" not in out and "url(" not in out
    assert out.count("<script>") == 1  # only our own inline script
    assert "<style>" in out


def test_html_status_cells_and_severities_get_classes():
    out = render(make_report(), "html")
    assert '<span class="pill st-bad">cpu_fallback</span>' in out
    assert '<span class="pill st-bad">unsupported</span>' in out
    assert '<span class="pill st-ok">npu</span>' in out
    assert 'class="finding sev-error"' in out
    assert out.index("sev-error") < out.index("sev-warning") < out.index("sev-info")


def test_html_filter_box_hidden_without_js_and_tables_complete():
    r = make_report(n_rows=120)
    out = render(r, "html")
    assert '<div class="tools" hidden><input type="search" class="filter"' in out
    tbody = out[out.index("<tbody>") : out.index("</tbody>")]
    assert tbody.count("<tr>") == 100  # the first page; all 121 rows are in the table's data
    data = out[out.index('<script type="application/json" class="rows-data">') :]
    assert len(json.loads(data[data.index(">") + 1 : data.index("</script>")])["rows"]) == 121
    assert "The first 100 of 121 rows" in out


def test_html_svg_polyline_matches_series():
    xs = [0, 1, 2, 5, 10, 11, 30]
    series = Series(
        "loss",
        "step",
        "loss",
        {"a": [(x, 1.0 + 0.1 * x) for x in xs], "b": [(x, 2.0) for x in xs]},
        marks=[(5, "fwd/bwd")],
    )
    r = Report(schema="s/1", title="t")
    r.section("plots").series.append(series)
    out = render(r, "html")
    assert "<svg" in out
    lines = polylines(out)
    assert [label for label, _ in lines] == ["a", "b"]
    for _label, pts in lines:
        assert len(pts) == len(xs)
        px = [p[0] for p in pts]
        assert px == sorted(px) and len(set(px)) == len(px)
    # a higher y value is drawn higher (smaller svg y)
    ya = [p[1] for p in lines[0][1]]
    assert ya == sorted(ya, reverse=True)
    assert 'stroke-dasharray="5 4"' in out and "fwd/bwd" in out
    assert "legend" in out


def test_svg_unsorted_input_is_drawn_in_x_order():
    svg, _ = line_plot(Series("t", "x", "y", {"l": [(3, 1), (1, 2), (2, 3)]}))
    ((_, pts),) = polylines(svg)
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)


def test_svg_log_y_drops_non_positive_and_says_so():
    pts = [(0, 1e-3), (1, 0.0), (2, -5.0), (3, 1e-1), (4, float("nan")), (5, 10.0)]
    svg, notes = line_plot(Series("err", "op", "rel", {"e": pts}, log_y=True))
    ((_, drawn),) = polylines(svg)
    assert len(drawn) == 3
    assert any("non-positive" in n and "2" in n for n in notes)
    assert any("non-finite" in n for n in notes)
    assert "non-positive" in svg
    # log-y: equal ratios → equal pixel steps
    ys = [p[1] for p in drawn]
    assert math.isclose(ys[0] - ys[1], ys[1] - ys[2], rel_tol=0.02)


def test_svg_degenerate_series_do_not_crash():
    for lines in ({}, {"a": []}, {"a": [(1, 1)]}, {"a": [(1, 5), (1, 5)]}, {"a": [(0, -1)]}):
        for log in (False, True):
            svg, _ = line_plot(
                Series("t", "x", "y", lines, marks=[(1, "m"), (float("nan"), "bad")], log_y=log)
            )
            assert svg.startswith("<svg") and svg.endswith("</svg>")
            assert "nan" not in re.sub(r"<text.*?</text>|<title>.*?</title>", "", svg).lower()


def test_svg_long_series_is_thinned():
    n = 100_000
    svg, _ = line_plot(Series("t", "x", "y", {"a": [(i, math.sin(i / 500)) for i in range(n)]}))
    ((_, pts),) = polylines(svg)
    assert len(pts) < 5000
    assert [p[0] for p in pts] == sorted(p[0] for p in pts)
    ys = [p[1] for p in pts]
    assert max(ys) - min(ys) > 200  # the full swing is still drawn


def test_ticks_are_nice():
    assert nice_ticks(0, 999) == [0, 200, 400, 600, 800, 1000]
    t = nice_ticks(0.0013, 0.0191)
    assert t[0] <= 0.0013 and t[-1] >= 0.0191
    assert nice_ticks(5, 5)[0] < 5 < nice_ticks(5, 5)[-1]
    assert log_ticks(2e-7, 3e-3)[0] == pytest.approx(1e-7) and log_ticks(2e-7, 3e-3)[-1] >= 3e-3


# ---------------------------------------------------------------- markdown


def test_markdown_escapes_and_structure():
    r = make_report()
    r.sections[0].tables.append(Table("pipes", ["a|b", "c"], [["x|y", "line1\nline2"]]))
    out = render(r, "markdown")
    assert out.startswith("# Check ")
    assert "| Summary | Value |" in out and "| ops | 412 |" in out
    assert "## Ops" in out
    assert "| a\\|b | c |" in out
    assert "| `x\\|y` | line1<br>line2 |" in out  # an id: a code span, its pipe escaped
    assert "<script>" not in re.sub(
        r"`[^`]*`", "", out
    )  # raw text only inside code spans, where it is literal
    assert "`loc <script>alert(1)</script>`" in out
    # every table row has exactly columns+1 unescaped pipes
    for line in out.splitlines():
        if line.startswith("| `x\\|y`"):
            assert len(re.findall(r"(?<!\\)\|", line)) == 3
    assert "`train.py:41`" in out
    assert out.index("**error**") < out.index("**warning**") < out.index("**info**")
    assert "→ use backend.synchronize()" in out


def test_markdown_long_tables_fold_into_details():
    out = render(make_report(n_rows=60), "markdown")
    assert "<details>" in out and "</details>" in out
    assert "<summary>Table &lt;script&gt;alert(1)&lt;/script&gt; (61 rows)</summary>" in out
    short = render(make_report(n_rows=10), "markdown")
    assert "<details>" not in short


def test_markdown_code_span_with_backticks():
    r = Report(schema="s/1", title="t")
    r.section("s").findings.append(Finding(Severity.ERROR, "r", "m", "a`b"))
    assert "`` a`b ``" in render(r, "markdown")  # CommonMark strips the padding spaces


# ---------------------------------------------------------------- terminal


def test_terminal_every_row_and_aligned_columns():
    rows = [[f"name_{i:03d}", "npu" if i % 2 else "cpu_fallback", i, i * 1.5] for i in range(30)]
    r = Report(schema="s/1", title="T", summary=[("a", 1), ("longer label", "x")])
    r.section("S").tables.append(Table("ops", ["name", "status", "n", "ms"], rows, status_column="status"))
    out = render_text(r, width=120, all_rows=True)
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("name "))
    table_lines = lines[head : head + 2 + len(rows)]
    assert len({len(line) for line in table_lines}) == 1
    assert set(table_lines[1]) <= {"-", " "}
    for row in rows:
        assert any(line.startswith(row[0]) for line in table_lines)
    # summary values aligned
    assert "a:            1" in out and "longer label: x" in out
    assert "\x1b[" not in out


def test_terminal_truncates_long_cells_but_keeps_first_column():
    long_name = "model.layers.0.self_attn.q_proj.weight_and_more_things"
    r = Report(schema="s/1", title="T")
    r.section("S").tables.append(Table("t", ["name", "detail"], [[long_name, "x" * 300], ["short", "y"]]))
    out = render_text(r, width=60)
    rows = [line for line in out.splitlines() if line.startswith(("model.", "short"))]
    assert len(rows) == 2
    assert all(len(line) <= 60 for line in rows)
    assert "…" in rows[0]
    assert rows[0].split("  ")[0].startswith(long_name[:19])
    assert len(rows[0].split("  ")[0]) >= 20


def test_terminal_findings_grouped_and_colour_only_when_asked():
    r = make_report()
    plain = render(r, "table")
    lines = plain.splitlines()
    sev = [
        line.split()[0]
        for line in lines
        if line.split() and line.split()[0] in ("error", "warning", "info") and "  " in line
    ]
    assert sev[:3] == ["error", "warning", "info"]
    assert any(line.strip().startswith("→ use backend.synchronize()") for line in lines)
    assert "\x1b[" not in plain
    coloured = render(r, "table", color=True)
    assert "\x1b[" in coloured
    assert click.style("cpu_fallback", fg="red", bold=True) in coloured
    assert click.unstyle(coloured) == render(r, "table")


def test_terminal_series_summary():
    out = render_text(make_report(), width=100)
    assert "Loss" in out and "n=20" in out and "min" in out and "max" in out
    assert "backward" in out


# ---------------------------------------------------------------- empty and odd input


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_report_sections_and_tables_render(fmt):
    empty = Report(schema="s/1", title="")
    assert render(empty, fmt)
    r = Report(schema="s/1", title="t")
    r.section("empty section")
    sec = r.section("empties")
    sec.tables += [
        Table("no rows", ["a", "b"], []),
        Table("no columns", [], []),
        Table("", [], [[1, 2]]),
        Table("ragged", ["a", "b", "c"], [[1], [1, 2, 3, 4]]),
    ]
    sec.series.append(Series("no lines", "x", "y", {}))
    sec.series.append(Series("empty line", "x", "y", {"a": []}, log_y=True))
    sec.findings.append(Finding(Severity.INFO, "", ""))
    out = render(r, fmt)
    assert out.endswith("\n")
    if fmt == "json":
        assert json.loads(out) == {"schema": "s/1"}


def test_unknown_format_is_an_input_error():
    with pytest.raises(InputError, match="--format pdf"):
        render(make_report(), "pdf")


# ---------------------------------------------------------------- writing


def test_write_report_creates_nested_directories(tmp_path):
    target = tmp_path / "a" / "b" / "report.json"
    r = make_report()
    write_report(r, "json", str(target))
    assert json.loads(target.read_text(encoding="utf-8")) == {"schema": r.schema, **r.data}
    assert os.listdir(target.parent) == ["report.json"]
    if os.name == "posix":
        assert target.stat().st_mode & 0o044  # readable by others as a normal file (umask permitting)


def test_write_report_replaces_existing_file(tmp_path):
    target = tmp_path / "r.md"
    target.write_text("old", encoding="utf-8")
    write_report(make_report(), "markdown", str(target))
    assert target.read_text(encoding="utf-8").startswith("# Check")
    assert os.listdir(tmp_path) == ["r.md"]


def test_write_report_unwritable_path_raises_input_error(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x", encoding="utf-8")
    bad = blocker / "sub" / "report.html"
    with pytest.raises(InputError) as exc:
        write_report(make_report(), "html", str(bad))
    assert str(exc.value).startswith(f"--output {bad}: ")
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]


def test_write_report_to_a_directory_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="is a directory"):
        write_report(make_report(), "json", str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_write_report_failure_leaves_no_temp_file(tmp_path, monkeypatch):
    target = tmp_path / "out.html"
    target.write_text("previous", encoding="utf-8")

    def broken_replace(src, dst, **dir_fds):  # atomic.open_atomic replaces relative to the directory fd
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(InputError, match=r"--output .*out\.html: no space left on device"):
        write_report(make_report(), "html", str(target))
    assert os.listdir(tmp_path) == ["out.html"]
    assert target.read_text(encoding="utf-8") == "previous"  # old report intact, never half-written


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_write_report_permission_denied(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InputError, match=r"--output .*locked.*: permission denied"):
            write_report(make_report(), "json", str(locked / "r.json"))
        assert os.listdir(locked) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("output", [None, "-"])
def test_write_report_stdout(capsys, output, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    r = make_report()
    write_report(r, "table", output)
    out = capsys.readouterr().out
    assert "\x1b[" not in out  # captured stdout is not a terminal
    assert out == render(r, "table")
    write_report(r, "json", output)
    assert json.loads(capsys.readouterr().out)["schema"] == r.schema


def test_stdout_colour_rules(monkeypatch):
    from ascend_tools.report import output as output_mod

    class Tty:
        def isatty(self):
            return True

    monkeypatch.setattr(output_mod.sys, "stdout", Tty())
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert output_mod.stdout_color()
    monkeypatch.setenv("NO_COLOR", "1")
    assert not output_mod.stdout_color()
