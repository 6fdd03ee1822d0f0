"""Our dump format (``docs/dump-format.md``): the writer used by ``capture_session.py``, the reader
:class:`OurDump`, and the JSON encoding of an op's non-tensor arguments (:func:`encode_arg`,
:func:`decode_args`).

Layout, per rank::

    OUT/rank{r}/meta.json              schema "ascend-doctor/dump/1", versions, backend, rank, options
    OUT/rank{r}/stacks.jsonl           {"id": n, "frames": ["file:line in func", ...]} (outermost first)
    OUT/rank{r}/step{n}/records.jsonl  one Record per line, execution order, appended at each flush
    OUT/rank{r}/step{n}/tensors/*.npy  tensor mode: one file per tensor (bfloat16 as its uint16 bits)
"""

import contextlib
import json
import math
import mmap
import os
import re
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from .. import atomic, boundedio
from ..errors import InputError
from .dumps import Dump, inside
from .metrics import RawBits
from .records import Record, TensorInfo

SCHEMA = "ascend-doctor/dump/1"
#: What a record's identity means (its module path, call counting, phases): raised whenever a change of the capture
#: names the same op of the same run differently, so that compare can say two dumps pair by different rules. A
#: dump without it in meta.json is of recording 1. 2: module paths under activation checkpointing (447b280). 3: the
#: steps and phases of optimizers stepped inside backward, and steps a loss scaler skipped, are steps of their own.
#: 4: so are steps that torch_npu's GradScaler, DeepSpeed's and Megatron's loss scalers skipped (scaler_watch.py).
#: 5: integer and bool statistics exact, in int64 (stats.py): an earlier dump's may differ in the last bits of a
#: norm or a mean, and compare checks integer records exactly. 6: ops between a step's last backward and its
#: ``optimizer.step()`` outside every module (gradient clipping, a scaler's ``unscale_``) are phase ``optimizer``.
RECORDING = 6
_STEP_DIR = re.compile(r"^step(\d+)$")
_RANK_DIR = re.compile(r"^rank(\d+)$")

# dtypes numpy cannot hold, saved as raw bits of this numpy type; the record's dtype names the real one
RAW_BITS = {
    "bfloat16": np.uint16,
    "float8_e4m3fn": np.uint8,
    "float8_e5m2": np.uint8,
    "float8_e4m3fnuz": np.uint8,
    "float8_e5m2fnuz": np.uint8,
}


# --- .npy -------------------------------------------------------------------------------------------------

# the header numpy writes for a C-ordered array; anything else goes through np.load
_NPY_HEADER = re.compile(
    r"\{'descr': '([<>|=][a-zA-Z]\d*)', 'fortran_order': False, 'shape': \(([0-9, ]*)\), *\} *\n?$"
)


#: tensors of at least this many bytes are mapped, not read (see :func:`read_npy`)
MAP_BYTES = 1 << 18


def read_npy(path: str) -> np.ndarray:
    """``np.load(path, allow_pickle=False)``, without its ``ast.literal_eval`` of the header (a third of a
    compare's reading time on ~1,000 small tensors): the header numpy writes is matched by a regex, the data
    read with one ``np.fromfile``, or, from :data:`MAP_BYTES` on, mapped copy-on-write (``mmap.ACCESS_COPY``:
    the page cache's pages themselves, no copy; a write stays in this process, like safetensors' loads). A
    compare of the bench's 1.5 GB pair read 0.29 s of copies that way, 0.11 s mapped. Any other header (Fortran
    order, structured dtypes, a newer format) and any size mismatch fall back to ``np.load``, which also makes
    the error for a bad file."""
    with open(path, "rb") as f:
        magic = f.read(8)
        if magic[:6] == b"\x93NUMPY" and magic[6] in (1, 2, 3):
            size = 2 if magic[6] == 1 else 4
            header = f.read(int.from_bytes(f.read(size), "little")).decode("latin1")
            m = _NPY_HEADER.match(header)
            if m is not None:
                dtype = np.dtype(m.group(1))
                shape = tuple(int(x) for x in m.group(2).split(",") if x.strip())
                count = math.prod(shape)
                if dtype.kind != "O":
                    offset, nbytes = f.tell(), count * dtype.itemsize
                    if nbytes >= MAP_BYTES and os.fstat(f.fileno()).st_size >= offset + nbytes:
                        mapped = mmap.mmap(f.fileno(), offset + nbytes, access=mmap.ACCESS_COPY)
                        return np.frombuffer(mapped, dtype=dtype, count=count, offset=offset).reshape(shape)
                    arr = np.fromfile(f, dtype=dtype, count=count)
                    if arr.size == count:
                        return arr.reshape(shape)
    return np.load(path, allow_pickle=False)


