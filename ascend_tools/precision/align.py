"""Pair the records of two runs: the same op call on the target and on the reference.

Three passes, each over what the previous left unmatched:

1. **key**: same (name, phase, call index) and the same output shapes — the normal case when both runs
   executed the same op stream.
2. **sequence**: where the streams differ (a fused op on one side and its decomposition on the other, an
   extra cast), a longest-matching-blocks alignment (difflib) of the op names, per phase, pairs the runs
   of identical names between the differences.
3. **module**: records left over are paired by (module path, name, phase) in order, so an op inside
   ``model.layers.3.mlp`` only pairs with one inside the same module.

Whatever is still unmatched is reported as such (``Pair`` with one side None).
"""

import difflib
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence, Tuple

from .records import PHASES, Record


@dataclass
class Pair:
    target: Optional[Record]
    reference: Optional[Record]
    how: str  # "key" | "sequence" | "module" | "unmatched"

    @property
    def order(self) -> int:
        """Position in the target's execution order (reference order for reference-only pairs)."""
        rec = self.target if self.target is not None else self.reference
        return rec.id if rec is not None else -1


def _shapes(rec: Record) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(t.shape) for t in rec.outputs)


def align(target: Sequence[Record], reference: Sequence[Record]) -> List[Pair]:
    """Pairs in target execution order, then reference-only records at the end."""
    pairs: List[Pair] = []
    ref_by_key = {(r.key, _shapes(r)): r for r in reference}
    used_t, used_r = set(), set()
    for t in target:
        r = ref_by_key.get((t.key, _shapes(t)))
        if r is not None and id(r) not in used_r:
            pairs.append(Pair(t, r, "key"))
            used_t.add(id(t))
            used_r.add(id(r))
    for phase in PHASES:
        left_t = [t for t in target if id(t) not in used_t and t.phase == phase]
        left_r = [r for r in reference if id(r) not in used_r and r.phase == phase]
        for t, r in _sequence_pairs(left_t, left_r):
            pairs.append(Pair(t, r, "sequence"))
            used_t.add(id(t))
            used_r.add(id(r))
    by_module: Dict[Tuple[str, str, str], Deque[Record]] = defaultdict(deque)
    for r in reference:
        if id(r) not in used_r:
            by_module[(r.module, r.name, r.phase)].append(r)
    for t in target:
        if id(t) in used_t:
            continue
        queue = by_module.get((t.module, t.name, t.phase))
        if queue:
            r = queue.popleft()
            pairs.append(Pair(t, r, "module"))
            used_r.add(id(r))
        else:
            pairs.append(Pair(t, None, "unmatched"))
    pairs.sort(key=lambda p: p.order)
    pairs.extend(Pair(None, r, "unmatched") for r in reference if id(r) not in used_r)
    return pairs


def _sequence_pairs(target: List[Record], reference: List[Record]) -> List[Tuple[Record, Record]]:
    matcher = difflib.SequenceMatcher(
        a=[t.name for t in target], b=[r.name for r in reference], autojunk=False
    )
    out = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            t, r = target[block.a + k], reference[block.b + k]
            if _shapes(t) == _shapes(r):
                out.append((t, r))
    return out
