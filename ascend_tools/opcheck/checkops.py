"""check-ops: trace → per-op verdicts + source scan + fusion patterns → one Report.

The trace runs in a child process (``runner.py``); everything here is pure data work on its events.
"""
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch

from ..errors import InputError
from ..report import Finding, Report, Table
from . import patterns as fusion
from . import source_scan, support
from .module_paths import fold
from .runner import trace_in_child
from .trace import OpEvent, TraceResult

SCHEMA = "ascend-doctor/check-ops/1"
# worst first: the status an op gets when several of its calls (or decomposed parts) differ
STATUS_ORDER = ("unsupported", "cpu_fallback", "composite", "npu")
# severity of each op status for --fail-on (a dtype risk is a warning)
STATUS_SEVERITY = {"unsupported": "error", "cpu_fallback": "warning", "composite": "info", "npu": None}
SEVERITY_RANK = {"error": 0, "warning": 1, "info": 2}


@dataclass
class Options:
    target: str
    entry: Optional[str] = None
    torch_npu_version: str = support.DEFAULT_VERSION
    batch: int = 1
    seq_len: int = 128
    dtype: str = "fp32"
    backward: bool = True
    timeout: float = 300.0
    scan_source: bool = True
    debug: bool = False


def npu_stream(events: Sequence[OpEvent], version: str) -> List[OpEvent]:
    """The events as the NPU would run them.

    A fused Python-level call (``is_parent``) stands for its decomposition when torch_npu has a kernel
    for it; otherwise the decomposition runs and the parent event is dropped."""
    fused = {i for i, e in enumerate(events) if e.is_parent and support.has_npu_kernel(e.op, version)}
    out = []
    for i, e in enumerate(events):
        if e.is_parent:
            if i in fused:
                out.append(e)
        elif e.parent not in fused:
            out.append(e)
    return out


def op_rows(stream: Sequence[OpEvent], version: str) -> List[Dict[str, Any]]:
    """One row per op with count, dtypes, example shapes, phases, folded module paths and verdict."""
    groups: OrderedDict[str, List[OpEvent]] = OrderedDict()
    for e in stream:
        groups.setdefault(e.op, []).append(e)
    rows: Dict[str, Dict[str, Any]] = {}
    for op, calls in groups.items():
        dtypes = sorted({d for c in calls for d in c.dtypes})
        verdict = support.op_verdict(op, dtypes, version, sparse=any(c.sparse for c in calls))
        shapes: List[List[List[int]]] = []
        for c in calls:
            example = [list(s) for s in c.shapes]
            if example not in shapes and len(shapes) < 3:
                shapes.append(example)
        rows[op] = {
            "op": op,
            "count": len(calls),
            "dtypes": dtypes,
            "status": verdict.status,
            "reason": verdict.reason,
            "dtype_risks": [] if is_view_op(op) else list(verdict.dtype_risks),
            "dtype_notes": list(verdict.dtype_notes),
            "phases": sorted({c.phase for c in calls}, reverse=True),
            "modules": fold(c.module for c in calls),
            "via": sorted({c.via for c in calls if c.via}),
            "shapes": shapes,
        }
    _resolve_composites(rows)
    return sorted(rows.values(), key=lambda r: (STATUS_ORDER.index(r["status"]), -r["count"], r["op"]))


def is_view_op(op: str) -> bool:
    """Ops that return a view (``as_strided``, ``transpose``, ``detach``) compute nothing, so a float64
    input is no risk for them: the risk is reported on the ops that compute with it."""
    ns, _, rest = op.partition("::")
    name, _, overload = rest.partition(".")
    packet = getattr(getattr(torch.ops, ns, None), name, None)
    overload_op = getattr(packet, overload or "default", None) if packet is not None else None
    return bool(getattr(overload_op, "is_view", False))


