"""Which heads of an attention call shadow checks: a random slice of each call, one batch entry and a run of
key/value heads with their query heads.

Attention is computed head by head: head ``h``'s output, log-sum-exp and gradients come from head ``h``'s
query, key and value alone, and from nothing of other batch entries. With grouped-query attention (``Hq`` query
heads, ``Hkv`` key/value heads, ``g = Hq / Hkv``) key/value head ``j`` serves query heads ``j*g .. j*g+g-1``, and
its gradients sum over them. So the float64 replay of a slice (batch entry ``b``, key/value heads ``j0 ..
j0+n-1``, query heads ``j0*g .. (j0+n)*g-1``) is exactly that slice of the full replay; the target's same slice
is judged against it with the same standard (the reduction lengths, the sequence and the head size, are
unchanged). The slice is cut from views: only its values are copied and widened. On the bench's model the
float64 flash-attention backward was the costliest check of a step (9.6 ms a call on a (2, 8, 128, 32) query,
more than all 87 matrix products with their rows sampled: docs/precision-speed.md); a slice is 1/8 of it there.

A call over ``max_numel`` (a real model's attention: Llama-2-7B's query at 4,096 tokens is 16.8M elements, the
default limit) is checked on its slice the same way, from copies of only the slice's parts, taken on the training
thread (:func:`take_head_block`): without it the shadow checked no attention of such a model.

The slice holds at least ``rows`` query rows (``n`` key/value heads, ``n * g * L >= rows``, where the batch entry
has as many), so a fault that touches every head is found in every call, as with the rows of a matrix product; a
fault confined to one head of ``B * Hkv`` is found in a call with probability ``n / (B * Hkv)`` (drawn again each
call, from the session's own generator). ``rows=0`` checks every head.

The ops: the CPU flash-attention kernels torch runs ``scaled_dot_product_attention`` with (forward and backward).
The forward is tagged random (its dropout); with ``dropout_p`` 0 it is not, and shadow checks it then. Other
attention kernels (CUDA's flash and efficient ones, ``npu_fusion_attention``) have no CPU kernel for the replay.
"""

import math
from typing import Any, Callable, Dict, FrozenSet, List, NamedTuple, Optional, Sequence, Tuple

import torch

_CPU = torch.device("cpu")

#: attention op -> (argument index of the query, of dropout_p): the query's layout is (B, Hq, L, E), the key's and
#: the value's (B, Hkv, S, E); every other tensor argument (the output, its gradient, the log-sum-exp, a 4-D
#: mask) has the batch and query heads (or 1) as its first two dims
ATTENTION: Dict[str, Tuple[int, int]] = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": (0, 3),
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": (1, 6),
}


