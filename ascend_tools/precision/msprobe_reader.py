"""Read a Huawei msprobe (PyPI ``mindstudio-probe``) PyTorch dump as either side of a compare.

Layout written by msprobe 26.x (``PrecisionDebugger``; earlier 1.x/8.x releases use the same files)::

    <dump_path>/step<N>/<rank dir>/dump.json          one entry per API or module call (below)
                                   stack.json         {"<id>": [[entry names], [frames]]}, innermost frame
                                                      first; older releases: {"<entry name>": [frames]}
                                   construct.json     {"<entry name>": "<parent module entry name>" | null}
                                                      (filled at level "mix"/"L0"; "{}" at "L1")
                                   dump_tensor_data/  task "tensor": one torch.save'd tensor per data_name

The rank dir is ``rank<R>`` when torch.distributed was initialised, ``proc<pid>`` when it was not (26.x),
``rank`` without a number in older releases. ``proc``/``rank`` dirs are rank 0 (several ``proc`` dirs in
one step are numbered 0, 1, ... by pid).

``dump.json`` is ``{"task", "level", "framework", "dump_data_dir", "data": {entry name: entry}}``, entries in
the order their call completed. How an entry becomes a :class:`~.records.Record`:

* API entries, ``<Prefix>.<api>.<index>.<forward|backward>`` (``Functional.linear.0.forward``,
  ``Torch.matmul.1.backward``, ``Tensor.__add__.3.forward``, ``Aten.mm.default.0.forward``): kind
  ``"op"``; ``name`` is msprobe's API name with its prefix (``Functional.linear``, ``Torch.matmul``);
  ``phase`` the suffix; ``call`` msprobe's index (per API name, restarted each step; a backward entry
  carries the index of its forward call).
* Module entries, ``Module.<path>.<Class>.<forward|backward>.<index>``: kind ``"module"``, ``name`` and
  ``module`` the module path (``model.layers.0.mlp``; the class name when the path is empty). Parameter
  gradients, ``Module.<path>.<Class>.parameters_grad[.<index>]``, are a module record named
  ``<path>.parameters_grad``, phase ``"backward"``, the gradients as outputs. ``Cell.`` (MindSpore)
  entries are read the same way. :meth:`MsprobeDump.source_name` gives a record's original entry name.
* Forward entries: inputs are the tensors of ``input_args`` then ``input_kwargs`` then (modules)
  ``parameters``, depth first; outputs the tensors of ``output``. ``args`` keeps the call's structure,
  ``{"args": [...], "kwargs": {...}, "params": {...}}``, each tensor replaced by ``{"tensor": i}`` (its
  index in ``inputs``), each scalar ``{"type": "int", "value": 16}`` by its value, other objects
  (``torch.dtype``, ``slice``, ...) kept as msprobe wrote them.
  Backward entries: inputs are ``input`` (the gradients flowing in, of the forward outputs), outputs are
  ``output`` (the gradients of the forward inputs); ``grad_output``/``grad_input`` in older releases.
* Statistics: ``Max``/``Min``/``Mean``/``Norm`` become ``max``/``min``/``mean``/``norm`` (msprobe computes
  them in the tensor's own dtype; mean and norm are absent for integer tensors). msprobe counts no NaN,
  Inf or saturated elements: ``nan`` (``inf``) is set to 1, a lower bound, when one of its statistics is
  NaN (max or min is ±Inf), else 0. ``md5`` (summary_mode "md5"/xor checksum) becomes ``digest``.
* Tensor files: ``TensorInfo.file`` is ``dump_tensor_data/<data_name>``, relative to the rank dir of that
  step (``dump_data_dir`` is an absolute path on the machine that dumped and is ignored).
* ``module`` of an op record: the module path of its parent in ``construct.json`` (for a backward op, the
  parent of its forward call when known: msprobe attributes backward APIs to outer modules); "" at L1.
* ``stack``: each distinct stack in ``stack.json`` gets one id for the whole dump; a backward entry, which
  msprobe gives no stack, gets the stack of its forward call.

The JSON files are streamed (:mod:`ascend_tools.jsonstream`): memory holds one entry at a time, whatever the
file size. An entry that is bad JSON or of the wrong shape (or a data_name that is not a plain file name) is
skipped and counted in ``problems`` with its file and line; a file cut off keeps the entries before the cut
(counted the same way). A file that is not a JSON object, or a dump.json without a ``data`` object, or an
unreadable tensor file, raises :class:`~ascend_tools.errors.InputError` naming the file.
A tensor file that leads out of its rank dir once symlinks are resolved (a linked ``dump_tensor_data``)
raises :class:`~.dumps.UnsafePath`; compare counts it as a problem and treats the tensor as missing.
Tensors are read with ``torch.load(weights_only=True)`` (``.npy`` with ``allow_pickle=False``): a dump
is never unpickled.
"""

