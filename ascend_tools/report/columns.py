"""A table's columns as every renderer shows them: their kind, the empty ones dropped, duplicates merged.

Kinds (``text_cells.KINDS``) decide alignment, wrapping and shortening:

- ``id``: op names, call keys, dtypes, shapes (no spaces): monospace, never wrapped, shortened keeping the
  suffix that tells rows apart (``empty.memory_format#fwd#0``);
- ``path``: file paths, ``file.py:12 in fn`` sites, dotted module paths: shortened from the left, the full
  text on hover;
- ``number``: right-aligned, in :func:`format_number`'s fixed precision;
- ``text``: prose, wrapped at spaces.

A verb declares kinds in ``Table.kinds``; the rest are inferred from the values (the majority of the first
:data:`SAMPLE` non-empty cells). A column whose cells are all empty is dropped; columns whose headers differ
only in punctuation or case (``peak host.rss GiB`` and ``peak host rss GiB``) are merged into the first when
no row holds two different values in them.
"""

import math
import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional

from .model import Table
from .text_cells import ID, NUMBER, PATH, TEXT, format_value, is_number

SAMPLE = 200
_DOTTED = re.compile(r"^[\w\[\]\-]+(\.[\w\[\]\-]+){2,}$")  # model.layers.[0-31].mlp
_PATHLIKE = re.compile(r"[/\\]|\.py\b")


def format_number(value: Any) -> str:
    """A number cell: integers in full, floats in 4 significant digits (one precision per column, so
    values line up and compare at a glance)."""
    if isinstance(value, float) and math.isfinite(value) and value != 0 and not value.is_integer():
        return f"{value:.4g}"
    return format_value(value)


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (isinstance(v, (list, tuple)) and not v)


def infer_kind(header: str, values: List[Any]) -> str:
    """The kind of a column from its non-empty values (see the module docstring)."""
    sample = [v for v in values if not _empty(v)][:SAMPLE]
    if not sample:
        return TEXT
    if all(is_number(v) for v in sample):
        return NUMBER
    texts = [format_value(v) for v in sample]
    votes = {ID: 0, PATH: 0, TEXT: 0}
    for t in texts:
        if _PATHLIKE.search(t) or _DOTTED.match(t):
            votes[PATH] += 1
        elif any(c.isspace() for c in t.strip()) or len(t) > 60:
            votes[TEXT] += 1
        else:
            votes[ID] += 1
    return max(votes, key=lambda k: (votes[k], k == ID))


@dataclass
class Columns:
    """The shown columns of a table: ``headers``, one ``kinds`` entry each, ``rows`` cut to them, and the
    index of the status column (None when there is none)."""

    headers: List[str]
    kinds: List[str]
    rows: List[List[Any]]
    status: Optional[int]

    def text(self, row: List[Any], i: int) -> str:
        """Cell ``i`` of ``row`` as display text."""
        v = row[i]
        return format_number(v) if self.kinds[i] == NUMBER and is_number(v) else format_value(v)


def _norm(header: str) -> str:
    return re.sub(r"[^0-9a-z]+", "", header.lower())


def columns(table: Table) -> Columns:
    """The table's columns after dropping empty ones and merging duplicates, with their kinds."""
    ncols = max([len(table.columns)] + [len(r) for r in table.rows])
    headers = [str(c) for c in table.columns] + [""] * (ncols - len(table.columns))
    rows = [list(r) + [None] * (ncols - len(r)) for r in table.rows]
    keep: List[int] = []
    merged: Dict[int, List[int]] = {}  # kept column → the duplicates folded into it
    for i, h in enumerate(headers):
        if rows and all(_empty(r[i]) for r in rows) and h != table.status_column:
            continue
        twin = next((k for k in keep if h and _norm(headers[k]) == _norm(h)), None)
        if twin is not None and all(
            _empty(r[i]) or _empty(r[twin]) or format_value(r[i]) == format_value(r[twin]) for r in rows
        ):
            merged.setdefault(twin, []).append(i)
            continue
        keep.append(i)
    out_rows = []
    for r in rows:
        cells = []
        for k in keep:
            v = r[k]
            for d in merged.get(k, []):
                v = r[d] if _empty(v) else v
            cells.append(v)
        out_rows.append(cells)
    shown = [headers[k] for k in keep]
    kinds = [table.kinds.get(h) or infer_kind(h, [r[j] for r in out_rows]) for j, h in enumerate(shown)]
    status = shown.index(table.status_column) if table.status_column in shown else None
    return Columns(shown, kinds, out_rows, status)