class HeadPick(NamedTuple):
    """The slice checked of one call: batch entry ``batch``, key/value heads ``kv`` .. ``kv + n - 1`` and their
    query heads, of the outputs and of the inputs in ``cut``."""

    batch: int
    kv: int
    n: int
    sizes: Tuple[int, int, int, int]  # (B, Hq, Hkv, L)
    cut: FrozenSet[int]  # ids of the inputs sliced (the others are read whole: a 2-D mask)

    def take(self, t: torch.Tensor) -> torch.Tensor:
        batches, q_heads, kv_heads, _ = self.sizes
        if t.shape[0] == batches:
            t = t.narrow(0, self.batch, 1)
        group = q_heads // kv_heads
        if t.shape[1] == q_heads:
            return t.narrow(1, self.kv * group, self.n * group)
        if t.shape[1] == kv_heads:
            return t.narrow(1, self.kv, self.n)
        return t  # (a dim of 1, broadcast)

    def checked(self) -> list:
        """[query rows checked, query rows of the call]."""
        batches, q_heads, kv_heads, length = self.sizes
        return [self.n * q_heads // kv_heads * length, batches * q_heads * length]


def no_dropout(name: str, args: Sequence[Any], kwargs: Dict[str, Any]) -> bool:
    """Whether this attention call's ``dropout_p`` is 0 (it is then as deterministic as any other op)."""
    at = ATTENTION[name][1]
    p = args[at] if at < len(args) else kwargs.get("dropout_p", 0.0)
    return isinstance(p, (int, float)) and p == 0


def pick_heads(
    name: str,
    args: Sequence[Any],
    kwargs: Dict[str, Any],
    shapes: Dict[int, torch.Size],
    rows: int,
    below: Callable[[int], int],
) -> Optional[HeadPick]:
    """The slice of this call to check, or None for all of it (``rows`` 0, a slice as large as the call, shapes
    this module does not know). ``shapes``: each tensor input's shape by id; ``below(n)``: a random integer in
    ``[0, n)`` from the session's own generator."""
    at = ATTENTION[name][0]
    if rows <= 0 or len(args) < at + 3:
        return None
    q, k, v = args[at : at + 3]
    if not all(isinstance(x, torch.Tensor) and len(shapes.get(id(x), ())) == 4 for x in (q, k, v)):
        return None
    batches, q_heads, length, _ = shapes[id(q)]
    kv_heads = shapes[id(k)][1]
    if kv_heads < 1 or q_heads % kv_heads or shapes[id(v)][:2] != shapes[id(k)][:2]:
        return None
    if shapes[id(k)][0] != batches:
        return None
    n = min(kv_heads, max(1, math.ceil(rows / (q_heads // kv_heads * max(length, 1)))))
    if batches == 1 and n == kv_heads:
        return None
    lse = args[5] if name.endswith("_backward") and len(args) > 5 else None  # (B, Hq, L)
    cut = set()
    for x in (*args, *kwargs.values()):
        if not isinstance(x, torch.Tensor):
            continue
        shape = shapes.get(id(x), ())
        if len(shape) <= 2:  # a mask over (L, S) only: the same for every head
            continue
        if len(shape) == 3 and x is not lse:  # a 3-D mask: (heads, L, S) or (B, L, S), not told apart
            return None
        if len(shape) > 4 or shape[0] not in (batches, 1) or shape[1] not in (q_heads, kv_heads, 1):
            return None
        cut.add(id(x))
    return HeadPick(
        below(batches), below(kv_heads - n + 1), n, (batches, q_heads, kv_heads, length), frozenset(cut)
    )


class HeadBlock(NamedTuple):
    """A call over ``max_numel`` checked on a slice: ``parts``, each tensor input's CPU copy by id (the slice of
    a sliced one, the whole of a 2-D mask), taken before the op runs; the interface of ``shadow_blocks.Block``."""

    pick: HeadPick
    parts: Dict[int, torch.Tensor]
    shapes: List[List[int]]  # the whole inputs' shapes, in argument order (the record's)

    def checked(self) -> Tuple[List[int], None]:
        """The record's ``rows`` and ``cols``."""
        return self.pick.checked(), None

    def output(self, t: torch.Tensor) -> torch.Tensor:
        """The slice of an output of the call, copied to the CPU."""
        return self.pick.take(t).to(_CPU, copy=True)


def take_head_block(
    name: str, args: Sequence[Any], kwargs: Dict[str, Any], rows: int, below: Callable[[int], int]
) -> Optional[HeadBlock]:
    """The parts of an attention call that make a random slice of it (:func:`pick_heads`), or None."""
    tensors = [x for x in (*args, *kwargs.values()) if isinstance(x, torch.Tensor)]
    pick = pick_heads(name, args, kwargs, {id(t): t.shape for t in tensors}, rows, below)
    if pick is None:
        return None
    parts = {id(t): (pick.take(t) if id(t) in pick.cut else t).to(_CPU, copy=True) for t in tensors}
    return HeadBlock(pick, parts, [list(t.shape) for t in args if isinstance(t, torch.Tensor)])
