"""The report header of ``check-ops -- COMMAND``: what part of the training step was traced, and in what
dtypes (``traced_precision.py`` records them). Pure text from the child's payload: no torch here.
"""

from typing import Any, Dict, List


def step_text(trace: Dict[str, Any]) -> str:
    """What part of one training step the trace holds: the whole of it, or where it stopped."""
    if not trace["error"]:
        return "one training step (forward, {}, optimizer step{})".format(
            "backward" if trace.get("backward_seen") else "no backward op",
            f" ({trace['optimizer']})" if trace.get("optimizer") else "",
        )
    return "part of one training step (stopped in the {} phase)".format(trace.get("phase") or "setup")


def dtypes_text(trace: Dict[str, Any]) -> str:
    """``autocast cuda bfloat16; op outputs: bfloat16 410, float32 270, int64 12`` (no autocast: none)."""
    counts: Dict[str, int] = trace.get("output_dtypes") or {}
    regions: List[str] = trace.get("autocast_regions") or []
    outputs = ", ".join(f"{d} {n}" for d, n in counts.items()) or "none"
    return "{}; op outputs: {}".format(
        "autocast " + ", ".join(regions) if regions else "no autocast", outputs
    )
