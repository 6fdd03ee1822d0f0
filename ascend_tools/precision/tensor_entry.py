"""One tensor of a capture record, as the capture keeps it while the record waits for its flush."""

import json
from typing import Any, Optional, Sequence

import torch

from .lines import LineEncoder, stats_json


class TensorEntry:
    """One tensor of a record: dtype, shape and its statistics, file or digest. ``body`` is the part of
    its JSON fragment after dtype and shape (``,"stats":{...}}``), set as soon as the statistics are
    known (at once on the CPU; after the flush's transfer on an accelerator, when ``entry`` is still
    pending). ``ref``/``version``/``ptr`` identify the tensor when it comes back as a later op's input: the
    storage too, since ``model.to(dtype)`` and FSDP swap a parameter's data without a new version.
    ``storage``/``writes``: its storage's address and how many writes the capture had seen to that storage
    then: a write through a ``.data`` alias (HF's ``resize_token_embeddings``, ``p.data.add_`` optimizers)
    changes the values without moving the tensor's own version counter.
    ``name``: the parameter it is (``model.norm.weight``) or whose gradient (``model.norm.weight.grad``).
    ``text``: the whole JSON fragment once encoded (with ``name`` as it was then, ``text_name``): an op's input
    is usually an earlier op's output, and its fragment is reused.

    Few objects live long here on purpose: everything kept until the step ends survives Python's
    young-generation collections, and enough survivors trigger a full collection of the whole heap (a
    model's heap: tens of ms), which was most of the capture's cost."""

    __slots__ = (
        "body",
        "dtype",
        "entry",
        "file",
        "has_stats",
        "name",
        "ptr",
        "ref",
        "shape",
        "storage",
        "text",
        "text_name",
        "version",
        "writes",
    )

    def __init__(
        self,
        dtype: str,
        shape: Sequence[int],
        entry: Any = None,
        body: Optional[str] = None,
        has_stats: Optional[bool] = None,
    ) -> None:
        self.dtype = dtype
        self.shape = shape
        self.entry = entry
        self.file: Optional[str] = None
        self.body = body
        self.has_stats = entry is not None if has_stats is None else has_stats
        self.ref: Any = None
        self.version = -1
        self.ptr = -1
        self.storage = -1
        self.writes = 0
        self.name: Optional[str] = None
        self.text: Optional[str] = None
        self.text_name: Optional[str] = None

    def settle(self, final: bool = False) -> bool:
        """Write ``body`` if the statistics (and digest) are known, then let the entry go; whether
        ``body`` is set. ``final``: they will not come any more (the flush has resolved them): write
        what there is."""
        if self.body is None:
            e = self.entry
            if e is not None and not final and (e.stats is None or e.digest_row is not None):
                return False
            parts = []
            if e is not None and e.stats is not None:
                parts.append(',"stats":' + stats_json(e.stats))
            if e is not None and e.digest:
                parts.append(f',"digest":"{e.digest}"')
            if self.file:
                parts.append(',"file":' + json.dumps(self.file))
            parts.append("}")
            self.body = "".join(parts)
            self.entry = None
        return True

    def encoded(self, enc: LineEncoder) -> str:
        text, name = self.text, self.name  # name read once: the writer thread may encode while it is set
        if text is not None and self.text_name == name:
            return text
        self.settle(final=True)
        body = self.body
        assert body is not None  # settle(final=True) always writes it
        if name is not None:
            text = enc.tensor_head(self.dtype, self.shape) + enc.tensor_name(name) + body
        else:
            text = enc.tensor_head(self.dtype, self.shape) + body
        self.text, self.text_name = text, name
        return text


def data_ptr(t: torch.Tensor) -> int:
    """Address of the tensor's data, -1 where it has none to give (some subclasses)."""
    try:
        return t.data_ptr()
    except Exception:
        return -1


def storage_ptr(t: torch.Tensor) -> int:
    """Address of the tensor's storage (shared by all its views and ``.data`` aliases), -1 where it has none."""
    try:
        return t.untyped_storage().data_ptr()
    except Exception:
        return -1


def bumped_after(
    tensors: Sequence[torch.Tensor], outputs: Sequence["TensorEntry"], written: Sequence[torch.Tensor]
) -> None:
    """An in-place op's version bump comes after the op returns through the mode (autograd's
    ADInplaceOrView kernel sits above the Python dispatch key): an output that is a written argument is
    remembered at the version it will have, so the next op that reads it reuses its statistics instead of
    computing them again."""
    for t, info in zip(tensors, outputs):
        if info.ref is not None and info.ref() is t and any(t is w for w in written):
            info.version += 1


def place(t: torch.Tensor) -> Optional[tuple]:
    """Which elements ``t`` holds: its data address, dtype and either its element count, where they are one
    dense block (contiguous, or a permutation of contiguous: a transpose), or else its (stride, size) pairs in
    any order (sizes of 1 left out). Two tensors with the same place hold the same set of elements, in whatever
    order: a transpose or a reshape of the other, or a view autograd made anew of a saved tensor. None where
    there is no address to read. (The contiguous case first: one C call instead of a sort, for most tensors.)"""
    ptr = data_ptr(t)
    if ptr < 0:
        return None
    if t.is_contiguous():
        return (ptr, t.dtype, t.numel())
    pairs = sorted([p for p in zip(t.stride(), t.shape) if p[1] != 1])
    span = 1  # the elements a dense block of the pairs seen so far spans
    for stride, size in pairs:
        if stride != span:
            return (ptr, t.dtype, tuple(pairs))
        span *= size
    return (ptr, t.dtype, span)
