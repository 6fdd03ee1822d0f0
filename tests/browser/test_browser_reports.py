"""Every HTML report, opened in headless Chromium at 1,280 px as a user would open it (issue 15).

Over every HTML report ``ascend-doctor demo`` writes, the shadow report of the demo's faulty step, and a
5,000-row compare and shadow report: no console error; every table's tallest shown row at most 3 lines of
its text; no horizontal overflow of the page (a wide table scrolls inside its own box); typing in a
table's filter box shows only rows holding the text, the row it came from included, even when that row
is far down a big table; clicking a numeric header orders the shown rows and starts them with the
smallest (or largest) value of all the table's rows; one drawn SVG per plot or chart of the report.

The expectations come from the :class:`Report` objects, not from the page. Skipped, with the reason, only
where no Chromium is installed outside CI; ``.ci/run`` installs it and sets ``ASCEND_DOCTOR_CI``, under
which a missing browser fails.
"""

import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from unittest import mock

import cdp
import pytest
import screenshots
import shadow_demo

from ascend_tools import demo
from ascend_tools.report import Report, Table, write_report

pytestmark = pytest.mark.slow

WIDTH, HEIGHT = 1280, 900
MAX_LINES = 3
BIG = 5000
DEMO_HTML = (
    "check-ops-llama_7b",
    "check-ops-train_cuda",
    "compare",
    "loss-compare",
    "selfcheck",
    "analyze",
    "env",
)
EXTRA = ("shadow", "compare-5000", "shadow-5000")
CHECKS_JS = (Path(__file__).parent / "page_checks.js").read_text(encoding="utf-8")
SETTLE_S = 10.0  # only a failing check waits this long


@pytest.fixture(scope="module")
def browser():
    path = cdp.find_browser()
    if path is None:
        if os.environ.get("ASCEND_DOCTOR_CI"):
            pytest.fail(
                "CI must run the browser test: no chromium on PATH (.ci/run installs Debian's chromium)"
            )
        pytest.skip("no Chromium here: apt-get install chromium (CI installs it and never skips this test)")
    with cdp.Browser(path) as b:
        yield b


@pytest.fixture(scope="module")
def reports(tmp_path_factory) -> Tuple[Path, Dict[str, Report]]:
    """The folder of HTML reports, and the Report behind each (by file stem)."""
    out = tmp_path_factory.mktemp("reports")
    built: Dict[str, Report] = {}
    real_save = demo.save

    def keep(report: Report, out_dir: str, stem: str) -> List[str]:
        built[stem] = report
        return real_save(report, out_dir, stem)

    with mock.patch.object(demo, "save", keep):
        demo.run(str(out), echo=lambda _line: None)
    written = sorted(p.stem for p in out.glob("*.html"))
    assert written == sorted(DEMO_HTML), "the demo's HTML reports changed: update DEMO_HTML"
    built["shadow"] = shadow_demo.shadow_report()
    built["compare-5000"] = scaled(built["compare"], BIG)
    built["shadow-5000"] = scaled(built["shadow"], BIG)
    for stem in EXTRA:
        write_report(built[stem], "html", str(out / f"{stem}.html"))
    return out, built


def scaled(report: Report, rows: int) -> Report:
    """A copy of ``report`` whose biggest table is its own rows repeated down to ``rows`` rows (a first
    column that numbers the rows goes on counting), as a longer run of the same model would fill it."""
    big = copy.deepcopy(report)
    table = max((t for s in big.sections for t in s.tables), key=lambda t: len(t.rows))
    base = table.rows
    table.rows = [list(base[i % len(base)]) for i in range(rows)]
    if all(isinstance(r[0], int) for r in base):
        for i, row in enumerate(table.rows):
            row[0] = i
    big.title += f" ({rows} rows)"
    return big


@pytest.mark.parametrize("name", DEMO_HTML + EXTRA)
def test_report_in_browser(browser, reports, name):
    out, built = reports
    page = browser.page(WIDTH, HEIGHT)
    try:
        page.open((out / f"{name}.html").as_uri())
        page.eval(CHECKS_JS)
        page.eval(screenshots.OPEN_DETAILS)
        page.eval("window.__checks.settled()")
        problems = check_page(page, built[name])
    finally:
        page.close()
    assert not problems, f"{name}.html:\n  " + "\n  ".join(problems)


def check_page(page: cdp.Page, report: Report) -> List[str]:
    problems = [f"console: {e}" for e in page.errors()]
    info = page.eval("window.__checks.page()")
    if info["scrollWidth"] > info["clientWidth"]:
        problems.append(
            f"the page is {info['scrollWidth']} px wide at {info['clientWidth']} px: it scrolls sideways"
        )
    plots = sum(len(s.series) + len(s.charts) for s in report.sections)
    if info["svgs"] < plots:
        problems.append(f"{info['svgs']} drawn SVG charts for the report's {plots} plots/charts")
    placed = place_tables(report, info["tables"])
    for table, index in placed:
        label = f"table {table.title or '(untitled)'!r} {table.columns[:3]}…"
        if index is None:
            if table.rows:
                problems.append(f"{label}: not on the page")
            continue
        problems += [f"{label}: {p}" for p in check_table(page, table, index)]
    return problems


