"""Ops off their own float64 replay by more than their tolerance and less than twice it (a ``warning``): no
culprit, but listed, so that a report without one never says that every op stayed within its tolerance.

A culprit needs twice the tolerance (``standards.WARNING_FACTOR``): a correct kernel that accumulates in another
order can pass the tolerance itself (a clean bf16 run's attention backward under shadow: 1.13 tolerances). A
kernel fault just under the bar lands here too (a bf16 matmul 3% off on a tenth of its outputs: 1.9 under shadow,
TRL's DPO trainer, docs/precision.md), which a report that says "no op introduced an error" would hide.
"""

from typing import Any, Dict, Optional, Sequence

from ..report import Report, Table

#: near misses listed in a report (the JSON has every record's verdict)
LISTED = 5
TITLE = "Near misses"
NONE = "No op introduced an error beyond its dtype's tolerance."


def no_culprit_text(total: int) -> str:
    """The culprit section's sentence when there is no culprit and ``total`` ops are near misses."""
    if not total:
        return NONE
    return (
        f"No op introduced an error beyond twice its dtype's tolerance; {total} came within that "
        f"(between one and two tolerances off their float64 replay): {TITLE}, below."
    )


def add_section(report: Report, rows: Sequence[Dict[str, Any]], total: int, step: bool = False) -> None:
    """``rows``: culprit-like rows (``rank``, ``name``, ``module``, ``phase``, ``introduced_error``, ``site``, and
    ``step`` where ``step``), largest first; ``total``: how many there are."""
    if not rows:
        return
    sec = report.section(f"{TITLE} ({total})")
    sec.text.append(
        "Ops off a float64 run of themselves on their own inputs by between one and two tolerances, the largest "
        "first: not enough to name a culprit (a correct kernel with another accumulation order can pass one "
        "tolerance), nor to clear one (a small kernel fault lands here)."
    )
    cols = ["#", "call", "module", "phase", *(["step"] if step else []), "introduced", "where"]
    sec.tables.append(
        Table(
            "",
            cols,
            [
                [
                    r["rank"],
                    r["name"],
                    r["module"] or "<root>",
                    r["phase"],
                    *([r["step"]] if step else []),
                    _round(r["introduced_error"]),
                    r["site"] or "",
                ]
                for r in rows
            ],
        )
    )


def _round(value: Optional[float]) -> Any:
    return None if value is None else float(f"{value:.4g}")
