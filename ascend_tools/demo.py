"""``ascend-doctor demo``: every job on built-in examples, no device needed, reports in one folder."""

import glob
import os
import sys
from importlib import resources
from pathlib import Path
from typing import Callable, ContextManager, List

from .errors import InputError
from .report import Report, write_report

FORMATS = (("html", "html"), ("markdown", "md"), ("json", "json"))
CHECK_OPS_EXAMPLES = ("llama_7b.py", "train_cuda.py")


def example(name: str) -> ContextManager[Path]:
    """A real path of the example model ``name`` shipped in ``ascend_tools/examples``, for as long as the
    context lasts."""
    return resources.as_file(resources.files("ascend_tools.examples") / name)


def save(report: Report, out_dir: str, stem: str) -> List[str]:
    paths = []
    for fmt, ext in FORMATS:
        path = os.path.join(out_dir, f"{stem}.{ext}")
        write_report(report, fmt, path)
        paths.append(path)
    return paths


def _precision_part(out_dir: str, echo: Callable[[str], None]) -> None:
    import shutil

    from .precision import compare, demo_run
    from .report import write_text

    dumps = os.path.join(out_dir, "precision-dumps")
    shutil.rmtree(dumps, ignore_errors=True)
    echo("precision: tiny Llama, fp32 reference vs bf16 with one injected fault ...")
    report, injected = demo_run.run(dumps)
    paths = save(report, out_dir, "compare")
    csv_path = os.path.join(out_dir, "compare.csv")
    write_text(compare.to_csv(report), csv_path)
    summary = report.data["summary"]
    echo(f"  injected fault:    {injected}")
    echo(
        "  culprit named:     {}".format(
            report.data["culprits"][0]["name"] if report.data["culprits"] else "none"
        )
    )
    echo(
        "  pairs:             {} ({} beyond tolerance against fp32, mostly inherited; {} introduced an error)".format(
            summary["pairs"], summary["verdicts"]["error"], summary["culprits"]
        )
    )
    echo("  reports: {}".format(", ".join([*paths, csv_path])))


def _loss_part(out_dir: str, echo: Callable[[str], None]) -> None:
    from .precision import demo_losses

    logs = os.path.join(out_dir, "loss-logs")
    echo("loss-compare: MindSpore LossMonitor log (NPU, 2 epochs) vs a GPU trainer_state.json ...")
    report = demo_losses.run(logs)
    d = report.data
    echo(f"  drift injected at: step {demo_losses.DRIFT_AT} (epoch 2; the reference logs every 5 steps)")
    echo(f"  verdict:           {d['verdict']}, first divergent step {d['first_divergent_step']}")
    echo(f"  rule:              {d['rule']['statement']}")
    echo("  reports: {}".format(", ".join(save(report, out_dir, "loss-compare"))))


def _patch_part(out_dir: str, echo: Callable[[str], None]) -> None:
    """Self-check every tier available here, then the same tiny Llama without and with
    ``import ascend_tools.patch``: the logits must agree within fp32 rounding."""
    import importlib

    import torch

    from . import backend
    from .ops import selfcheck
    from .precision import demo_run

    echo("patch: selfcheck of the fused-op tiers available here ...")
    data = selfcheck.run(backend.device())
    paths = save(selfcheck.build_report(data), out_dir, "selfcheck")
    for row in data["results"]:
        if row["dtype"] == "float32":
            echo(
                "  {:<9} {:<10} max error fwd {:.1e} bwd {:.1e}  {}".format(
                    row["tier"],
                    row["op"],
                    row["max_err_forward"] or 0.0,
                    row["max_err_backward"] or 0.0,
                    row["verdict"],
                )
            )
    echo("  reports: {}".format(", ".join(paths)))

    model_cls, config, state = demo_run.tiny_llama()
    ids = torch.randint(0, config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))

    def logits() -> torch.Tensor:
        config._attn_implementation = None  # let the patch choose, as from_config would
        model = model_cls(config)
        model.load_state_dict(state)
        with torch.no_grad():
            return model(input_ids=ids).logits

    unpatched = logits()
    patch = importlib.import_module("ascend_tools.patch")  # the drop-in: patches every family on import
    try:
        patched = logits()
        used = sorted({t["op"] + ":" + t["tier"] for t in patch.status().get("tiers", []) if t.get("tier")})
    finally:
        patch.revert()
    echo(
        "  tiny Llama, patched vs unpatched logits: max abs difference {:.2e} (tiers: {})".format(
            float((patched - unpatched).abs().max()), ", ".join(used) or "none"
        )
    )


def _profiling_part(out_dir: str, echo: Callable[[str], None]) -> None:
    """Two gloo ranks of a small DDP job under ``ascend-doctor profile``, rank 1 made slow; ``analyze`` must
    name it."""
    import shutil

    from . import launch
    from .profiling.analyze import analyze

    prof = os.path.join(out_dir, "profile")
    shutil.rmtree(prof, ignore_errors=True)
    echo("profile: 2 gloo ranks, DDP, rank 1 computes 25% longer ...")
    with example("train_ddp.py") as script:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            "2",
            str(script),
            "--steps",
            "16",
            "--compute-ms",
            "50",
            "--straggler",
            "1",
            "--delay-frac",
            "0.25",
        ]
        rc = launch.run(
            "profile", cmd, prof, {"hang_timeout": 60.0}, log=os.path.join(out_dir, "profile-run.log")
        )
    if rc != 0:
        raise InputError(
            f"the profiled demo job failed (exit status {rc}): see {os.path.join(out_dir, 'profile-run.log')}"
        )
    trace = os.path.join(out_dir, "profile-trace.json")
    report = analyze(prof, trace=trace)
    summary = report.data["summary"]
    slow = report.data["slow_ranks"]
    echo(
        f"  collectives:       {summary['collective_records']} records from {summary['ranks']} ranks "
        f"({summary['steps']} steps, median step {1e3 * report.data['steps']['median_step_s']:.0f} ms)"
    )
    echo("  slow rank named:   {}".format("; ".join(s["reason"] for s in slow) if slow else "none"))
    echo(
        "  reports: {}, {} (open in https://ui.perfetto.dev)".format(
            ", ".join(save(report, out_dir, "analyze")), trace
        )
    )


def run(out_dir: str, echo: Callable[[str], None] = print) -> None:
    from . import env
    from .opcheck import checkops

    os.makedirs(out_dir, exist_ok=True)
    for stale in glob.glob(os.path.join(out_dir, "*.*")):
        if stale.endswith((".html", ".md", ".json", ".csv")):
            os.remove(stale)
    for name in CHECK_OPS_EXAMPLES:
        with example(name) as path:
            target = os.path.relpath(path)
            echo(f"check-ops {target} ...")
            report = checkops.check_ops(checkops.Options(target=target))
        stem = "check-ops-" + os.path.splitext(name)[0]
        paths = save(report, out_dir, stem)
        for label, value in report.summary[2:]:
            echo("  {:<18} {}".format(label + ":", value))
        echo("  reports: {}".format(", ".join(paths)))
    _precision_part(out_dir, echo)
    _loss_part(out_dir, echo)
    _patch_part(out_dir, echo)
    _profiling_part(out_dir, echo)
    echo("env ...")
    echo("  reports: {}".format(", ".join(save(env.build_report(env.collect()), out_dir, "env"))))
    echo("Open {} in a browser.".format(os.path.join(out_dir, "check-ops-train_cuda.html")))