def place_tables(report: Report, page_headers: List[List[str]]) -> List[Tuple[Table, Optional[int]]]:
    """Each report table with the index of its table on the page: the next one, in document order, whose
    headers are among its columns (a renderer may drop empty columns)."""
    placed: List[Tuple[Table, Optional[int]]] = []
    at = 0
    for table in (t for s in report.sections for t in s.tables):
        index = next(
            (
                i
                for i in range(at, len(page_headers))
                if page_headers[i] and set(page_headers[i]) <= set(table.columns)
            ),
            None,
        )
        placed.append((table, index))
        if index is not None:
            at = index + 1
    return placed


def check_table(page: cdp.Page, table: Table, index: int) -> List[str]:
    problems = []
    rows = page.eval(f"window.__checks.rows({index})")
    if table.rows and not rows["shown"]:
        problems.append("no row shown")
    if rows["tallest"] > MAX_LINES + 0.5:
        problems.append(f"tallest row is {rows['tallest']:.1f} lines: {rows['tallestText']!r}")
    if rows["boxRight"] > WIDTH:
        problems.append(f"runs {rows['boxRight'] - WIDTH:.0f} px past the 1,280 px window")
    if rows["overflowsBox"] is False and rows["tableWidth"] > WIDTH:
        problems.append("wider than the window and not in a scrolling box")
    if len(table.rows) >= 2:
        problems += check_filter(page, table, index, rows["shown"])
        problems += check_sort(page, table, index)
    return problems


def check_filter(page: cdp.Page, table: Table, index: int, shown: int) -> List[str]:
    query = filter_query(table)
    if query is None:
        return []
    if not page.eval(f"window.__checks.hasFilter({index})"):
        return ["no filter box"]
    expected = sum(1 for row in table.rows if any(query in c.lower() for c in row if isinstance(c, str)))
    page.eval(f"window.__checks.focusFilter({index})")
    page.type_text(query)
    state = wait_for(
        page,
        f"window.__checks.filtered({index}, {js_string(query)})",
        lambda s: (
            s["shown"] >= 1 and s["matching"] == s["shown"] and (expected > 50 or s["shown"] == expected)
        ),
    )
    problems = []
    if not (state["shown"] >= 1 and state["matching"] == state["shown"]):
        problems.append(
            f"filter {query!r}: {state['shown']} rows shown, {state['matching']} of them hold it "
            f"({expected} of {len(table.rows)} rows do)"
        )
    elif expected <= 50 and state["shown"] != expected:
        problems.append(
            f"filter {query!r}: {state['shown']} rows shown, {expected} of the table's rows hold it"
        )
    page.eval(f"window.__checks.clearFilter({index})")
    back = wait_for(page, f"window.__checks.shownRows({index})", lambda n: n == shown)
    if back != shown:
        problems.append(f"cleared filter: {back} rows shown, {shown} before")
    return problems


def filter_query(table: Table) -> Optional[str]:
    """The longest text cell of the table's last row: a row a first page of rows would not show."""
    words = [
        c for c in table.rows[-1] if isinstance(c, str) and len(c) >= 3 and any(ch.isalpha() for ch in c)
    ]
    return max(words, key=len).lower() if words else None


def check_sort(page: cdp.Page, table: Table, index: int) -> List[str]:
    column = numeric_column(table)
    if column is None:
        return []
    i = table.columns.index(column)
    numbers = [float(r[i]) for r in table.rows if is_number(r[i]) and math.isfinite(r[i])]
    where = page.eval(f"window.__checks.header({index}, {js_string(column)})")
    page.click(where["x"], where["y"])
    shown = wait_for(
        page,
        f"window.__checks.column({index}, {js_string(column)})",
        lambda s: not sort_problem(s, numbers),
    )
    problem = sort_problem(shown, numbers)
    return [f"click on {column!r}: {problem}"] if problem else []


def sort_problem(shown: List[Any], numbers: List[float]) -> str:
    """Why the shown column is not the table's numbers sorted from one end ("" when it is)."""
    values = [v for v in shown if isinstance(v, (int, float))]
    pairs = list(zip(values, values[1:]))
    if len(values) < 2 or not (all(a <= b for a, b in pairs) or all(a >= b for a, b in pairs)):
        return f"shown rows not in order ({values[:8]}...)"
    want = min(numbers) if values[0] <= values[-1] else max(numbers)
    if not math.isclose(values[0], want, rel_tol=1e-2, abs_tol=1e-12):
        return f"the first shown value is {values[0]}, the table's extreme is {want}"
    return ""


def numeric_column(table: Table) -> Optional[str]:
    """A column of numbers (or empty cells) with two values at least, one not already in order if any is."""
    found = []
    for i, name in enumerate(table.columns):
        cells = [r[i] for r in table.rows]
        numbers = [c for c in cells if is_number(c) and math.isfinite(c)]
        if len(set(numbers)) >= 2 and all(c is None or c == "" or is_number(c) for c in cells):
            found.append((numbers == sorted(numbers) or numbers == sorted(numbers, reverse=True), name))
    return min(found)[1] if found else None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def js_string(text: str) -> str:
    return json.dumps(text)


def wait_for(page: cdp.Page, expression: str, done: Any) -> Any:
    """Poll ``expression`` until ``done(value)`` or SETTLE_S passed (a renderer may debounce input);
    the last value."""
    deadline = time.monotonic() + SETTLE_S
    while True:
        value = page.eval(expression)
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)
