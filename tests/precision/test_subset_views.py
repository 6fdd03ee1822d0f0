"""A slice of a large buffer is read, not the buffer: DeepSpeed ZeRO 1/2 copies each gradient into a narrow of one
500M-element bucket (``reduce_independent_p_g_buckets_and_remove_grads``), and the capture read the whole bucket's
statistics again at every narrow after the first copy (seconds per op; its uninitialised part NaN-laden, through
torch's slow path), and in tensor mode wrote it to a file each time."""

import json

import pytest
import torch

from ascend_tools.precision import capture, capture_session
from ascend_tools.precision.store import OurDump

BUCKET = 1 << 20


def bucket_step(grads):
    """DeepSpeed's pattern: a bucket made once, each gradient copied into the next narrow of it, then the filled
    part read (ZeRO all-reduces it)."""
    bucket = torch.empty(BUCKET, dtype=torch.float16)
    offset = 0
    for g in grads:
        bucket.narrow(0, offset, g.numel()).copy_(g.view(-1))
        offset += g.numel()
    return bucket.narrow(0, 0, offset).float().sum()


def records(path):
    return list(OurDump.find(str(path)).records(0))


@pytest.mark.parametrize("mode", ["stats", "tensor"])
def test_a_narrow_of_a_large_buffer_reads_the_part_not_the_buffer(tmp_path, monkeypatch, mode):
    grads = [torch.randn(64, 32, dtype=torch.float16), torch.randn(128, dtype=torch.float16)]
    read = []  # element counts of the tensors whose values the capture read
    body = capture_session.cpu_body
    monkeypatch.setattr(capture_session, "cpu_body", lambda t: read.append(t.numel()) or body(t))
    saved = []
    with capture(str(tmp_path / "dump"), mode=mode) as cap:
        save = cap._out.rank_files().save_tensor if mode == "tensor" else None
        if save is not None:
            monkeypatch.setattr(
                cap._out.rank_files(),
                "save_tensor",
                lambda step, key, t: saved.append(t.numel()) or save(step, key, t),
            )
        total = bucket_step(grads)
    assert BUCKET not in read and BUCKET not in saved
    recs = records(tmp_path / "dump")
    narrows = [r for r in recs if r.name == "aten::narrow" or r.name == "aten::slice.Tensor"]
    assert len(narrows) == 3
    # the last narrow's part is read where it is used: its sum's input holds the gradients' statistics
    filled = torch.cat([g.view(-1) for g in grads]).float()
    cast = next(r for r in recs if r.name == "aten::_to_copy")
    if mode == "stats":
        stats = cast.inputs[0].stats
        assert stats.max == filled.max().item() and stats.min == filled.min().item()
        assert stats.mean == pytest.approx(filled.mean().item(), rel=1e-6)
    else:
        values = OurDump.find(str(tmp_path / "dump")).load_tensor(cast.inputs[0], 0)
        torch.testing.assert_close(torch.as_tensor(values).float(), filled)
    torch.testing.assert_close(total, filled.sum())


def test_the_unread_input_says_so_in_the_record(tmp_path):
    buffer = torch.randn(4096)  # made before the capture: no statistics of it known
    with capture(str(tmp_path / "dump")):
        part = buffer.narrow(0, 8, 16)
        (part * 2).sum()
    with open(tmp_path / "dump" / "rank0" / "step0" / "records.jsonl") as f:
        lines = [json.loads(line) for line in f]
    narrow = next(r for r in lines if r["name"] in ("aten::narrow", "aten::slice.Tensor"))
    assert narrow["inputs"][0] == {"dtype": "float32", "shape": [4096], "unread": True}
    mul = next(r for r in lines if r["name"] == "aten::mul.Tensor")
    assert mul["inputs"][0]["stats"]["max"] == buffer[8:24].max().item()


def test_a_narrow_of_a_parameter_still_reads_and_names_it(tmp_path):
    """A flat parameter (FSDP's) narrowed: the parameter's record keeps its statistics and its name."""
    model = torch.nn.Linear(4, 4)
    with capture(str(tmp_path / "dump"), model=model):
        model.weight.narrow(0, 0, 2).sum()
    narrow = next(r for r in records(tmp_path / "dump") if r.name in ("aten::narrow", "aten::slice.Tensor"))
    assert narrow.inputs[0].name == "weight"
    assert narrow.inputs[0].stats.max == model.weight.max().item()
