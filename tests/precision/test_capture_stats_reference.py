"""Every statistic a stats-mode capture writes (reused or not: in-place outputs, views autograd makes anew,
parameters and optimizer state carried across steps) equals NumPy's statistics of the same tensor, as a
tensor-mode capture of the same deterministic run saved it (tensor mode reuses nothing across steps and
saves every tensor of every record)."""

import os

import numpy as np
import pytest
import torch

from ascend_tools.precision import capture
from ascend_tools.precision.store import OurDump

pytest.importorskip("transformers")
from test_capture_reuse import tiny_llama

STEPS = 2


def _train(out, mode):
    model, ids = tiny_llama()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
    with capture(str(out), mode=mode, model=model, stack=False):
        for _ in range(STEPS):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)


def test_stats_mode_matches_numpy_on_every_tensor_of_a_tiny_llama(tmp_path):
    torch.set_num_threads(1)
    _train(tmp_path / "stats", "stats")
    _train(tmp_path / "tensor", "tensor")
    stats, tensors = OurDump.find(str(tmp_path / "stats")), OurDump.find(str(tmp_path / "tensor"))
    checked = 0
    for step in range(STEPS):
        got, ref = list(stats.records(step)), list(tensors.records(step))
        assert [(r.name, r.call) for r in got] == [(r.name, r.call) for r in ref]
        step_dir = os.path.join(str(tmp_path / "tensor"), "rank0", f"step{step}")
        for g, r in zip(got, ref):
            for gt, rt in zip(g.inputs + g.outputs, r.inputs + r.outputs):
                if gt.stats is None or rt.file is None:
                    continue
                a = np.load(os.path.join(step_dir, rt.file)).astype(np.float64)
                want = {"max": a.max(), "min": a.min(), "mean": a.mean(), "norm": np.sqrt((a * a).sum())}
                for k, v in want.items():
                    assert getattr(gt.stats, k) == pytest.approx(v, rel=1e-5, abs=1e-6), (
                        step,
                        g.name,
                        g.call,
                        k,
                    )
                checked += 1
    assert checked > 1000
