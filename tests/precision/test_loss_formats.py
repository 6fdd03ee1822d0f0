"""loss-compare's readers on the logs people have: LLaMA-Factory's trainer_log.jsonl, MindSpore's LossMonitor,
MindFormers' per-epoch step counter, DeepSpeed's progress lines. The files under tests/data/losslogs/ are
excerpts of real logs (see the README there); the expectations come from the format's own definition (the
JSON fields, the callbacks' step formulas), computed here independently of the reader."""

import json
import math
import os

import pytest
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.precision.losscurve import compare_curves, read_curve

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "losslogs")


def data(name):
    return os.path.join(DATA, name)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ------------------------------------------------------------------------------------------ LLaMA-Factory


def test_llamafactory_trainer_log_uses_current_steps():
    with open(data("llamafactory_trainer_log.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    want = {r["current_steps"]: r["loss"] for r in rows if "loss" in r}
    c = read_curve(data("llamafactory_trainer_log.jsonl"))
    assert c.step_source == "file"
    assert c.losses == want
    assert c.steps[:3] == [5, 10, 15] and c.steps[-1] == 90


def _trainer_state(path, losses):
    doc = {
        "global_step": max(losses),
        "log_history": [
            {"epoch": s / 100, "learning_rate": 1e-5, "loss": v, "step": s} for s, v in losses.items()
        ],
    }
    path.write_text(json.dumps(doc), encoding="utf-8")
    return str(path)


def test_llamafactory_against_trainer_state_diverges_at_the_true_step(tmp_path):
    """The issue's case: the GPU run logs every step (trainer_state.json), the NPU run's LLaMA-Factory log
    every 5 steps and drifts from step 315 on; aligned by line index this read "diverged at step 15"."""
    ref = {s: 2.0 + math.exp(-s / 80) for s in range(1, 401)}
    ref_path = _trainer_state(tmp_path / "trainer_state.json", ref)
    lines = []
    for s in range(5, 401, 5):
        loss = ref[s] * (1.05 if s >= 315 else 1.0)
        lines.append(
            json.dumps({"current_steps": s, "total_steps": 400, "loss": round(loss, 6), "epoch": s / 100})
        )
    npu = write(tmp_path / "trainer_log.jsonl", "\n".join(lines) + "\n")
    cmp = compare_curves(read_curve(npu), read_curve(ref_path))
    assert cmp.first_divergent == (315, "tolerance")
    assert int(cmp.steps.size) == 80


# ------------------------------------------------------------------------------------------------- MindSpore


def test_mindspore_lossmonitor_epochs_do_not_overwrite():
    c = read_curve(data("mindspore_lossmonitor.log"))
    # LossMonitor prints cur_step_in_epoch = (cur_step_num - 1) % batch_num + 1; batch_num is 10 here,
    # so epoch e step s is global step (e - 1) * 10 + s
    want = {}
    with open(data("mindspore_lossmonitor.log"), encoding="utf-8") as f:
        for line in f:
            e, s, v = line.split()[1], line.split()[3].rstrip(","), line.split()[-1]
            want[(int(e) - 1) * 10 + int(s)] = float(v)
    assert c.losses == want
    assert c.steps == list(range(1, 21))
    assert "(epoch - 1) * 10 + step" in c.steps_note


def test_mindspore_sink_mode_one_line_per_epoch():
    c = read_curve(data("mindspore_fit_sink.log"))
    assert c.losses == {10: 5.908090114593506, 20: 3.9280264377593994, 30: 2.9104671478271484}


def _loss_monitor_log(batch_num, epochs, per_print, loss):
    """What MindSpore's LossMonitor (2.x) prints: a line when cur_step_num - last_print >= per_print."""
    lines, truth, last = [], {}, 0
    for cur in range(1, batch_num * epochs + 1):
        epoch = (cur - 1) // batch_num + 1
        in_epoch = (cur - 1) % batch_num + 1
        if cur - last >= per_print:
            last = cur
            lines.append(f"epoch: {epoch} step: {in_epoch}, loss is {loss(cur)}")
            truth[cur] = float(loss(cur))
    return "\n".join(lines) + "\n", truth


def test_mindspore_steps_per_epoch_inferred_from_the_print_interval(tmp_path):
    """batch_num 125 with a line every 10 steps: epoch 1 ends at step 120, epoch 2 starts at step 5; the
    global step of every line is the callback's cur_step_num."""
    text, truth = _loss_monitor_log(125, 3, 10, lambda cur: round(3 - cur / 1000, 6))
    c = read_curve(write(tmp_path / "ms.log", text))
    assert c.losses == truth
    assert "* 125 + step" in c.steps_note


def test_epoch_and_global_step_stay_as_logged(tmp_path):
    text = "epoch 1 step 1500 loss 2.5\nepoch 2 step 1510 loss 2.4\nepoch 2 step 1520 loss 2.3\n"
    c = read_curve(write(tmp_path / "run.log", text))
    assert c.losses == {1500: 2.5, 1510: 2.4, 1520: 2.3} and c.steps_note == ""


# ---------------------------------------------------------------------------------------------- MindFormers

# MindFormers' MFLossMonitor format strings (sink mode, then not), and the prefix of its logger lines
_MF_SINK = (
    "{ Epoch:[%3d/%3d], step:[%5d/%5d], loss: %5.3f, per_step_time: %dms, lr: %s, overflow cond: %s, "
    "loss_scale: %s, global_norm: %s%s"
)
_MF_NOSINK = (
    "{ Epoch:[%3d/%3d], step:[%5d/%5d], loss:[%5.3f/%5.3f], per_step_time: %dms, lr: %s, overflow cond: %s, "
    "loss_scale: %s, global_norm: %s%s"
)
_MF_PREFIX = "2025-04-07 15:35:%02d,173 - [mindformers/core/callback/callback.py:529] - INFO - "


def _mindformers_log(fmt, epochs, per_epoch, loss, skip_first=0):
    lines, truth = [], {}
    for e in range(1, epochs + 1):
        for s in range(1, per_epoch + 1):
            g = s + (e - 1) * per_epoch  # MindFormers' global_step
            if g <= skip_first:
                continue
            args = [e, epochs, s, per_epoch, loss(g)]
            if fmt is _MF_NOSINK:
                args.append(loss(g) + 0.5)  # the running mean, printed second
            lines.append(_MF_PREFIX % (g % 60) + fmt % tuple([*args, 1752, "1e-05", False, 1.0, "[1.5]", ""]))
            # the reader sees the loss as printed (%5.3f)
            truth[g] = float(f"{loss(g):5.3f}")
    return lines, truth


def test_mindformers_epoch_two_does_not_overwrite_epoch_one(tmp_path):
    with open(data("mindformers_head.log"), encoding="utf-8") as f:
        head = f.read()
    # the real run's first two lines, then the rest of its 2 epochs x 19 steps in the same format
    lines, truth = _mindformers_log(_MF_SINK, 2, 19, lambda g: 10.649 - 0.05 * g, skip_first=2)
    c = read_curve(write(tmp_path / "worker_0.log", head + "\n".join(lines) + "\n"))
    truth.update({1: 10.649, 2: 10.633})
    assert c.losses == truth
    assert c.steps == list(range(1, 39))
    assert "(epoch - 1) * 19 + step (steps per epoch as printed)" in c.steps_note


def test_mindformers_not_sink_mode_reads_the_step_loss(tmp_path):
    lines, truth = _mindformers_log(_MF_NOSINK, 2, 5, lambda g: 3.0 - 0.1 * g)
    c = read_curve(write(tmp_path / "mf.log", "\n".join(lines) + "\n"))
    assert c.losses == truth


# ------------------------------------------------------------------------------------------------ DeepSpeed


def test_deepspeed_progress_lines_label_the_trainer_losses():
    c = read_curve(data("deepspeed_hf_trainer.log"))
    assert c.step_source == "file"
    assert c.losses == {5: 2.075, 10: 0.8091, 15: 0.5003, 20: 0.466, 25: 0.4338, 30: 0.319, 35: 0.3094}


def test_deepspeed_anchor_rule_holds_in_the_real_log():
    """The rule's premise, checked on the real log: the loss line right after ``step=N`` logs the learning
    rate DeepSpeed printed for step N (the same step)."""
    with open(data("deepspeed_hf_trainer.log"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    pairs = 0
    for i, line in enumerate(lines):
        if "] step=" in line:
            lr = line.split("lr=[")[1].split("]")[0]
            after = next((x for x in lines[i + 1 :] if x.startswith("{'loss'")), None)
            if after is not None and lines.index(after) < next(
                (j for j in range(i + 1, len(lines)) if "] step=" in lines[j]), len(lines)
            ):
                assert f"'learning_rate': {lr}," in after
                pairs += 1
    assert pairs == 3


def test_deepspeed_loss_on_the_progress_line(tmp_path):
    text = "".join(
        f"[2024-05-01 10:00:{s:02d},123] [INFO] [logging.py:96:log_dist] [Rank 0] step={s}, skipped=0, "
        f"lr=[1e-05], mom=[(0.9, 0.95)], loss={2 - s / 100}\n"
        for s in (10, 20, 30)
    )
    assert read_curve(write(tmp_path / "ds.log", text)).losses == {10: 1.9, 20: 1.8, 30: 1.7}


def test_deepspeed_uneven_progress_keeps_line_order_with_warning(tmp_path):
    text = (
        "[Rank 0] step=10, skipped=0\nloss=2.0\n[Rank 0] step=20, skipped=0\nloss=1.9\nloss=1.8\nloss=1.7\n"
    )
    text += "[Rank 0] step=25, skipped=0\nloss=1.6\n"  # 10 steps over 3 lines: no whole interval
    c = read_curve(write(tmp_path / "ds.log", text))
    assert c.step_source == "index" and c.steps == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_mindspore_against_reference_reports_global_steps(tmp_path):
    text, _truth = _loss_monitor_log(10, 3, 1, lambda cur: round(2 + 1 / cur, 6))
    npu_text, _ = _loss_monitor_log(10, 3, 1, lambda cur: round((2 + 1 / cur) * (1.1 if cur >= 17 else 1), 6))
    ref = write(tmp_path / "gpu.log", text)
    npu = write(tmp_path / "npu.log", npu_text)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        main, ["loss-compare", npu, ref, "--rule", "per-step", "-f", "json", "-o", str(out)]
    )
    assert res.exit_code == 1, res.output
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["first_divergent_step"] == 17
    assert doc["steps"]["compared"] == 30
    assert doc["run_a"]["steps_note"].startswith("global step = (epoch - 1) * 10 + step")


# ------------------------------------------------------------------------------- evaluation lines (nanoGPT)


def lines_matching(name, pattern):
    """(step, value) of every line of a fixture matching ``pattern`` (two groups), read here independently."""
    import re

    with open(data(name), encoding="utf-8") as f:
        return [(int(m.group(1)), float(m.group(2))) for m in map(re.compile(pattern).match, f) if m]


def test_nanogpt_reads_the_iter_lines_not_its_eval_estimates():
    # train.py prints "step N: train loss X, val loss Y" (estimate_loss over eval batches) every eval_interval,
    # then "iter N: loss Z" (the step's own loss) every step
    c = read_curve(data("nanogpt_train.log"))
    want = lines_matching("nanogpt_train.log", r"iter (\d+): loss ([\d.]+),")
    assert [(s, c.losses[s]) for s in c.steps] == want and len(want) == 13
    assert c.duplicates == 0  # the eval lines were read as duplicate steps 0, 5, 10 ("a resumed run?")


def test_mlx_lm_val_lines_are_not_training_losses():
    c = read_curve(data("mlx_lm_lora.log"))
    assert c.losses == {10: 1.607}  # not Iter 1's "Val loss 5.759"


def test_a_log_of_eval_lines_only_is_still_read():
    # a nanoGPT-lecture style run that prints only "step N: train loss X, val loss Y": the first loss of each line
    c = read_curve(data("chargpt_eval_only.log"))
    want = lines_matching("chargpt_eval_only.log", r"step (\d+): train loss ([\d.]+),")
    assert [(s, c.losses[s]) for s in c.steps] == want and len(want) == 11
    assert read_curve(data("chargpt_eval_only.log"), metric="val loss").losses[4999] == 1.2754


# ------------------------------------------------------------------------------------------ several ranks


def test_torchrun_tee_ranks_are_averaged_into_the_global_batch_loss():
    """Each rank prints the loss of its half of the global batch: their mean is the one-rank run's loss of the
    whole batch (the known answer, printed by the same script on one rank)."""
    two = read_curve(data("torchrun_tee_2ranks.log"))
    one = read_curve(data("torchrun_1rank.log"))
    assert two.steps == one.steps == list(range(1, 21))
    for step, value in one.losses.items():
        assert two.losses[step] == pytest.approx(value, abs=1.5e-6)  # both printed to 6 decimals
    assert "2 ranks ([default0]:, [default1]:)" in two.merged_note and two.duplicates == 0
    result = CliRunner().invoke(
        main, ["loss-compare", data("torchrun_tee_2ranks.log"), data("torchrun_1rank.log")]
    )
    assert result.exit_code == 0 and "verdict:              ok" in result.output


def test_buffered_ranks_without_a_prefix_are_averaged_not_read_as_a_resume():
    """Two processes started by a launcher that labels nothing (mpirun, srun, a shell), stdout to one file: each
    process buffers its lines and writes them at exit, so rank 1's block follows rank 0's. Read as a resume, the
    curve was rank 1's half-batch losses; the mean of the blocks is the one-rank run's loss (the known answer)."""
    two = read_curve(data("two_processes_buffered.log"))
    one = read_curve(data("torchrun_1rank.log"))
    assert two.steps == one.steps == list(range(1, 21)) and two.duplicates == 0
    for step, value in one.losses.items():
        assert two.losses[step] == pytest.approx(value, abs=1.5e-6)
    assert "logged 2 times in blocks" in two.merged_note


def test_a_rank_alone_in_a_prefixed_log_is_read_as_it_is(tmp_path):
    path = write(tmp_path / "r.log", "".join(f"[default0]:step {s} | loss {1 / s}\n" for s in range(1, 6)))
    c = read_curve(path)
    assert c.losses == {s: 1 / s for s in range(1, 6)} and c.merged_note == ""


def test_colour_codes_before_the_prefix_and_lines_without_one(tmp_path):
    # RETURNN's torchrun output keeps the terminal's colour codes around some lines
    text = (
        "\x1b[32m[default0]:ep 1 train, step 10, loss 1.5\x1b[0m\n"
        "[default1]:ep 1 train, step 10, loss 2.5\n"
        "step 10 loss 9.0 (a summary line of the launcher)\n"
        "[default0]:ep 1 train, step 11, loss 1.0\n"
        "[default1]:ep 1 train, step 11, loss 3.0\n"
    )
    c = read_curve(write(tmp_path / "c.log", text))
    assert c.losses == {10: 2.0, 11: 2.0}
    assert "1 loss lines without a rank prefix left out" in c.merged_note


def test_a_step_logged_in_a_row_is_the_mean_and_a_resumed_one_the_last(tmp_path):
    in_a_row = "".join(f"step {s} loss {v}\n" for s in range(1, 4) for v in (s, s + 2.0))
    c = read_curve(write(tmp_path / "row.log", in_a_row))
    assert c.losses == {1: 2.0, 2: 3.0, 3: 4.0} and c.duplicates == 0 and "logged 2 times" in c.merged_note
    resumed = "".join(f"step {s} loss {s}.0\n" for s in (1, 2, 3, 2, 3, 4))  # went back to step 2
    c = read_curve(write(tmp_path / "resumed.log", resumed))
    assert c.losses == {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0} and c.duplicates == 2 and c.merged_note == ""
