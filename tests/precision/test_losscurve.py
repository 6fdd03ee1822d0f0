"""``ascend-doctor loss-compare``: the readers on real-shaped files, the metrics against numpy formulas written
here, divergence and NaN handling, bad inputs (exit 2 + one line), and the report formats."""

import json
import math
import os

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ascend_tools.cli import main
from ascend_tools.errors import InputError
from ascend_tools.precision import losscurve
from ascend_tools.precision.losscurve import compare_curves, read_curve
from ascend_tools.report import Severity

SCHEMA = "ascend-doctor/loss-compare/1"


def curve_values(n=60, seed=0, noise=0.0):
    """A plausible fine-tuning loss: fast decay from ~10.5 to ~2, plus a wiggle and optional noise."""
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    loss = 2.0 + 8.5 * np.exp(-steps / 15.0) + 0.05 * np.sin(steps / 3.0)
    return steps, loss * (1 + noise * rng.standard_normal(n))


def trainer_state(losses, steps, eval_every=10, logging_steps=1):
    """The dict Trainer writes (``TrainerState.save_to_json``: every field, keys sorted)."""
    n = int(steps[-1])
    history = []
    for s, v in zip(steps, losses):
        history.append(
            {
                "epoch": round(float(s) / n * 3, 4),
                "grad_norm": 1.5 + 0.01 * float(s),
                "learning_rate": 5e-05 * (1 - float(s) / n),
                "loss": float(v),
                "step": int(s),
            }
        )
        if int(s) % eval_every == 0:
            history.append(
                {
                    "epoch": round(float(s) / n * 3, 4),
                    "eval_loss": float(v) + 0.3,
                    "eval_runtime": 1.234,
                    "eval_samples_per_second": 81.0,
                    "eval_steps_per_second": 10.1,
                    "step": int(s),
                }
            )
    history.append(
        {
            "epoch": 3.0,
            "step": n,
            "total_flos": 123456789.0,
            "train_loss": float(np.mean(losses)),
            "train_runtime": 42.0,
            "train_samples_per_second": 11.4,
            "train_steps_per_second": 1.43,
        }
    )
    return {
        "best_global_step": None,
        "best_metric": None,
        "best_model_checkpoint": None,
        "epoch": 3.0,
        "eval_steps": eval_every,
        "global_step": n,
        "is_hyper_param_search": False,
        "is_local_process_zero": True,
        "is_world_process_zero": True,
        "log_history": history,
        "logging_steps": logging_steps,
        "max_steps": n,
        "num_input_tokens_seen": 0,
        "num_train_epochs": 3,
        "save_steps": 500,
        "stateful_callbacks": {
            "TrainerControl": {
                "args": {
                    "should_epoch_stop": False,
                    "should_evaluate": False,
                    "should_log": False,
                    "should_save": True,
                    "should_training_stop": True,
                },
                "attributes": {},
            }
        },
        "total_flos": 123456789.0,
        "train_batch_size": 8,
        "trial_name": None,
        "trial_params": None,
    }


def write_json(path, obj):
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def megatron_line(it, total, loss):
    return (
        f" [2024-06-03 10:21:{it % 60:02d}] iteration {it:>8d}/{total:>8d} | consumed samples: {it * 32:>12d} | "
        f"elapsed time per iteration (ms): 1532.1 | learning rate: 1.250000E-05 | global batch size:    32 | "
        f"lm loss: {loss:.6E} | loss scale: 1.0 | grad norm: 2.345 | number of skipped iterations:   0 | "
        f"number of nan iterations:   0 |"
    )


def megatron_log(path, steps, losses):
    total = int(steps[-1])
    lines = [
        "using world size: 8, data-parallel size: 1, tensor-model-parallel size: 8",
        "> building train, validation, and test datasets ...",
    ]
    for s, v in zip(steps, losses):
        lines.append(megatron_line(int(s), total, float(v)))
        if int(s) % 20 == 0:
            lines.append("-" * 100)
            lines.append(
                f" validation loss at iteration {int(s)} | lm loss value: {float(v) + 0.2:.6E} | "
                f"lm loss PPL: 1.234567E+01 | "
            )
            lines.append("-" * 100)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def invoke(*args):
    return CliRunner().invoke(main, ["loss-compare", *map(str, args)])


# ------------------------------------------------------------------------------------------------ readers


