"""One op's float64 replay as a job that holds no tensor and no open dump: the files of the target's saved
inputs and outputs, the record's encoded call, and what came of it. Plain data, so that a job runs the same in
compare's thread pool or in its replay process (``replay_pool.py``)."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, List, Optional, Tuple

from ..errors import InputError

if TYPE_CHECKING:
    from .replay_verdict import Replay


@dataclass(frozen=True)
class TensorFile:
    path: str  # checked by the dump to stay inside it (Dump.tensor_file)
    dtype: str  # the record's dtype: bfloat16/float8 files hold raw bits


@dataclass(frozen=True)
class ReplayJob:
    """Tensors are :class:`TensorFile` (our dumps: the job carries a path) or the tensor itself (a numpy array,
    ``metrics.RawBits`` or a torch tensor: msprobe's ``.pt`` files, read by the compare)."""

    name: str  # ns::op.overload as the dump names it: only replay_policy turns it into an op
    args: Any  # the record's encoded call (store.decode_args puts the tensors back)
    inputs: Tuple[Any, ...]
    produced: Tuple[Any, ...]  # the target's outputs that have a reference counterpart (None: not saved)
    reduction: Optional[int]


@dataclass
class ReplayOutcome:
    replay: Optional["Replay"] = None  # None: not replayed, or no output could be compared
    note: str = ""  # why not: an op this replay cannot rebuild (amplification then judges it)
    problem: str = ""  # why not: what the dump asked for and was refused, or a tensor that could not be read


def run(job: ReplayJob) -> ReplayOutcome:
    """The replay (``replay.replay``) of ``job``: refused by ``replay_policy`` or a bad tensor file is a
    problem of the dump; any other failure to rebuild the call is a note."""
    from . import replay_policy
    from .replay import replay, replayable
    from .store import decode_args

    try:
        op = replay_policy.resolve(job.name)
        if not replayable(op, job.name):
            return ReplayOutcome(note="random or uninitialised op: not replayed")
        inputs = [_load(x) for x in job.inputs]
        produced = [None if x is None else _load(x) for x in job.produced]
        replay_policy.check_args(op, *decode_args(job.args, inputs))
        found = replay(
            op, job.name, lambda tensors: decode_args(job.args, tensors), inputs, produced, job.reduction
        )
    except replay_policy.Refused as exc:
        return ReplayOutcome(problem=f"not replayed: {exc}")
    except InputError as exc:
        return ReplayOutcome(problem=f"tensor not read: {exc}")
    except Exception as exc:  # an op we cannot rebuild: amplification judges it
        first = (str(exc).splitlines() or [""])[0]
        return ReplayOutcome(note=f"not replayed: {type(exc).__name__}: {first[:120]}")
    return ReplayOutcome(replay=found)


def run_all(jobs: List[ReplayJob]) -> List[ReplayOutcome]:
    """:func:`run` of each, in order (one task of the replay process: fewer round trips than one a job)."""
    return [run(job) for job in jobs]


def _load(x: Any) -> Any:
    from .store import as_torch, read_tensor_file, wrap_bits

    if isinstance(x, TensorFile):
        x = wrap_bits(read_tensor_file(x.path), x.dtype)
    return as_torch(x)
