"""trainer_state.json is streamed: a bad or cut-off log_history entry is skipped and named with its line, the
rest is read (reference: json.loads of the same document without the bad entry)."""

import json

from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision.losscurve import read_curve


def _state(entries):
    return {"global_step": len(entries), "log_history": entries, "best_metric": None}


def test_bad_entry_skipped_and_named_with_its_line(tmp_path):
    good = [{"loss": 2.0 - 0.1 * i, "step": i, "epoch": 0.1 * i} for i in range(1, 8)]
    text = json.dumps(_state(good), indent=2)
    # break entry step 4: its "loss" value becomes a bare word (invalid JSON)
    bad_at = text.index('"loss": 1.6')
    broken = text[:bad_at] + '"loss": oops' + text[bad_at + len('"loss": 1.6') :]
    path = tmp_path / "trainer_state.json"
    path.write_text(broken)
    curve = read_curve(str(path))
    expected = {e["step"]: e["loss"] for e in json.loads(text)["log_history"] if e["step"] != 4}
    assert curve.format == "trainer_state" and curve.losses == expected
    entry_line = text[: text.rindex("{", 0, bad_at)].count("\n") + 1
    assert curve.unreadable == [f"line {entry_line}: bad JSON: Expecting value"]


def test_cut_off_file_keeps_the_entries_before_the_cut_and_says_so(tmp_path):
    good = [{"loss": 1.0 / i, "step": i} for i in range(1, 6)]
    text = json.dumps(_state(good), indent=2)
    cut = text[: text.index('"step": 4') + 5]
    path = tmp_path / "trainer_state.json"
    path.write_text(cut)
    curve = read_curve(str(path))
    assert curve.losses == {i: 1.0 / i for i in range(1, 4)}
    assert len(curve.unreadable) == 2 and "the end of the file" in curve.unreadable[1]
    ref = tmp_path / "ref.json"
    ref.write_text(text)
    result = CliRunner().invoke(main, ["loss-compare", str(path), str(ref)])
    assert "2 unreadable log_history entries skipped (first: line" in result.output, result.output
    assert result.exit_code in (0, 1) and "Traceback" not in result.output


def test_directory_picks_the_largest_global_step_streamed(tmp_path):
    for n, losses in ((5, [1.0] * 5), (9, [2.0] * 9)):
        d = tmp_path / f"checkpoint-{n}"
        d.mkdir()
        (d / "trainer_state.json").write_text(
            json.dumps(_state([{"loss": v, "step": i} for i, v in enumerate(losses, 1)]))
        )
    assert read_curve(str(tmp_path)).losses == {i: 2.0 for i in range(1, 10)}
