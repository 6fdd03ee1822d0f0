"""check-ops: trace → per-op verdicts + source scan + fusion patterns → one Report.

The trace runs in a child process (``runner.py``); everything here is pure data work on its events.
"""

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from ..errors import InputError
from ..report import Finding, Report, Severity, Table
from . import script_header, source_scan, support
from .runner import trace_in_child
from .source_finding import SourceFinding
from .verdicts import STATUS_ORDER

SCHEMA = "ascend-doctor/check-ops/1"
# the finding each op status other than npu makes: (severity, rule, what it means for the ops named)
STATUS_FINDINGS = {
    "unsupported": (
        Severity.ERROR,
        "unsupported-op",
        "cannot run on the NPU with torch_npu {} (why: in the table)",
    ),
    "cpu_fallback": (
        Severity.WARNING,
        "cpu-fallback",
        "no NPU kernel in torch_npu {}: CPU fallback, a copy to the host and back on every call",
    ),
    "composite": (
        Severity.INFO,
        "composite-op",
        "composite without an NPU kernel of its own in torch_npu {}",
    ),
}


@dataclass
class Options:
    target: str
    entry: Optional[str] = None
    torch_npu_version: str = support.DEFAULT_VERSION
    batch: int = 1
    seq_len: int = 128
    dtype: str = "fp32"
    autocast: bool = False
    backward: bool = True
    timeout: float = 300.0
    scan_source: bool = True
    debug: bool = False


def build_report(opts: Options, payload: Dict[str, Any], findings: Sequence[Any]) -> Report:
    """``payload`` is the child's answer (see ``child.py``): ``trace`` facts (None for --scan-only),
    ``ops`` rows with verdicts and ``patterns`` rows."""
    trace: Optional[Dict[str, Any]] = payload["trace"]
    version = opts.torch_npu_version
    ops = payload.get("ops", [])
    pattern_rows = payload.get("patterns", [])
    source = [_finding_dict(f) for f in findings]

    status_counts = {s: sum(1 for r in ops if r["status"] == s) for s in STATUS_ORDER}
    severity_counts = {str(s): sum(1 for f in source if f["severity"] == str(s)) for s in reversed(Severity)}
    summary = {
        "ops": len(ops),
        "calls": sum(r["count"] for r in ops),
        "status": status_counts,
        "dtype_risks": sum(1 for r in ops if r["dtype_risks"]),
        "source_findings": severity_counts,
        "patterns": sum(p["count"] for p in pattern_rows),
        "worst_severity": None,  # of the report's findings, once they are made
    }
    data = OrderedDict(
        target=opts.target,
        model=payload["description"],
        torch_npu_version=version,
        trace=_trace_data(opts, payload["kind"], trace) if trace else None,
        ops=ops,
        source_findings=source,
        patterns=pattern_rows,
        summary=summary,
    )
    report = Report(schema=SCHEMA, title="check-ops: {}".format(payload["description"]), data=data)
    report.summary = [
        ("target", opts.target),
        ("torch_npu", version),
        ("traced", _traced_text(opts, payload["kind"], trace, summary)),
        *(
            [("traced dtypes", script_header.dtypes_text(trace))]
            if trace and payload["kind"] == "script"
            else []
        ),
        (
            "verdicts",
            ", ".join(f"{n} {s}" for s, n in status_counts.items() if n)
            if trace
            else "none (ops not traced)",
        ),
        ("dtype risks", summary["dtype_risks"]),
        ("source findings", ", ".join(f"{n} {s}" for s, n in severity_counts.items() if n) or "none"),
        ("fusion candidates", summary["patterns"]),
    ]
    if trace and trace["error"]:
        report.headline = "the trace stopped early: the ops after that point are missing"
        report.section(
            "Trace incomplete",
            ["The trace stopped early; ops after this point are missing. " + trace["error"]],
        ).findings.append(
            # an error, so that --fail-on error never passes a model whose ops were not all seen
            Finding(
                severity=Severity.ERROR,
                rule="trace-incomplete",
                message=trace["error"],
                location=opts.target,
                suggestion="fix what stopped it (--debug shows the traceback), or read the ops seen so far",
            )
        )
    if trace and trace.get("assumed"):
        report.section(
            "Data-dependent values assumed",
            [
                "The meta device holds no data, so these ops' outputs were assumed non-zero (nonzero: every "
                "element; .item(): 1), and the branches and loops that read them ran on that assumption: "
                + "; ".join(f"{op} at {site}" for op, site in trace["assumed"].items())
            ],
        )
    if trace:
        if payload["kind"] == "script":
            _host_step(report, ops, opts.target, data["trace"])
        _ops_sections(report, ops, version)
    _source_section(report, source)
    _pattern_section(report, pattern_rows)
    worst = report.worst()
    summary["worst_severity"] = str(worst) if worst else None
    return report


