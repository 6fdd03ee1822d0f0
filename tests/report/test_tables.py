"""Tables that scale: column kinds, empty columns dropped and duplicates merged, cells shortened keeping
the part that tells rows apart, terminal tables showing their headline rows within the width they get."""

import pytest

from ascend_tools.report import Report, Table, render
from ascend_tools.report.columns import columns, format_number, infer_kind
from ascend_tools.report.render_text import HEADLINE_ROWS, render_text
from ascend_tools.report.text_cells import ID, NUMBER, PATH, TEXT, shorten, text_width

SITE = "transformers/models/llama/modeling_llama.py:106 in compute_default_rope_parameters"


def test_id_shortening_keeps_the_call_suffix():
    key = "aten::empty.memory_format#forward#0"
    assert shorten(key, 40, ID) == key  # fits: unchanged
    assert shorten(key, 31, ID) == "aten::empty.memory_format#fwd#0"  # the example
    assert shorten(key, 25, ID) == "empty.memory_format#fwd#0"  # then the namespace goes
    short = shorten(key, 16, ID)
    assert text_width(short) <= 16 and short.endswith("#fwd#0") and short.startswith("empty.")
    # two calls of one op stay apart at any width that holds the suffix
    for w in range(8, 36):
        a, b = shorten(key, w, ID), shorten(key[:-1] + "1", w, ID)
        assert a != b and text_width(a) <= w


def test_path_shortening_cuts_from_the_left():
    for w in (20, 40, 60):
        short = shorten(SITE, w, PATH)
        assert short.startswith("…") and text_width(short) <= w
        assert SITE.endswith(short[1:])  # the end is kept, nothing inserted
    assert shorten(SITE, 70, PATH) == "…/llama/modeling_llama.py:106 in compute_default_rope_parameters"
    assert shorten("model.layers.11.self_attn.q_proj", 20, PATH).endswith("self_attn.q_proj")


def test_text_is_cut_at_the_end():
    assert shorten("a long sentence about things", 10, TEXT) == "a long se…"


@pytest.mark.parametrize(
    "values,kind",
    [
        ([1, 2.5, None], NUMBER),
        (["aten::mm#forward#0", "aten::add.Tensor#backward#3"], ID),
        ([SITE, "train.py:12 in step"], PATH),
        (["model.layers.0.mlp.up_proj", "model.layers.1.mlp.down_proj"], PATH),
        (["the output diverges while the inputs agree", "ok now"], TEXT),
        ([None, ""], TEXT),
    ],
)
def test_column_kinds_are_inferred_from_values(values, kind):
    assert infer_kind("c", values) == kind


def test_empty_columns_dropped_and_duplicates_merged():
    t = Table(
        "memory",
        ["rank", "peak host.rss GiB", "fragmentation", "peak host rss GiB", "status"],
        [[0, 1.5, None, None, "ok"], [1, None, "", 2.5, "ok"], [2, 3.0, None, 3.0, "ok"]],
        status_column="status",
    )
    c = columns(t)
    assert c.headers == ["rank", "peak host.rss GiB", "status"]
    assert [r[1] for r in c.rows] == [1.5, 2.5, 3.0]
    assert c.status == 2 and c.kinds[:2] == [NUMBER, NUMBER]
    # two different values in one row: not duplicates, both kept
    t.rows[2][3] = 9.0
    assert columns(t).headers == ["rank", "peak host.rss GiB", "peak host rss GiB", "status"]


def test_declared_kinds_win_and_numbers_have_one_precision():
    t = Table("t", ["a", "b"], [["123", 0.123456789]], kinds={"a": TEXT})
    c = columns(t)
    assert c.kinds == [TEXT, NUMBER]
    assert c.text(c.rows[0], 1) == "0.1235"
    assert format_number(12345678.9) == "1.235e+07" and format_number(7) == "7" and format_number(2.0) == "2"