def test_trainer_state_reads_train_entries_only(tmp_path):
    steps, loss = curve_values(30)
    p = write_json(tmp_path / "trainer_state.json", trainer_state(loss, steps))
    c = read_curve(str(p))
    assert c.format == "trainer_state" and c.metric == "loss" and c.step_source == "file"
    assert c.steps == list(range(1, 31))
    np.testing.assert_allclose([c.losses[s] for s in c.steps], loss)  # train_loss (the run's mean) not taken
    ev = read_curve(str(p), metric="eval_loss")
    assert ev.steps == [10, 20, 30] and ev.metric == "eval_loss"
    assert ev.losses[20] == pytest.approx(loss[19] + 0.3)


def test_trainer_state_directory_takes_newest_checkpoint(tmp_path):
    steps, loss = curve_values(40)
    out = tmp_path / "output"
    for ck in (10, 20, 40):  # lexical order would put checkpoint-40 before checkpoint-100; numeric is used
        (out / f"checkpoint-{ck}").mkdir(parents=True)
        write_json(out / f"checkpoint-{ck}" / "trainer_state.json", trainer_state(loss[:ck], steps[:ck]))
    assert read_curve(str(out)).steps[-1] == 40
    write_json(out / "trainer_state.json", trainer_state(loss, steps))
    c = read_curve(str(out))
    assert c.path == str(out / "trainer_state.json") and len(c.steps) == 40


def test_trainer_state_written_by_transformers(tmp_path):
    import transformers

    steps, loss = curve_values(12)
    state = transformers.TrainerState(global_step=12, max_steps=12, logging_steps=1)
    for s, v in zip(steps, loss):
        state.log_history.append(
            {
                "epoch": float(s) / 12,
                "grad_norm": 1.0,
                "learning_rate": 1e-5,
                "loss": float(v),
                "step": int(s),
            }
        )
    state.save_to_json(str(tmp_path / "trainer_state.json"))
    c = read_curve(str(tmp_path))
    assert c.format == "trainer_state" and c.steps == list(range(1, 13))


def test_megatron_log(tmp_path):
    steps, loss = curve_values(60)
    c = read_curve(str(megatron_log(tmp_path / "train.log", steps, loss)))
    assert c.format == "log" and c.metric == "lm loss" and c.step_source == "file"
    assert c.steps == list(range(1, 61))  # validation lines ("lm loss value:") are not training steps
    np.testing.assert_allclose([c.losses[s] for s in c.steps], loss, rtol=1e-6)  # printed with 7 digits


@pytest.mark.parametrize(
    "line, step, value",
    [
        ("step=12 loss=1.234 lr=1e-5", 12, 1.234),
        ("Epoch 1 | step 12 | loss: 1.234", 12, 1.234),
        ("{'step': 12, 'loss': 1.234, 'grad_norm': 0.5}", 12, 1.234),
        ('{"loss": 1.234, "global_step": 12, "eval_loss": 9.9}', 12, 1.234),
        ("iteration       12/    1000 | lm loss: 1.234000E+00 | loss scale: 65536.0 |", 12, 1.234),
        ("INFO train.py:88 step: 12 loss: tensor(1.2340, device='npu:0')", 12, 1.234),
        ("[rank0] iter 12 train loss 1.234", 12, 1.234),
    ],
)
def test_log_line_styles(tmp_path, line, step, value):
    p = tmp_path / "run.log"
    p.write_text("starting\n" + line + "\n", encoding="utf-8")
    c = read_curve(str(p))
    assert c.steps == [step] and c.losses[step] == pytest.approx(value)


def test_hf_stdout_without_steps_uses_line_order(tmp_path):
    _, loss = curve_values(5)
    lines = [" 20%|██        | 1/5 [00:01<00:04,  1.0s/it]"]
    lines += [f"{{'loss': {v:.4f}, 'grad_norm': 1.2, 'learning_rate': 4e-05, 'epoch': 0.2}}" for v in loss]
    lines += [
        "{'eval_loss': 2.5, 'eval_runtime': 0.5, 'epoch': 1.0}",
        "{'train_runtime': 5.0, 'train_samples_per_second': 8.0, 'train_loss': 5.5, 'epoch': 1.0}",
    ]
    p = tmp_path / "stdout.txt"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    c = read_curve(str(p))
    assert c.step_source == "index" and c.steps == [1, 2, 3, 4, 5]
    np.testing.assert_allclose([c.losses[s] for s in c.steps], np.round(loss, 4))


def test_jsonl_with_eval_rows_and_truncated_tail(tmp_path):
    steps, loss = curve_values(20)
    rows = []
    for s, v in zip(steps, loss):
        rows.append(json.dumps({"iteration": int(s), "train_loss": float(v), "lr": 1e-4}))
        if s % 5 == 0:
            rows.append(json.dumps({"iteration": int(s), "val_loss": 3.0}))
    p = tmp_path / "metrics.jsonl"
    p.write_text("\n".join(rows) + '\n{"iteration": 21, "train_lo', encoding="utf-8")  # killed mid-write
    c = read_curve(str(p))
    assert c.format == "jsonl" and c.metric == "train_loss" and c.truncated
    assert c.steps == list(range(1, 21))
    np.testing.assert_allclose([c.losses[s] for s in c.steps], loss)


