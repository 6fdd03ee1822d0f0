"""Per-op facts a capture looks up on every call: its name, whether it is recorded, whether its output is a
view of an input (read from the schema, ``aliasing.py``) or holds copied or undefined values, which
arguments it writes, whether it is a collective (its tensors written after it returns), which arguments are
storages (kept as their size and device: ``store.StorageArg``)."""

from typing import Any, Optional

from ..dispatch import op_name, written_args
from ..op_names import UNDEFINED_VALUES, is_collective, is_wanted, op_base
from . import aliasing

# bookkeeping ops that compute nothing (record_function markers of the profiler and the optimizer)
SKIP_NAMESPACES = ("profiler::",)


class OpFacts:
    """What a capture needs to know about an op, worked out once per op overload. ``func``: the op itself,
    held so that a table of facts by ``id(func)`` never meets a reused id."""

    __slots__ = (
        "collective",
        "func",
        "mutated",
        "name",
        "same_values",
        "selected",
        "storages",
        "subset_view",
        "undefined",
        "view",
        "view_shares",
    )

    def __init__(self, func: Any, wanted: Optional[set]) -> None:
        self.func = func
        self.name = op_name(func)
        self.selected = is_wanted(self.name, wanted) and not self.name.startswith(SKIP_NAMESPACES)
        self.same_values = self.name in aliasing.COPIES
        self.view = aliasing.returns_view(func)  # from the schema (aliasing.py)
        self.view_shares = self.view and aliasing.may_share(self.name)
        self.subset_view = self.view and op_base(self.name) in aliasing.SUBSET_VIEWS
        self.undefined = op_base(self.name) in UNDEFINED_VALUES
        self.mutated = written_args(func)
        self.collective = is_collective(self.name)  # its tensors are written after it returns
        self.storages = tuple(i for i, a in enumerate(func._schema.arguments) if str(a.type) == "Storage")
