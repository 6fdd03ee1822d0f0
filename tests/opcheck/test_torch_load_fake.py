"""``torch.load(map_location=<the accelerator>)`` in the check-ops child (opcheck/torch_load_fake.py)."""

import io

import torch

from ascend_tools.opcheck import fake_accelerator, torch_load_fake


def _saved(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_load_onto_the_accelerator_gives_meta_tensors_and_host_loads_are_untouched(monkeypatch):
    """nanochat loads its token-bytes table with ``map_location=device`` ("cuda"): torch restores storages
    through torch.cuda's device guard, which a CPU-only torch refuses."""
    monkeypatch.setattr(torch, "load", torch.load)  # restored after the test
    torch_load_fake.install()
    data = _saved({"bytes": torch.arange(5, dtype=torch.int32), "step": 3})
    with fake_accelerator.fake_node(8):
        for where in ("cuda", "cuda:1", torch.device("cuda", 0), 0):
            out = torch.load(io.BytesIO(data), map_location=where)
            assert out["step"] == 3
            assert out["bytes"].is_meta and out["bytes"].shape == (5,) and out["bytes"].dtype == torch.int32
        host = torch.load(io.BytesIO(data), map_location="cpu")
    assert host["bytes"].tolist() == [0, 1, 2, 3, 4]
