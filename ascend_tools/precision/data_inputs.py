"""Integer and bool inputs the two runs were given differently: the data.

Nothing rounds an integer, so an op's integer or bool input (token ids, labels, positions, masks) that no earlier
op of the target's step produced must be the same in the two runs. Such a *leaf* input is a tensor made outside
the recorded ops: ``torch.from_numpy`` of a data loader's batch (its ``lift_fresh``), a buffer. When one
differs, the runs were given different data (another seed, data order, shuffling, dataset or tokenizer), and
every float difference after it follows from that: ``causes.py`` ranks the first such op above every other
cause, and an op whose integer input differs never counts as "inputs agree" (``diagnose``'s amplification).

Leaves are told apart by identity in the target's records: a tensor an earlier op produced comes back as a later
op's input with the same dtype, shape and statistics (or, in a dump without statistics, the same file). The same
identity tells the random fills whose numbers nothing reads (:func:`unread_random_fills`) and the values that are
only logged (:func:`logged_only`).
"""

import math
from typing import Any, Dict, Hashable, List, Optional, Sequence, Set

import numpy as np

from ..op_names import ALIAS_VIEWS, OVERWRITES_SELF, RANDOM_FILLS, op_base
from .records import Record, TensorInfo

DISCRETE_PREFIXES = ("int", "uint", "bool")
#: relative difference of two statistics (a mean, a norm of integers) that is more than summation order
STATS_REL = 1e-9


def is_discrete(dtype: str) -> bool:
    return dtype.startswith(DISCRETE_PREFIXES)


def _identity(info: TensorInfo) -> Hashable:
    """Dtype, shape and statistics; the file where there are none. (Not the file first: msprobe saves every
    input of every op as a file of its own, so a file never comes back as a later op's input there.)"""
    s = info.stats
    if s is None:
        return info.file or (info.dtype, tuple(info.shape))
    return (info.dtype, tuple(info.shape), (s.max, s.min, s.mean, s.norm, s.nan, s.inf))


def leaf_inputs(records: Sequence[Record]) -> Dict[int, List[int]]:
    """Per record id (of ``records``, one step of one dump), the positions of its integer/bool inputs that no
    earlier record produced and that are not parameters (nor the destination an op overwrites unread:
    ``OVERWRITES_SELF``)."""
    produced: Set[Hashable] = set()
    out: Dict[int, List[int]] = {}
    for rec in sorted(records, key=lambda r: r.id):
        first = 1 if op_base(rec.name) in OVERWRITES_SELF else 0
        leaves = [
            i
            for i, info in enumerate(rec.inputs)
            if i >= first and is_discrete(info.dtype) and not info.name and _identity(info) not in produced
        ]
        if leaves:
            out[rec.id] = leaves
        produced.update(_identity(info) for info in rec.outputs)
    return out


def unread_random_fills(records: Sequence[Record]) -> Set[int]:
    """Ids of the random fills (``RANDOM_FILLS``) of ``records`` (one step of one dump) whose output no later record
    reads other than to overwrite it or to view it (a view keeps the identity: its readers count). Hugging Face's
    ``resize_token_embeddings`` initialises the new embedding with ``normal_`` and then copies every old row over
    it: two runs' random numbers differ there when their seeds do, and change nothing, no cause. A view's input is
    read where the view is (a slice of a fill that an op reads reads the fill), walking back from the last record."""
    ordered = sorted(records, key=lambda r: r.id)
    read: Set[Hashable] = set()
    unread: Set[int] = set()
    for rec in reversed(ordered):
        base = op_base(rec.name)
        if base in RANDOM_FILLS and rec.outputs and all(_identity(o) not in read for o in rec.outputs):
            unread.add(rec.id)
        if base in ALIAS_VIEWS:  # its input is read where the view is
            if rec.inputs and any(_identity(o) in read for o in rec.outputs):
                read.add(_identity(rec.inputs[0]))
            first = 1
        else:
            first = 1 if base in OVERWRITES_SELF else 0
        read.update(_identity(info) for info in rec.inputs[first:])
    return unread


#: ops that turn a tensor into a Python number (``.item()``, ``float(t)``, printing): what the script logs
SCALAR_READS = frozenset(("_local_scalar_dense", "item"))


def logged_only(records: Sequence[Record]) -> Set[int]:
    """Ids of the records (one step of one dump) that make a new tensor which later records only turn into a Python
    number, directly or through views: a value the script logs (torchtune's tokens per second, ``num_tokens /
    (time.perf_counter() - t0)``: a division by the wall time, different in every run, read by ``.item()`` for the
    log line and by nothing the model computes). An in-place op's tensor lives on (a parameter, an optimizer's
    state, read in a later step), and a tensor nothing reads may be kept for one: neither is counted."""
    computed: Set[Hashable] = set()  # read by an op that computes with it
    logged: Set[Hashable] = set()  # turned into a Python number
    out: Set[int] = set()
    for rec in sorted(records, key=lambda r: r.id, reverse=True):
        base = op_base(rec.name)
        ids = [_identity(o) for o in rec.outputs]
        if (
            ids
            and not base.endswith("_")
            and any(i in logged for i in ids)
            and not any(i in computed for i in ids)
        ):
            out.add(rec.id)
        if base in SCALAR_READS:
            logged.update(_identity(i) for i in rec.inputs)
            continue
        first = 1 if base in ALIAS_VIEWS or base in OVERWRITES_SELF else 0
        if base in ALIAS_VIEWS and rec.inputs:  # its input is read as the view is
            src = _identity(rec.inputs[0])
            if any(i in computed for i in ids):
                computed.add(src)
            if any(i in logged for i in ids):
                logged.add(src)
        computed.update(_identity(i) for i in rec.inputs[first:])
    return out


def _close(a: Optional[float], b: Optional[float]) -> bool:
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= STATS_REL * max(abs(a), abs(b))


def stats_differ(a: TensorInfo, b: TensorInfo) -> Optional[bool]:
    """Whether two integer tensors' statistics say their elements differ (None: no statistics to tell)."""
    if a.stats is None or b.stats is None:
        return None
    sa, sb = a.stats, b.stats
    return not all(
        _close(x, y) for x, y in ((sa.max, sb.max), (sa.min, sb.min), (sa.mean, sb.mean), (sa.norm, sb.norm))
    )


def differing_fraction(a: Any, b: Any) -> float:
    """The fraction of elements that differ between two integer/bool arrays (1.0 for another shape)."""
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return 1.0
    return float(np.count_nonzero(x != y)) / max(x.size, 1)