import math
import os
import re
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .. import jsonstream
from ..boundedio import one_line
from ..errors import InputError
from .dumps import Dump, inside
from .records import Record, TensorInfo, TensorStats

DUMP_JSON = "dump.json"
STACK_JSON = "stack.json"
CONSTRUCT_JSON = "construct.json"
TENSOR_DIR = "dump_tensor_data"

_STEP_DIR = re.compile(r"^step(\d+)$")
_RANK_DIR = re.compile(r"^rank(\d*)$")
_PROC_DIR = re.compile(r"^proc(\d+)$")
_FRAME = re.compile(r"^File (?P<file>.*), line (?P<line>\d+), in (?P<func>.*?),\s*\n?(?P<code>.*)$", re.S)
_MODULE_PREFIXES = ("Module", "Cell")
_MODULE_PHASES = ("forward", "backward", "parameters_grad")
_PHASES = ("forward", "backward")
_MAX_DEPTH = 64


class MsprobeDump(Dump):
    """One rank of an msprobe dump: ``steps`` maps each step to the rank dir holding its dump.json."""

    format = "msprobe"

    def __init__(self, path: str, steps: Dict[int, str], rank: int) -> None:
        super().__init__(path)
        self.rank = rank
        self._dirs = dict(sorted(steps.items()))
        self._stacks: List[List[str]] = []
        self._stack_ids: Dict[Tuple[str, ...], int] = {}
        self._names: Dict[Tuple[int, int], str] = {}
        first = next(iter(self._dirs))
        header = self._header(first)
        self.meta = {
            "tool": "msprobe",
            "task": header.get("task"),
            "level": header.get("level"),
            "framework": header.get("framework"),
            "mode": "tensor" if header.get("task") == "tensor" else "stats",
            "rank": rank,
            "steps": list(self._dirs),
        }

    # ---- locating a dump -------------------------------------------------------------------------
    @classmethod
    def find(cls, path: str, rank: Optional[int] = None) -> Optional["MsprobeDump"]:
        """Open the msprobe dump at ``path``: the dump root (``step*/<rank dir>/dump.json``), one step
        dir, one rank dir, or a ``dump.json``. None when no dump.json is there. ``rank`` picks a rank
        (default: the lowest); a rank dir or dump.json given directly is read whatever ``rank`` is."""
        path = os.path.normpath(path)
        if os.path.isfile(path):
            if os.path.basename(path) != DUMP_JSON:
                return None
            return cls._from_rank_dir(path, os.path.dirname(path) or ".", rank)
        if not os.path.isdir(path):
            return None
        if os.path.isfile(os.path.join(path, DUMP_JSON)):
            return cls._from_rank_dir(path, path, rank)
        ranks = _rank_dirs(path)
        if ranks:
            return cls._pick(path, {_step_of(path): ranks}, rank)
        per_step: Dict[int, Dict[int, str]] = {}
        for entry in _listdir(path):
            m = _STEP_DIR.match(entry)
            if m:
                found = _rank_dirs(os.path.join(path, entry))
                if found:
                    per_step[int(m.group(1))] = found
        if per_step:
            return cls._pick(path, per_step, rank)
        return None

    @classmethod
    def _from_rank_dir(cls, path: str, rank_dir: str, rank: Optional[int]) -> "MsprobeDump":
        m = _RANK_DIR.match(os.path.basename(os.path.abspath(rank_dir)))
        own = int(m.group(1)) if m and m.group(1) else (rank if rank is not None else 0)
        return cls(path, {_step_of(os.path.dirname(os.path.abspath(rank_dir))): rank_dir}, own)

    @classmethod
    def _pick(cls, path: str, per_step: Dict[int, Dict[int, str]], rank: Optional[int]) -> "MsprobeDump":
        available = sorted({r for ranks in per_step.values() for r in ranks})
        chosen = available[0] if rank is None else rank
        steps = {step: ranks[chosen] for step, ranks in per_step.items() if chosen in ranks}
        if not steps:
            listed = ", ".join(str(r) for r in available)
            raise InputError(f"{path}: msprobe dump has no rank {rank} (ranks: {listed})")
        return cls(path, steps, chosen)

    # ---- Dump interface --------------------------------------------------------------------------
    def steps(self) -> List[int]:
        return list(self._dirs)

    def records(self, step: int) -> Iterator[Record]:
        rank_dir = self._rank_dir(step)
        dump_path = os.path.join(rank_dir, DUMP_JSON)
        stacks = self._load_stacks(rank_dir)
        parents = self._load_construct(rank_dir)
        tensor_mode = self.meta["mode"] == "tensor"  # this step's "task" when it comes before "data"
        bad: List[str] = []
        has_data = False
        index = -1
        for member in _stream(dump_path, ("data",), "an msprobe dump.json", bad):
            if member.parent is None:
                if member.key == "task":
                    tensor_mode = member.value == "tensor"
                has_data = has_data or (member.key == "data" and isinstance(member.value, dict))
                continue
            index += 1
            key = str(member.key)
            try:
                if member.error is not None:
                    raise _EntryError(member.error)
                record = _entry_record(key, member.value, tensor_mode)
            except (_EntryError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
                bad.append(f"line {member.line}, entry {key!r}: {one_line(exc)}")  # skipped and counted
                continue
            record.id, record.step, record.rank = index, step, self.rank
            forward_key = _forward_key(key, record)
            if record.kind == "op":
                parent = parents.get(forward_key) if forward_key in parents else parents.get(key)
                record.module = _module_path(parent)
            stack = stacks.get(key)
            if stack is None and forward_key is not None:
                stack = stacks.get(forward_key)
            record.stack = stack
            self._names[(step, index)] = key
            yield record
        if not has_data:
            raise InputError(f'{dump_path}: not an msprobe dump.json (no "data" object)')
        self._count(dump_path, bad)

    def _count(self, path: str, bad: List[str]) -> None:
        if bad:
            self.problems.append(
                f"{path}: {len(bad)} unreadable entr{'y' if len(bad) == 1 else 'ies'} skipped (first: {bad[0]})"
            )

    def load_tensor(self, info: TensorInfo, step: int) -> Any:
        if not info.file:
            return None
        rank_dir = self._rank_dir(step)
        name = info.file
        if name.startswith(TENSOR_DIR + "/"):
            name = name[len(TENSOR_DIR) + 1 :]
        if not _is_plain_name(name):
            raise InputError(
                f"{os.path.join(rank_dir, DUMP_JSON)}: tensor file name {info.file!r} is not a plain name"
            )
        path = inside(rank_dir, TENSOR_DIR, name)
        if not os.path.isfile(path):
            raise InputError(f"{path}: tensor file missing")
        import torch

        try:
            if path.endswith(".npy"):
                import numpy as np

                array = np.load(path, allow_pickle=False)
                if array.dtype.kind not in "biufc":
                    return None
                value = torch.from_numpy(array)
            else:
                value = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # any failure to decode the file is bad input, reported in one line
            raise InputError(f"{path}: cannot read tensor: {one_line(exc)}") from None
        if not isinstance(value, torch.Tensor):
            raise InputError(f"{path}: holds a {type(value).__name__}, not a tensor")
        return value

    def stack(self, stack_id: Optional[int]) -> List[str]:
        if stack_id is None or not 0 <= stack_id < len(self._stacks):
            return []
        return list(self._stacks[stack_id])

    def source_name(self, record: Record) -> str:
        """The dump.json entry name a record came from (after ``records(record.step)`` has run)."""
        return self._names.get((record.step, record.id), record.name)

    # ---- files -----------------------------------------------------------------------------------
    def _rank_dir(self, step: int) -> str:
        try:
            return self._dirs[step]
        except KeyError:
            raise InputError(
                f"{self.path}: msprobe dump has no step {step} (steps: {self.steps()})"
            ) from None

    def _header(self, step: int) -> Dict[str, Any]:
        """The top-level members of a dump.json other than ``data``; msprobe writes them before ``data``,
        so reading stops there once task, level and framework are known."""
        path = os.path.join(self._rank_dir(step), DUMP_JSON)
        header: Dict[str, Any] = {}
        has_data = False
        for member in _stream(path, ("data",), "an msprobe dump.json", []):
            if member.parent is not None or member.error is not None:
                continue
            if member.key == "data":
                has_data = isinstance(member.value, dict)
                if all(k in header for k in ("task", "level", "framework")):
                    break
            else:
                header[str(member.key)] = member.value
        if not has_data:
            raise InputError(f'{path}: not an msprobe dump.json (no "data" object)')
        return header

    def _load_stacks(self, rank_dir: str) -> Dict[str, int]:
        """Entry name -> dump-wide stack id, from this step's stack.json (absent: no stacks)."""
        path = os.path.join(rank_dir, STACK_JSON)
        if not os.path.isfile(path):
            return {}
        by_name: Dict[str, int] = {}
        for key, value in self._object(path, "an msprobe stack.json"):
            if isinstance(value, list) and len(value) == 2 and all(isinstance(v, list) for v in value):
                names, frames = value  # 26.x: {"0": [[names], [frames]]}
            elif isinstance(value, list):
                names, frames = [key], value  # older: {name: [frames]}
            else:
                continue
            stack_id = self._stack_id(frames)
            for name in names:
                if isinstance(name, str):
                    by_name[name] = stack_id
        return by_name

    def _stack_id(self, frames: List[Any]) -> int:
        lines = tuple(_frame_text(f) for f in reversed(frames))  # msprobe: innermost first; ours: outermost
        found = self._stack_ids.get(lines)
        if found is None:
            found = self._stack_ids[lines] = len(self._stacks)
            self._stacks.append(list(lines))
        return found

    def _load_construct(self, rank_dir: str) -> Dict[str, Any]:
        path = os.path.join(rank_dir, CONSTRUCT_JSON)
        if not os.path.isfile(path):
            return {}
        return dict(self._object(path, "an msprobe construct.json"))

    def _object(self, path: str, what: str) -> Iterator[Tuple[str, Any]]:
        """The members of a JSON object file, the unreadable ones counted in ``problems``."""
        bad: List[str] = []
        for member in _stream(path, (), what, bad):
            if member.error is not None:
                bad.append(f"line {member.line}, member {member.key!r}: {member.error}")
            else:
                yield str(member.key), member.value
        self._count(path, bad)


# ---- entries -------------------------------------------------------------------------------------
class _EntryError(ValueError):
    """An entry of dump.json has the wrong shape; re-raised as InputError naming the file and entry."""


def _entry_record(key: str, entry: Any, tensor_mode: bool) -> Record:
    if not isinstance(entry, dict):
        raise _EntryError(f"expected an object, got {type(entry).__name__}")
    name, kind, phase, call, module = _parse_name(key)
    inputs: List[TensorInfo] = []
    outputs: List[TensorInfo] = []
    args: Any = None
    if kind == "module" and name.endswith(".parameters_grad"):
        _collect(entry, outputs, tensor_mode, 0)
    elif phase == "forward":
        args = {
            "args": _collect(_typed(entry.get("input_args", []), list, "input_args"), inputs, tensor_mode, 0),
            "kwargs": _collect(
                _typed(entry.get("input_kwargs", {}), dict, "input_kwargs"), inputs, tensor_mode, 0
            ),
        }
        if "parameters" in entry:
            args["params"] = _collect(_typed(entry["parameters"], dict, "parameters"), inputs, tensor_mode, 0)
        _collect(_first(entry, ("output",)), outputs, tensor_mode, 0)
    else:
        _collect(_first(entry, ("input", "grad_output")), inputs, tensor_mode, 0)
        _collect(_first(entry, ("output", "grad_input")), outputs, tensor_mode, 0)
    return Record(
        id=0,
        name=name,
        kind=kind,
        phase=phase,
        call=call,
        module=module,
        inputs=inputs,
        outputs=outputs,
        args=args,
    )


def _parse_name(key: str) -> Tuple[str, str, str, int, str]:
    """(name, kind, phase, call, module) of a dump.json entry name (see the module docstring)."""
    parts = key.split(".")
    if parts[0] in _MODULE_PREFIXES and len(parts) >= 3:
        if parts[-2] in _MODULE_PHASES and parts[-1].isdigit():
            phase, call, body = parts[-2], int(parts[-1]), parts[1:-2]
        elif parts[-1] in _MODULE_PHASES:
            phase, call, body = parts[-1], 0, parts[1:-1]
        else:
            raise _EntryError("not a module entry name (Module.<path>.<Class>.<forward|backward>.<n>)")
        if not body:
            raise _EntryError("module entry name has no module")
        path = ".".join(body[:-1])
        name = path or body[-1]
        if phase == "parameters_grad":
            return f"{name}.parameters_grad", "module", "backward", call, path
        return name, "module", phase, call, path
    if len(parts) >= 3 and parts[-1] in _PHASES and parts[-2].isdigit():
        return ".".join(parts[:-2]), "op", parts[-1], int(parts[-2]), ""
    raise _EntryError("not an API entry name (<Prefix>.<api>.<n>.<forward|backward>)")


def _forward_key(key: str, record: Record) -> Optional[str]:
    """The entry name of the forward call a backward entry belongs to."""
    if record.phase != "backward":
        return None
    if record.kind == "op" and key.endswith(".backward"):
        return key[: -len("backward")] + "forward"
    if record.kind == "module" and ".backward." in key:
        head, _, tail = key.rpartition(".backward.")
        return f"{head}.forward.{tail}"
    return None


def _module_path(parent: Any) -> str:
    if isinstance(parent, list) and parent:
        parent = parent[0]  # megatron: [parent, micro step]
    if not isinstance(parent, str):
        return ""
    try:
        _, kind, _, _, path = _parse_name(parent)
    except _EntryError:
        return ""
    return path if kind == "module" else ""


def _first(entry: Dict[str, Any], keys: Tuple[str, ...]) -> Any:
    for key in keys:
        if key in entry:
            return entry[key]
    return []


def _typed(value: Any, kind: type, what: str) -> Any:
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise _EntryError(f"{what} is a {type(value).__name__}, expected a {kind.__name__}")
    return value


def _collect(value: Any, into: List[TensorInfo], tensor_mode: bool, depth: int) -> Any:
    """Append every tensor in ``value`` to ``into`` (depth first); return ``value`` in ``args`` form."""
    if depth > _MAX_DEPTH:
        raise _EntryError(f"nested deeper than {_MAX_DEPTH} levels")
    if isinstance(value, list):
        return [_collect(v, into, tensor_mode, depth + 1) for v in value]
    if not isinstance(value, dict):
        return value
    if "type" not in value:  # a dict argument: {name: element}
        return {str(k): _collect(v, into, tensor_mode, depth + 1) for k, v in value.items()}
    if "dtype" in value and "shape" in value:
        into.append(_tensor_info(value, tensor_mode))
        return {"tensor": len(into) - 1}
    if value.get("type") in ("int", "float", "bool", "str") and "value" in value:
        return value["value"]
    return value


def _tensor_info(raw: Dict[str, Any], tensor_mode: bool) -> TensorInfo:
    dtype, shape = raw["dtype"], raw["shape"]
    if not isinstance(dtype, str) or not dtype:
        raise _EntryError(f"tensor dtype {dtype!r} is not a dtype name")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise _EntryError(f"tensor shape {shape!r} is not a list of sizes")
    stats = None
    if any(k in raw for k in ("Max", "Min", "Mean", "Norm")):
        values = [_number(raw.get(k)) for k in ("Max", "Min", "Mean", "Norm")]
        nan = int(any(v is not None and math.isnan(v) for v in values))
        inf = int(any(v is not None and math.isinf(v) for v in values[:2]))
        stats = TensorStats(max=values[0], min=values[1], mean=values[2], norm=values[3], nan=nan, inf=inf)
    data_name = raw.get("data_name")
    file = None
    if tensor_mode and data_name is not None:
        if not isinstance(data_name, str) or not _is_plain_name(data_name):
            raise _EntryError(f"data_name {data_name!r} is not a plain file name")
        file = f"{TENSOR_DIR}/{data_name}"
    digest = raw.get("md5")
    return TensorInfo(
        dtype=dtype[len("torch.") :] if dtype.startswith("torch.") else dtype,
        shape=list(shape),
        stats=stats,
        file=file,
        digest=digest if isinstance(digest, str) else None,
    )


def _number(value: Any) -> Optional[float]:
    if value is None or isinstance(value, (dict, list)):
        return None
    try:
        return float(value)  # bool -> 0/1; "inf"/"nan" strings of older releases
    except (TypeError, ValueError, OverflowError):
        return None


# ---- helpers -------------------------------------------------------------------------------------
def _stream(path: str, descend: Tuple[str, ...], what: str, bad: List[str]) -> Iterator[jsonstream.Member]:
    """The members of the JSON object file ``path``; a broken structure (the file cut off) ends the stream
    and is added to ``bad``."""
    try:
        with open(path, "rb") as f:
            for member in jsonstream.members(f, descend):
                if member.key is None:
                    bad.append(f"{member.error}: read up to there (truncated? was the dump cut off?)")
                    return
                yield member
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except ValueError:  # the top level is not an object
        raise InputError(f"{path}: not {what} (expected a JSON object)") from None


def _frame_text(frame: Any) -> str:
    """``File /a/b.py, line 12, in fn, \\n code`` -> ``/a/b.py:12 in fn``."""
    text = str(frame)
    m = _FRAME.match(text.strip())
    if m:
        return f"{m.group('file')}:{m.group('line')} in {m.group('func')}"
    return " ".join(text.split())


def _rank_dirs(step_dir: str) -> Dict[int, str]:
    """rank id -> rank dir, for the dirs of ``step_dir`` that hold a dump.json."""
    ranks: Dict[int, str] = {}
    procs: List[Tuple[int, str]] = []
    for entry in _listdir(step_dir):
        full = os.path.join(step_dir, entry)
        if not os.path.isfile(os.path.join(full, DUMP_JSON)):
            continue
        m = _RANK_DIR.match(entry)
        if m:
            ranks.setdefault(int(m.group(1) or 0), full)
            continue
        m = _PROC_DIR.match(entry)
        if m:
            procs.append((int(m.group(1)), full))
    if not ranks:
        ranks = {i: full for i, (_, full) in enumerate(sorted(procs))}
    return ranks


def _step_of(step_dir: str) -> int:
    m = _STEP_DIR.match(os.path.basename(os.path.normpath(step_dir)))
    return int(m.group(1)) if m else 0


def _listdir(path: str) -> List[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _is_plain_name(name: str) -> bool:
    return (
        bool(name) and "/" not in name and "\\" not in name and name not in (".", "..") and "\0" not in name
    )