def test_csv_and_tensorboard_csv(tmp_path):
    steps, loss = curve_values(15)
    p = tmp_path / "wandb.csv"
    p.write_text(
        "global_step,loss,lr\n"
        + "".join(f"{s},{float(v)!r},{1e-4}\n" for s, v in zip(steps, loss))
        + "16,,1e-4\n",
        encoding="utf-8",
    )
    c = read_curve(str(p))
    assert c.format == "csv" and c.metric == "loss" and c.steps == list(range(1, 16))
    np.testing.assert_allclose([c.losses[s] for s in c.steps], loss)

    tb = tmp_path / "run-.-tag-train_loss.csv"  # the name TensorBoard's "download CSV" gives
    tb.write_text(
        "Wall time,Step,Value\n"
        + "".join(f"1717400000.{s},{s * 10},{float(v)!r}\n" for s, v in zip(steps, loss)),
        encoding="utf-8",
    )
    c = read_curve(str(tb))
    assert c.format == "tensorboard-csv" and c.metric == "Value" and c.steps == [10 * int(s) for s in steps]


def test_duplicate_steps_keep_the_last_value(tmp_path):
    p = tmp_path / "resumed.log"
    p.write_text(
        "step=1 loss=3.0\nstep=2 loss=2.9\nstep=3 loss=2.8\n# resumed from step 2\n"
        "step=3 loss=2.75\nstep=4 loss=2.7\n",
        encoding="utf-8",
    )
    c = read_curve(str(p))
    assert c.steps == [1, 2, 3, 4] and c.losses[3] == 2.75 and c.duplicates == 1


# ------------------------------------------------------------------------------------------------ metrics


def numpy_reference(a_steps, a, b_steps, b):
    """The documented formulas, written independently of the code under test."""
    common = np.intersect1d(a_steps, b_steps)
    xa = np.array([a[list(a_steps).index(s)] for s in common])
    xb = np.array([b[list(b_steps).index(s)] for s in common])
    rel = np.abs(xa - xb) / np.abs(xb)
    return common, xa, xb, rel


def test_alignment_and_metrics_match_numpy(tmp_path):
    steps, gpu = curve_values(80, seed=1)
    _, npu = curve_values(80, seed=2, noise=0.004)
    keep_a = np.setdiff1d(steps, [7, 8, 9, 50])  # steps missing on one side or the other
    keep_b = np.setdiff1d(steps, [1, 60, 61])
    pa = megatron_log(tmp_path / "npu.log", keep_a, npu[keep_a - 1])
    pb = write_json(tmp_path / "trainer_state.json", trainer_state(gpu[keep_b - 1], keep_b))
    a, b = read_curve(str(pa)), read_curve(str(pb))
    cmp = compare_curves(a, b, rtol=0.02)
    report = losscurve.build_report(cmp)
    d = report.data

    common, xa, xb, rel = numpy_reference(
        a.steps, [a.losses[s] for s in a.steps], b.steps, [b.losses[s] for s in b.steps]
    )
    assert len(common) == 80 - 4 - 3
    assert d["steps"] == {"a": 76, "b": 77, "common": 73, "compared": 73, "only_a": 3, "only_b": 4}
    assert [p["step"] for p in d["points"]] == common.tolist()
    assert d["mean_rel_err"] == pytest.approx(float(np.mean(rel)), rel=1e-12)
    absd = np.abs(xa - xb)
    assert d["max_abs_diff"] == pytest.approx(float(absd.max()), rel=1e-12)
    assert d["max_abs_diff_step"] == int(common[np.argmax(absd)])
    assert d["final"]["diff"] == pytest.approx(float(xa[-1] - xb[-1]))
    for p, r in zip(d["points"], rel):
        assert p["rel_err"] == pytest.approx(float(r), rel=1e-12)
        assert p["abs_diff"] == pytest.approx(abs(p["a"] - p["b"]), rel=1e-12)
    assert d["first_divergent_step"] is None and d["verdict"] == "within tolerance"
    assert report.worst() is None or report.worst() < Severity.ERROR  # exit 0 at --fail-on error


