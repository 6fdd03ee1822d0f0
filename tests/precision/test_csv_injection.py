"""``compare -f csv`` on a hostile dump (issue 11): a module or op name a spreadsheet would run as a formula
is written as text (a leading ``'``, OWASP's rule); numbers, negative ones included, are written as numbers."""

import csv
import io
import json

import pytest
import torch
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision import capture
from ascend_tools.precision.compare import PAIR_COLUMNS
from ascend_tools.report.csvcell import safe_cell

HOSTILE = ['=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3", "\t=1", "\r=1"]


def pair(tmp_path, module):
    """Two dumps of one ``aten::mm`` whose records claim to come from ``module``; the reference's output is
    the target's negated, so the cosine is -1."""
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    paths = []
    for side, sign in (("target", 1.0), ("reference", -1.0)):
        path = tmp_path / side
        with torch.no_grad(), capture(str(path), mode="tensor"):
            torch.mm(a, b * sign)
        records = path / "rank0" / "step0" / "records.jsonl"
        lines = [json.loads(line) for line in records.read_text().splitlines()]
        for record in lines:
            record["module"] = module
        records.write_text("".join(json.dumps(r) + "\n" for r in lines))
        paths.append(path)
    return paths


def compare_csv(target, reference):
    result = CliRunner().invoke(main, ["compare", str(target), str(reference), "-f", "csv"])
    assert result.exit_code in (0, 1), result.output
    rows = list(csv.reader(io.StringIO(result.output)))
    assert rows[0] == list(PAIR_COLUMNS)
    return [dict(zip(rows[0], row)) for row in rows[1:]]


@pytest.mark.parametrize("module", HOSTILE)
def test_a_formula_module_name_is_written_as_text(tmp_path, module):
    rows = compare_csv(*pair(tmp_path, module))
    mm = [r for r in rows if r["name"].startswith("aten::mm#")]
    assert len(mm) == 1
    assert mm[0]["module"] == "'" + module  # the spreadsheet shows the name, runs nothing
    assert float(mm[0]["cosine"]) == pytest.approx(-1.0)
    assert mm[0]["cosine"].startswith("-")  # a negative number stays a number, no quote in front


def test_safe_cell_touches_only_strings_that_start_a_formula():
    assert safe_cell(-0.5) == -0.5
    assert safe_cell(-3) == -3
    assert safe_cell(None) is None
    assert safe_cell("model.layers.0") == "model.layers.0"
    assert safe_cell("a=b") == "a=b"
    assert [safe_cell(s) for s in HOSTILE] == ["'" + s for s in HOSTILE]
