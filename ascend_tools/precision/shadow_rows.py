"""Which rows of a large output shadow checks: a random set of them, each call, for the ops whose output rows
are computed from the same rows of their inputs.

Row ``i`` (dim -2) of ``mm(a, b)`` is ``a[i] @ b``: it depends on row ``i`` of ``a`` and on the whole of ``b``
(``addmm``: and on row ``i`` of the bias where the bias has rows; ``bmm``, ``baddbmm``: in every batch). Row ``i``
of a pointwise op's output (``torch.Tag.pointwise``: ``add``, ``mul``, ``lerp_``, ``addcdiv_``, ``silu``, ...)
depends on row ``i`` of each input that has rows and on the whole of each that broadcasts over them. So the
float64 replay of the rows in ``rows`` (``mm(a[rows], b)``) is exactly those rows of the full replay, and the
target's same rows are judged against it with the same standard (the reduction length, ``a``'s columns, is
unchanged). In a training step the matrix products and the optimizer's pointwise ops on whole parameters are most
of the replay's work (a float64 GEMM is about twice a float32 one: ``docs/precision-speed.md``); checking
``rows`` of each call's ``M`` rows cuts it by about ``M / rows``.

The rows are drawn stratified: the ``M`` rows are split into ``rows`` runs of consecutive rows (sizes differing
by at most one) and one row is drawn uniformly in each, so every row is checked with probability about
``rows / M``, as with a uniform draw; a draw is one NumPy call on a cached table of the runs (4 µs; ``random.sample``,
sorted, as a tensor: 20-38 µs, ~600 calls a step of the bench's model, on the checks' critical path).

What it costs in detection: a kernel fault that touches every row (a wrong accumulation dtype, a wrong
algorithm, an approximation swap) is in every sampled row; one on a run of at least ``2 ceil(M / rows)`` consecutive
rows (a bad tiling edge: the last tile's rows) covers a whole run and is found in every call; one scattered over a
fraction ``f`` of the rows is missed by one call with probability at most about ``(1 - f) ** rows`` (32 rows,
f = 1/16: 13%; drawn per run, a periodic fault, every 8th row, is found as often as scattered ones), and by
the same call in ``n`` steps with that probability to the ``n``-th, since the rows are drawn again each call; a
single wrong element in a call is found with probability about ``rows / M``. ``rows=0`` (``ascend-doctor shadow
--rows 0``) checks every row. The draws come from the session's own generator: the user's RNG state is not
touched.
"""

import functools
from typing import Any, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch

#: rows checked per call by default: a ``(1 - f) ** 32`` miss chance for a fault on a fraction f of the rows
DEFAULT_ROWS = 32

#: matrix products: op -> (argument holding the rows, argument of a bias that may hold them too, or -1); the
#: other operand is read whole
GEMMS: Dict[str, Tuple[int, int]] = {
    "aten::mm": (0, -1),
    "aten::addmm": (1, 0),
    "aten::bmm": (0, -1),
    "aten::baddbmm": (1, 0),
}


def row_wise(name: str, func: Any) -> bool:
    """Whether ``pick_rows`` may pick rows of this op's calls: a matrix product or a pointwise op."""
    return name in GEMMS or torch.Tag.pointwise in getattr(func, "tags", ())


class RowPick(NamedTuple):
    """The rows checked of one call: ``rows`` along dim -2 of the outputs and of the inputs in ``cut``."""

    rows: torch.Tensor  # sorted, int64
    total: int  # rows of the output
    cut: FrozenSet[int]  # ids of the inputs whose rows are taken (the others are read whole)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        return t.index_select(t.dim() - 2, self.rows)

    def checked(self) -> list:
        """[rows checked, rows of the output]."""
        return [len(self.rows), self.total]


def pick_rows(
    name: str,
    args: tuple,
    kwargs: Dict[str, Any],
    shapes: Dict[int, torch.Size],
    out_shapes: Sequence[torch.Size],
    rows: int,
    rng: Union[np.random.Generator, "RowDraws"],
) -> Optional[RowPick]:
    """The rows of this call to check, or None for all of them (``rows`` 0, no more rows than ``rows``, an input
    neither with the output's rows nor broadcast over them, a tensor in a list or a keyword argument: ``out=``,
    which the replay writes whole, or a matrix product's operand passed twice). ``name``: an op :func:`row_wise`
    accepts; ``shapes``: each tensor input's shape by id."""
    if rows <= 0 or not out_shapes or any(len(s) < 2 for s in out_shapes):
        return None
    if any(isinstance(v, torch.Tensor) for v in kwargs.values()):
        return None
    total = out_shapes[0][-2]
    if total <= rows or any(s[-2] != total for s in out_shapes):
        return None
    gemm = GEMMS.get(name)
    whole = None  # a matrix product's other operand
    if gemm is None:
        with_rows = list(args)
    else:
        at, bias_at = gemm
        whole = args[at + 1] if at + 1 < len(args) else None
        with_rows = [args[i] for i in (at, bias_at) if 0 <= i < len(args)]
    cut = set()
    for x in with_rows:
        if isinstance(x, (list, tuple)) and any(isinstance(v, torch.Tensor) for v in x):
            return None
        if not isinstance(x, torch.Tensor):
            continue
        shape = shapes.get(id(x), ())
        if len(shape) >= 2 and shape[-2] == total:
            cut.add(id(x))
        elif len(shape) >= 2 and shape[-2] != 1:  # neither the output's rows nor broadcast over them
            return None
    if whole is not None and id(whole) in cut:  # mm(a, a): the operand read whole would lose rows too
        return None
    return RowPick(stratified(total, rows, rng), total, frozenset(cut))


class RowDraws:
    """:func:`stratified` draws from ``rng``, made :data:`POOL` at a time for each ``(total, rows)``: one NumPy call
    and one tensor per :data:`POOL` picks instead of five calls a pick (~10 us; ~800 picks a step of the bench's
    model, on the training thread)."""

    POOL = 256

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self._pools: Dict[Tuple[int, int], List[Any]] = {}  # (total, rows) -> [draws, next one]

    def draw(self, total: int, rows: int) -> torch.Tensor:
        pool = self._pools.get((total, rows))
        if pool is None or pool[1] == self.POOL:
            low, size = _runs(total, rows)
            draws = torch.from_numpy(low + (self.rng.random((self.POOL, rows)) * size).astype(np.int64))
            pool = self._pools[(total, rows)] = [draws, 0]
        pool[1] += 1
        return pool[0][pool[1] - 1]


def stratified(total: int, rows: int, rng: Union[np.random.Generator, RowDraws]) -> torch.Tensor:
    """``rows`` sorted row indices below ``total``, one drawn uniformly in each of ``rows`` runs of consecutive
    rows (``total >= rows``)."""
    if isinstance(rng, RowDraws):
        return rng.draw(total, rows)
    low, size = _runs(total, rows)
    return torch.from_numpy(low + (rng.random(rows) * size).astype(np.int64))


@functools.lru_cache(maxsize=256)
def _runs(total: int, rows: int) -> Tuple[np.ndarray, np.ndarray]:
    """The first row and the length (as float64) of each of the ``rows`` runs of ``total`` rows."""
    edges = np.arange(rows + 1, dtype=np.int64) * total // rows
    return edges[:-1], np.diff(edges).astype(np.float64)
