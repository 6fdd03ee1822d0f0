"""What ``ascend-doctor dump`` and ``shadow`` share around the launch (``ascend_tools/launch.py``): the
validation of their options and the summary of what a dump wrote."""

import os
from typing import Any, Dict, List, Optional

from ..errors import InputError


def parse_steps(text: Optional[str]) -> Optional[List[int]]:
    """``"0,2-4"`` → ``[0, 2, 3, 4]``; None or empty → None (all steps). Raises ValueError."""
    if text is None or not text.strip():
        return None
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--steps: {part!r} is not a step number or a range like 2-4")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"--steps: {part!r} is an empty range")
        out.extend(range(a, b + 1))
    return sorted(set(out))


def check_options(steps: Optional[str], sample: int, scope: Any) -> Optional[List[int]]:
    """Validate the options ``dump`` and ``shadow`` share; the parsed step list. InputError names the
    option and the problem."""
    import re

    try:
        step_list = parse_steps(steps)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if sample < 1:
        raise InputError(f"--sample: must be at least 1, not {sample}")
    for s in scope:
        try:
            re.compile(s)
        except re.error as exc:
            raise InputError(f"--scope: {s!r} is not a valid prefix or regex ({exc})") from None
    return step_list


def summary(out_dir: str) -> List[Dict[str, Any]]:
    """Per rank: ``{"rank", "path", "steps": {step: records}, "compiles": torch.compile calls it saw}`` of the
    dump under ``out_dir``."""
    from .store import OurDump

    out = []
    for rank in OurDump.ranks(out_dir):
        dump = OurDump(os.path.join(out_dir, f"rank{rank}"))
        steps = {}
        for s in dump.steps():
            with open(os.path.join(dump.path, f"step{s}", "records.jsonl"), "rb") as f:
                steps[s] = sum(1 for line in f if line.endswith(b"\n"))
        compiles = dump.meta.get("torch_compile_calls")
        compiles = compiles if isinstance(compiles, int) and not isinstance(compiles, bool) else 0
        out.append({"rank": rank, "path": dump.path, "steps": steps, "compiles": compiles})
    return out


def existing(out_dir: str) -> str:
    """What a dump directory already holds, for ``dump``'s refusal or ``--append`` line: ``steps 0-9 of
    rank0; steps 0-9 of rank1``; other ``rank*`` entries are named as such. Empty when it holds none."""
    import re

    from ..outdir import ranges

    parts = []
    dumped = set()
    for r in summary(out_dir):
        dumped.add(r["rank"])
        steps = ranges(list(r["steps"]))
        parts.append(f"steps {steps} of rank{r['rank']}" if steps else f"rank{r['rank']} (no records)")
    try:
        names = sorted(os.listdir(out_dir))
    except OSError:
        names = []
    for name in names:
        m = re.match(r"^rank(\d+)$", name)
        if m and int(m.group(1)) not in dumped:
            parts.append(f"{name}/ without a dump meta.json")
    return "; ".join(parts)
