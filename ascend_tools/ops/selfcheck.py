"""Every fused-op tier available on this machine against the golden vectors (``ascend-doctor selfcheck``)."""

import importlib
from typing import Any, Dict, List

OP_MODULES = ("rms_norm", "rope", "attention", "swiglu", "linear_cross_entropy")
DTYPE_NAMES = ("float32", "float16", "bfloat16")


def import_ops() -> List[str]:
    """The ops whose module exists; importing it registers its tiers."""
    found = []
    for op in OP_MODULES:
        try:
            importlib.import_module(f"ascend_tools.ops.{op}")
        except ModuleNotFoundError as exc:
            if exc.name != f"ascend_tools.ops.{op}":
                raise
        else:
            found.append(op)
    return found


def run(device: Any) -> Dict[str, Any]:
    """Check every available tier of every op on ``device`` in fp32/fp16/bf16 against the golden vectors
    shipped in the package; list the other tiers. An op without golden vectors fails every tier."""
    import torch

    from . import registry

    rows: List[Dict[str, Any]] = []
    unavailable: List[Dict[str, Any]] = []
    golden_cases: Dict[str, int] = {}
    for op in import_ops():
        try:
            cases, missing = registry.load_goldens(op), []
        except FileNotFoundError as exc:
            cases, missing = [], [str(exc)]
        golden_cases[op] = len(cases)
        known = registry.tiers(op)
        order = [t for t in registry.TIERS[::-1] if t in known] + sorted(set(known) - set(registry.TIERS))
        for name in order:  # reference first, then any tier outside registry.TIERS too
            tier = known[name]
            why = registry.why_unavailable(tier, device)
            if why is not None:
                unavailable.append({"op": op, "tier": name, "reason": why})
                continue
            for dtype_name in DTYPE_NAMES:
                dtype = getattr(torch, dtype_name)
                results = [registry.check_golden(tier, case, dtype, device) for case in cases]
                failed = missing + [f"{case.name}: {r.reason}" for case, r in zip(cases, results) if not r.ok]
                rtol, atol = tier.tolerance(dtype)
                rows.append(
                    {
                        "op": op,
                        "tier": name,
                        "dtype": dtype_name,
                        "cases": len(cases),
                        "max_err_forward": max((r.max_err_forward or 0.0 for r in results), default=None),
                        "max_err_backward": max((r.max_err_backward or 0.0 for r in results), default=None),
                        "tolerance": rtol + atol,
                        "verdict": "fail" if failed else "ok",
                        "failures": failed,
                    }
                )
    return {
        "device": str(device),
        "golden_dir": str(registry.golden_dir()),
        "golden_cases": golden_cases,
        "results": rows,
        "unavailable": unavailable,
        "failed": sum(r["verdict"] == "fail" for r in rows),
    }


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.2e}"


def build_report(data: Dict[str, Any]) -> Any:
    from ..report import Finding, Report, Severity, Table

    report = Report(
        schema="ascend-doctor/selfcheck/1", title="Fused-op tiers against the golden vectors", data=data
    )
    report.summary = [
        ("device", data["device"]),
        ("tier checks", len(data["results"])),
        ("failed", data["failed"]),
        (
            "golden vectors",
            "{} ({})".format(
                data["golden_dir"], ", ".join(f"{op}: {n} cases" for op, n in data["golden_cases"].items())
            ),
        ),
    ]
    sec = report.section(
        "Tiers available here",
        [
            "Each tier runs every golden case with its inputs cast to the dtype; error = max |a-b| / "
            "(max(1, rms(b)) + |b|) against the fp64 reference, forward and on every input gradient."
        ],
    )
    sec.tables.append(
        Table(
            "results",
            ["tier", "op", "dtype", "cases", "max err fwd", "max err bwd", "tolerance", "verdict"],
            [
                [
                    r["tier"],
                    r["op"],
                    r["dtype"],
                    r["cases"],
                    _fmt(r["max_err_forward"]),
                    _fmt(r["max_err_backward"]),
                    _fmt(r["tolerance"]),
                    r["verdict"],
                ]
                for r in data["results"]
            ],
            status_column="verdict",
        )
    )
    failures = [(r, f) for r in data["results"] for f in r["failures"]]
    if failures:
        report.section("Failures").findings.extend(
            Finding(Severity.ERROR, "tier-failed", f, location=f"{r['tier']} {r['op']} {r['dtype']}")
            for r, f in failures
        )
    if data["unavailable"]:
        sec = report.section("Tiers not available here")
        sec.tables.append(
            Table(
                "unavailable",
                ["tier", "op", "why"],
                [[u["tier"], u["op"], u["reason"]] for u in data["unavailable"]],
            )
        )
    return report
