"""The drift plots of compare and shadow (issue 15): the culprits labelled where they are, a trend of the
error against the reference that is not single-op noise, titles that name runs by their short names."""

import math

import pytest
import torch

from ascend_tools.precision import demo_run, drift
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_session import build_report, shadow


@pytest.fixture(scope="module")
def compare_report(tmp_path_factory):
    report, injected = demo_run.run(str(tmp_path_factory.mktemp("dumps")))
    return report, injected


def drift_series(report):
    (series,) = [s for sec in report.sections for s in sec.series]
    return series


def log_travel(ys):
    """How far a line moves up and down, in decades: the sum of |Δ log10 y|."""
    return sum(abs(math.log10(b) - math.log10(a)) for a, b in zip(ys, ys[1:]))


@pytest.mark.slow
def test_compare_labels_the_culprit_at_its_pair(compare_report):
    report, injected = compare_report
    series = drift_series(report)
    (row,) = [r for r in report.data["pairs"] if r["name"] == injected]
    assert [(x, label) for x, _y, label in series.points] == [(float(row["order"]), injected)]
    assert series.points[0][1] == pytest.approx(row["introduced"])


@pytest.mark.slow
def test_compare_reference_line_is_a_trend_not_per_op_noise(compare_report):
    report, _ = compare_report
    series = drift_series(report)
    raw = [min(r["error_ratio"], 1e6) for r in report.data["pairs"] if r["error_ratio"]]
    (trend,) = [pts for label, pts in series.lines.items() if label.startswith("vs reference")]
    assert len(trend) == len(raw)
    # the raw per-op line travels hundreds of decades (exact ops jump between 1 and the cap)
    assert log_travel([y for _, y in trend]) < log_travel(raw) / 5


@pytest.mark.slow
def test_compare_title_names_runs_short_and_summary_full(compare_report):
    report, _ = compare_report
    target, reference = report.data["target"]["path"], report.data["reference"]["path"]
    assert report.title == "compare: target-bf16/rank0 vs reference-fp32/rank0"
    summary = dict(report.summary)
    assert summary["target"].startswith(target) and summary["reference"].startswith(reference)


def test_shadow_labels_the_culprit_and_names_the_command_short():
    torch.manual_seed(0)
    x, w1, w2 = torch.randn(32, 64), torch.randn(64, 64), torch.randn(64, 64)
    fault = Fault("aten::mm", call=1, kind="perturb", scale=0.5, fraction=0.1)

    class Chain(torch.nn.Module):  # a module's forward: its ops are forward ops, as the injector counts them
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.mm(torch.mm(torch.mm(x, w1), w2), w1)

    with FaultInjector(fault) as injector, shadow() as sh:
        Chain()(x)
    report = build_report(
        sh.results, [sh.meta()], command=["/opt/venv/bin/python", "/home/me/train.py", "--steps", "3"]
    )
    (series,) = [s for sec in report.sections for s in sec.series]
    (hit,) = [i for i, r in enumerate(report.data["records"]) if r["name"] == injector.hit]
    assert [(x, label) for x, _y, label in series.points] == [(float(hit), injector.hit)]
    assert report.title == "shadow: python train.py --steps 3"
    assert dict(report.summary)["command"] == "/opt/venv/bin/python /home/me/train.py --steps 3"


def test_running_median_known_answer():
    points = [(0.0, 1.0), (1.0, 1e6), (2.0, 1.0), (3.0, 4.0), (4.0, 1e6)]
    # windows of 3 centred on each point, 2 at the ends
    assert drift.running_median(points, 3) == [
        (0.0, 500000.5),
        (1.0, 1.0),
        (2.0, 4.0),
        (3.0, 4.0),
        (4.0, 500002.0),
    ]


def test_culprit_points_keep_the_first_five_inside_the_plot():
    hits = [(float(i), y, f"op{i}") for i, y in enumerate([0.0, 3.0, math.inf, 7.0, 8.0, 9.0])]
    assert drift.culprit_points(hits, 1e-3, 1e6) == [
        (0.0, 1e-3, "op0"),
        (1.0, 3.0, "op1"),
        (2.0, 1e6, "op2"),
        (3.0, 7.0, "op3"),
        (4.0, 8.0, "op4"),
    ]


@pytest.mark.parametrize(
    "path, name",
    [
        ("/tmp/demo/precision-dumps/target-bf16/rank0", "target-bf16/rank0"),
        ("/data/run-npu/", "run-npu"),
        ("dump", "dump"),
        ("/data/rank3", "data/rank3"),
    ],
)
def test_short_run_name(path, name):
    assert drift.short_run_name(path) == name


def test_layer_index_and_per_layer_values():
    assert drift.layer_index("model.layers.12.mlp.up_proj") == 12
    assert drift.layer_index("transformer.h.3.attn") == 3
    assert drift.layer_index("model.embed_tokens") is None
    errors = [
        ("model.layers.0.mlp", "forward", "introduced", 2.0),
        ("model.layers.0.attn", "forward", "introduced", 50.0),
        ("model.layers.1.mlp", "forward", "introduced", 0.5),
        ("model.layers.1.mlp", "forward", "vs reference", 10.0),
        ("model.layers.1.attn", "forward", "vs reference", 1000.0),
        ("model.layers.1.norm", "forward", "vs reference", 100.0),
        ("lm_head", "forward", "introduced", 1e9),  # no layer: left out
        ("model.layers.1.mlp", "backward", "introduced", float("inf")),  # not finite: left out
    ]
    layers, columns, values = drift.per_layer(errors, floor=1e-2, cap=1e6)
    assert layers == [0, 1] and columns == ["forward introduced", "forward vs reference"]
    assert values[0] == [pytest.approx(math.log10(50.0)), None]  # the largest introduced error
    assert values[1] == [pytest.approx(math.log10(0.5)), pytest.approx(2.0)]  # vs reference: the median


@pytest.mark.slow
def test_compare_per_layer_heatmap_puts_the_culprit_in_its_layer(compare_report):
    report, injected = compare_report
    (heat,) = [c for sec in report.sections for c in sec.charts]
    (row,) = [r for r in report.data["pairs"] if r["name"] == injected]
    culprit_layer = str(drift.layer_index(row["module"]))
    col = heat.x_ticks.index(f"{row['phase']} introduced")
    by_layer = {layer: vals[col] for layer, vals in zip(heat.y_ticks, heat.values) if vals[col] is not None}
    assert max(by_layer, key=lambda k: by_layer[k]) == culprit_layer
    assert by_layer[culprit_layer] == pytest.approx(math.log10(row["introduced"]))
