"""Key/value entries of a JSON or YAML config file, each with the 1-based line its key is on.

The scan reports findings in DeepSpeed JSON and accelerate / HfArgumentParser YAML at ``file:line``;
``json`` does not keep positions and PyYAML is not a dependency, so keys are located here. The YAML
reader covers the block mappings these tools write (``key: value``, nesting by indentation, comments);
sequences and multi-line scalars are skipped, never guessed.
"""

import json
import re
from dataclasses import dataclass
from typing import List, Tuple

Scalar = object  # str | int | float | bool | None; a dict/list for a JSON container, {} for a YAML one


@dataclass(frozen=True)
class Entry:
    path: Tuple[str, ...]  # ("zero_optimization", "offload_optimizer", "device")
    value: Scalar
    line: int


def json_entries(text: str) -> List[Entry]:
    """Every key of every JSON object, depth-first in file order. Raises ValueError on bad JSON."""
    data = json.loads(text)
    out: List[Entry] = []

    def walk(obj: object, prefix: Tuple[str, ...], start: int) -> int:
        """Record ``obj``'s keys found from character ``start`` on; return the offset after the last."""
        if not isinstance(obj, dict):
            return start
        pos = start
        for key, value in obj.items():
            match = re.compile(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:").search(text, pos)
            if match is not None:
                pos = match.end()
            out.append(Entry((*prefix, key), value, text.count("\n", 0, pos) + 1))
            pos = walk(value, (*prefix, key), pos)  # a sibling key comes after the nested ones
        return pos

    walk(data, (), 0)
    return out


_YAML_KEY = re.compile(r"^(\s*)([^\s:#'\"-][^:]*?|'[^']*'|\"[^\"]*\")\s*:(?:\s+(.*))?$")
_YAML_BOOL = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def _yaml_scalar(text: str) -> Scalar:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    low = text.lower()
    if low in _YAML_BOOL:
        return _YAML_BOOL[low]
    if low in ("null", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def yaml_entries(text: str) -> List[Entry]:
    """``key: value`` lines of a block-mapping YAML document; a key with no value opens a nested map."""
    out: List[Entry] = []
    stack: List[Tuple[int, str]] = []  # (indent, key) of the open maps
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"\s+#.*$", "", raw.rstrip())
        match = _YAML_KEY.match(line)
        if match is None:
            continue
        indent, key, value = len(match.group(1)), match.group(2).strip("'\""), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = (*(k for _, k in stack), key)
        if value is None or not value.strip():
            out.append(Entry(path, {}, number))
            stack.append((indent, key))
        else:
            out.append(Entry(path, _yaml_scalar(value), number))
    return out
