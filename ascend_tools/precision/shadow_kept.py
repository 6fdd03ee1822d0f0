"""The records a shadow keeps for ``sh.results``, packed as tuples of numbers and strings until they are read.

A shadow keeps one record for every op it checks: ~800 a step of the bench's 4-layer Llama, hundreds of
thousands over a run. As dataclasses (the record, its metrics, its verdict, its shape lists) each is ~8 objects
that Python's cyclic garbage collector tracks; they live on into its oldest generation and set off full
collections, each one a walk over every object of the process (~400,000 with torch, transformers and a model
loaded: ~180 ms), every few steps: 60-90 ms of the bench's ~350 ms shadow step (docs/precision-speed.md).
Packed, a record is a tuple of atomic values and of tuples of them: CPython's collector stops tracking a tuple
whose items it does not track, the inner ones at the first young collection that sees them and the outer one at
the next, so kept records never reach the oldest generation and cost the full collections nothing. They are
unpacked into :class:`ShadowRecord` objects when read, once for each batch of new ones.
"""

from dataclasses import fields
from typing import Dict, List

from . import metrics as M
from .shadow_record import ShadowRecord
from .standards import Verdict

_METRICS = tuple(f.name for f in fields(M.PairMetrics))
_VERDICT = tuple(f.name for f in fields(Verdict))
# a packed record: the ShadowRecord's fields in this order, metrics and verdict as tuples of their fields
_STEP, _ID, _NAME, _PHASE, _CALL = range(5)


def pack(rec: ShadowRecord) -> tuple:
    """``rec`` as nested tuples of numbers, strings and None."""
    m, v = rec.metrics, rec.verdict
    return (
        rec.step,
        rec.id,
        rec.name,
        rec.phase,
        rec.call,
        rec.module,
        rec.site,
        tuple(getattr(m, n) for n in _METRICS),
        tuple(getattr(v, n) for n in _VERDICT),
        tuple(tuple(s) for s in rec.input_shapes),
        rec.output,
        rec.rank,
        None if rec.rows is None else tuple(rec.rows),
        None if rec.cols is None else tuple(rec.cols),
    )


def unpack(p: tuple) -> ShadowRecord:
    step, rid, name, phase, call, module, site, m, v, shapes, output, rank, rows, cols = p
    return ShadowRecord(
        id=rid,
        name=name,
        phase=phase,
        call=call,
        module=module,
        site=site,
        metrics=M.PairMetrics(*m),
        verdict=Verdict(*v),
        input_shapes=[list(s) for s in shapes],
        output=output,
        step=step,
        rank=rank,
        rows=None if rows is None else list(rows),
        cols=None if cols is None else list(cols),
    )


class KeptRecords:
    """Records in execution order (step, then position in the step), packed. Not locked: the shadow adds and
    relabels under its own lock."""

    def __init__(self) -> None:
        self._packed: List[tuple] = []
        self._read: List[ShadowRecord] = []  # the first len(_read) records, unpacked

    def __len__(self) -> int:
        return len(self._packed)

    def add(self, rec: ShadowRecord) -> None:
        """Add ``rec`` in execution order (two threads check ops: one may finish a later op first)."""
        packed, key = self._packed, (rec.step, rec.id)
        i = len(packed)
        while i and (packed[i - 1][_STEP], packed[i - 1][_ID]) > key:
            i -= 1
        packed.insert(i, pack(rec))
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
