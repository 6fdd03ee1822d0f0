"""What compare and shadow draw on their drift plots besides the raw per-op error: the culprits as
labelled points, and a trend of the error against the reference that single ops do not drown.

Per op, the error against the reference in tolerances jumps by orders of magnitude from one op to the
next (an exact op's tolerance is 0, a reduction's is wide), so the raw line fills the plot. The trend is
its running median over ``TREND_WINDOW`` consecutive ops: it moves only where most ops around a point
moved, as after an op that introduced an error.
"""

import math
import os
import re
import statistics
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

Point = Tuple[float, float]
LABELLED = 5  # culprits labelled on a plot; the culprit table lists every one
TREND_WINDOW = 25


def running_median(points: Sequence[Point], window: int = TREND_WINDOW) -> List[Point]:
    """Each point's y replaced by the median of the ``window`` points centred on it (fewer at the ends)."""
    ys = [y for _, y in points]
    half = window // 2
    return [
        (x, float(statistics.median(ys[max(0, i - half) : i + half + 1]))) for i, (x, _) in enumerate(points)
    ]


def culprit_points(
    culprits: Iterable[Tuple[float, float, str]], floor: float, cap: float
) -> List[Tuple[float, float, str]]:
    """The first ``LABELLED`` culprits (x, error in tolerances, name), their y held within the plot's
    ``[floor, cap]``."""
    out: List[Tuple[float, float, str]] = []
    for x, y, label in culprits:
        if len(out) == LABELLED:
            break
        out.append((x, min(max(y, floor), cap), label))
    return out


_LAYER = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def layer_index(module: str) -> Optional[int]:
    """The index of the repeated block a module path is in: its first numeric part (``model.layers.3.mlp``,
    ``transformer.h.3.attn`` → 3); None outside any ``ModuleList``."""
    m = _LAYER.search(module or "")
    return int(m.group(1)) if m else None


def per_layer(
    errors: Iterable[Tuple[str, str, str, Optional[float]]], floor: float, cap: float
) -> Tuple[List[int], List[str], List[List[Optional[float]]]]:
    """Error per layer and column, as log10 of the error in tolerances held within ``[floor, cap]``.
    ``errors`` are (module, phase, what, error): "introduced" takes a layer's largest (where a kernel put
    error in), anything else its median (single exact ops sit at the cap in every layer). The columns are
    "<phase> <what>" in first-seen order. Returns (layers, columns, values[layer][column]); no layers when
    no module path has an index."""
    seen: Dict[Tuple[int, str], List[float]] = {}
    cols: Dict[str, None] = {}  # ordered: first seen
    for module, phase, what, err in errors:
        layer = layer_index(module)
        if layer is None or err is None or not math.isfinite(err):
            continue
        col = f"{phase} {what}"
        cols[col] = None
        seen.setdefault((layer, col), []).append(err)

    def cell(layer: int, col: str) -> Optional[float]:
        errs = seen.get((layer, col))
        if not errs:
            return None
        err = max(errs) if col.endswith(" introduced") else float(statistics.median(errs))
        return math.log10(min(max(err, floor), cap))

    layers = sorted({layer for layer, _ in seen})
    return layers, list(cols), [[cell(layer, col) for col in cols] for layer in layers]


def short_run_name(path: str) -> str:
    """A dump's name for a title: its directory's name, with the rank folder when the path ends in one
    (``.../target-bf16/rank0`` → ``target-bf16/rank0``); the full path stays in the summary."""
    parts = os.path.normpath(path).split(os.sep)
    if len(parts) > 1 and re.fullmatch(r"rank\d+", parts[-1]):
        return "/".join(parts[-2:])
    return parts[-1] or path


def short_word(word: str) -> str:
    """A command's word for a title: a path by its last name (``/opt/venv/bin/python`` → ``python``)."""
    return (os.path.basename(word.rstrip(os.sep)) or word) if os.sep in word else word
