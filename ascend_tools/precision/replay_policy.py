"""What a replay may run. A dump is hostile input: a record's op name and arguments come from whoever wrote
the file, and a replay *calls* them. Only this module decides what is called.

* :func:`resolve`: ``ns::op[.overload]`` becomes an op only when ``ns`` is in :data:`NAMESPACES`, ``op`` and
  ``overload`` are plain identifiers (no dunder, no attribute chains), the overload is one the op packet
  lists, and the result is a ``torch._ops.OpOverload``. Refused too: an op whose schema has no tensor
  argument (factories: ``from_file``, ``empty``, ...), takes a ``Storage``, or whose name is on
  :data:`_DENIED` (files, storage, pinned memory, unchecked sparse/nested constructors).
* :func:`check_args`: a string argument is accepted only under a schema argument name that takes one of a
  few known values (:data:`STRINGS`); any other string, anywhere in the call, is refused.

A refusal raises :class:`Refused`; the caller reports it and does not replay.
"""

import re
from typing import Any, Dict, Iterable, Sequence, Union

import torch

#: op namespaces a replay may call (``npu``: torch_npu's ops, where installed)
NAMESPACES = ("aten", "prims", "npu")

_IDENTIFIER = re.compile(r"^_?[A-Za-z][A-Za-z0-9_]*$")
_DENIED = re.compile(r"file|storage|load|save|pin_memory|sparse|nested|unsafe_(?!view$)|^set_$")
_EINSUM = re.compile(r"^[A-Za-z.,\->\s]{1,256}$")
_FFT_NORM = {"backward", "ortho", "forward"}

#: schema argument name -> the string values (or a pattern for them) a replay may pass
STRINGS: Dict[str, Union[Iterable[str], "re.Pattern[str]"]] = {
    "reduce": {"sum", "mean", "amax", "amin", "prod", "add", "multiply"},
    "rounding_mode": {"trunc", "floor"},
    "approximate": {"none", "tanh"},
    "padding": {"same", "valid"},
    "side": {"left", "right"},
    "padding_side": {"left", "right"},
    "interpolation": {"linear", "lower", "higher", "midpoint", "nearest"},
    "mode": {"constant", "reflect", "replicate", "circular", "reduced", "complete", "r"},
    "pad_mode": {"constant", "reflect", "replicate", "circular"},
    "norm": _FFT_NORM,
    "indexing": {"ij", "xy"},
    "UPLO": {"L", "U"},
    "ord": {"fro", "nuc"},
    "equation": _EINSUM,
}


class Refused(ValueError):
    """The dump asks for a call this policy does not make."""


def resolve(name: str) -> "torch._ops.OpOverload":
    """The op overload ``ns::op[.overload]`` names (``.default`` when no overload), or :class:`Refused`."""
    ns, sep, rest = name.partition("::")
    op_name, _, overload = rest.partition(".")
    overload = overload or "default"
    if not sep or ns not in NAMESPACES:
        raise Refused(f"{name!r}: namespace {ns!r} is not one of {', '.join(NAMESPACES)}")
    if not (_IDENTIFIER.match(op_name) and _IDENTIFIER.match(overload)):
        raise Refused(f"{name!r}: not a plain ns::op.overload name")
    try:
        packet = getattr(getattr(torch.ops, ns), op_name)
    except (AttributeError, RuntimeError):
        raise Refused(f"{name!r}: no such op") from None
    if not isinstance(packet, torch._ops.OpOverloadPacket) or overload not in packet.overloads():
        raise Refused(f"{name!r}: no such op overload")
    op = getattr(packet, overload)
    if not isinstance(op, torch._ops.OpOverload) or op.namespace != ns:
        raise Refused(f"{name!r}: not an op overload")
    types = [str(a.type) for a in op._schema.arguments]
    if _DENIED.search(op_name):
        raise Refused(f"{name!r}: ops on files, storage, pinned or unchecked memory are never replayed")
    if any("Storage" in t for t in types):
        raise Refused(f"{name!r}: takes a Storage")
    if not any("Tensor" in t for t in types):
        raise Refused(f"{name!r}: takes no tensor argument")
    return op


def check_args(op: "torch._ops.OpOverload", args: Sequence[Any], kwargs: Dict[str, Any]) -> None:
    """:class:`Refused` when a string in the decoded call is not one :data:`STRINGS` allows for its
    argument (matched to the schema by position or keyword)."""
    names = [a.name for a in op._schema.arguments]
    named = list(zip(names, args)) + list(kwargs.items())
    if len(args) > len(names):
        raise Refused(f"{op}: {len(args)} positional arguments, the schema has {len(names)}")
    for arg, value in named:
        if isinstance(value, str):
            allowed = STRINGS.get(arg)
            ok = allowed.match(value) if isinstance(allowed, re.Pattern) else value in (allowed or ())
            if not ok:
                raise Refused(f"{op}: string {value[:40]!r} for argument {arg!r} is not an allowed value")
        elif _has_string(value):
            raise Refused(f"{op}: argument {arg!r} holds a string")


def _has_string(value: Any) -> bool:
    if isinstance(value, str):
        return True
    if isinstance(value, (list, tuple)):
        return any(_has_string(v) for v in value)
    if isinstance(value, dict):
        return any(_has_string(k) or _has_string(v) for k, v in value.items())
    return False
