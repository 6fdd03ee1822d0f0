"""What the benchmarks share: plain-text tables, package versions, CPU pressure (the machine is shared)."""

import datetime
import importlib.metadata
import os
import platform
from typing import Any, Dict, Optional, Sequence


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Aligned columns: the first left-aligned, the others right-aligned, a rule under the header."""
    cells = [[str(c) for c in row] for row in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_pressure_us() -> Optional[int]:
    """Linux PSI: total microseconds during which some runnable task waited for a CPU (None without PSI)."""
    try:
        with open("/proc/pressure/cpu", encoding="utf-8") as f:
            for line in f:
                if line.startswith("some"):
                    return int(line.rsplit("total=", 1)[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine(**extra: Any) -> Dict[str, Any]:
    """Date, core count, CPU model (``backend.cpu_name``) and Python version, plus ``extra`` (versions...)."""
    from ascend_tools.backend import cpu_name

    out: Dict[str, Any] = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu_name(),
        "python": platform.python_version(),
    }
    out.update(extra)
    return out


def targets_table(targets: Sequence[Dict[str, Any]]) -> str:
    """The targets of an issue, each ``{"target", "value", "unit", "pass", "why"}``: PASS / MISS / SKIP."""
    rows = []
    for tg in targets:
        value = "n/a" if tg["value"] is None else "{:.2f}{}".format(tg["value"], tg["unit"])
        verdict = "SKIP" if tg["pass"] is None else ("PASS" if tg["pass"] else "MISS")
        rows.append([tg["target"], value, verdict + (f" ({tg['why']})" if tg["why"] else "")])
    return table(["target", "measured", ""], rows)