def test_injected_divergence_is_found_at_its_step(tmp_path):
    steps, gpu = curve_values(100, seed=3)
    npu = gpu * (1 + 0.003 * np.cos(steps))  # within 2 % everywhere ...
    npu[steps >= 63] *= 1.05  # ... until step 63
    pa = megatron_log(tmp_path / "npu.log", steps, npu)
    pb = megatron_log(tmp_path / "gpu.log", steps, gpu)
    r = invoke(pa, pb, "--format", "json")
    assert r.exit_code == 1, r.output
    d = json.loads(r.output)
    assert d["schema"] == SCHEMA and d["rtol"] == 0.02
    assert d["first_divergent_step"] == 63 and d["first_divergent_reason"] == "tolerance"
    _, xa, xb, rel = numpy_reference(steps, npu, steps, gpu)
    first = int(steps[np.argmax(np.abs(xa - xb) > 0.02 * np.abs(xb))])
    assert first == 63
    assert d["steps_beyond_tolerance"] == int(np.count_nonzero(rel > 0.02))
    assert invoke(pa, pb, "--fail-on", "never").exit_code == 0
    assert invoke(pa, pb, "--rtol", "0.06", "--mean-rtol", "0.05").exit_code == 0
    # atol: |a-b| > atol + rtol*|b|, as numpy.isclose
    d = json.loads(
        invoke(pa, pb, "--rtol", "0", "--atol", "0.05", "--mean-rtol", "1", "--format", "json").output
    )
    beyond = ~np.isclose(xa, xb, rtol=0, atol=0.05)
    assert d["steps_beyond_tolerance"] == int(np.count_nonzero(beyond))
    assert d["first_divergent_step"] == int(steps[np.argmax(beyond)])


def test_nan_lines_are_skipped_and_reported(tmp_path):
    steps, gpu = curve_values(30)
    npu = gpu.copy()
    lines = []
    for s, v in zip(steps, npu):
        lines.append(
            megatron_line(int(s), 30, float(v)).replace(f"{v:.6E}", "nan" if s in (12, 20) else f"{v:.6E}")
        )
    pa = tmp_path / "npu.log"
    pa.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pb = megatron_log(tmp_path / "gpu.log", steps, gpu)
    a = read_curve(str(pa))
    assert a.nonfinite_steps == [12, 20] and len(a.steps) == 30
    r = invoke(pa, pb, "--format", "json")
    d = json.loads(r.output)
    assert d["steps"]["compared"] == 28 and d["run_a"]["nonfinite_steps"] == [12, 20]
    assert d["mean_rel_err"] == pytest.approx(0.0, abs=1e-6)  # the NaN steps do not poison the mean
    # a NaN on one side only is a divergence in itself
    assert d["first_divergent_step"] == 12 and d["first_divergent_reason"] == "nonfinite"
    assert r.exit_code == 1
    text = invoke(pa, pb).output
    assert "NaN/Inf loss at step 12" in text and "2 NaN/Inf loss values skipped" in text


def test_relative_error_zero_reference():
    rel = losscurve.relative_error(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0]))
    assert rel[0] == 0 and math.isinf(rel[1]) and rel[2] == 1


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def runs(tmp_path):
    steps, gpu = curve_values(40, seed=5)
    _, npu = curve_values(40, seed=6, noise=0.002)
    return (
        megatron_log(tmp_path / "npu.log", steps, npu),
        write_json(tmp_path / "trainer_state.json", trainer_state(gpu, steps)),
    )


def _file(name, content):
    def make(d):
        p = d / name
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content, encoding="utf-8")
        return p

    return make


def _dir(d):
    (d / "outdir").mkdir()
    return d / "outdir"


@pytest.mark.parametrize(
    "make, expect",
    [
        (lambda d: d / "missing.log", "missing.log: no such file or directory"),
        (_file("empty.log", ""), "empty.log: empty file"),
        (_file("blank.log", "\n  \n"), "blank.log: empty file"),
        (
            _file("noloss.log", "epoch 1 step 3 accuracy=0.5\n"),
            "noloss.log: no loss values found (read as log; looked for",
        ),
        (_file("x.jsonl", '{"step": 1, "acc": 0.5}\n'), "x.jsonl: no loss values found (read as jsonl"),
        (_file("x.csv", "step,accuracy\n1,0.5\n"), "x.csv: no loss values found (read as csv"),
        (
            _file("events.out.tfevents.1.host", b"\x18\x00\x00\x00\x00\x00\x00\x00\xa3"),
            "a TensorBoard event file",
        ),
        (_dir, "outdir: a directory without trainer_state.json"),
    ],
)
def test_bad_input_exit_2_one_line(tmp_path, runs, make, expect):
    bad = make(tmp_path)
    for args in ((bad, runs[1]), (runs[0], bad)):
        r = CliRunner().invoke(main, ["loss-compare", *map(str, args)])
        assert r.exit_code == 2, r.output
        err = r.output.strip()  # stdout stays empty; stderr is in output for click 8.0 to 8.2+
        assert len(err.splitlines()) == 1 and expect in err, err
        assert err.startswith("ascend-doctor: error: ")


