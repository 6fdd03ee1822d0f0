"""``ascend-doctor loss-compare``: two runs' loss curves aligned on their steps, and where they part."""

import sys
from typing import Any, Optional

import click

from .common import emit, exit_code, fail_on_option, handle_errors, output_options


@click.command("loss-compare")
@click.argument("run_a", type=str)
@click.argument("run_b", type=str)
@click.option(
    "--metric",
    default=None,
    metavar="NAME",
    help="Loss key to read, e.g. eval_loss or 'lm loss' [default: loss, train_loss, lm loss, ...].",
)
@click.option(
    "--rule",
    type=click.Choice(["smoothed", "per-step"]),
    default="smoothed",
    show_default=True,
    help="The verdict rule: 'smoothed' tests the means of the last --window losses of each run, 'per-step' "
    "the raw losses; a step fails when |A - B| > atol + rtol * |B| (B is the reference).",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Losses averaged by the smoothed rule (the last N logged steps of each run).",
)
@click.option(
    "--from-step",
    type=int,
    default=None,
    metavar="K",
    help="Judge the steps from K on (earlier steps are still shown) [default: the first common step].",
)
@click.option(
    "--rtol",
    type=click.FloatRange(min=0),
    default=0.02,
    show_default=True,
    help="Relative tolerance of the rule: a step fails when |A - B| > atol + rtol * |B|.",
)
@click.option(
    "--atol",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Absolute part of the per-step tolerance.",
)
@click.option(
    "--mean-rtol",
    type=click.FloatRange(min=0),
    default=0.01,
    show_default=True,
    help="The runs diverge when the mean relative error over the common steps exceeds this.",
)
@click.option("--label-a", default=None, help="Name of RUN_A in the report [default: its file name].")
@click.option("--label-b", default=None, help="Name of RUN_B in the report [default: its file name].")
@click.option(
    "--rows",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Steps shown in the step table: the first N, the last N and the N worst.",
)
@fail_on_option
@output_options
@handle_errors
def loss_compare_cmd(
    run_a: str,
    run_b: str,
    metric: Optional[str],
    rtol: float,
    atol: float,
    mean_rtol: float,
    label_a: Optional[str],
    label_b: Optional[str],
    rows: int,
    rule: str,
    window: int,
    from_step: Optional[int],
    fail_on: str,
    fmt: str,
    output: Any,
) -> None:
    """Compare the loss curves of RUN_A (e.g. the NPU run) and RUN_B (the reference, e.g. the GPU run).

    Each RUN is a Hugging Face trainer_state.json (or an output directory holding one or checkpoint-*/),
    a JSON-lines or CSV metrics file (TensorBoard's CSV export too), or a training log with loss=,
    'loss': or Megatron's "lm loss:" on each line. The format is read from the content.
    """
    from ..precision import losscurve

    report = losscurve.loss_compare(
        run_a,
        run_b,
        metric=metric,
        rtol=rtol,
        atol=atol,
        mean_rtol=mean_rtol,
        label_a=label_a,
        label_b=label_b,
        rows=rows,
        rule=rule,
        window=window,
        from_step=from_step,
    )
    emit(report, fmt, output)
    sys.exit(exit_code(report, fail_on))
