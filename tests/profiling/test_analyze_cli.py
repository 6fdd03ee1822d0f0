"""``ascend-doctor analyze`` end to end on simulated profiles: formats, the JSON contract, exit codes."""

import json
import os

import pytest
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.profiling import synthetic


def invoke(*args):
    return CliRunner().invoke(main, ["analyze", *args])


@pytest.fixture(scope="module")
def hung(tmp_path_factory):
    path = tmp_path_factory.mktemp("prof")
    truth = synthetic.write_profile(
        str(path),
        ranks=4,
        collectives=120,
        per_step=6,
        straggler=2,
        delay=0.01,
        hang_at=100,
        hang_rank=1,
        p2p=True,
        tp=2,
        clock_skew=0.3,
    )
    return str(path), truth


def test_json_payload(hung):
    path, truth = hung
    result = invoke(path, "-f", "json")
    assert result.exit_code == 1, result.output  # a hang is an error finding: --fail-on error (the default)
    data = json.loads(result.stdout)
    assert data["schema"] == "ascend-doctor/analyze/1"
    for key in ("slow_ranks", "hangs", "collectives", "memory", "p2p", "steps", "ranks", "problems"):
        assert key in data
    assert [s["rank"] for s in data["slow_ranks"]] == [2]
    assert [(h["group"], h["seq"], h["missing_ranks"]) for h in data["hangs"]] == [("0", truth.hang_seq, [1])]
    assert {"group", "seq", "op", "missing_ranks"} <= set(data["hangs"][0])
    assert [r["rank"] for r in data["ranks"]] == [0, 1, 2, 3]
    assert all(r["cut_short"] for r in data["ranks"])  # a hung job never closes its meta.json


def test_every_format_renders(hung, tmp_path):
    path, _ = hung
    for fmt in ("table", "markdown", "html"):
        out = tmp_path / f"report.{fmt}"
        result = invoke(path, "-f", fmt, "-o", str(out), "--fail-on", "never")
        assert result.exit_code == 0, result.output
        assert result.stderr.startswith(f"ascend-doctor: wrote {out} ({fmt}, ")
        text = out.read_text()
        assert "Hangs" in text and "Slow ranks" in text
    html = (tmp_path / "report.html").read_text()
    assert html.count("<svg") >= 3  # busbw by size, step breakdown, memory over time


def test_fail_on(hung):
    path, _ = hung  # a hang (error) and a slow rank (warning)
    assert invoke(path, "-f", "json", "--fail-on", "error").exit_code == 1
    assert invoke(path, "-f", "json", "--fail-on", "warning").exit_code == 1
    assert invoke(path, "-f", "json", "--fail-on", "never").exit_code == 0
    assert invoke(path, "-f", "json", "--fail-on", "hang").exit_code == 2  # the old choices are gone


def test_thresholds_from_the_command_line(hung):
    path, _ = hung
    data = json.loads(invoke(path, "-f", "json", "--min-share", "0.9").output)
    assert data["slow_ranks"] == [] and data["slow_rank_rule"]["min_share"] == 0.9


def test_trace_option(hung, tmp_path):
    path, _ = hung
    trace = tmp_path / "trace.json"
    assert invoke(path, "-f", "json", "--trace", str(trace), "--fail-on", "never").exit_code == 0
    assert json.loads(trace.read_text())["traceEvents"]


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_not_a_profile_is_one_line_and_exit_2(tmp_path, make):
    path = tmp_path / "prof"
    if make == "empty":
        path.mkdir()
    out, trace = tmp_path / "r.json", tmp_path / "t.json"
    result = invoke(str(path), "-f", "json", "-o", str(out), "--trace", str(trace))
    assert result.exit_code == 2
    assert result.output.startswith("ascend-doctor: error: ") and result.output.count("\n") == 1
    assert not out.exists() and not trace.exists()
    assert os.listdir(tmp_path) == (["prof"] if make == "empty" else [])
