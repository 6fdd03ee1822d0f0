"""The records a shadow keeps (``sh.results``) are packed so that the cyclic garbage collector stops tracking them,
and read back as the same records, relabels included."""

import gc

import torch

from ascend_tools.precision import shadow
from ascend_tools.precision.faults import Fault, FaultInjector
from ascend_tools.precision.shadow_kept import KeptRecords, pack


def _shadowed_records() -> list:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.GELU(), torch.nn.Linear(16, 2))
    opt = torch.optim.AdamW(model.parameters())
    # a fault, so that some records carry the full comparison's metrics (cosine, rmse, ...) besides screened ones
    with FaultInjector(Fault("aten::addmm", call=1)), shadow(model=model) as sh:
        model(torch.randn(4, 8)).sum().backward()
        opt.step()
    records = sh.results
    assert any(r.metrics.cosine is not None for r in records) and any(r.rows is None for r in records)
    return records


def test_kept_records_read_back_as_added_and_cost_the_collector_nothing():
    records = _shadowed_records()
    kept = KeptRecords()
    for rec in reversed(records):  # out of order: a later op's check may finish first
        kept.add(pack(rec))
    gc.collect()  # one collection untracks them all
    assert not any(gc.is_tracked(p) for p in kept._packed)
    assert kept.records() == records  # every field, metrics and verdict included, in execution order


def test_a_relabel_shows_in_records_read_before_and_after():
    records = _shadowed_records()
    kept = KeptRecords()
    for rec in records:
        kept.add(pack(rec))
    early = kept.records()
    last = records[-1]
    ids = {r.id: 40 + i for i, r in enumerate(records[-2:]) if r.step == last.step}
    kept.relabel(last.step, ids, "optimizer")
    late = kept.records()
    for got in (early, late):
        relabelled = [(r.id, r.phase, r.call) for r in got if r.id in ids and r.step == last.step]
        assert relabelled == [(rid, "optimizer", call) for rid, call in ids.items()]
        assert [(r.phase, r.call) for r in got[:-2]] == [(r.phase, r.call) for r in records[:-2]]
