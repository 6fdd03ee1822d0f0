"""The records every precision tool reads and writes: one per op call or module call.

A dump (ours or msprobe's, see ``store.py``) is a sequence of :class:`Record` in execution order,
per rank and step. Each record describes its tensor inputs and outputs by :class:`TensorInfo`: dtype,
shape, statistics, and (in tensor mode) where the full tensor is saved, or (in hash mode) a digest.
Non-tensor arguments are kept in ``args`` so an op can be replayed (see ``diagnose.py``).

Serialisation is plain JSON (``to_json``/``from_json``): dumps never need pickle.
"""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional

# what a record's ``phase`` can be: ``init`` for the ops before the first module forward of a capture (model
# construction and weight init: inputs of uninitialised memory), ``optimizer`` for those of ``optimizer.step()``
PHASES = ("init", "forward", "backward", "optimizer")


@dataclass
class TensorStats:
    """Summary of one tensor. ``norm`` is the L2 norm; ``nan``/``inf`` count NaN and ±Inf elements;
    ``sat`` counts finite elements at the dtype's ±max (an fp16 Ascend part saturates instead of
    overflowing to Inf). Floats are None for empty tensors."""

    max: Optional[float] = None
    min: Optional[float] = None
    mean: Optional[float] = None
    norm: Optional[float] = None
    nan: int = 0
    inf: int = 0
    sat: int = 0


@dataclass
class TensorInfo:
    dtype: str  # "float32", "bfloat16", "int64", "bool" (torch names without "torch.")
    shape: List[int]
    stats: Optional[TensorStats] = None
    file: Optional[str] = None  # tensor mode: path relative to the step directory
    digest: Optional[str] = None  # hash mode: hex digest of the tensor's bytes
    name: Optional[str] = None  # the parameter it is ("model.norm.weight"), or whose gradient (".grad")
    # True: values not read when recorded, a subset view's input (dump-format.md); None otherwise
    unread: Optional[bool] = None


@dataclass
class Record:
    """One call of an op (``kind="op"``, name like ``aten::mm``) or a module (``kind="module"``, name
    like ``model.layers.0.mlp``), with its call index among calls of the same name in its step."""

    id: int  # position in the step's execution order
    name: str
    kind: str  # "op" | "module"
    phase: str  # one of PHASES
    call: int  # n-th call of this name (and phase) in the step, from 0
    module: str = ""  # innermost module path the op ran in ("" = root / unknown)
    inputs: List[TensorInfo] = field(default_factory=list)
    outputs: List[TensorInfo] = field(default_factory=list)
    args: Any = None  # JSON form of the call's (args, kwargs), tensors as {"tensor": i} into inputs
    stack: Optional[int] = None  # id into the dump's deduplicated stacks
    step: int = 0
    rank: int = 0

    @property
    def key(self) -> str:
        """Stable identity across two runs: ``aten::mm#forward#3``."""
        return f"{self.name}#{self.phase}#{self.call}"

    def to_json(self) -> Dict[str, Any]:
        return _drop_none(asdict(self))

    @classmethod
    def from_json(cls, raw: Any) -> "Record":
        """The record of a dump's JSON line; ValueError naming the first field whose type is not the one
        docs/dump-format.md gives it (a mistyped record is a bad line, not an error deep inside compare). Fields
        this version does not know are dropped; a missing optional one gets its default. (Checked as it is built,
        in plain loops: a compare reads every record of both dumps, ~100k for an RNN's step.)"""
        if type(raw) is not dict:
            raise ValueError("not a JSON object")
        get = raw.get
        for key, kind in _RECORD_TYPES.items():
            if type(get(key)) is not kind:
                raise ValueError(f"{key}: {get(key)!r}")
        for key, kind in _OPTIONAL_TYPES.items():
            value = get(key)
            if value is not None and type(value) is not kind:
                raise ValueError(f"{key}: {value!r}")
        inputs, outputs = get("inputs", []), get("outputs", [])
        if type(inputs) is not list or type(outputs) is not list:
            raise ValueError("inputs or outputs: not a list")
        return cls(
            raw["id"],
            raw["name"],
            raw["kind"],
            raw["phase"],
            raw["call"],
            get("module", ""),
            [tensor_info_from_json(t) for t in inputs],
            [tensor_info_from_json(t) for t in outputs],
            get("args"),
            get("stack"),
            get("step", 0),
            get("rank", 0),
        )


# exact types: what json.loads makes (bool is not int here: a ``true`` where a count goes is a bad line)
_RECORD_TYPES = {"id": int, "name": str, "kind": str, "phase": str, "call": int}
_OPTIONAL_TYPES = {"module": str, "stack": int, "step": int, "rank": int, "args": dict}
_NUMBERS = (int, float)


def tensor_info_from_json(raw: Any) -> TensorInfo:
    """A tensor of a record's JSON line; ValueError where a field has another type than dump-format.md's."""
    if type(raw) is not dict:
        raise ValueError("tensor: not a JSON object")
    get = raw.get
    dtype, shape, file, digest = get("dtype"), get("shape", []), get("file"), get("digest")
    if type(dtype) is not str or type(shape) is not list:
        raise ValueError("tensor: dtype or shape")
    for n in shape:
        if type(n) is not int or n < 0:
            raise ValueError("tensor: shape")
    if (file is not None and type(file) is not str) or (digest is not None and type(digest) is not str):
        raise ValueError("tensor: file or digest")
    stats = get("stats")
    if stats is not None:
        if type(stats) is not dict:
            raise ValueError("tensor: stats")
        get_stat = stats.get
        values = (get_stat("max"), get_stat("min"), get_stat("mean"), get_stat("norm"))
        counts = (get_stat("nan", 0), get_stat("inf", 0), get_stat("sat", 0))
        for v in values:
            if v is not None and type(v) not in _NUMBERS:
                raise ValueError("tensor: stats")
        for v in counts:
            if type(v) is not int:
                raise ValueError("tensor: stats")
        stats = TensorStats(*values, *counts) if stats else None
    name = get("name")
    return TensorInfo(
        dtype,
        list(shape),
        stats,
        file,
        digest,
        name if isinstance(name, str) else None,
        True if get("unread") is True else None,
    )


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value