def read_tensor_file(path: str) -> np.ndarray:
    """:func:`read_npy`, its failures one :class:`InputError` line naming the file."""
    try:
        return read_npy(path)  # a fresh array (or a private mapping): no copy needed
    except (OSError, ValueError, EOFError, OverflowError, MemoryError) as exc:
        raise InputError(f"{path}: cannot read tensor: {type(exc).__name__}: {exc}".splitlines()[0]) from None


def wrap_bits(arr: Any, dtype: str) -> Any:
    """A numpy array of raw bits (our dumps' bfloat16/float8) as :class:`metrics.RawBits`; anything else as it
    is."""
    if isinstance(arr, np.ndarray) and dtype in RAW_BITS:
        return RawBits(arr.view(RAW_BITS[dtype]), dtype)
    return arr


def as_torch(x: Any) -> Any:
    """A numpy array or :class:`metrics.RawBits` as a torch tensor over the same memory; anything else as it
    is."""
    if isinstance(x, RawBits):
        return x.to_torch()
    if isinstance(x, np.ndarray):
        import torch

        return torch.from_numpy(x)
    return x


# --- argument encoding -----------------------------------------------------------------------------


class _TensorSlot:
    """Stands for a tensor in arguments kept for later encoding (``capture_session.py`` keeps no reference to
    the tensor itself: an extra reference changes what autograd does with gradients)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<tensor>"


TENSOR_SLOT = _TensorSlot()

#: the longest ``repr`` of an argument of no other form that a record keeps (a repr can be any length)
REPR_MAX = 200


class StorageArg(NamedTuple):
    """Stands for a storage argument (``set_``, which ``torch.load`` calls once per tensor it rebuilds): its size
    and device only. A storage's ``repr`` lists every byte: a 8 MB checkpoint loaded in 30 s under ``dump``
    instead of 0.01 s, into a 44 MB record line."""

    nbytes: int
    device: str


def storage_arg(storage: Any) -> StorageArg:
    return StorageArg(int(storage.nbytes()), str(storage.device))


def encode_arg(value: Any, tensors: List[Any]) -> Any:
    """JSON form of one argument; tensors (and :data:`TENSOR_SLOT`) are appended to ``tensors`` and
    replaced by ``{"tensor": i}``. See docs/dump-format.md for every form."""
    import torch

    if value is None or isinstance(value, (bool, str)):
        return value
    if value is TENSOR_SLOT:
        tensors.append(None)
        return {"tensor": len(tensors) - 1}
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return {"float": repr(value)}
        return value
    if isinstance(value, torch.Tensor):
        tensors.append(value)
        return {"tensor": len(tensors) - 1}
    if isinstance(value, StorageArg):  # a tuple: before the lists
        return {"storage": {"nbytes": value.nbytes, "device": value.device}}
    if isinstance(value, (list, tuple)):
        return [encode_arg(v, tensors) for v in value]
    if isinstance(value, torch.dtype):
        return {"dtype": str(value).replace("torch.", "")}
    if isinstance(value, torch.device):
        return {"device": str(value)}
    if isinstance(value, torch.memory_format):
        return {"memory_format": str(value).replace("torch.", "")}
    if isinstance(value, torch.layout):
        return {"layout": str(value).replace("torch.", "")}
    if isinstance(value, complex):
        return {"complex": [value.real, value.imag]}
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return encode_arg(
            {torch.SymInt: int, torch.SymFloat: float, torch.SymBool: bool}[type(value)](value), tensors
        )
    if isinstance(value, dict):
        return {"dict": {str(k): encode_arg(v, tensors) for k, v in value.items()}}
    if isinstance(value, (torch.UntypedStorage, torch.TypedStorage)):
        return encode_arg(storage_arg(value), tensors)
    text = repr(value)
    return {"repr": text if len(text) <= REPR_MAX else text[:REPR_MAX] + "..."}


def encode_call(args: Any, kwargs: Dict[str, Any], tensors: List[Any]) -> Dict[str, Any]:
    """``{"args": [...], "kwargs": {...}}`` for one call; fills ``tensors`` in argument order."""
    out: Dict[str, Any] = {"args": [encode_arg(a, tensors) for a in args]}
    if kwargs:
        out["kwargs"] = {k: encode_arg(v, tensors) for k, v in kwargs.items()}
    return out


def _decode(value: Any, tensors: List[Any]) -> Any:
    import torch

    if isinstance(value, list):
        return [_decode(v, tensors) for v in value]
    if not isinstance(value, dict):
        return value
    if "tensor" in value:
        return tensors[value["tensor"]]
    if "float" in value:
        return float(value["float"])
    if "dtype" in value:
        return _torch_constant(value["dtype"], torch.dtype)
    if "device" in value:
        return torch.device(value["device"])
    if "memory_format" in value:
        return _torch_constant(value["memory_format"], torch.memory_format)
    if "layout" in value:
        return _torch_constant(value["layout"], torch.layout)
    if "complex" in value:
        return complex(*value["complex"])
    if "dict" in value:
        return {k: _decode(v, tensors) for k, v in value["dict"].items()}
    if "repr" in value or "storage" in value:
        raise ValueError(f"argument {value} was not saved in a replayable form")
    return value


def _torch_constant(name: Any, kind: type) -> Any:
    """``torch.<name>`` when it is a ``kind`` (``torch.float32``); a dump names it, so nothing else."""
    import torch

    value = getattr(torch, name, None) if isinstance(name, str) and name.isidentifier() else None
    if not isinstance(value, kind):
        raise ValueError(f"{name!r} is not a torch.{kind.__name__}")
    return value


def decode_args(args_json: Any, tensors: List[Any]) -> Tuple[tuple, Dict[str, Any]]:
    """``(args, kwargs)`` from a record's ``args`` and its input tensors (in ``inputs`` order), ready
    for the op ``replay_policy.resolve`` gives, once ``replay_policy.check_args`` accepts them."""
    if not args_json:
        return (), {}
    args = tuple(_decode(a, tensors) for a in args_json.get("args", []))
    kwargs = {k: _decode(v, tensors) for k, v in args_json.get("kwargs", {}).items()}
    return args, kwargs


# --- writing ---------------------------------------------------------------------------------------


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class RankWriter:
    """Appends one rank's records, stacks and tensors under ``out_dir/rank{r}``, every file reached from a
    descriptor of ``out_dir`` taken here (:class:`atomic.OutputDir`: a symlink planted at ``rank{r}``,
    ``step{n}``, ``tensors`` or a file's name is refused, not followed)."""

    def __init__(self, out_dir: str, rank: int) -> None:
        self.root = os.path.join(out_dir, f"rank{rank}")
        self._out = atomic.OutputDir(out_dir)
        self._rank = f"rank{rank}"
        self._out.makedirs(self._rank)
        self._stacks: Optional[Any] = None  # kept open, closed in close()
        # a symlink or other planted file: refused here, and again (raised, failing open) by the first write
        # with stacks
        with contextlib.suppress(OSError):
            self._stacks = self._out.open_append(f"{self._rank}/stacks.jsonl")
        self._records: Optional[Any] = None
        self._records_step: Optional[int] = None
        self.counts: Dict[int, int] = {}

    def write_meta(self, meta: Dict[str, Any]) -> None:
        with self._out.open_atomic(f"{self._rank}/meta.json") as f:
            json.dump(meta, f, indent=1)

    def save_tensor(self, step: int, name: str, t: Any) -> str:
        """``t`` (any device) as ``step{step}/tensors/{name}.npy``, written whole or not at all; returns that
        path relative to the step directory. bfloat16/float8 as raw bits (see :data:`RAW_BITS`)."""
        rel = f"tensors/{name}.npy"
        with self._out.open_atomic(f"{self._rank}/step{step}/{rel}", "wb") as f:
            np.save(f, npy_array(t), allow_pickle=False)
        return rel

    def write(self, step: int, lines: List[str], stacks: List[str]) -> None:
        """Append JSON lines to the step's records (and new stacks), then flush both to the OS. A stacks
        file that cannot be written costs the stacks only: the records are written, then its error raises."""
        stacks_error: Optional[OSError] = None
        if stacks:
            try:
                if self._stacks is None:
                    self._stacks = self._out.open_append(f"{self._rank}/stacks.jsonl")
                self._stacks.write("".join(stacks))
                self._stacks.flush()
            except OSError as exc:
                stacks_error = exc
        records = self._records
        if lines and (records is None or self._records_step != step):  # no lines: no step directory
            if records is not None:
                records.close()
            self._records = None
            records = self._records = self._out.open_append(f"{self._rank}/step{step}/records.jsonl")
            self._records_step = step
        if lines and records is not None:
            records.write("".join(lines))
            records.flush()
            self.counts[step] = self.counts.get(step, 0) + len(lines)
        if stacks_error is not None:
            raise stacks_error

    def close(self) -> None:
        for f in (self._records, self._stacks):
            if f is not None:
                f.close()
        self._records = self._stacks = None
        self._out.close()


def npy_array(t: Any) -> np.ndarray:
    """``t`` (any device) as the array its ``.npy`` holds: bfloat16/float8 as raw bits (:data:`RAW_BITS`)."""
    import torch

    from ..dispatch import dtype_name

    # always a copy: numpy() marks a storage non-resizable for good, and a CPU tensor's own storage then
    # breaks whoever resizes it later (FSDP2 frees each unsharded parameter with storage.resize_(0))
    x = t.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
    name = dtype_name(x.dtype)
    if name in RAW_BITS:
        return (
            x.view(torch.int16 if RAW_BITS[name] is np.uint16 else torch.uint8).numpy().view(RAW_BITS[name])
        )
    return x.numpy()


# --- reading ---------------------------------------------------------------------------------------


class OurDump(Dump):
    """One rank of an ascend-doctor dump."""

    format = "ascend-doctor"

    def __init__(self, path: str) -> None:
        super().__init__(path)
        meta = os.path.join(path, "meta.json")
        try:
            with open(meta, "rb") as f:
                self.meta = boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
        except (OSError, ValueError) as exc:
            raise InputError(f"{meta}: not a readable dump meta.json ({type(exc).__name__}: {exc})") from None
        if not isinstance(self.meta, dict):
            raise InputError(f"{meta}: not a dump meta.json (expected a JSON object)")
        self._stacks: Optional[Dict[int, List[str]]] = None

    @classmethod
    def find(cls, path: str, rank: Optional[int] = None) -> Optional["OurDump"]:
        """``path`` is the dump's directory (``rank`` picks a rank, default the lowest), a rank
        directory, or a step directory inside one. None when no ``meta.json`` is there."""
        path = os.path.abspath(path)
        if os.path.isfile(path):
            path = os.path.dirname(path)
        if _STEP_DIR.match(os.path.basename(path)) and os.path.isfile(
            os.path.join(os.path.dirname(path), "meta.json")
        ):
            path = os.path.dirname(path)
        if os.path.isfile(os.path.join(path, "meta.json")):
            return cls(path)
        if not os.path.isdir(path):
            return None
        ranks = sorted(int(m.group(1)) for m in (_RANK_DIR.match(n) for n in os.listdir(path)) if m)
        ranks = [r for r in ranks if os.path.isfile(os.path.join(path, f"rank{r}", "meta.json"))]
        if not ranks:
            return None
        if rank is not None and rank not in ranks:
            raise InputError(f"{path} has no rank {rank} (ranks: {', '.join(map(str, ranks))})")
        return cls(os.path.join(path, f"rank{ranks[0] if rank is None else rank}"))

    @staticmethod
    def ranks(path: str) -> List[int]:
        """The ranks found under a dump directory."""
        try:
            names = os.listdir(path)
        except OSError:
            return []
        return sorted(
            int(m.group(1))
            for m in (_RANK_DIR.match(n) for n in names)
            if m and os.path.isfile(os.path.join(path, m.group(0), "meta.json"))
        )

    def steps(self) -> List[int]:
        out = []
        for name in os.listdir(self.path):
            m = _STEP_DIR.match(name)
            if m and os.path.isfile(os.path.join(self.path, name, "records.jsonl")):
                out.append(int(m.group(1)))
        return sorted(out)

    def records(self, step: int) -> Iterator[Record]:
        path = os.path.join(self.path, f"step{step}", "records.jsonl")
        if not os.path.isfile(path):
            return
        bad: List[str] = []  # "line N: why"
        with open(path, "rb") as f:
            for number, line, ended in boundedio.lines(f):
                if not ended:
                    break  # the writer was killed mid-line: everything before it is complete
                try:
                    if line is None:
                        raise ValueError("line too long")
                    yield Record.from_json(boundedio.loads(line))
                except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
                    bad.append(f"line {number}: {boundedio.one_line(exc)}")
        if bad:
            self.problems.append(f"{path}: {len(bad)} unreadable record line(s) skipped (first: {bad[0]})")

    def load_tensor(self, info: TensorInfo, step: int) -> Any:
        arr = self.load_array(info, step)
        return None if arr is None else as_torch(wrap_bits(arr, info.dtype))

    def tensor_file(self, info: TensorInfo, step: int) -> Optional[str]:
        if not info.file:
            return None
        path = inside(self.path, f"step{step}", info.file)
        return path if os.path.isfile(path) else None

    def load_array(self, info: TensorInfo, step: int) -> Optional[np.ndarray]:
        """The saved tensor as the numpy array in the file (bfloat16/float8: their raw bits, see
        :data:`RAW_BITS`), or None; without torch (compare's pair metrics are numpy)."""
        path = self.tensor_file(info, step)
        return None if path is None else read_tensor_file(path)

    def stack(self, stack_id: Optional[int]) -> List[str]:
        if stack_id is None:
            return []
        if self._stacks is None:
            self._stacks = {}
            path = os.path.join(self.path, "stacks.jsonl")
            if os.path.isfile(path):
                bad: List[int] = []
                with open(path, "rb") as f:
                    for number, line, ended in boundedio.lines(f):
                        if not ended:
                            break  # the writer was killed mid-line
                        try:
                            if line is None:
                                raise ValueError("line too long")
                            raw = boundedio.loads(line)
                            self._stacks[int(raw["id"])] = [str(x) for x in raw["frames"]]
                        except (ValueError, KeyError, TypeError, AttributeError, IndexError):
                            bad.append(number)
                if bad:
                    self.problems.append(
                        f"{path}: {len(bad)} unreadable stack line(s) skipped (first: line {bad[0]})"
                    )
        return self._stacks.get(int(stack_id), [])
