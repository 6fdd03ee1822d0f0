"""loss-compare's verdict rule (ascend_tools/precision/lossrule.py): the smoothed rule against a direct
computation of its definition, what it forgives (one noisy step) and what it does not (a drift), where it
says the runs part, --from-step, and the CLI's verdict and exit status."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision.lossrule import Rule, evaluate, trailing_mean


def reference_mean(v, w):
    """The mean of the last w values up to each index, computed one index at a time."""
    return np.array([np.mean(v[max(0, i - w + 1) : i + 1]) for i in range(len(v))])


@pytest.mark.parametrize("w", [1, 2, 10, 50])
def test_trailing_mean_matches_its_definition(w):
    v = np.random.default_rng(0).normal(2.0, 0.3, 37)
    np.testing.assert_allclose(trailing_mean(v, w), reference_mean(v, w), rtol=1e-12)


def curves(n=120, seed=1):
    steps = np.arange(1, n + 1)
    ref = 1.4 + 1.1 * np.exp(-steps / 40)
    noise = np.random.default_rng(seed).normal(0, 0.003, n)
    return steps, ref, ref * (1 + noise)


def test_one_noisy_step_fails_per_step_but_not_smoothed():
    steps, ref, npu = curves()
    npu[30] = ref[30] * 1.035  # one step 3.5 % off (a lone bf16 outlier)
    assert evaluate(Rule("per-step"), steps, npu, ref).first_failing == 31
    assert evaluate(Rule("smoothed"), steps, npu, ref).passed


def test_drift_is_reported_where_the_raw_losses_part():
    steps, ref, npu = curves()
    npu[steps >= 80] *= 1.05  # a 5 % jump at step 80
    res = evaluate(Rule("smoothed"), steps, npu, ref)
    # the means of 10 cross 2 % once 5 of the 10 steps are 5 % off (4 make 2.0 %): step 84
    ma, mb = reference_mean(npu, 10), reference_mean(ref, 10)
    crossing = int(steps[np.flatnonzero(np.abs(ma - mb) > 0.02 * np.abs(mb))[0]])
    assert res.detected_at == crossing == 84
    assert res.first_failing == 80
    assert not res.passed and res.failing == int(np.count_nonzero(np.abs(ma - mb) > 0.02 * np.abs(mb)))


def test_from_step_ignores_an_early_difference():
    steps, ref, npu = curves()
    npu[:15] *= 1.08  # the first steps differ (different warm-up), the rest agree
    assert evaluate(Rule("smoothed"), steps, npu, ref).first_failing == 1
    late = evaluate(Rule("smoothed", from_step=25), steps, npu, ref)
    assert late.passed and late.start == 25


def test_statement_names_the_rule():
    r = Rule("smoothed", rtol=0.02, window=10)
    assert r.describe(1) == (
        "|A - B| <= 0.02 x |B| for the means A, B of the last 10 logged losses of each run, from step 1 on"
    )
    assert (
        Rule("per-step", atol=0.01).describe(5) == "|A - B| <= 0.02 x |B| + 0.01 at each step, from step 5 on"
    )


def _log(path, steps, values):
    path.write_text("".join(f"step={s} loss={v:.8f}\n" for s, v in zip(steps, values)), encoding="utf-8")
    return str(path)


def test_cli_verdict_rule_and_exit_status(tmp_path):
    steps, ref, npu = curves()
    npu[steps >= 80] *= 1.05
    a, b = _log(tmp_path / "npu.log", steps, npu), _log(tmp_path / "gpu.log", steps, ref)
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["loss-compare", a, b, "-f", "json", "-o", str(out)])
    assert r.exit_code == 1, r.output
    d = json.loads(out.read_text(encoding="utf-8"))
    assert d["verdict"] == "diverged" and d["first_divergent_step"] == 80
    assert d["rule"]["name"] == "smoothed" and d["rule"]["window"] == 10 and d["rule"]["from_step"] == 1
    assert d["rule"]["first_failing_step"] == 80 and d["rule"]["passed"] is False
    assert d["rule"]["statement"].startswith("|A - B| <= 0.02 x |B| for the means")
    r = CliRunner().invoke(main, ["loss-compare", a, b, "--fail-on", "never", "-f", "json"])
    assert r.exit_code == 0
    # judged from step 90 on, the rule's step is 90 (the jump is older than the window)
    r = CliRunner().invoke(main, ["loss-compare", a, b, "--from-step", "90", "-f", "json"])
    assert json.loads(r.output)["rule"]["first_failing_step"] == 90


def test_cli_smoothed_passes_a_noisy_clean_pair(tmp_path):
    steps, ref, npu = curves(seed=7)
    npu[50] = ref[50] * 0.97
    a, b = _log(tmp_path / "npu.log", steps, npu), _log(tmp_path / "gpu.log", steps, ref)
    assert CliRunner().invoke(main, ["loss-compare", a, b]).exit_code == 0
    r = CliRunner().invoke(main, ["loss-compare", a, b, "--rule", "per-step", "-f", "json"])
    assert r.exit_code == 1 and json.loads(r.output)["first_divergent_step"] == 51
    bad = CliRunner().invoke(main, ["loss-compare", a, b, "--window", "0"])
    assert bad.exit_code == 2
