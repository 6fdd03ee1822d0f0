"""Per-op verdicts for a trace: which op runs on the NPU, falls back to the CPU, or fails.

Runs in the child process next to the trace (it needs torch for the dispatcher's view of each op);
the CLI process only receives the rows.
"""

from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import restrictions, support
from .events import OpEvent
from .module_paths import fold

# worst first: the status an op gets when several of its calls (or decomposed parts) differ
STATUS_ORDER = ("unsupported", "cpu_fallback", "composite", "npu", "host")
HOST_REASON = (
    "every tensor of these calls is a host tensor (an optimizer's step counters, data not yet on the device): "
    "torch's CPU kernel runs them on the NPU node too"
)
PHASES = ("forward", "backward", "optimizer")  # a row's phases, in this order


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


RISKY_DTYPES = ("float64", "complex64", "complex128", "complex32")


def op_rows(
    stream: Sequence[OpEvent],
    version: str,
    sites: Optional[Dict[Tuple[str, Tuple[str, ...]], str]] = None,
    expanded: bool = True,
) -> List[Dict[str, Any]]:
    """One row per op with count, dtypes, example shapes, phases, folded module paths and verdict; an op's calls
    on host tensors (``OpEvent.host``) are a row of their own, status "host", judged by no NPU table."""
    groups: OrderedDict[Tuple[str, bool], List[OpEvent]] = OrderedDict()
    for e in stream:
        groups.setdefault((e.op, e.host), []).append(e)
    rows: Dict[str, Dict[str, Any]] = {}
    host_rows: List[Dict[str, Any]] = []
    for (op, host), calls in groups.items():
        dtypes = sorted({d for c in calls for d in c.dtypes})
        if host:
            host_rows.append(_row(op, calls, dtypes, "host", HOST_REASON, [], [], sites or {}))
            continue
        verdict = support.op_verdict(op, dtypes, version, sparse=any(c.sparse for c in calls))
        risks = [] if is_view_op(op) else _risks(op, calls, verdict.dtype_risks)
        rows[op] = _row(
            op, calls, dtypes, verdict.status, verdict.reason, risks, verdict.dtype_notes, sites or {}
        )
    if expanded:
        _resolve_composites(rows)
    else:
        for op, row in rows.items():
            if row["status"] == "composite" and is_view_op(op):
                row["status"], row["reason"] = "npu", "view op: device-agnostic kernel (tensor metadata only)"
            elif row["status"] == "composite":
                row["reason"] = (
                    "no NPU kernel of its own; decomposes at run time (not expanded under --autocast: "
                    "run without it to see into what)"
                )
    return sorted(
        [*rows.values(), *host_rows], key=lambda r: (STATUS_ORDER.index(r["status"]), -r["count"], r["op"])
    )


def _row(
    op: str,
    calls: Sequence[OpEvent],
    dtypes: List[str],
    status: str,
    reason: str,
    risks: List[str],
    notes: Sequence[str],
    sites: Dict[Tuple[str, Tuple[str, ...]], str],
) -> Dict[str, Any]:
    shapes: List[List[List[int]]] = []
    for c in calls:
        example = [list(s) for s in c.shapes]
        if example not in shapes and len(shapes) < 3:
            shapes.append(example)
    return {
        "op": op,
        "count": len(calls),
        "dtypes": dtypes,
        "status": status,
        "reason": reason,
        "dtype_risks": risks,
        "dtype_notes": list(notes),
        "phases": [p for p in PHASES if any(c.phase == p for c in calls)],
        "modules": fold(c.module for c in calls),
        "via": sorted({c.via for c in calls if c.via}),
        "partly_expanded": any(c.partly_expanded for c in calls),
        "shapes": shapes,
        "site": _first_site(calls, sites),
        "risk_site": "" if status == "host" else _risk_site(op, calls, sites),
    }


def _generic_risky(op: str, dtypes: Sequence[str]) -> List[str]:
    """The float64/complex dtypes of a call that torch_npu's docs do not list as supported for ``op``."""
    listed = restrictions.listed_dtypes(op, dtypes)
    return [d for d in dtypes if d in RISKY_DTYPES and d not in listed]


def _risks(op: str, calls: Sequence[OpEvent], generic: Sequence[str]) -> List[str]:
    """The generic float64/complex risks the docs do not contradict, then the docs' dtype and argument limits."""
    unlisted = {d for c in calls for d in _generic_risky(op, c.dtypes)}
    kept = [
        r
        for r in generic
        if (r.startswith("float64") and "float64" in unlisted)
        or (r.startswith("complex") and unlisted & set(RISKY_DTYPES[1:]))
        or not r.startswith(("float64", "complex"))
    ]
    documented: List[str] = []
    for c in calls:
        for r in restrictions.dtype_risks(op, c.dtypes) + [restrictions.flag_risk(op, f) for f in c.flags]:
            if r not in documented:
                documented.append(r)
    return kept + documented


def _risk_site(op: str, calls: Sequence[OpEvent], sites: Dict[Tuple[str, Tuple[str, ...]], str]) -> str:
    """Where the model code first made a call with a dtype or argument risk."""
    for c in calls:
        if c.flags and c.flag_site:
            return c.flag_site
        if _generic_risky(op, c.dtypes) or restrictions.dtype_risks(op, c.dtypes):
            site = sites.get((c.op, c.dtypes), "")
            if site:
                return site
    return ""


def _first_site(calls: Sequence[OpEvent], sites: Dict[Tuple[str, Tuple[str, ...]], str]) -> str:
    """Where the model code first called the op (forward calls only carry a site)."""
    for c in calls:
        site = sites.get((c.op, c.dtypes), "")
        if site:
            return site
    return ""


def is_view_op(op: str) -> bool:
    """Ops that return a view (``as_strided``, ``transpose``, ``detach``) compute nothing, so a float64
    input is no risk for them: the risk is reported on the ops that compute with it."""
    ns, _, rest = op.partition("::")
    name, _, overload = rest.partition(".")
    import torch

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
        return min(
            (worst(c, seen | {op}) for c in children.get(op, [])), key=STATUS_ORDER.index, default="npu"
        )

    for op, row in rows.items():
        if row["status"] != "composite":
            continue
        row["status"] = worst(op, frozenset())
        bad = [c for c in children.get(op, []) if rows[c]["status"] in ("cpu_fallback", "unsupported")]
        if row["partly_expanded"] and not bad:
            row["status"] = "composite"
            row["reason"] = (
                "no NPU kernel of its own; its CompositeExplicitAutograd kernel could not be followed on "
                "meta tensors (data-dependent), so what it runs on the NPU is not known: check on hardware"
            )
        elif bad:
            row["reason"] = (
                "no NPU kernel of its own; its CompositeExplicitAutograd decomposition runs {} ({})".format(
                    ", ".join(bad), row["status"]
                )
            )
        elif op in children:
            row["reason"] = "no NPU kernel of its own; decomposes into ops that all have NPU kernels"
        else:
            row["reason"] = "device-agnostic CompositeExplicitAutograd kernel (tensor metadata only)"