def test_metric_not_found_and_no_common_step(tmp_path, runs):
    r = invoke(runs[0], runs[1], "--metric", "eval_loss")
    assert r.exit_code == 2 and "no loss values found" in r.output and "eval_loss" in r.output
    other = tmp_path / "late.log"
    other.write_text("step=1000 loss=1.0\nstep=1001 loss=1.0\n", encoding="utf-8")
    r = invoke(runs[0], other)
    assert r.exit_code == 2 and "no common step" in r.output and len(r.output.strip().splitlines()) == 1


def test_formats_and_html_plots(tmp_path, runs):
    r = invoke(*runs, "--label-a", "npu <910B>", "--label-b", "gpu", "--format", "json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    for key in (
        "run_a",
        "run_b",
        "steps",
        "mean_rel_err",
        "max_abs_diff",
        "max_abs_diff_step",
        "first_divergent_step",
        "rtol",
        "points",
    ):
        assert key in d
    assert d["run_a"]["label"] == "npu <910B>" and set(d["points"][0]) == {
        "step",
        "a",
        "b",
        "abs_diff",
        "rel_err",
    }

    out = tmp_path / "report.html"
    r = invoke(*runs, "--label-a", "npu <910B>", "--label-b", "gpu", "--format", "html", "-o", out)
    assert r.exit_code == 0 and r.stdout == ""
    assert r.stderr == f"ascend-doctor: wrote {out} (html, {out.stat().st_size / 1024:.1f} KB)\n"
    html = out.read_text(encoding="utf-8")
    assert html.count("<polyline") >= 2  # both curves (plus the relative-error plot)
    assert "npu &lt;910B&gt;" in html and "<910B>" not in html

    md = invoke(*runs, "--format", "markdown").output
    assert "| step |" in md and "npu.log" in md
    text = invoke(*runs).output
    assert "first divergent step" in text and "trainer_state.json" in text


def test_same_labels_stay_distinct(tmp_path):
    steps, loss = curve_values(10)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pa = write_json(tmp_path / "a" / "trainer_state.json", trainer_state(loss, steps))
    pb = write_json(tmp_path / "b" / "trainer_state.json", trainer_state(loss, steps))
    cmp = compare_curves(read_curve(str(pa)), read_curve(str(pb)))
    assert cmp.label_a != cmp.label_b
    cmp = compare_curves(read_curve(str(pa)), read_curve(str(pb)), label_a="x", label_b="x")
    assert cmp.label_a != cmp.label_b
    series = losscurve.build_report(cmp).sections[2].series[0]
    assert len(series.lines) == 2


def test_read_curve_raises_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_curve(str(tmp_path / "nope.json"))
    assert os.path.exists(tmp_path)


def test_steps_from_most_lines_else_line_order(tmp_path):
    p = tmp_path / "mixed.log"
    p.write_text(
        "step=1 loss=3.0\nstep=2 loss=2.9\nloss=2.85 (smoothed)\nstep=3 loss=2.8\n", encoding="utf-8"
    )
    c = read_curve(str(p))
    assert c.step_source == "file" and c.steps == [1, 2, 3] and c.no_step == 1
    p.write_text(
        "loss=3.0\nloss=2.9\nloss=2.8\ntraining finished at step 3, final loss 2.8\n", encoding="utf-8"
    )
    c = read_curve(str(p))
    assert c.step_source == "index" and c.steps == [1, 2, 3, 4]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "step=3 loss=1.5",
                    "loss: nan",
                    '{"step": 2, "loss": 1.0}',
                    "Wall time,Step,Value",
                    "1,2,3",
                    "{'loss': 2}",
                    "iteration 4/ 9 | lm loss: 1E+00 |",
                    '{"log_history": [',
                    "step,loss",
                    "x,,",
                    "\ufeff",
                    "\x00",
                    "",
                ]
            ),
            max_size=8,
        ).map("\n".join),
    )
)
def test_reader_never_crashes(tmp_path, text):
    """Any text gives a curve or an InputError, never another exception."""
    p = tmp_path / "fuzz.txt"
    p.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        c = read_curve(str(p))
    except InputError as exc:
        assert str(exc).startswith(str(p)) and "\n" not in str(exc)
    else:
        assert c.losses and all(isinstance(k, int) for k in c.losses)
