"""HTML tables that scale: rows embedded as data (one page as DOM), repeated cells written once, column
kinds with fixed widths, long tables collapsed, filter/sort/paging over all rows (checked in headless
Chromium where it is installed)."""

import json
import re
import shutil
import subprocess

import pytest

from ascend_tools.report import Report, Table, render
from ascend_tools.report.html_table import COLLAPSE_ROWS, PAGE_ROWS, TABLE_JS
from ascend_tools.report.text_cells import ID, shorten_column

SITE = "transformers/models/llama/modeling_llama.py:106 in compute_default_rope_parameters"
N = 100_000


def big_report(n):
    rows = [
        [
            i,
            f"aten::empty.memory_format#forward#{i}",
            f"model.layers.{i % 32}.mlp",
            SITE,
            i * 0.37,
            None,
            ["pass", "error"][i % 2],
        ]
        for i in range(n)
    ]
    r = Report(schema="s/1", title="big")
    r.section("All").tables.append(
        Table(
            "All pairs",
            ["order", "name", "module", "site", "error", "always empty", "verdict"],
            rows,
            status_column="verdict",
        )
    )
    return r


def table_data(html):
    m = re.search(r'<script type="application/json" class="rows-data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


@pytest.fixture(scope="module")
def big_html():
    return render(big_report(N), "html")


def test_100k_rows_are_data_not_dom(big_html):
    tbody = big_html[big_html.index("<tbody>") : big_html.index("</tbody>")]
    assert tbody.count("<tr>") == PAGE_ROWS
    data = table_data(big_html)
    assert len(data["rows"]) == N
    # every row's name is in the data, in order (shown shortened, with its full text)
    assert [r[1][-1] for r in data["rows"][:3]] == [
        f"aten::empty.memory_format#forward#{i}" for i in range(3)
    ]
    assert data["rows"][0][1][0] == "empty.memory_format#fwd#0"
    # sorting uses the exact values where the shown ones are rounded
    assert data["keys"]["4"][:3] == [0.0, 0.37, 0.74]
    # the site repeats: written once in the data (plus the hover titles of the first page)
    assert big_html.count(SITE) <= PAGE_ROWS + 1
    ((shown, full),) = data["dicts"]["3"]
    assert full == SITE and shown.startswith("…") and SITE.endswith(shown[1:])
    # size: the whole file holds fewer bytes per row than half of one of its DOM rows
    dom_row = len(tbody.encode()) / PAGE_ROWS
    assert len(big_html.encode()) / N < dom_row / 2 and len(big_html.encode()) < 150 * N


def test_empty_column_dropped_and_kinds_in_the_markup(big_html):
    head = big_html[big_html.index("<thead>") : big_html.index("</thead>")]
    assert "always empty" not in head
    assert re.findall(r'<th scope="col" class="k-(\w+)"', head) == [
        "number",
        "id",
        "path",
        "path",
        "number",
        "id",
    ]
    assert big_html.count("<col style=") >= 6 and "table-layout:fixed" in big_html
    # the path cell is shortened from the left, with the full text on hover
    assert f'<td class="k-path" title="{SITE}">…' in big_html


def test_filter_sort_and_paging_script_present(big_html):
    assert TABLE_JS in big_html
    for needed in ("input.filter", "addEventListener('input'", "aria-sort", ".prev", ".next", "JSON.parse"):
        assert needed in TABLE_JS
    assert "The first 100 of 100000 rows" in big_html  # what a reader without JavaScript is told


def test_long_tables_are_collapsed_short_ones_are_not():
    short = render(big_report(COLLAPSE_ROWS), "html")
    long = render(big_report(COLLAPSE_ROWS + 1), "html")
    assert "<details" not in short and '<details class="table-block"' in long


def test_data_cannot_close_the_script():
    r = Report(schema="s/1", title="t")
    r.section("s").tables.append(Table("x", ["a"], [["</script><script>alert(1)</script>"], ["<!--"]]))
    out = render(r, "html")
    data = out[out.index('class="rows-data">') :]
    data = data[: data.index("</script>")]
    assert "<" not in data.split(">", 1)[1]
    assert table_data(out)["rows"] == [["</script><script>alert(1)</script>"], ["<!--"]]


def test_ids_in_a_column_are_spelled_one_way():
    names = ["aten::mm#forward#0", "aten::empty.memory_format#forward#12"]
    assert shorten_column(names, 28, ID) == ["mm#fwd#0", "empty.memory_format#fwd#12"]
    assert shorten_column(names, 40, ID) == names


HARNESS = """<script>
window.addEventListener('load', function(){
  var out={}, block=document.querySelector('.table-block'); block.open=true;
  var tb=block.querySelector('tbody'), ths=block.querySelectorAll('th');
  out.page=block.querySelector('.page').textContent;
  ths[4].click(); ths[4].click();  // error, descending
  out.top=tb.rows[0].cells[0].textContent;
  block.querySelector('.next').click(); out.page2=block.querySelector('.page').textContent;
  var f=block.querySelector('input.filter'); f.value='#forward#77777'; f.dispatchEvent(new Event('input'));
  setTimeout(function(){
    out.filtered=tb.rows.length; out.hit=tb.rows[0].cells[0].textContent;
    var pre=document.createElement('pre'); pre.id='result'; pre.textContent=JSON.stringify(out);
    document.body.appendChild(pre);
  }, 400);
});
window.onerror=function(m){var p=document.createElement('pre'); p.id='result'; p.textContent=JSON.stringify({error:m});
  document.body.appendChild(p);};
</script>"""


@pytest.mark.slow
def test_filter_sort_and_paging_work_in_chromium(tmp_path, big_html):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the table script is not run")
    page = tmp_path / "big.html"
    page.write_text(big_html.replace("</body>", HARNESS + "</body>"))
    proc = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=20000",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    m = re.search(r'<pre id="result">(.*?)</pre>', proc.stdout, re.S)
    assert m, proc.stderr[-2000:]
    result = json.loads(m.group(1).replace("&quot;", '"'))
    assert result == {
        "page": f"rows 1–{PAGE_ROWS} of {N}",
        "top": str(N - 1),  # the largest error is the last row's: sorting covered all rows, not the page
        "page2": f"rows {PAGE_ROWS + 1}–{2 * PAGE_ROWS} of {N}",
        "filtered": 1,
        "hit": "77777",
    }
