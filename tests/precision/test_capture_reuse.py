"""Statistics computed once per tensor value: an in-place op's output is not computed again where the
next op reads it, and parameters and optimizer state unchanged since the last step keep their statistics
across the step boundary. The reused statistics are those of the tensor's value at the time of the read
(checked against NumPy on snapshots of a tiny Llama's parameters)."""

import collections
import sys

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import _disable_current_modes

from ascend_tools.precision import capture, capture_session
from ascend_tools.precision.store import OurDump

transformers = pytest.importorskip("transformers")

STEPS = 3


def tiny_llama():
    """A 2-layer Llama in train mode and a (2, 8) batch of ids, the same every call."""
    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
        tie_word_embeddings=False,
    )
    model = transformers.LlamaForCausalLM(cfg)
    model.train()
    return model, torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))


def _np_stats(a):
    a = a.astype(np.float64)
    return {"max": a.max(), "min": a.min(), "mean": a.mean(), "norm": np.sqrt((a * a).sum())}


def test_each_value_is_reduced_once_and_reused_values_are_current(tmp_path, monkeypatch):
    model, ids = tiny_llama()
    # AdamW's per-parameter algorithm (foreach=False): param.mul_(1 - lr * wd) and param.addcdiv_(...)
    # write the parameter, exp_avg.lerp_(...) the first moment, exp_avg_sq.mul_(...).addcmul_(...) the second
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=False)
    writes = {"param": 2, "exp_avg": 1, "exp_avg_sq": 2}
    reduced = collections.Counter()  # storage address -> statistics computed, in the step being counted
    real = capture_session.cpu_body  # where a stats-mode capture computes a CPU tensor's statistics

    def counting(x):
        reduced[x.untyped_storage().data_ptr()] += 1
        return real(x)

    monkeypatch.setattr(capture_session, "cpu_body", counting)
    snapshots = []  # per step: parameter name -> its values when the step starts
    names = {p: n for n, p in model.named_parameters()}
    counted = {}
    with capture(str(tmp_path), model=model, stack=False):
        for step in range(STEPS):
            with _disable_current_modes():
                snapshots.append({n: p.detach().numpy().copy() for p, n in names.items()})
            reduced.clear()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            with _disable_current_modes():
                counted[step] = {
                    "param": [reduced[p.untyped_storage().data_ptr()] for p in names],
                    "exp_avg": [reduced[opt.state[p]["exp_avg"].untyped_storage().data_ptr()] for p in names],
                    "exp_avg_sq": [
                        reduced[opt.state[p]["exp_avg_sq"].untyped_storage().data_ptr()] for p in names
                    ],
                }
    # step 0 reads each parameter and the fresh state for the first time; a weight matrix is also read in
    # backward through views autograd makes anew (its saved transpose): they hold the same elements
    for step in range(1, STEPS):
        for kind, n in writes.items():
            assert counted[step][kind] == [n] * len(names), (step, kind)

    dump = OurDump.find(str(tmp_path))
    checked = 0
    for step in range(1, STEPS):
        first = {}
        for rec in dump.records(step):
            for t in rec.inputs:
                if t.name in snapshots[step] and t.name not in first:
                    first[t.name] = t
        assert set(first) == set(snapshots[step])
        for name, t in first.items():
            ref = _np_stats(snapshots[step][name])
            for k in ("max", "min", "mean", "norm"):
                assert getattr(t.stats, k) == pytest.approx(ref[k], rel=1e-5, abs=1e-7), (step, name, k)
            checked += 1
    assert checked == (STEPS - 1) * len(names)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
