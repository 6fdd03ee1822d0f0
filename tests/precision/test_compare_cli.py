"""``ascend-doctor compare`` end to end on the committed msprobe dumps: formats, schema, bad inputs."""

import csv
import io
import json
import os

from click.testing import CliRunner

from ascend_tools.cli import main

DATA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "msprobe")
BF16, FP32 = os.path.join(DATA, "bf16_tensor"), os.path.join(DATA, "fp32_tensor")


def invoke(*args):
    return CliRunner().invoke(main, ["compare", *args])


def entries(path):
    """dump.json entries counted independently of the reader."""
    for root, _, files in os.walk(path):
        if "dump.json" in files:
            with open(os.path.join(root, "dump.json"), encoding="utf-8") as f:
                return json.load(f)["data"]
    raise AssertionError("no dump.json under " + path)


def test_json_report_has_the_schema_and_pairs_every_entry():
    result = invoke(BF16, FP32, "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["schema"] == "ascend-doctor/compare/1"
    assert report["target"]["format"] == report["reference"]["format"] == "msprobe"
    n = len(entries(BF16))
    assert report["summary"]["pairs"] == n == len(entries(FP32))
    assert report["summary"]["matched_by"]["key"] == n
    # a clean bf16 run: bf16 rounding differs from fp32 everywhere, but no op is blamed for it
    assert report["summary"]["culprits"] == 0
    assert report["summary"]["verdicts"]["error"] > 0
    for c in report["culprits"]:
        assert {"name", "op", "module", "phase", "introduced_error"} <= set(c)


def test_csv_has_one_row_per_pair():
    result = invoke(BF16, FP32, "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == len(entries(BF16))
    assert {"name", "cosine", "max_abs_err", "verdict"} <= set(rows[0])


def test_html_has_the_drift_plot(tmp_path):
    out = tmp_path / "cmp.html"
    assert invoke(BF16, FP32, "-f", "html", "-o", str(out)).exit_code == 0
    assert "<polyline" in out.read_text(encoding="utf-8")


def test_bad_inputs_give_one_line_and_exit_2(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = {
        str(tmp_path / "missing"): "no such file",
        str(empty): "not a dump",
    }
    for path, message in cases.items():
        result = invoke(path, FP32)
        assert result.exit_code == 2
        assert message in result.output and path in result.output
        assert len(result.output.strip().splitlines()) == 1
    result = invoke(BF16, FP32, "--step", "7")
    assert result.exit_code == 2 and "--step 7" in result.output


def test_a_corrupt_meta_json_is_one_line_and_exit_2(tmp_path):
    rank = tmp_path / "dump" / "rank0"
    rank.mkdir(parents=True)
    (rank / "meta.json").write_text("{not json")
    result = invoke(str(tmp_path / "dump"), FP32)
    assert result.exit_code == 2
    assert "meta.json" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_progress_bar_goes_to_stderr_without_a_deprecation_warning(capsys):
    """click 8.5 deprecated ``click.get_text_stream`` (removed in 9.0), which the bar once wrote through."""
    import warnings

    from ascend_tools.precision.compare import compare_dumps

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = compare_dumps(BF16, FP32, progress=True)
    assert report.data["summary"]["pairs"] == len(entries(BF16))
    assert "comparing" in capsys.readouterr().err
