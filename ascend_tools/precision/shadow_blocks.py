"""Shadow's check of a matrix product or a pointwise op too large to copy whole (inputs over ``max_numel``
elements): a random block of its output, from copies of the rows and columns that make it.

Element ``(i, j)`` of ``mm(a, b)`` is ``a[i] @ b[:, j]``, so the block ``out[rows][:, cols]`` is exactly
``mm(a[rows], b[:, cols])`` (``addmm``: plus the bias's same block, where the bias has rows or columns; ``bmm``,
``baddbmm``: in every batch), with the same reduction length (``a``'s columns) and so the same standard. The copies
are ``rows x K`` and ``K x cols`` elements instead of ``M x K`` and ``K x N``: on a 7B model every projection is
over the default ``max_numel`` (a 4096 x 4096 weight alone is 16.8M elements, Llama-2-7B's MLP weights 45M), and
without blocks the shadow checked none of its matrix products. The parts are taken on the training thread before
the op runs (on a device: gathered there, then copied to the host), the output's block after it.

A pointwise op (``shadow_rows.row_wise``: a 7B model's activations, residual adds, and the optimizer's updates of
its large weights) is checked on ``size`` random rows of its output, from copies of those rows of each input that
has them (an input broadcast over the rows is copied whole): exactly those rows of the whole op, as in
``shadow_rows.py``; its block has every column. The rows are along dim -2, or, where that dim has no more than
``size`` (Megatron's sequence-first ``[S, B, H]`` activations with a small batch), along the largest leading dim
(:func:`row_dim`).

What it costs in detection: a fault on a fraction ``f`` of the elements at random is missed by one call with
probability about ``(1 - f) ** (rows * cols)`` (32 x 32, f = 1%: 3e-5); one on a fraction ``f`` of the rows or of
the columns (a bad tiling edge), about ``(1 - f) ** 32``, drawn again each call; a single wrong element with
probability ``1 - rows * cols / (M * N)``. The draws come from the session's own generator.
"""

import random
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from .shadow_rows import GEMMS

_CPU = torch.device("cpu")


class Block(NamedTuple):
    """The block of one call checked: ``rows`` of the output's ``total_rows`` (dim -2), ``cols`` of its
    ``total_cols`` (dim -1), and each tensor input's part (by id, a CPU copy)."""

    rows: torch.Tensor  # sorted, int64, on the inputs' device
    total_rows: int
    cols: Optional[torch.Tensor]  # None: every column (a pointwise op's rows)
    total_cols: int
    parts: Dict[int, torch.Tensor]
    shapes: List[List[int]]  # the whole inputs' shapes, in argument order (the record's)
    dim: int = -2  # the rows' dim (a pointwise op's: see row_dim)

    def checked(self) -> Tuple[List[int], List[int]]:
        """The record's ``rows`` and ``cols``: ``[checked, of]`` each."""
        cols = len(self.cols) if self.cols is not None else self.total_cols
        return [len(self.rows), self.total_rows], [cols, self.total_cols]

    def output(self, t: torch.Tensor) -> torch.Tensor:
        """The block of an output of the call, copied to the CPU."""
        if self.cols is None:
            return _take_rows(t, self.rows, self.dim, self.total_rows)
        return _take(t, self.rows, self.cols, self.total_rows, self.total_cols)


def take_block(
    name: str, args: tuple, kwargs: Dict[str, Any], size: int, rng: random.Random
) -> Optional[Block]:
    """The parts of a matrix product's inputs that make a random ``size`` x ``size`` block of its output (all the
    rows, or columns, where there are no more than ``size``), or None: not a matrix product of
    :data:`shadow_rows.GEMMS`, ``size`` 0, a tensor keyword argument (``out=``), an operand passed twice, or a
    bias that is neither the output's shape nor broadcast over it."""
    gemm = GEMMS.get(name)
    if gemm is None or size <= 0 or any(isinstance(v, torch.Tensor) for v in kwargs.values()):
        return None
    at, bias_at = gemm
    if at + 1 >= len(args):
        return None
    a, b = args[at], args[at + 1]
    bias = args[bias_at] if 0 <= bias_at < len(args) else None
    if (
        not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor))
        or a is b
        or a.dim() < 2
        or b.dim() < 2
    ):
        return None
    m, n = a.shape[-2], b.shape[-1]
    if bias is not None:
        if not isinstance(bias, torch.Tensor) or bias is a or bias is b or bias.dim() > max(a.dim(), b.dim()):
            return None
        bias_rows, bias_cols = ([1] * (2 - bias.dim()) + list(bias.shape[-2:]))[-2:]
        if bias_rows not in (1, m) or bias_cols not in (1, n):
            return None
    rows = _draw(m, size, rng, a.device)
    cols = _draw(n, size, rng, b.device)
    parts = {id(a): _take(a, rows, None, m, 0), id(b): _take(b, None, cols, 0, n)}
    if bias is not None:
        parts[id(bias)] = _take(bias, rows, cols, m if bias_rows > 1 else 0, n if bias_cols > 1 else 0)
    tensors = [t for t in args if isinstance(t, torch.Tensor)]
    return Block(rows, m, cols, n, parts, [list(t.shape) for t in tensors])