def _resolve_composites(rows: Dict[str, Dict[str, Any]]) -> None:
    """A composite op (no NPU kernel of its own) is as good as the worst op it decomposed into.

    CompositeExplicitAutograd kernels are device-agnostic by definition: one that dispatched no other
    op (``detach``, ``alias``, ``_unsafe_view`` only touch tensor metadata) runs on the NPU as it is."""
    children: Dict[str, List[str]] = {}
    for op, row in rows.items():
        for parent in row["via"]:
            if parent != op:
                children.setdefault(parent, []).append(op)

    def worst(op: str, seen: frozenset) -> str:
        row = rows[op]
        if row["status"] != "composite" or op in seen:
            return row["status"]
        return min((worst(c, seen | {op}) for c in children.get(op, [])), key=STATUS_ORDER.index, default="npu")

    for op, row in rows.items():
        if row["status"] != "composite":
            continue
        row["status"] = worst(op, frozenset())
        bad = [c for c in children.get(op, []) if rows[c]["status"] in ("cpu_fallback", "unsupported")]
        if bad:
            row["reason"] = "no NPU kernel of its own; its CompositeExplicitAutograd decomposition runs {} ({})".format(
                ", ".join(bad), row["status"])
        elif op in children:
            row["reason"] = "no NPU kernel of its own; decomposes into ops that all have NPU kernels"
        else:
            row["reason"] = "device-agnostic CompositeExplicitAutograd kernel (tensor metadata only)"


def build_report(opts: Options, payload: Dict[str, Any], findings: Sequence[Any]) -> Report:
    trace: Optional[TraceResult] = payload["trace"]
    version = opts.torch_npu_version
    stream = npu_stream(trace.events, version) if trace else []
    ops = op_rows(stream, version)
    top_level = [e for e in stream if not e.via]
    pattern_rows = fusion.summarize(fusion.find(top_level))
    source = [_finding_dict(f) for f in findings]

    status_counts = {s: sum(1 for r in ops if r["status"] == s) for s in STATUS_ORDER}
    severity_counts = {s: sum(1 for f in source if f["severity"] == s) for s in SEVERITY_RANK}
    summary = {
        "ops": len(ops),
        "calls": sum(r["count"] for r in ops),
        "status": status_counts,
        "dtype_risks": sum(1 for r in ops if r["dtype_risks"]),
        "source_findings": severity_counts,
        "patterns": sum(p["count"] for p in pattern_rows),
        "worst_severity": worst_severity(ops, source),
    }
    data = OrderedDict(
        target=opts.target,
        model=payload["description"],
        torch_npu_version=version,
        trace=OrderedDict(
            device="meta", dtype=opts.dtype, backward=opts.backward, complete=not trace.error,
            stopped=trace.error or None,
            batch=opts.batch if payload["kind"] == "hf" else None,
            seq_len=opts.seq_len if payload["kind"] == "hf" else None,
        ) if trace else None,
        ops=ops,
        source_findings=source,
        patterns=pattern_rows,
        summary=summary,
    )
    report = Report(schema=SCHEMA, title="check-ops: {}".format(payload["description"]), data=data)
    report.summary = [
        ("target", opts.target),
        ("torch_npu", version),
        ("traced", "{} ops, {} calls ({}{})".format(summary["ops"], summary["calls"], opts.dtype,
                                                   ", forward+backward" if opts.backward else ", forward only")
         if trace else "not traced (--scan-only)"),
        ("verdicts", ", ".join(f"{n} {s}" for s, n in status_counts.items() if n)),
        ("dtype risks", summary["dtype_risks"]),
        ("source findings", ", ".join(f"{n} {s}" for s, n in severity_counts.items() if n) or "none"),
        ("fusion candidates", summary["patterns"]),
    ]
    if trace and trace.error:
        report.section("Trace incomplete", ["The trace stopped early; ops after this point are missing. " + trace.error])
    if trace:
        _ops_sections(report, ops, version)
    _source_section(report, source)
    _pattern_section(report, pattern_rows)
    return report