def _host_step(report: Report, ops: List[Dict[str, Any]], target: str, trace: Dict[str, Any]) -> None:
    """A warning where most calls of the traced forward and backward ran on host tensors (status "host"): as
    run, the script trains on the CPU (pytorch/examples' dcgan without ``--accel``), so the verdicts are not those
    of an NPU run. The counts go in the report's ``trace`` (``step_calls``, ``host_calls``)."""
    # (ops of no tensor, a profiler's marker, run nowhere in particular)
    steps = [r for r in ops if {"forward", "backward"} & set(r["phases"]) and r["dtypes"]]
    total = trace["step_calls"] = sum(r["count"] for r in steps)
    host = trace["host_calls"] = sum(r["count"] for r in steps if r["status"] == "host")
    if not total or 2 * host < total:
        return
    report.section("Trained on the host").findings.append(
        Finding(
            severity=Severity.WARNING,
            rule="host-step",
            message=(
                f"{host} of the {total} calls of the ops in the traced forward and backward ran on host tensors: "
                "as run, the script trains on the CPU, and these verdicts are not those of an NPU run"
            ),
            location=target,
            suggestion="run it with the options that put it on the GPU (its --device cuda, --accel, ...): "
            "the fake node stands in for the accelerator",
        )
    )


def _traced_text(opts: Options, kind: str, trace: Optional[Dict[str, Any]], summary: Dict[str, Any]) -> str:
    """What the trace holds: a script's step as it ran (its dtypes on the next line), or a model traced in
    ``--dtype``."""
    if not trace:
        return "not traced (--scan-only)"
    counts = "{} ops, {} calls".format(summary["ops"], summary["calls"])
    if kind == "script":
        return f"{counts}: {script_header.step_text(trace)}"
    return "{} ({}{}{})".format(
        counts,
        opts.dtype,
        " autocast" if opts.autocast else "",
        ", forward+backward" if opts.backward else ", forward only",
    )


def _trace_data(opts: Options, kind: str, trace: Dict[str, Any]) -> Dict[str, Any]:
    """The report's ``trace``; a script's has the dtypes it saw instead of ``--dtype``'s (``dtype`` null)."""
    data = OrderedDict(
        device=trace["device"],
        dtype=opts.dtype,
        autocast=opts.autocast,
        backward=opts.backward,
        complete=not trace["error"],
        stopped=trace["error"] or None,
        assumed=trace.get("assumed") or {},
        batch=opts.batch if kind == "hf" else None,
        seq_len=opts.seq_len if kind == "hf" else None,
    )
    if kind == "script":
        regions = trace.get("autocast_regions") or []
        data.update(
            dtype=None,
            autocast=bool(regions),
            backward=bool(trace.get("backward_seen")),
            output_dtypes=trace.get("output_dtypes") or {},
            autocast_regions=regions,
        )
    return data


def _ops_sections(report: Report, ops: List[Dict[str, Any]], version: str) -> None:
    bad = [r for r in ops if r["status"] in ("unsupported", "cpu_fallback", "composite")]
    sec = report.section(f"Ops without an NPU kernel in torch_npu {version}")
    if not bad:
        sec.text.append("Every traced op has an NPU kernel.")
    else:
        sec.tables.append(
            Table(
                "",
                ["op", "status", "calls", "dtypes", "modules", "first call", "why"],
                [
                    [
                        r["op"],
                        r["status"],
                        r["count"],
                        ", ".join(r["dtypes"]),
                        _short(r["modules"]),
                        r["site"] or "(backward)",
                        r["reason"],
                    ]
                    for r in bad
                ],
                status_column="status",
            )
        )
        for status, (severity, rule, what) in STATUS_FINDINGS.items():
            rows = [r for r in bad if r["status"] == status]
            if rows:
                sec.findings.append(_ops_finding(rows, severity, rule, what.format(version), "site"))
    risky = [r for r in ops if r["dtype_risks"]]
    if risky:
        sec = report.section("Dtype risks")
        sec.findings.append(
            _ops_finding(
                risky,
                Severity.WARNING,
                "dtype-risk",
                "float64/complex inputs, or dtypes and argument values outside torch_npu's documented limits",
                "risk_site",
            )
        )
        sec.tables.append(
            Table(
                "",
                ["op", "dtypes", "calls", "modules", "first call", "risk"],
                [
                    [
                        r["op"],
                        ", ".join(r["dtypes"]),
                        r["count"],
                        _short(r["modules"]),
                        r["risk_site"] or "(backward)",
                        "; ".join(r["dtype_risks"]),
                    ]
                    for r in risky
                ],
            )
        )
    report.section("All traced ops").tables.append(
        Table(
            "",
            ["op", "status", "calls", "dtypes", "phase", "modules"],
            [
                [
                    r["op"],
                    r["status"],
                    r["count"],
                    ", ".join(r["dtypes"]),
                    "+".join(r["phases"]),
                    _short(r["modules"]),
                ]
                for r in ops
            ],
            status_column="status",
        )
    )


