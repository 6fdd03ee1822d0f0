"""The compare's tensor cache: each file read once, least recently used dropped past the budget, and a
replayed in-place op never writes into the tensors the cache hands out."""

import torch

from ascend_tools.precision.replay import replay
from ascend_tools.precision.tensor_cache import TensorCache


def _loader(calls, key, n):
    def load():
        calls.append(key)
        return torch.zeros(n, dtype=torch.float32)  # 4 * n bytes

    return load


def test_each_key_is_loaded_once_while_it_fits():
    cache, calls = TensorCache(budget=1000), []
    first = cache.get("a", _loader(calls, "a", 10))
    again = cache.get("a", _loader(calls, "a", 10))
    assert again is first and calls == ["a"]
    assert (cache.hits, cache.misses, cache.bytes) == (1, 1, 40)


def test_least_recently_used_is_dropped_past_the_budget():
    cache, calls = TensorCache(budget=100), []
    for key in ("a", "b"):
        cache.get(key, _loader(calls, key, 10))  # 40 bytes each
    cache.get("a", _loader(calls, "a", 10))  # a is now the most recent
    cache.get("c", _loader(calls, "c", 10))  # 120 bytes > 100: b goes
    assert cache.bytes == 80
    cache.get("a", _loader(calls, "a", 10))
    cache.get("b", _loader(calls, "b", 10))
    assert calls == ["a", "b", "c", "b"]


def test_a_tensor_over_the_budget_is_returned_but_not_kept():
    cache, calls = TensorCache(budget=10), []
    assert cache.get("big", _loader(calls, "big", 100)).numel() == 100
    cache.get("big", _loader(calls, "big", 100))
    assert calls == ["big", "big"] and cache.bytes == 0


def test_replaying_an_in_place_op_leaves_its_inputs_alone():
    # the cached tensors are shared: add_ replayed in float64 and again in its own dtype (the baseline, run
    # because the produced output is far off) must write into copies
    x = torch.arange(6, dtype=torch.float32)
    y = torch.ones(6, dtype=torch.float32)
    before = (x.clone(), y.clone())
    produced = [torch.full((6,), 100.0)]
    found = replay(
        torch.ops.aten.add_.Tensor,
        "aten::add_.Tensor",
        lambda tensors: ((tensors[0], tensors[1]), {}),
        [x, y],
        produced,
        None,
    )
    assert found is not None and found.verdict.level == "error" and found.baseline is not None
    assert torch.equal(x, before[0]) and torch.equal(y, before[1])
