"""Integer and bool statistics are exact, and the same on the accelerator path (rows on the device, one transfer
per flush) as on the CPU path: a dump made on a GPU or NPU is compared with one made on the CPU, and compare
checks integer tensors (token ids, positions, masks) exactly.

Found on the first GPU run of the held-out suite (H100, target on CUDA, reference on the CPU): the device path
computed integer statistics in float32 (norm rounded, sums past 2**24 rounded), and every clean run listed
``aten::arange`` as a divergence and the attention mask as "different data"."""

import math

import pytest
import torch
from tiny_llama import build

from ascend_tools.precision import capture
from ascend_tools.precision import stats as stats_mod
from ascend_tools.precision.compare import compare_dumps
from ascend_tools.precision.dumps import open_dump
from ascend_tools.precision.stats import tensor_stats

PATHS = pytest.mark.parametrize("reads_free", [True, False], ids=["cpu-path", "device-path"])


def _exact(values):
    """max, min, mean, norm from Python integers (no rounding before the last step)."""
    ints = [int(v) for v in values]
    return max(ints), min(ints), sum(ints) / len(ints), math.sqrt(sum(v * v for v in ints))


CASES = {
    # 2 x 4096 token ids off a 150k vocabulary: their sum is past 2**24, where float32 rounds
    "token-ids": torch.randint(0, 151_936, (2, 4096), generator=torch.Generator().manual_seed(0)),
    "positions": torch.arange(4096).expand(2, 4096),
    "int32-negative": torch.tensor([-(2**30), 2**30 - 1, 5, -7], dtype=torch.int32),
    "uint8": torch.arange(256, dtype=torch.uint8),
    "bool-mask": torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(1)) < 0.5,
    "scalar": torch.tensor(123_456_789),
}


@PATHS
@pytest.mark.parametrize("name", sorted(CASES))
def test_integer_statistics_are_exact(name, reads_free, monkeypatch):
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: reads_free)
    t = CASES[name]
    got = tensor_stats(t)
    mx, mn, mean, norm = _exact(t.reshape(-1).tolist())
    assert (got.max, got.min, got.nan, got.inf, got.sat) == (mx, mn, 0, 0, 0)
    assert got.mean == mean  # the float64 of the exact sum over numel
    assert got.norm == norm  # sqrt of the exact sum of squares (below 2**53 here)


@pytest.mark.parametrize("name", sorted(CASES))
def test_both_paths_agree_to_the_bit(name, monkeypatch):
    t = CASES[name]
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: True)
    cpu = tensor_stats(t)
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: False)
    assert tensor_stats(t) == cpu


@PATHS
def test_a_sum_of_squares_that_may_wrap_has_no_norm(reads_free, monkeypatch):
    """int64 squares past 2**63 wrap: the norm is left out (None), not reported wrong; the rest stays exact."""
    monkeypatch.setattr(stats_mod, "reads_free", lambda t: reads_free)
    t = torch.tensor([2**40, -(2**40), 3], dtype=torch.int64)
    got = tensor_stats(t)
    assert got.norm is None
    assert (got.max, got.min, got.mean) == (2**40, -(2**40), 1.0)


def test_a_device_dump_against_a_cpu_dump_of_one_run_lists_nothing(tmp_path, monkeypatch):
    """One training step captured twice in statistics mode, once through each path (what a GPU dump against a
    CPU dump of a clean run is, less the device's rounding): nothing is listed, no integer record differs."""
    ids = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(2))

    def dump(path, reads_free):
        monkeypatch.setattr(stats_mod, "reads_free", lambda t: reads_free)
        model = build()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        with capture(str(path), level="op", mode="stats"):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()

    dump(tmp_path / "cpu", True)
    dump(tmp_path / "dev", False)
    assert compare_dumps(str(tmp_path / "dev"), str(tmp_path / "cpu")).data["culprits"] == []
    dev, cpu = (list(open_dump(str(tmp_path / d)).records(0)) for d in ("dev", "cpu"))
    assert [r.name for r in dev] == [r.name for r in cpu]
    ints = [
        (a.name, x.stats, y.stats)
        for a, b in zip(dev, cpu)
        for x, y in zip(a.inputs + a.outputs, b.inputs + b.outputs)
        if not x.dtype.startswith(("float", "bfloat")) and x.stats is not None
    ]
    assert len(ints) > 10
    assert [i for i in ints if i[1] != i[2]] == []