def _ops_finding(rows: List[Dict[str, Any]], severity: Severity, rule: str, what: str, site: str) -> Finding:
    """One finding for the ops of one kind (the table holds the rows): which, what it means, the first call."""
    return Finding(
        severity=severity,
        rule=rule,
        message="{}: {}".format(_short([r["op"] for r in rows], limit=4), what),
        location=rows[0][site] or "(backward)",
    )


def _source_section(report: Report, source: List[Dict[str, Any]]) -> None:
    sec = report.section("CUDA-only code")
    if not source:
        sec.text.append("No CUDA-only API found in the scanned source.")
    for f in source:
        sec.findings.append(
            Finding(
                severity=Severity.parse(f["severity"]),
                rule=f["rule"],
                message=f["message"],
                location=SourceFinding(  # file:line:col, or command line:argN
                    f["file"], f["line"], f["col"], f["rule"], f["severity"], f["message"], f["suggestion"]
                ).location,
                suggestion=f["suggestion"],
            )
        )


def _pattern_section(report: Report, rows: List[Dict[str, Any]]) -> None:
    sec = report.section("Fusion opportunities")
    if not rows:
        sec.text.append("No unfused attention, RoPE, RMSNorm or gated-MLP chain found.")
        return
    sec.tables.append(
        Table(
            "",
            ["pattern", "ops", "count", "modules", "fused NPU op", "suggestion"],
            [
                [p["pattern"], p["chain"], p["count"], _short(p["modules"]), p["fused_op"], p["suggestion"]]
                for p in rows
            ],
        )
    )


def _short(items: List[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit})" if len(items) > limit else "")


def _finding_dict(f: Any) -> Dict[str, Any]:
    return OrderedDict(
        file=os.path.relpath(f.file) if os.path.isabs(f.file) else f.file,
        line=f.line,
        col=f.col,
        rule=f.rule,
        severity=f.severity,
        message=f.message,
        suggestion=f.suggestion,
    )


def check_ops(opts: Options) -> Report:
    """Run the whole check on ``opts.target``; raises InputError when it cannot run."""
    opts.torch_npu_version = support.normalize_version(opts.torch_npu_version)
    if opts.autocast and opts.dtype == "fp32":
        raise InputError("--autocast: needs --dtype bf16 or fp16 (the dtype autocast computes in)")
    _check_target_exists(opts.target)
    spec = {
        "target": opts.target,
        "entry": opts.entry,
        "batch": opts.batch,
        "seq_len": opts.seq_len,
        "dtype": opts.dtype,
        "autocast": opts.autocast,
        "backward": opts.backward,
        "torch_npu_version": opts.torch_npu_version,
    }
    payload = trace_in_child(spec, opts.timeout, debug=opts.debug)
    findings: List[Any] = []
    if opts.scan_source and payload.get("source_file"):
        findings = source_scan.scan_target(payload["source_file"])
    return build_report(opts, payload, findings)


def _check_target_exists(path: str) -> None:
    """The cheap input errors, before paying for a child process that imports torch."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "config.json")):
        raise InputError(f"{path}: directory holds no config.json (expected a Hugging Face model directory)")
    if os.path.isfile(path) and not path.endswith((".py", ".json")):
        raise InputError(
            f"{path}: expected a Python file (.py) or a Hugging Face config (.json or its directory)"
        )


def scan_only(opts: Options) -> Report:
    """The static scan alone, for scripts that cannot be imported or traced here."""
    opts.torch_npu_version = support.normalize_version(opts.torch_npu_version)
    if not os.path.isfile(opts.target) or not opts.target.endswith(".py"):
        raise InputError(f"{opts.target}: --scan-only needs a Python file")
    payload = {"description": os.path.basename(opts.target), "kind": "python", "trace": None}
    return build_report(opts, payload, source_scan.scan_target(opts.target))
