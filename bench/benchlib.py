"""What the benchmarks share: plain-text tables, package versions, CPU pressure (the machine is shared)."""

import datetime
import gc
import importlib.metadata
import os
import platform
import threading
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


def _proc_status_kb(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _malloc_trim() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakRSS:
    """Peak RSS increase of this process over a ``with`` block, in bytes (``.delta``, ``.how``).

    Linux: reset the kernel's high-water mark (``/proc/self/clear_refs`` = 5) and read ``VmHWM`` after:
    exact, no sampling. Elsewhere, or when ``clear_refs`` is not writable: psutil sampling every 1 ms."""

    def __init__(self) -> None:
        self.delta = 0.0
        self.how = ""
        self._base = 0
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._peak = 0

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        _malloc_trim()
        rss = _proc_status_kb("VmRSS")
        try:
            with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
                f.write("5")
            self.how = "VmHWM"
            self._base = (rss or 0) * 1024
            return self
        except OSError:
            pass
        import psutil

        proc = psutil.Process()
        self.how = "psutil 1 ms"
        self._base = self._peak = proc.memory_info().rss

        def sample() -> None:
            while not self._stop.wait(0.001):
                self._peak = max(self._peak, proc.memory_info().rss)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            import psutil

            peak = max(self._peak, psutil.Process().memory_info().rss)
        else:
            peak = (_proc_status_kb("VmHWM") or 0) * 1024
        self.delta = float(peak - self._base)
