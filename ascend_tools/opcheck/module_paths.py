"""Fold per-layer module paths: model.layers.0.mlp … model.layers.31.mlp → model.layers.[0-31].mlp."""

import re
from collections import defaultdict
from typing import Dict, Iterable, List, Tuple

_INDEX = re.compile(r"(?<=\.)(\d+)(?=\.|$)")


def _ranges(numbers: Iterable[int]) -> str:
    nums = sorted(set(numbers))
    parts: List[str] = []
    start = prev = nums[0]
    for n in [*nums[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ",".join(parts)


def fold(paths: Iterable[str]) -> List[str]:
    """Group paths that differ only in their first numeric component; keep the others as they are.

    ``""`` (the root module) is shown as ``<root>``."""
    groups: Dict[Tuple[str, str], List[int]] = defaultdict(list)
    singles = set()
    for path in set(paths):
        match = _INDEX.search(path)
        if match is None:
            singles.add(path or "<root>")
            continue
        groups[(path[: match.start()], path[match.end() :])].append(int(match.group(1)))
    folded = set(singles)
    for (head, tail), idx in groups.items():
        folded.add("{}{}{}".format(head, idx[0] if len(idx) == 1 else f"[{_ranges(idx)}]", tail))
    return sorted(folded)


def common_ancestor(paths: Iterable[str]) -> str:
    """The deepest module that contains every path (``""`` = the root)."""
    split = [p.split(".") if p else [] for p in paths]
    if not split:
        return ""
    prefix: List[str] = []
    for parts in zip(*split):
        if any(p != parts[0] for p in parts):
            break
        prefix.append(parts[0])
    return ".".join(prefix)