def _ops_sections(report: Report, ops: List[Dict[str, Any]], version: str) -> None:
    bad = [r for r in ops if r["status"] in ("unsupported", "cpu_fallback", "composite")]
    sec = report.section(f"Ops without an NPU kernel in torch_npu {version}")
    if not bad:
        sec.text.append("Every traced op has an NPU kernel.")
    else:
        sec.tables.append(Table(
            "", ["op", "status", "calls", "dtypes", "modules", "why"],
            [[r["op"], r["status"], r["count"], ", ".join(r["dtypes"]), _short(r["modules"]), r["reason"]] for r in bad],
            status_column="status",
        ))
    risky = [r for r in ops if r["dtype_risks"]]
    if risky:
        report.section("Dtype risks").tables.append(Table(
            "", ["op", "dtypes", "calls", "modules", "risk"],
            [[r["op"], ", ".join(r["dtypes"]), r["count"], _short(r["modules"]), "; ".join(r["dtype_risks"])] for r in risky],
        ))
    report.section("All traced ops").tables.append(Table(
        "", ["op", "status", "calls", "dtypes", "phase", "modules"],
        [[r["op"], r["status"], r["count"], ", ".join(r["dtypes"]), "+".join(r["phases"]), _short(r["modules"])] for r in ops],
        status_column="status",
    ))


def _source_section(report: Report, source: List[Dict[str, Any]]) -> None:
    sec = report.section("CUDA-only code")
    if not source:
        sec.text.append("No CUDA-only API found in the scanned source.")
    for f in source:
        sec.findings.append(Finding(
            severity=f["severity"], rule=f["rule"], message=f["message"],
            location="{}:{}:{}".format(f["file"], f["line"], f["col"]), suggestion=f["suggestion"],
        ))


def _pattern_section(report: Report, rows: List[Dict[str, Any]]) -> None:
    sec = report.section("Fusion opportunities")
    if not rows:
        sec.text.append("No unfused attention, RoPE, RMSNorm or gated-MLP chain found.")
        return
    sec.tables.append(Table(
        "", ["pattern", "ops", "count", "modules", "fused NPU op", "suggestion"],
        [[p["pattern"], p["chain"], p["count"], _short(p["modules"]), p["fused_op"], p["suggestion"]] for p in rows],
    ))


def _short(items: List[str], limit: int = 3) -> str:
    return ", ".join(items[:limit]) + (f" (+{len(items) - limit})" if len(items) > limit else "")


def _finding_dict(f: Any) -> Dict[str, Any]:
    return OrderedDict(
        file=os.path.relpath(f.file) if os.path.isabs(f.file) else f.file,
        line=f.line, col=f.col, rule=f.rule, severity=f.severity, message=f.message, suggestion=f.suggestion,
    )


def worst_severity(ops: Sequence[Dict[str, Any]], source: Sequence[Dict[str, Any]]) -> Optional[str]:
    found = [STATUS_SEVERITY[r["status"]] for r in ops] + ["warning" for r in ops if r["dtype_risks"]]
    found += [f["severity"] for f in source]
    found = [s for s in found if s]
    return min(found, key=SEVERITY_RANK.__getitem__) if found else None


def exit_code(report: Report, fail_on: str) -> int:
    """0 clean, 1 when a finding is at or above ``fail_on`` (error | warning | never)."""
    worst = report.data["summary"]["worst_severity"]
    if fail_on == "never" or worst is None:
        return 0
    return int(SEVERITY_RANK[worst] <= SEVERITY_RANK[fail_on])


def check_ops(opts: Options) -> Report:
    """Run the whole check on ``opts.target``; raises InputError when it cannot run."""
    opts.torch_npu_version = support.normalize_version(opts.torch_npu_version)
    _check_target_exists(opts.target)
    spec = {
        "target": opts.target, "entry": opts.entry, "batch": opts.batch, "seq_len": opts.seq_len,
        "dtype": opts.dtype, "backward": opts.backward, "torch_npu_version": opts.torch_npu_version,
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
        raise InputError(f"{path}: expected a Python file (.py) or a Hugging Face config (.json or its directory)")


def scan_only(opts: Options) -> Report:
    """The static scan alone, for scripts that cannot be imported or traced here."""
    opts.torch_npu_version = support.normalize_version(opts.torch_npu_version)
    if not os.path.isfile(opts.target) or not opts.target.endswith(".py"):
        raise InputError(f"{opts.target}: --scan-only needs a Python file")
    payload = {"description": os.path.basename(opts.target), "kind": "python", "trace": None}
    return build_report(opts, payload, source_scan.scan_target(opts.target))