def take_rows(
    name: str, args: tuple, kwargs: Dict[str, Any], size: int, rng: random.Random
) -> Optional[Block]:
    """The parts of a pointwise op's inputs that make ``size`` random rows of its output (along :func:`row_dim`),
    or None: no dim with more than ``size`` rows that every input has or broadcasts over, a tensor keyword argument
    (``out=``) or a list of tensors. ``name``: an op :func:`shadow_rows.row_wise` accepts."""
    if any(isinstance(v, torch.Tensor) for v in kwargs.values()) or any(
        isinstance(a, (list, tuple)) and any(isinstance(x, torch.Tensor) for x in a) for a in args
    ):
        return None
    tensors = [t for t in args if isinstance(t, torch.Tensor)]
    if not tensors:
        return None
    try:
        out = torch.broadcast_shapes(*(t.shape for t in tensors))
    except RuntimeError:  # tensors that do not broadcast together: no one elementwise output
        return None
    dim = row_dim(out, [t.shape for t in tensors], size)
    if dim is None:
        return None
    total = out[dim]
    rows = _draw(total, size, rng, tensors[0].device)
    parts = {id(t): _take_rows(t, rows, dim, total) for t in tensors}
    return Block(rows, total, None, out[-1], parts, [list(t.shape) for t in tensors], dim)


def row_dim(out: Sequence[int], shapes: Sequence[Sequence[int]], size: int) -> Optional[int]:
    """The dim (negative) whose rows a pointwise op's block takes: -2, as ``shadow_rows.py`` does, where the output
    has more than ``size`` there; else the largest leading dim that has (a sequence-first ``[S, B, H]`` activation,
    Megatron's layout, with a batch of ``size`` or fewer); None where there is none or an input neither has that
    dim's size nor broadcasts over it (size 1, or fewer dims)."""
    candidates = [d for d in range(-len(out), -1) if out[d] > size]
    if not candidates:
        return None
    dim = -2 if -2 in candidates else max(candidates, key=lambda d: out[d])
    for shape in shapes:
        if len(shape) >= -dim and shape[dim] not in (1, out[dim]):
            return None
    return dim


def _take_rows(t: torch.Tensor, rows: torch.Tensor, dim: int, total: int) -> torch.Tensor:
    """``t``'s given rows along ``dim`` where it has them all (an input broadcast over them: whole), on the CPU."""
    part = t.detach()
    if part.dim() >= -dim and part.shape[dim] == total and len(rows) < total:
        part = part.index_select(part.dim() + dim, rows)
    return _on_host(part, t)


def _draw(total: int, size: int, rng: random.Random, device: torch.device) -> torch.Tensor:
    picked = range(total) if total <= size else sorted(rng.sample(range(total), size))
    return torch.tensor(picked, dtype=torch.int64, device=device)


def _take(
    t: torch.Tensor,
    rows: Optional[torch.Tensor],
    cols: Optional[torch.Tensor],
    total_rows: int,
    total_cols: int,
) -> torch.Tensor:
    """``t``'s given rows (dim -2) and columns (dim -1), where it has that many of them (``total_*``; a 1-D bias has
    columns only), copied to the CPU."""
    part = t.detach()
    if cols is not None and total_cols and part.shape[-1] == total_cols and len(cols) < total_cols:
        part = part.index_select(part.dim() - 1, cols)
    if rows is not None and part.dim() >= 2 and part.shape[-2] == total_rows and len(rows) < total_rows:
        part = part.index_select(part.dim() - 2, rows)
    return _on_host(part, t)


def _on_host(part: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``part`` of ``t`` as a CPU tensor of its own: a copy where it is on a device or still ``t``'s memory."""
    if part.device != _CPU or part.data_ptr() == t.data_ptr():
        part = part.to(device=_CPU, copy=True)
    return part