def wide_report(n_rows=50):
    cols = ["order", "name", "module", "site"] + [f"metric_{i}" for i in range(12)] + ["verdict"]
    rows = [
        [i, f"aten::empty.memory_format#forward#{i}", f"model.layers.{i % 4}.self_attn.q_proj", SITE]
        + [i * 1.234567 + k for k in range(12)]
        + ["error" if i < 3 else "pass"]
        for i in range(n_rows)
    ]
    r = Report(schema="s/1", title="wide")
    r.section("All pairs").tables.append(Table("", cols, rows, status_column="verdict"))
    return r, rows


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_terminal_table_fits_the_width_and_shows_the_headline_rows(width):
    r, rows = wide_report()
    out = render_text(r, width=width)
    lines = out.splitlines()
    assert all(text_width(line) <= width for line in lines), max(lines, key=text_width)
    body = [line for line in lines if "#fwd#" in line or "#forward#" in line]
    assert len(body) == HEADLINE_ROWS
    assert f"… {len(rows) - HEADLINE_ROWS} more rows" in out and "use --all or -f html" in out
    # the call suffix survives every width, so rows stay apart
    assert len({line.split()[1] for line in body}) == HEADLINE_ROWS
    assert "verdict" in next(line for line in lines if line.startswith("order"))
    assert [line.split()[-1] for line in body[:4]] == ["error", "error", "error", "pass"]  # the status column


def test_terminal_all_rows_prints_every_row():
    r, _ = wide_report(120)
    out = render_text(r, width=100, all_rows=True)
    assert sum(1 for line in out.splitlines() if "#fwd#" in line or "#forward#" in line) == 120
    assert "more rows" not in out


def test_table_headline_sets_the_rows_shown():
    r, rows = wide_report()
    r.sections[0].tables[0].headline = 3
    out = render_text(r, width=100)
    assert sum(1 for line in out.splitlines() if "#fwd#" in line or "#forward#" in line) == 3
    assert f"… {len(rows) - 3} more rows" in out


def test_table_headline_zero_names_the_table_without_rows():
    r, rows = wide_report()
    r.sections[0].tables[0].headline = 0
    out = render_text(r, width=100)
    assert not any("#fwd#" in line or "#forward#" in line for line in out.splitlines())
    n_cols = len(r.sections[0].tables[0].columns)
    assert f"… {len(rows)} more rows ({n_cols} columns): use --all or -f html" in out
    full = render_text(r, width=100, all_rows=True)
    assert sum(1 for line in full.splitlines() if "#fwd#" in line or "#forward#" in line) == len(rows)


def test_markdown_reads_the_same_columns():
    t = Table(
        "memory",
        ["rank", "op", "peak host.rss GiB", "fragmentation", "peak host rss GiB"],
        [[0, "aten::mm#forward#0", 1.23456, None, None], [1, "aten::mm#forward#1", None, None, 2.5]],
    )
    r = Report(schema="s/1", title="t")
    r.section("s").tables.append(t)
    md = render(r, "markdown")
    assert "| rank | op | peak host.rss GiB |" in md and "fragmentation" not in md
    assert "|---:|---|---:|" in md
    assert "| 0 | `aten::mm#forward#0` | 1.235 |" in md and "| 1 | `aten::mm#forward#1` | 2.5 |" in md


def test_wide_characters_are_shortened_by_display_width():
    path = "模型/层/注意力/前向.py:12"
    for kind in (PATH, ID, TEXT):
        short = shorten(path, 10, kind)
        assert text_width(short) <= 10 and short != path
    assert shorten(path, 10, PATH).endswith("py:12")


def test_a_cut_last_column_wraps_instead_of_losing_its_end():
    # check-ops' fusion table at 80 columns cut its suggestion to `torch_npu.npu_rms_n…` (issue 15)
    rows = [
        [
            "RMSNorm",
            "pow-mean-add-rsqrt-mul",
            5,
            "blocks.[0-1].norm1, blocks.[0-1].norm2, norm",
            "torch_npu.npu_rms_norm",
        ],
        [
            "SwiGLU",
            "chunk-silu-mul",
            2,
            "blocks.[0-1]",
            "merge gate_proj and up_proj into one Linear, then torch_npu.npu_swiglu",
        ],
    ]
    r = Report(schema="s/1", title="t")
    r.section("Fusion").tables.append(Table("", ["pattern", "ops", "count", "modules", "suggestion"], rows))
    lines = render_text(r, width=80).splitlines()
    assert all(text_width(line) <= 80 for line in lines)
    start = next(i for i, line in enumerate(lines) if line.startswith("RMSNorm"))
    col = lines[start - 2].index("suggestion")
    assert lines[start][col:] + lines[start + 1][col:] == "torch_npu.npu_rms_norm"
    assert lines[start + 1][:col].strip() == ""  # a continuation line
