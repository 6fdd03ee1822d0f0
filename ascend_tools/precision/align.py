"""Pair the records of two runs: the same op call on the target and on the reference.

The two op streams are aligned as sequences, per phase, so that an op present in one run only (dropout
left on, an extra cast) shifts nothing after it: it is reported unmatched (target-only or
reference-only) and every later op still pairs with its counterpart.

* Each record's **signature** is (name, module path, output shapes). The common prefix and suffix of the
  two signature streams are paired directly (the whole stream when both runs executed the same ops).
* The middle is diffed with ``difflib.SequenceMatcher`` (longest matching blocks); in each gap between
  blocks the records are diffed again on (name, output shapes) only, for module paths that differ
  between the runs (one captured with ``model=``, one without).
* A pair whose (name, phase, call index) also agree is labelled ``key``, otherwise ``sequence``: the call
  index only breaks ties, it never forces a pairing.

Cost: linear for identical streams; a diff only over the part that differs, where a signature's repeats
are few because module paths carry the layer number (measured in docs/precision.md).
"""

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Hashable, List, Optional, Sequence, Tuple

from .records import PHASES, Record


@dataclass
class Pair:
    target: Optional[Record]
    reference: Optional[Record]
    how: str  # "key" | "sequence" | "unmatched"

    @property
    def order(self) -> int:
        """Position in the target's execution order (reference order for reference-only pairs)."""
        rec = self.target if self.target is not None else self.reference
        return rec.id if rec is not None else -1


def _shapes(rec: Record) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(t.shape) for t in rec.outputs)


def signature(rec: Record) -> Tuple[Any, ...]:
    return (rec.name, rec.module, _shapes(rec))


def _loose(rec: Record) -> Tuple[Any, ...]:
    return (rec.name, _shapes(rec))


def align(target: Sequence[Record], reference: Sequence[Record]) -> List[Pair]:
    """Pairs in target execution order (target-only ones included), then reference-only records."""
    phases = list(PHASES) + sorted({r.phase for r in (*target, *reference)} - set(PHASES))
    pairs: List[Pair] = []
    ref_only: List[Record] = []
    for phase in phases:
        t = [r for r in target if r.phase == phase]
        r = [x for x in reference if x.phase == phase]
        for a, b in _diff(t, r, signature, _loose):
            if a is None:
                assert b is not None
                ref_only.append(b)
            elif b is None:
                pairs.append(Pair(a, None, "unmatched"))
            else:
                pairs.append(Pair(a, b, "key" if a.key == b.key else "sequence"))
    pairs.sort(key=lambda p: p.order)
    pairs.extend(Pair(None, r, "unmatched") for r in sorted(ref_only, key=lambda r: r.id))
    return pairs


Side = Tuple[Optional[Record], Optional[Record]]


def _diff(
    a: List[Record],
    b: List[Record],
    sig: Callable[[Record], Hashable],
    *fallback: Callable[[Record], Hashable],
) -> List[Side]:
    """(target, reference) pairs and one-sided entries covering ``a`` and ``b``."""
    sa, sb = [sig(x) for x in a], [sig(x) for x in b]
    head = 0
    while head < len(a) and head < len(b) and sa[head] == sb[head]:
        head += 1
    tail = 0
    while tail < len(a) - head and tail < len(b) - head and sa[-1 - tail] == sb[-1 - tail]:
        tail += 1
    out: List[Side] = [(a[k], b[k]) for k in range(head)]
    ma, mb = a[head : len(a) - tail], b[head : len(b) - tail]
    if ma and mb:
        matcher = difflib.SequenceMatcher(
            a=sa[head : len(a) - tail], b=sb[head : len(b) - tail], autojunk=False
        )
        i = j = 0
        for block in matcher.get_matching_blocks():
            out.extend(_gap(ma[i : block.a], mb[j : block.b], fallback))
            out.extend((ma[block.a + k], mb[block.b + k]) for k in range(block.size))
            i, j = block.a + block.size, block.b + block.size
    else:
        out.extend(_gap(ma, mb, ()))
    out.extend((a[len(a) - tail + k], b[len(b) - tail + k]) for k in range(tail))
    return out


def _gap(a: List[Record], b: List[Record], fallback: Sequence[Callable[[Record], Hashable]]) -> List[Side]:
    if a and b and fallback:
        return _diff(a, b, fallback[0], *fallback[1:])
    return [(x, None) for x in a] + [(None, y) for y in b]
