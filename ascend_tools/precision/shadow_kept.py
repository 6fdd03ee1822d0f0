"""The records a shadow keeps for ``sh.results``, packed as tuples of numbers and strings until they are read.

A shadow keeps one record for every op it checks: ~800 a step of the bench's 4-layer Llama, hundreds of
thousands over a run. As dataclasses (the record, its metrics, its verdict, its shape lists) each is ~8 objects
that Python's cyclic garbage collector tracks; they live on into its oldest generation and set off full
collections, each one a walk over every object of the process (~400,000 with torch, transformers and a model
loaded: ~180 ms), every few steps: 60-90 ms of the bench's ~350 ms shadow step (docs/precision-speed.md).
Packed, a record is one flat tuple of numbers, strings and None: CPython's collector stops tracking such a tuple
at the first collection that sees it (a young one: nested tuples would take one collection a level, and the
outer ones could reach the oldest generation first), so kept records cost the full collections nothing. They are
unpacked into :class:`ShadowRecord` objects when read, once for each batch of new ones.
"""

from dataclasses import fields
from typing import Dict, List

from . import metrics as M
from .shadow_record import ShadowRecord
from .standards import Verdict

_METRICS = tuple(f.name for f in fields(M.PairMetrics))
_VERDICT = tuple(f.name for f in fields(Verdict))
# a packed record, one flat tuple: the record's own fields, then the metrics' and the verdict's in their order
_STEP, _ID, _NAME, _PHASE, _CALL = range(5)
_METRICS_AT = -(len(_METRICS) + len(_VERDICT))  # (counted from the end)
_VERDICT_AT = -len(_VERDICT)
_LEVEL_AT = _VERDICT_AT + _VERDICT.index("level")


def pack(rec: ShadowRecord) -> tuple:
    """``rec`` as one tuple of numbers, strings and None (the input shapes as text: ``"4,8|8,16"``)."""
    m, v = rec.metrics, rec.verdict
    rows, cols = rec.rows or (None, None), rec.cols or (None, None)
    return (
        rec.step,
        rec.id,
        rec.name,
        rec.phase,
        rec.call,
        rec.module,
        rec.site,
        rec.output,
        rec.rank,
        len(rec.input_shapes),
        "|".join(",".join(map(str, s)) for s in rec.input_shapes),
        *rows,
        *cols,
        *(getattr(m, n) for n in _METRICS),
        *(getattr(v, n) for n in _VERDICT),
    )


def level_of(p: tuple) -> str:
    """The verdict's level of a packed record."""
    return p[_LEVEL_AT]


def unpack(p: tuple) -> ShadowRecord:
    step, rid, name, phase, call, module, site, output, rank, n, shapes, *rest = p[:_METRICS_AT]
    rows, cols = rest[:2], rest[2:]
    return ShadowRecord(
        id=rid,
        name=name,
        phase=phase,
        call=call,
        module=module,
        site=site,
        metrics=M.PairMetrics(*p[_METRICS_AT:_VERDICT_AT]),
        verdict=Verdict(*p[_VERDICT_AT:]),
        input_shapes=[[int(d) for d in s.split(",") if d] for s in shapes.split("|")] if n else [],
        output=output,
        step=step,
        rank=rank,
        rows=None if rows[0] is None else rows,
        cols=None if cols[0] is None else cols,
    )


class KeptRecords:
    """Records in execution order (step, then position in the step), packed. Not locked: the shadow adds and
    relabels under its own lock."""

    def __init__(self) -> None:
        self._packed: List[tuple] = []
        self._read: List[ShadowRecord] = []  # the first len(_read) records, unpacked

    def __len__(self) -> int:
        return len(self._packed)

    def add(self, p: tuple) -> None:
        """Add a packed record (:func:`pack`) in execution order (two threads, or the check process and the
        training thread, check ops: one may finish a later op first)."""
        packed, key = self._packed, (p[_STEP], p[_ID])
        i = len(packed)
        while i and (packed[i - 1][_STEP], packed[i - 1][_ID]) > key:
            i -= 1
        packed.insert(i, p)
        del self._read[i:]

    def records(self) -> List[ShadowRecord]:
        """Every record, as :class:`ShadowRecord` objects (those read before are the same objects: a relabel
        made after they were read shows in them)."""
        read = self._read
        read.extend(unpack(p) for p in self._packed[len(read) :])
        return list(read)

    def relabel(self, step: int, calls: Dict[int, int], phase: str) -> None:
        """Give the records of ``step`` whose position is in ``calls`` the ``phase`` and that call number."""
        packed, read = self._packed, self._read
        for i in range(len(packed) - 1, -1, -1):
            p = packed[i]
            if p[_STEP] != step:
                break
            call = calls.get(p[_ID])
            if call is not None:
                packed[i] = (*p[:_PHASE], phase, call, *p[_CALL + 1 :])
                if i < len(read):
                    read[i].phase, read[i].call = phase, call
