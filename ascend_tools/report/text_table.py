"""A table laid out for a terminal of a given width: the headline rows (all with ``--all``), columns that
fit, cells shortened by kind (``text_cells.shorten``).

Widths: each column starts at its natural width (its widest shown cell or header); while the row is wider
than the terminal, the widest column that is still above its minimum loses one character. Minimums by kind:
numbers are never cut, ids keep 24 characters, paths 20, text 12 (or less when the column is narrower).
When even the minimums do not fit, columns are left out from the right (the status column stays) and a
line names them. The last column, when it is text or ids and was cut, wraps onto up to 3 lines instead
(text at spaces, ids after punctuation), so a suggestion such as ``torch_npu.npu_rms_norm`` reads whole.
"""

from typing import Callable, List, Optional, Tuple

from .columns import Columns
from .text_cells import ID, NUMBER, PATH, TEXT, one_line, shorten, shorten_column, text_width, wrap_cell

SEP = 2
WRAP_LINES = 3  # lines a cut last column may take
MINIMUM = {NUMBER: 10**6, ID: 24, PATH: 20}
TEXT_MIN = 12


def fit_widths(natural: List[int], mins: List[int], budget: int, sep: int = SEP) -> List[int]:
    """Column widths for a row of at most ``budget`` characters (``sep`` between columns): the widest
    column above its minimum loses one character at a time, as far as the minimums allow."""
    widths = list(natural)
    mins = [min(n, m) for n, m in zip(natural, mins)]
    excess = sum(widths) + sep * (len(widths) - 1) - budget
    while excess > 0:
        candidates = [i for i in range(len(widths)) if widths[i] > mins[i]]
        if not candidates:
            break
        widest = max(candidates, key=lambda i: (widths[i], -i))
        widths[widest] -= 1
        excess -= 1
    return widths


def _shown_columns(cols: Columns, natural: List[int], budget: int) -> Tuple[List[int], List[int]]:
    """The columns kept, left to right, whose minimum widths fit ``budget`` (the status column first),
    and their minimums. The first text or id column that does not fit at its minimum is kept in the room
    left, when that holds :data:`TEXT_MIN` characters, as the last column (it wraps)."""
    mins = [min(n, MINIMUM.get(k, TEXT_MIN)) for n, k in zip(natural, cols.kinds)]
    keep = [cols.status] if cols.status is not None else []
    used = mins[cols.status] if cols.status is not None else 0
    for i in range(len(natural)):
        if i == cols.status:
            continue
        need = mins[i] + (SEP if keep else 0)
        if keep and used + need > budget:
            room = budget - used - SEP
            if cols.kinds[i] in (TEXT, ID) and room >= TEXT_MIN:
                mins[i] = room
                keep.append(i)
                break
            continue
        keep.append(i)
        used += need
    keep.sort()
    return keep, [mins[i] for i in keep]


def layout(
    cols: Columns,
    width: int,
    limit: Optional[int],
    style_header: Callable[[str], str],
    style_status: Callable[[str, object], str],
) -> Tuple[List[str], List[str]]:
    """The table's lines (header, rule, the first ``limit`` rows; None: all) and notes on what was left
    out (columns, rows)."""
    n = len(cols.rows)
    shown_rows = cols.rows if limit is None else cols.rows[:limit]
    texts = [[one_line(cols.text(r, i)) for i in range(len(cols.headers))] for r in shown_rows]
    natural = [max([text_width(h)] + [text_width(t[i]) for t in texts]) for i, h in enumerate(cols.headers)]
    keep, mins = _shown_columns(cols, natural, width)
    widths = fit_widths([natural[i] for i in keep], mins, width)
    # the last column, when cut, wraps onto continuation lines instead (text, ids; not a status)
    last, last_w = keep[-1], widths[-1]
    wrap_last = natural[last] > last_w and cols.kinds[last] in (TEXT, ID) and last != cols.status
    for i, w in zip(keep, widths):
        if wrap_last and i == last:
            continue
        for t, short in zip(texts, shorten_column([t[i] for t in texts], w, cols.kinds[i])):
            t[i] = short
    indent = " " * (sum(widths[:-1]) + SEP * (len(widths) - 1))

    def row_lines(values: List[str], raw: Optional[List[object]]) -> List[str]:
        if not wrap_last:
            return [line(values, raw)]
        pieces = wrap_cell(values[last], last_w, cols.kinds[last], WRAP_LINES)
        first = line([*values[:last], pieces[0], *values[last + 1 :]], raw)
        return [first] + [indent + p for p in pieces[1:]]

    def line(values: List[str], raw: Optional[List[object]]) -> str:
        parts = []
        for j, (i, w) in enumerate(zip(keep, widths)):
            kind = cols.kinds[i]
            t = shorten(values[i], w, kind if raw is not None else TEXT)
            fill = " " * (w - text_width(t))
            if raw is None:
                t = style_header(t)
            elif i == cols.status:
                t = style_status(t, raw[i])
            last = j == len(keep) - 1
            parts.append(fill + t if kind == NUMBER else t + ("" if last else fill))
        return "  ".join(parts).rstrip()

    out = [line(cols.headers, None), "  ".join("-" * w for w in widths)]
    for t, r in zip(texts, shown_rows):
        out += row_lines(t, r)
    hidden = [cols.headers[i] for i in range(len(cols.headers)) if i not in keep]
    more = []
    if len(shown_rows) < n:
        more.append(f"{n - len(shown_rows)} more rows")
    if hidden:
        more.append(f"{len(hidden)} more column{'s' if len(hidden) != 1 else ''}")
    if not more:
        return out, []
    where = "use --all or -f html" if len(shown_rows) < n else "-f html or -f json shows them"
    note = f"… {', '.join(more)}: {where}"
    room = width - text_width(note) - 3
    if hidden and room >= 12:
        note = f"… {', '.join(more)} ({shorten(', '.join(hidden), room)}): {where}"
    return out, [note]
