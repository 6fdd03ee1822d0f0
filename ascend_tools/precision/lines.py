"""JSON lines of capture records, built from cached fragments.

A step of a small model writes thousands of records, and ``json.dumps`` of one record dict per line
was a third of the capture's cost. The text here is what ``json.dumps(record, separators=(",", ":"))``
would give for the same record (same values; keys in another order, which JSON readers ignore), built
from pieces that repeat: the head of a record (name, kind, phase, module) once per distinct head,
a tensor's dtype and shape once per distinct pair, a tensor's whole fragment once per tensor (an op's
input is usually an earlier op's output: its fragment is reused), the arguments once per distinct
``repr``. Floats are written as ``json`` writes them (``repr``; ``NaN``, ``Infinity``, ``-Infinity``).
"""

import json
import math
from typing import Any, Dict, Optional, Sequence

from . import store

CACHE_LIMIT = 8192  # distinct argument lists kept; the cache starts over when full
_INF = float("inf")


def number(value: Any) -> str:
    """A statistic as ``json.dumps`` writes it: ``null``, an int, or a float's ``repr``."""
    if value is None:
        return "null"
    if value != value:
        return "NaN"
    if value == _INF:
        return "Infinity"
    if value == -_INF:
        return "-Infinity"
    return repr(value)


def stats_json(s: Any) -> str:
    """``{"max":..,"min":..,"mean":..,"norm":..,"nan":..,"inf":..,"sat":..}`` of a ``TensorStats``."""
    return row_json(s.max, s.min, s.mean, s.norm, s.nan, s.inf, s.sat)


def row_json(mx: Any, mn: Any, mean: Any, norm: Any, nan: int, inf: int, sat: int) -> str:
    """:func:`stats_json` of the statistics as values (``stats.cpu_row``: no ``TensorStats`` made)."""
    try:
        finite = math.isfinite(mx + mn + mean + norm)  # a finite sum: each is finite
    except TypeError:  # a None
        finite = False
    if finite:  # the common case: ``repr`` of a finite float is what ``json.dumps`` writes
        return f'{{"max":{mx!r},"min":{mn!r},"mean":{mean!r},"norm":{norm!r},"nan":{nan:d},"inf":{inf:d},"sat":{sat:d}}}'
    return (
        f'{{"max":{number(mx)},"min":{number(mn)},"mean":{number(mean)},"norm":{number(norm)},'
        f'"nan":{int(nan)},"inf":{int(inf)},"sat":{int(sat)}}}'
    )


class LineEncoder:
    """One record per line; the caches live as long as the capture (see the module docstring)."""

    def __init__(self, rank: int) -> None:
        self.rank = rank
        self._heads: Dict[tuple, str] = {}
        self._shapes: Dict[tuple, str] = {}
        self._args: Dict[str, str] = {}
        self._names: Dict[str, str] = {}

    def tensor_head(self, dtype: str, shape: Sequence[int]) -> str:
        """``{"dtype":"float32","shape":[2,3]`` (no closing brace: stats, file or digest may follow)."""
        key = (dtype, tuple(shape))
        head = self._shapes.get(key)
        if head is None:
            head = self._shapes[key] = f'{{"dtype":{json.dumps(dtype)},"shape":[{",".join(map(str, key[1]))}]'
        return head

    def tensor_name(self, name: str) -> str:
        """``,"name":"model.norm.weight"`` (a parameter, or its gradient)."""
        text = self._names.get(name)
        if text is None:
            text = self._names[name] = ',"name":' + json.dumps(name)
        return text

    def args(self, call_args: Any) -> str:
        """``,"args":{...}`` for the stripped ``(args, kwargs)`` of a call (see ``store.encode_call``)."""
        key = repr(call_args)
        text = self._args.get(key)
        if text is None:
            if len(self._args) >= CACHE_LIMIT:
                self._args.clear()
            text = self._args[key] = ',"args":' + store._dumps(
                store.encode_call(call_args[0], call_args[1], [])
            )
        return text

    def line(
        self,
        rid: int,
        name: str,
        kind: str,
        phase: str,
        call: int,
        module: str,
        inputs: str,
        outputs: str,
        args: str,
        stack: Optional[int],
        step: int,
    ) -> str:
        """One record's line; ``inputs``/``outputs`` are the joined tensor fragments, ``args`` the text
        from :meth:`args` or ``""``."""
        hkey = (name, kind, phase, module)
        head = self._heads.get(hkey)
        if head is None:
            head = self._heads[hkey] = (
                f'{{"name":{json.dumps(name)},"kind":{json.dumps(kind)},'
                f'"phase":{json.dumps(phase)},"module":{json.dumps(module)}'
            )
        tail = f',"stack":{stack}' if stack is not None else ""
        return (
            f'{head},"id":{rid},"call":{call},"inputs":[{inputs}],"outputs":[{outputs}]{args}{tail},'
            f'"step":{step},"rank":{self.rank}}}\n'
        )
