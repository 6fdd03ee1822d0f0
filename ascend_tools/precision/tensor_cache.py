"""The tensors a compare has read lately, so that each file is read once.

An op's inputs are mostly earlier ops' outputs: compare reads an output to measure it against the reference,
then the same file again as an input of a later op's float64 replay and of its amplification. In the bench's
dump (``bench/bench_precision.py``) 891 of the 990 input files are outputs of earlier records. The cache holds
the most recently used tensors up to a byte budget; it is shared by the pool's threads, and what it hands out
is shared too, so no caller may write to a tensor it got (none does: metrics, replay and screen copy first).
"""

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

#: bytes of tensors kept; a pair's tensors are a few MB in an LLM step, an op's inputs usually a few ops back
DEFAULT_BUDGET = 256 * 2**20


class TensorCache:
    """Least-recently-used tensors up to ``budget`` bytes (a tensor larger than the budget is not kept)."""

    def __init__(self, budget: int = DEFAULT_BUDGET) -> None:
        self.budget = budget
        self.bytes = 0
        self.hits = self.misses = 0
        self._items: "OrderedDict[Hashable, Any]" = OrderedDict()  # noqa: UP037 (3.9: typing.OrderedDict)
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], Any]) -> Any:
        """The tensor under ``key``, from ``load()`` the first time (outside the lock: two threads asking for
        the same new key may both load it; the second result is dropped)."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        tensor = load()
        size = _nbytes(tensor)
        if size > self.budget:
            return tensor
        with self._lock:
            if key not in self._items:
                self._items[key] = tensor
                self.bytes += size
                while self.bytes > self.budget:
                    _, dropped = self._items.popitem(last=False)
                    self.bytes -= _nbytes(dropped)
        return tensor


def _nbytes(tensor: Any) -> int:
    """Bytes of a numpy array or torch tensor (both have ``nbytes``); 0 for None."""
    return 0 if tensor is None else int(tensor.nbytes)
