"""Shadow mode: every op the device runs is run again on CPU in float64 (or, where that is the same, in its own
dtype) on the same inputs and compared at once; only the metrics are kept. ``with shadow() as sh:`` around a
training step.

One :class:`ShadowMode` (a TorchDispatchMode, so below autograd: forward and backward ops alike) does,
per aten op call:

1. take the tensor inputs as they are *before* the op runs (an in-place op overwrites its inputs):
   ``shadow_snaps.py``, a CPU tensor itself (copied only if a write meets a check still holding it), a device
   tensor copied to the CPU, and a tensor an earlier op took and nothing wrote since taken again for free;
2. run the real op, ``func(*args, **kwargs)``: the device run. Modes entered before the shadow (below
   it, e.g. ``faults.FaultInjector``) still apply; the result returned to the user is this one. Take its
   outputs the same way. Where the check process runs (``shadow_process.py``: from the end of the first step,
   where two CPUs are free), the rows each check reads go to it and steps 3 and 4 run there. Else an op that ran
   on the CPU is checked at once (steps 3 and 4, on the training thread); a device op is handed to the worker
   thread (``shadow_worker.py``): steps 3 and 4 run there (and on the training thread while it would otherwise
   wait for the worker) while the training goes on;
3. run the same op on the snapshots with no Python dispatch mode (an in-place op out of place, or on
   clones), under ``no_grad``: in float64 (each snapshot widened once), or in the op's own dtype for the exact
   ops and the correctly rounded ones (:data:`_CORRECTLY_ROUNDED`), whose own-dtype result is the float64
   result rounded. ``dtype=`` arguments are kept (``_to_copy(dtype=bf16)`` of float64 copies is the correctly
   rounded bf16 result); ``half_to_float`` is cleared (a float64 softmax has no half input); ``device=``
   becomes the CPU;
4. judge each output in its own dtype against that reference (:func:`screen.judge_output`: the one metric its
   standard reads, the full :func:`metrics.compare_tensors` for an error; the reduction length from the input
   shapes); keep the metrics of the worst output, drop the tensors. A large matrix product or pointwise op is
   replayed and judged on a random set of its output rows (``rows``, ``shadow_rows.py``), an attention call on
   a random slice of its heads (``shadow_heads.py``): exactly that part of the full replay, at a fraction of its
   cost. A matrix product whose inputs are over ``max_numel`` is judged
   on a random ``rows`` x ``rows`` block of its output, a pointwise op on ``rows`` rows, from copies of only the
   rows and columns that make it (``shadow_blocks.py``).

The reference sees the device's own inputs, so every record is the error *that op* introduced; errors
its inputs carried do not count. A culprit is a record judged "error", ranked by ``Verdict.ratio``
(value / tolerance).

What is not compared (counted in :attr:`Shadow.skipped` by reason): ops outside the ``aten`` namespace
(collectives, profiler markers, vendor ops without a CPU kernel), random ops (``nondeterministic_seeded``:
dropout, bernoulli), ops that allocate without writing (``empty*``, ``resize_``, ``set_``), views and
metadata-only ops (``func.is_view`` or a non-written alias in the returns), exact copies (``clone``,
``contiguous``) and constants (``zero_``, ``fill_``, ``*_like``), which have no arithmetic to get wrong,
ops without a tensor output, ops whose tensors are not plain strided tensors (subclasses, sparse, meta; a wrapper
subclass's op, DTensor's, is checked as the ops it runs on its local tensors), ops over ``max_numel``
elements (but matrix products and pointwise ops: a block), checks whose CPU tensor was written behind the mode's back before they ran (``written unseen``: its
version counter moved), and ops the reference cannot run (recorded in ``not_replayable``). ``ops=``, ``scope=``,
``sample=`` and ``steps=`` bound the cost; call indices count every call, filtered or not, so the same
call has the same index whatever the filters.

Everything fails open: an internal error is logged once (``logging.getLogger("ascend_tools")``) and
the user's op returns its own result.
"""

import contextlib
import json
import logging
import math
import os
import random
import re
import sys
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Set, Tuple, Union

import numpy as np
import torch
from torch.utils._python_dispatch import _disable_current_modes

from .. import atomic, backend, swap_guard
from ..dispatch import PLAIN_TENSORS as _PLAIN
from ..dispatch import ModulePath, flat_tensors, op_name, written_args
from ..launch import failed
from ..op_names import UNDEFINED_VALUES, is_collective, is_wanted, normalise_op, op_base
from ..report import Finding, Report, Series, Severity, Table
from ..session import StepSession
from ..stacks import user_site
from . import drift, near_misses, shadow_process, shadow_worker, standards
from . import metrics as M
from .aliasing import COPIES
from .failopen_mode import FailOpenMode
from .replay import reference_dtype
from .replay_verdict import with_baseline
from .screen import judge_output
from .shadow_blocks import Block, take_block, take_rows
from .shadow_heads import ATTENTION, HeadBlock, HeadPick, no_dropout, pick_heads, take_head_block
from .shadow_kept import KeptRecords, level_of, pack, unpack
from .shadow_process import CheckProcess, Header, Job, mark
from .shadow_record import ShadowRecord, culprits, first_culprit
from .shadow_rows import DEFAULT_ROWS, GEMMS, RowDraws, RowPick, pick_rows, row_wise
from .shadow_snaps import Snap, SnapCache, unwatch_resizes, watch_resizes
from .shadow_worker import Worker
from .standards import Verdict

log = logging.getLogger("ascend_tools")
#: the part of a call's output a check judges: rows (shadow_rows.py) or an attention's heads (shadow_heads.py)
Pick = Union[RowPick, HeadPick]
#: the part of a call over max_numel a check copies and judges: a block (shadow_blocks.py) or a slice of heads
CallBlock = Union[Block, HeadBlock]

SCHEMA = "ascend-doctor/shadow/1"
#: Ops whose tensor inputs (or outputs) hold more elements than this are not shadowed (16M elements
#: are 128 MB per float64 copy).
DEFAULT_MAX_NUMEL = 1 << 24
#: Bytes of tensor copies kept for reuse by later ops that read the same unchanged tensor (shadow_snaps.py).
SNAP_BUDGET = 256 << 20
#: Records written per flush of the JSON lines (``out=``).
FLUSH_EVERY = 256

# ops whose outputs have undefined values, or that compute nothing: nothing to compare
_UNINITIALISED = UNDEFINED_VALUES | {"_local_scalar_dense", "item", "record_stream"}
# ops that return their input's storage under another shape without an alias annotation: views in effect
_VIEW_LIKE = frozenset(("_unsafe_view",))
# ops whose output holds constants whatever the inputs' values: no arithmetic a kernel could get wrong
_CONSTANT = frozenset(
    (
        "zero_",
        "fill_",
        "zeros_like",
        "ones_like",
        "full_like",
        "new_zeros",
        "new_ones",
        "new_full",
        "scalar_tensor",
    )
)
# ops IEEE 754 has correctly rounded (+ - * / sqrt): torch's CPU kernel in the op's own dtype makes the float64
# result rounded to that dtype (bf16/fp16 go through float32, which has the 2p+2 bits that make the double
# rounding harmless; bf16/fp16 division by a scalar multiplies by its reciprocal: 1 ULP at most off), so they
# are replayed and judged in their own dtype, without float64 copies; add/sub only with alpha 1 (a + alpha*b
# rounds twice), division only without a rounding mode
_CORRECTLY_ROUNDED = frozenset(("add", "sub", "mul", "div", "sqrt"))
_ROUNDING_MODES = frozenset(("Tensor_mode", "Scalar_mode"))
_LEVELS = {"pass": 0, "warning": 1, "error": 2}
_CPU = torch.device("cpu")


# --------------------------------------------------------------------------------------------- mode


class _Op:
    """What the mode needs to know about one overload, computed once."""

    __slots__ = (
        "alpha",
        "collective",
        "counted",
        "functional",
        "half_to_float",
        "heads",
        "mutated",
        "name",
        "own_dtype",
        "row_wise",
        "skip",
        "standard",
    )

    def __init__(self, func: Any, wanted: Optional[set]) -> None:
        self.name = op_name(func)
        self.standard = standards.standard_for(self.name)
        schema = func._schema
        self.counted = self.name.startswith("aten::")
        self.mutated = written_args(func)
        self.collective = is_collective(self.name)  # writes any of its tensors, after it returns
        self.functional = _functional(func, self.mutated)
        self.half_to_float = next(
            (i for i, a in enumerate(schema.arguments) if a.name == "half_to_float"), None
        )
        base = op_base(self.name)
        returns = schema.returns
        # replayed in its own dtype (exact ops, and the correctly rounded ones: see _CORRECTLY_ROUNDED)
        self.own_dtype = self.standard == "binary" or (
            base.rstrip("_") in _CORRECTLY_ROUNDED and schema.overload_name not in _ROUNDING_MODES
        )
        self.alpha = next((i for i, a in enumerate(schema.arguments) if a.name == "alpha"), None)
        self.row_wise = row_wise(self.name, func)
        self.heads = self.name in ATTENTION  # attention: a slice of heads is checked (shadow_heads.py)
        if not self.counted:
            self.skip = "not aten"
        elif not is_wanted(self.name, wanted):
            self.skip = "filtered"
        elif base in _UNINITIALISED:
            self.skip = "uninitialised"
        elif torch.Tag.nondeterministic_seeded in getattr(func, "tags", ()) and not self.heads:
            self.skip = "random"  # (attention: only where its dropout_p is not 0, told per call)
        elif (
            base in _VIEW_LIKE
            or getattr(func, "is_view", False)
            or any(r.alias_info is not None and not r.alias_info.is_write for r in returns)
        ):
            self.skip = "view"
        elif not self.mutated and not any("Tensor" in str(r.type) for r in returns):
            self.skip = "no tensor output"
        elif self.name.split(".")[0] in COPIES:  # clone, contiguous: the input's values, bit for bit
            self.skip = "exact copy"
        elif base in _CONSTANT:
            self.skip = "constant"
        else:
            self.skip = ""


def _plain(t: torch.Tensor) -> bool:
    """A tensor whose values a check can copy and replay: no subclass, strided, real, with data (not meta)."""
    return type(t) in _PLAIN and t.layout is torch.strided and not t.is_meta and not t.is_complex()


def _functional(func: Any, mutated: Tuple[Tuple[int, str], ...]) -> Any:
    """The out-of-place overload of an in-place op that writes ``self`` only (``add_.Tensor`` ->
    ``add.Tensor``) and takes the same arguments, else None: its replay needs no copy to write into."""
    schema = func._schema
    name = schema.name.split("::")[-1]
    if mutated != ((0, "self"),) or not name.endswith("_") or name.endswith("__"):
        return None
    packet = getattr(torch.ops.aten, name[:-1], None)
    out_of_place = getattr(packet, schema.overload_name or "default", None)
    if out_of_place is None:
        return None
    args = [(a.name, str(a.type)) for a in schema.arguments]
    return out_of_place if args == [(a.name, str(a.type)) for a in out_of_place._schema.arguments] else None


class _Pending(NamedTuple):
    """What the training thread hands the worker about one op call, besides the call itself."""

    op: _Op
    phase: str
    call: int
    rid: int
    module: str
    site: str
    step: int
    order: List[int]  # id of each tensor input, in argument order
    inputs: Dict[int, Snap]  # id(input) -> its copy on the CPU before the op
    written: Set[int]  # ids of the inputs the op writes
    copied: int  # bytes of the input copies made for this op (not shared from an earlier one)
    block: Optional[CallBlock] = None  # an op over max_numel: the block checked (inputs: its parts)


class _Live:
    """A check going to the check process from an op's live tensors (:meth:`Shadow._send_live`)."""

    __slots__ = (
        "inputs",
        "job",
        "meta",
        "op",
        "pick",
        "placed",
        "sent",
        "tensors",
        "writes",
        "written",
    )

    def __init__(
        self,
        op: _Op,
        meta: tuple,
        tensors: List[torch.Tensor],
        inputs: List[torch.Tensor],
        sent: tuple,
    ) -> None:
        self.op = op
        self.meta = meta  # phase, call, rid, module, site, step
        self.tensors = tensors  # every tensor argument, in order (the record's input shapes)
        self.inputs = inputs  # each tensor once: its slot
        self.sent = sent  # the arguments and keyword arguments, tensors marked by slot
        self.writes: List[int] = []  # slots the op writes
        self.written: List[int] = []  # slots put before the op: those it writes and what shares their storage
        self.placed: List[int] = []  # slots in the order they were put into the arena
        self.pick: Optional[Pick] = None
        self.job: Optional[Job] = None

    def rows_of(self, t: torch.Tensor) -> Optional[torch.Tensor]:
        """The rows of ``t`` the check reads, None for all of it."""
        pick = self.pick
        return pick.rows if isinstance(pick, RowPick) and id(t) in pick.cut else None


def pending_of(
    op: _Op,
    meta: tuple,
    order: List[int],
    inputs: Dict[int, Snap],
    written: Set[int],
    block: Optional[CallBlock] = None,
) -> _Pending:
    """A check's :class:`_Pending` from its call's ``(phase, call, rid, module, site, step)``."""
    phase, call, rid, module, site, step = meta
    return _Pending(op, phase, call, rid, module, site, step, order, inputs, written, 0, block)


_NULL = contextlib.nullcontext()
_pre_dispatch_len: Callable[[], int]
try:
    from torch._ops import _len_torch_dispatch_stack_pre_dispatch as _pre_dispatch_len
except ImportError:  # torch < 2.2: no pre-dispatch modes

    def _no_pre_dispatch() -> int:
        return 0

    _pre_dispatch_len = _no_pre_dispatch


def _no_modes() -> Any:
    """``_disable_current_modes()`` where another mode is active (below the shadow, e.g. a fault
    injector), else a null context: the disabling costs more than many small ops."""
    if torch._C._len_torch_dispatch_stack() == 0 and _pre_dispatch_len() == 0:
        return _NULL
    return _disable_current_modes()


class ShadowMode(FailOpenMode):
    """The dispatch mode of a :class:`Shadow` (see the module docstring); fail-open by its base. An op on a tensor
    subclass is checked as the ops the subclass runs on its local tensors (a DTensor's: tensor parallel's layers,
    FSDP2's optimizer), each against its own float64 replay."""

    through_subclasses = True

    def before(self, func: Any, args: Any, kwargs: Dict[str, Any]) -> Any:
        return self.owner._before(func, args, kwargs)

    def after(self, token: Any, func: Any, args: Any, kwargs: Dict[str, Any], out: Any) -> None:
        self.owner._after(token, func, args, kwargs, out)


class Shadow(StepSession):
    """See :func:`shadow`. After the block: :attr:`results`, :meth:`culprits`, :meth:`report`."""

    tool = "shadow"

    def __init__(
        self,
        ops: Optional[Sequence[str]] = None,
        scope: Optional[Sequence[str]] = None,
        sample: int = 1,
        model: Optional[torch.nn.Module] = None,
        max_numel: int = DEFAULT_MAX_NUMEL,
        out: Optional[str] = None,
        steps: Optional[Iterable[int]] = None,
        keep: bool = True,
        rank: Optional[int] = None,
        baseline: bool = True,
        rows: int = DEFAULT_ROWS,
        process: Optional[bool] = None,
    ) -> None:
        if int(sample) < 1:
            raise ValueError(f"sample must be >= 1, not {sample!r}")
        self.ops = [ops] if isinstance(ops, str) else list(ops or [])
        self._wanted = {n for o in self.ops for n in normalise_op(o)} or None
        self._init_session(steps, [scope] if isinstance(scope, str) else scope)
        self.sample = int(sample)
        self.model = model
        self.max_numel = int(max_numel)
        self.out = out
        self.keep = keep
        self.baseline = baseline
        if int(rows) < 0:
            raise ValueError(f"rows must be >= 0 (0: every row), not {rows!r}")
        self.rows = int(rows)
        self._rng = np.random.default_rng(0)  # the rows checked (shadow_rows.py): never the user's RNG
        self._row_draws = RowDraws(self._rng)
        self._block_rng = random.Random(1)  # the blocks (shadow_blocks.py), drawn on the training thread
        self._below = lambda n: int(self._rng.integers(n))  # (the heads of an attention: shadow_heads.py)
        self.rank = backend.rank() if rank is None else int(rank)
        # every record (keep=True), else only those judged "error" (the report needs them): sh.results
        self._kept = KeptRecords()
        #: calls not compared, by reason ("view", "random", "filtered", "max_numel", ...)
        self.skipped: Counter = Counter()
        self.largest_skipped = 0  # elements of the largest call skipped for max_numel (the report's hint)
        #: op name -> calls whose float64 reference could not run
        self.not_replayable: Counter = Counter()
        self.compared = 0
        self._verdicts: Counter = Counter()
        self._ops: Dict[Any, _Op] = {}
        self._next_id = 0
        # (name, id) of the ops of the window after a backward (session.py)
        self._window: List[Tuple[str, int]] = []
        self._mode: Optional[ShadowMode] = None
        self._paths: Optional[ModulePath] = None
        self._out: Optional[atomic.OutputDir] = None  # self.out, opened in start(), closed in close()
        self._file: Any = None
        self._lines: List[Tuple[int, int, str]] = []  # (step, id, JSON line)
        # the float64 replays and comparisons run on this thread, and on the training thread when it waits for
        # it (shadow_worker.py); _lock guards what both may touch: counters, records, lines to write
        self._worker = Worker(self._check, self._fail)
        self._inline_cpu = shadow_worker.INLINE_CPU
        self._snaps = SnapCache(SNAP_BUDGET)
        self._lock = threading.Lock()
        self._late_skips: Counter = Counter()  # counted by the worker, added to skipped when it stops
        # the checks in a process of their own (shadow_process.py), started after the first step: None (the
        # default: where the machine has two CPUs for it), True or False
        self.process = process
        self._process: Optional[CheckProcess] = None
        self.checked_in_process = 0  # records the check process made
        self.start_time = time.time()

    # --- public -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._active:
            return
        if self.out:
            # held open for the whole session, closed in close(); a symlink, FIFO or hard link planted at the
            # name is refused (logged once, no records written, the training goes on)
            try:
                self._out = atomic.OutputDir(self.out)
                self._file = self._out.open_append(
                    os.path.basename(records_path("", self.rank)), truncate=True
                )
            except OSError as exc:
                self._fail(exc)
        self._enter_module_paths(self.model)
        self._install_step_hook()
        self._active = True
        self._update_off()
        if shadow_process.START_AT_STEP == 0:
            self._guarded(self._start_process)
        watch_resizes(self._snaps)
        swap_guard.hold(self)
        self._enter_dispatch(ShadowMode(self))

    def close(self) -> None:
        """Leave the dispatch mode, remove the hooks, write what is left. Safe to call twice."""
        if not self._active:
            return
        self._active = False
        self._update_off()
        try:
            self._exit_dispatch()
            self._worker.stop()
            self._stop_process()
            self.skipped.update(self._late_skips)
            self._late_skips.clear()
            self._flush()
            if self._out is not None:
                with self._out.open_atomic(os.path.basename(meta_path("", self.rank))) as f:
                    json.dump(self.meta(), f, indent=1)
        except Exception as exc:
            self._fail(exc)
        finally:
            unwatch_resizes(self._snaps)
            swap_guard.let_go(self)
            if self._snaps.failed_resizes:
                log.warning(
                    "shadow: %d storage resizes came before their tensors could be copied: the checks of the "
                    "ops that read them may be wrong",
                    self._snaps.failed_resizes,
                )
            if self._file is not None:
                self._file.close()
                self._file = None
            if self._out is not None:
                self._out.close()
                self._out = None

    @property
    def results(self) -> List[ShadowRecord]:
        """Every op compared so far, in execution order (empty with ``keep=False``); inside the block, once the
        checks of every op run so far are made."""
        self._drain()
        with self._lock:
            return self._kept.records() if self.keep else []

    def culprits(self) -> List[ShadowRecord]:
        """Records judged "error", largest introduced error (``Verdict.ratio``) first."""
        return culprits(self._judged())

    def first_culprit(self) -> Optional[ShadowRecord]:
        """The first culprit in execution order (where the run first went wrong)."""
        return first_culprit(self._judged())

    def report(self, top: int = 10) -> Report:
        return build_report(self._judged(), [self.meta()], top=top)

    def _judged(self) -> List[ShadowRecord]:
        """The kept records once every op run so far is judged (inside the block too)."""
        self._drain()
        with self._lock:
            return self._kept.records()

    def meta(self) -> Dict[str, Any]:
        return {
            "rank": self.rank,
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "options": {
                "ops": self.ops,
                "scope": self.scope,
                "sample": self.sample,
                "max_numel": self.max_numel,
                "rows": self.rows,
                "steps": sorted(self.steps) if self.steps is not None else None,
                "process": self.process,
            },
            "checked_in_process": self.checked_in_process,
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.start_time)),
            "steps_seen": self.step_no + 1,
            "compared": self.compared,
            "verdicts": dict(self._verdicts),
            "skipped": dict(self.skipped),
            "largest_skipped_numel": self.largest_skipped,
            "not_replayable": dict(self.not_replayable),
            "internal_errors": self.internal_errors,
            "torch_compile_calls": self.compiles.calls,  # run eagerly under the shadow (compile_watch.py)
            "torch": torch.__version__,
        }

    # --- internals: state ---------------------------------------------------------------------------

    def _update_off(self) -> None:
        self._off = not self._active or (self.steps is not None and self.step_no not in self.steps)
        if self._off:  # ops that run unseen may write what the copies hold
            self._snaps.clear()

    def _optimizer_enter(self, *args: Any, **kwargs: Any) -> None:
        super()._optimizer_enter(*args, **kwargs)
        if not self._off:
            # a fused optimizer kernel called from C++ (apex's, DeepSpeed's FusedAdam) writes the parameters unseen,
            # without a version bump: the live snaps the checks still to run hold (a weight backward's last matmul
            # read) are copied first
            self._guarded(self._snaps.clear)

    def _close_window(self) -> None:
        super()._close_window()
        self._window = []

    def _window_is_optimizer(self) -> None:
        """The window's ops, checked or not, are counted as the optimizer's (they come before its own); their
        records, all made once the worker has run what waits, are relabelled (none is written before: see
        :meth:`_record`)."""
        if self._window:
            self._drain()
            numbers = self._optimizer_calls(name for name, _ in self._window)
            calls = {rid: call for (_, rid), call in zip(self._window, numbers)}
            with self._lock:
                self._kept.relabel(self.step_no, calls, "optimizer")
                for i, (step, rid, line) in enumerate(self._lines):
                    if step == self.step_no and rid in calls:
                        raw = json.loads(line)
                        raw["phase"], raw["call"] = "optimizer", calls[rid]
                        self._lines[i] = (
                            step,
                            rid,
                            json.dumps(raw, separators=(",", ":"), allow_nan=False) + "\n",
                        )
        super()._window_is_optimizer()

    def _advance(self) -> None:
        try:
            self._flush()
        except Exception as exc:
            self._fail(exc)
        self.step_no += 1
        self._snaps.clear()  # a step may write a tensor unseen (through numpy): copies last one step
        self._calls = {}
        self._next_id = 0
        self._update_off()
        if self.step_no == shadow_process.START_AT_STEP and self._active:
            self._guarded(self._start_process)

    def _start_process(self) -> None:
        """Start the check process (shadow_process.py) where it is wanted: after the first step (a session of one
        step would not pay for its start); its checks run in this process until it is ready."""
        if self._process is None and shadow_process.wanted(self.process):
            options = {"baseline": self.baseline, "rank": self.rank}
            self._process = CheckProcess(options, self._delivered)

    def _stop_process(self) -> None:
        proc, self._process = self._process, None
        if proc is not None:
            proc.stop()
            if proc.lost:
                self.skipped["check process died"] += proc.lost

    def _drain(self) -> None:
        """Wait until every op handed over so far is judged."""
        self._worker.drain()
        if self._process is not None:
            self._process.drain()

    def _delivered(
        self, records: List[tuple], not_replayable: Dict[str, int], skipped: Dict[str, int], errors: List[str]
    ) -> None:
        """Results of the check process (on its reader thread): packed records, counters, error messages."""
        for p in records:
            self._record_packed(p)
        with self._lock:
            self.checked_in_process += len(records)
            self.not_replayable.update(not_replayable)
            self._late_skips.update(skipped)
        for message in errors:
            self._fail(RuntimeError(f"shadow check process: {message}"))

    def _release_tensors(self, kept: torch.Tensor, gone: torch.Tensor) -> Optional[Callable[[], None]]:
        """Let go of the weak references to two tensors about to be swapped (``swap_guard.py``), and of the strong
        ones: the checks waiting or running hold their calls' arguments, so they are run first (torch refuses to
        swap a tensor referenced elsewhere; ``module.to()`` then raises in the user's code)."""
        self._worker.drain()
        with _disable_current_modes():  # (the copies of live snaps are the shadow's, not the user's ops)
            for t in (kept, gone):
                self._snaps.release(t)
        return self._paths.names.release_params(kept, gone) if self._paths is not None else None

    def _site(self) -> str:
        """``file:line in function`` of the innermost frame outside torch, the stdlib and this package."""
        return user_site(sys._getframe(4))

    # --- internals: per op, in the training thread ---------------------------------------------------

    def _before(self, func: Any, args: Any, kwargs: Dict[str, Any]) -> Optional[Union[_Pending, _Live]]:
        op = self._ops.get(func)
        if op is None:
            op = self._ops[func] = _Op(func, self._wanted)
        pre = self._pending(op, args, kwargs)
        # after the copies of its inputs: what it writes no longer holds their values; a collective may write any of
        # its tensors (gloo's threads, NCCL's or HCCL's streams write after it returns: DDP's buckets)
        if op.mutated or op.collective:
            written: List[torch.Tensor] = []
            if op.collective:
                tensor_args = [a for a in (*args, *kwargs.values()) if isinstance(a, (torch.Tensor, list))]
                flat_tensors(tensor_args, written)
            for i, name in op.mutated:
                flat_tensors(args[i] if i < len(args) else kwargs.get(name), written)
            with _no_modes():  # (a copy on write must not meet a mode below the shadow)
                for t in written:
                    self._snaps.written(t)
        return pre

    def _pending(self, op: _Op, args: Any, kwargs: Dict[str, Any]) -> Optional[Union[_Pending, _Live]]:
        module = self._paths.current() if self._paths is not None else ""  # every op: see ModulePath
        if not op.counted:
            return None
        phase = self._op_phase()
        key = (op.name, phase)
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        rid = self._next_id
        self._next_id += 1
        if self._in_window:
            self._window.append((op.name, rid))
        if op.skip:
            self.skipped[op.skip] += 1
            return None
        if op.heads and not no_dropout(op.name, args, kwargs):
            self.skipped["random"] += 1
            return None
        if self.sample > 1 and call % self.sample:
            self.skipped["sampled out"] += 1
            return None
        if self.scope and not self._in_scope(module):
            self.skipped["out of scope"] += 1
            return None
        tensors: List[torch.Tensor] = []
        flat_tensors(args, tensors)
        if kwargs:
            flat_tensors(kwargs, tensors)
        if not tensors:
            self.skipped["no tensor input"] += 1
            return None
        numel = 0
        for t in tensors:
            if not _plain(t):
                self.skipped["not a plain tensor"] += 1
                return None
            numel += t.numel()
        if numel > self.max_numel:
            return self._block(op, phase, call, rid, module, args, kwargs, numel)
        written = _written(op, args, kwargs)
        proc = self._process
        if proc is not None and proc.usable():
            live = self._send_live(
                proc,
                op,
                (phase, call, rid, module, self._site(), self.step_no),
                args,
                kwargs,
                tensors,
                written,
            )
            if live is not None:
                return live
        # the inputs as they are before the op (an in-place op overwrites them, a later op may), on the CPU: the
        # copy an earlier op left of an unchanged tensor, else a new one; a tensor passed twice is copied once, so
        # aliasing is kept
        inputs: Dict[int, Snap] = {}
        cache = self._snaps
        copied = 0
        with _no_modes():
            for t in tensors:
                tid = id(t)
                if tid not in inputs:
                    snap = cache.get(t)
                    if snap is None:
                        snap = cache.take(t)
                        copied += snap.tensor.nbytes
                        if tid not in written:
                            cache.put(t, snap)
                    inputs[tid] = snap
        cache.hold(inputs.values())
        order = [id(t) for t in tensors]
        return _Pending(
            op, phase, call, rid, module, self._site(), self.step_no, order, inputs, written, copied
        )

    def _block(
        self,
        op: _Op,
        phase: str,
        call: int,
        rid: int,
        module: str,
        args: Any,
        kwargs: Dict[str, Any],
        numel: int,
    ) -> Optional[_Pending]:
        """A call over ``max_numel``: a matrix product's block or a pointwise op's rows (``shadow_blocks.py``) where
        ``rows`` is not 0 and the parts are under ``max_numel``, else skipped."""
        block: Optional[CallBlock] = None
        if self.rows and op.row_wise:
            take = take_block if op.name in GEMMS else take_rows
            with _no_modes():
                block = take(op.name, args, kwargs, self.rows, self._block_rng)
        elif self.rows and op.heads:  # an attention call's slice of heads (shadow_heads.py)
            with _no_modes():
                block = take_head_block(op.name, args, kwargs, self.rows, self._block_rng.randrange)
        if block is None or sum(p.numel() for p in block.parts.values()) > self.max_numel:
            self._too_large(numel)
            return None
        inputs = {tid: Snap(part) for tid, part in block.parts.items()}
        self._snaps.hold(inputs.values())
        copied = sum(p.nbytes for p in block.parts.values())
        order = [id(t) for t in args if isinstance(t, torch.Tensor)]
        written = _written(op, args, kwargs)
        return _Pending(
            op, phase, call, rid, module, self._site(), self.step_no, order, inputs, written, copied, block
        )

    def _after(
        self, pre: Union[_Pending, _Live], func: Any, args: Any, kwargs: Dict[str, Any], out: Any
    ) -> None:
        """Copy the outputs (a later op may overwrite them) and hand the op to the worker."""
        targets: List[torch.Tensor] = []
        flat_tensors(out, targets)
        if isinstance(pre, _Live):
            self._sent_live(pre, func, args, kwargs, targets)
            return
        if pre.block is not None:
            with _no_modes():
                blocks = [Snap(pre.block.output(t)) for t in targets]
            self._snaps.hold(blocks)
            nbytes = pre.copied + sum(b.tensor.nbytes for b in blocks)
            self._hand_off((pre, func, args, kwargs, blocks, False), nbytes, targets)
            return
        from_args = not targets and bool(pre.op.mutated)  # in-place ops that return nothing (_foreach_add_)
        if from_args:
            for i, name in pre.op.mutated:
                flat_tensors(args[i] if i < len(args) else kwargs.get(name), targets)
        cache = self._snaps
        numel = sum(t.numel() for t in targets)
        if not targets or numel > self.max_numel:
            if targets:
                self._too_large(numel)
            else:
                self.skipped["no tensor output"] += 1
            cache.leave(pre.inputs.values(), entered=False)
            return
        if not all(
            _plain(t) for t in targets
        ):  # CPU in, meta out: transformers' from_pretrained, init_empty_weights
            self.skipped["not a plain tensor"] += 1
            cache.leave(pre.inputs.values(), entered=False)
            return
        outputs: List[Snap] = []
        nbytes = pre.copied
        with _no_modes():
            for t in targets:
                bumps = 1 if id(t) in pre.written else 0
                snap = cache.take(t, bumps)
                cache.put(t, snap, bumps)
                outputs.append(snap)
                nbytes += snap.tensor.nbytes
        cache.hold(outputs)
        self._hand_off((pre, func, args, kwargs, outputs, from_args), nbytes, targets)

    def _send_live(
        self,
        proc: CheckProcess,
        op: _Op,
        meta: tuple,
        args: Any,
        kwargs: Dict[str, Any],
        tensors: List[torch.Tensor],
        written: Set[int],
    ) -> Optional[_Live]:
        """A CPU op's check for the check process, from its live tensors (no snapshot): what the op writes is put
        into the arena now, before the op changes it (the rows its check reads: an in-place op's output rows are
        those of what it writes), the rest once it has run (:meth:`_sent_live`). None: the snapshot path (a device
        tensor, an argument the pipe does not carry, no room)."""
        index: Dict[int, int] = {}
        inputs: List[torch.Tensor] = []
        for t in tensors:
            if id(t) not in index:
                if t.device.type != "cpu":
                    return None
                index[id(t)] = len(inputs)
                inputs.append(t)
        try:
            sent = (mark(args, index), mark(kwargs, index))
        except TypeError:
            return None
        live = _Live(op, meta, tensors, inputs, sent)
        live.writes = [index[tid] for tid in written if tid in index]
        if written:
            # an input that shares storage with a written one changes with it (add_(x, x.view(...)))
            storages = {t.untyped_storage().data_ptr() for t in inputs if id(t) in written}
            live.written = [
                k
                for k, t in enumerate(inputs)
                if id(t) in written or t.untyped_storage().data_ptr() in storages
            ]
            targets = [inputs[k] for k in live.written]
            live.pick = self._live_pick(op, args, kwargs, inputs, targets)
            live.job = proc.open()
            if not proc.put(live.job, [(inputs[k], live.rows_of(inputs[k])) for k in live.written]):
                proc.commit(live.job, None)
                return None
            live.placed.extend(live.written)
        return live

    def _live_pick(
        self,
        op: _Op,
        args: Any,
        kwargs: Dict[str, Any],
        inputs: List[torch.Tensor],
        outputs: List[torch.Tensor],
    ) -> Optional[Pick]:
        """:meth:`_pick` of a call whose tensors are at hand."""
        if not (self.rows and (op.row_wise or op.heads)):
            return None
        shapes = {id(t): t.shape for t in inputs}
        if op.row_wise:
            return pick_rows(
                op.name, args, kwargs, shapes, [t.shape for t in outputs], self.rows, self._row_draws
            )
        return pick_heads(op.name, args, kwargs, shapes, self.rows, self._below)

    def _sent_live(
        self, live: _Live, func: Any, args: Any, kwargs: Dict[str, Any], targets: List[torch.Tensor]
    ) -> None:
        """The rest of a :meth:`_send_live` check once its op has run: the other inputs and the outputs."""
        proc, op = self._process, live.op
        if proc is None:
            return
        from_args = not targets and bool(op.mutated)  # in-place ops that return nothing (_foreach_add_)
        if from_args:
            for i, name in op.mutated:
                flat_tensors(args[i] if i < len(args) else kwargs.get(name), targets)
        numel = sum(t.numel() for t in targets)
        if not targets or numel > self.max_numel or not all(_plain(t) for t in targets):
            if not targets:
                self.skipped["no tensor output"] += 1
            elif numel > self.max_numel:
                self._too_large(numel)
            else:
                self.skipped["not a plain tensor"] += 1
            if live.job is not None:
                proc.commit(live.job, None)
            return
        if live.job is None:
            live.pick = self._live_pick(op, args, kwargs, live.inputs, targets)
            live.job = proc.open()
        pick, job = live.pick, live.job
        if isinstance(pick, RowPick) and any(t.dim() < 2 or t.shape[-2] != pick.total for t in targets):
            # (an in-place op's rows were drawn from what it writes, which are its outputs)
            proc.commit(job, None)
            self.skipped["rows unforeseen"] += 1
            return
        parts = [(k, t) for k, t in enumerate(live.inputs) if k not in live.written]
        outputs = targets
        if isinstance(pick, HeadPick):  # (the heads' parts are taken here, then copied whole)
            parts = [(k, pick.take(t) if id(t) in pick.cut else t) for k, t in parts]
            outputs = [pick.take(t) for t in targets]
        rows = pick.rows if isinstance(pick, RowPick) else None
        items = [(t, live.rows_of(t)) for _, t in parts]
        items.extend((t, rows) for t in outputs)
        if not proc.put(job, items):
            proc.commit(job, None)
            if live.written:  # (what it wrote is gone but for the arena's copy)
                self.skipped[
                    "too large for the check process" if proc.usable() else "check process died"
                ] += 1
                return
            # its inputs are as the op read them: checked here
            inputs = {id(t): Snap(t.detach()) for t in live.inputs}
            order = [id(t) for t in live.tensors]
            pre = pending_of(op, live.meta, order, inputs, set())
            with _no_modes(), torch.no_grad():
                self._replay((pre, func, args, kwargs, [Snap(t.detach()) for t in targets], from_args))
            return
        live.placed.extend(k for k, _ in parts)
        checked = pick.checked() if pick is not None else None
        shapes = [list(t.shape) for t in live.tensors]
        header = Header(
            op.name,
            live.meta,
            live.sent[0],
            live.sent[1],
            len(live.inputs),
            live.writes,
            from_args,
            shapes,
            checked,
            None,
            live.placed,
        )
        proc.commit(job, header)

    def _hand_off(self, job: tuple, nbytes: int, targets: List[torch.Tensor]) -> None:
        """Check an op the training thread ran on the CPU here and now, a device op's on the worker
        (``shadow_worker.INLINE_CPU``)."""
        proc = self._process
        if (proc is not None and proc.usable()) or (
            self._inline_cpu and (not targets or targets[0].device.type == "cpu")
        ):
            self._worker.run(job)  # (to the check process from here: _send)
        else:
            self._worker.submit(job, nbytes)

    def _too_large(self, numel: int) -> None:
        self.skipped["max_numel"] += 1
        self.largest_skipped = max(self.largest_skipped, numel)

    # --- internals: per op, in the worker thread ----------------------------------------------------

    def _check(self, job: tuple) -> None:
        """The float64 replay of one op on its copied inputs, its outputs judged against it; one record. With no
        dispatch mode: the training thread runs checks too (while it waits for the worker), inside the block."""
        snaps = [*job[0].inputs.values(), *job[4]]
        cache = self._snaps
        intact = cache.enter(snaps)
        try:
            if intact:
                with _no_modes(), torch.no_grad():
                    if not self._send(job):
                        self._replay(job)
            else:
                with self._lock:
                    self._late_skips["written unseen"] += 1
        finally:
            cache.leave(snaps)

    def _replay(self, job: tuple) -> None:
        pre, func, args, kwargs, outputs, from_args = job
        op = pre.op
        # an in-place op is replayed out of place, else on its own copies of what it writes: the copies from
        # before the op stay for the baseline and for the other ops that share them
        replay = op.functional or func
        own = op.own_dtype and _unit_alpha(op, args, kwargs)
        pick = self._pick(pre, args, kwargs, outputs)
        if own:
            copies = {
                tid: pick.take(s.tensor) if pick and tid in pick.cut else s.tensor
                for tid, s in pre.inputs.items()
            }
        else:
            # the truth's dtype as compare's replay picks it: float32 for an op whose floating outputs are all
            # bf16/fp16 and whose floating inputs are at most float32 (a float32 GEMM is ~2x a float64 one)
            truth = reference_dtype([s.tensor for s in pre.inputs.values()], [s.tensor for s in outputs])
            copies = {
                tid: s.wide_part(pick.take, truth) if pick and tid in pick.cut else s.wide(truth)
                for tid, s in pre.inputs.items()
            }
        if replay is func:
            for tid in pre.written & copies.keys():
                copies[tid] = copies[tid].clone()
        ref_args, ref_kwargs = _ref_call(op, args, kwargs, copies, not own)
        try:
            ref = replay(*ref_args, **ref_kwargs)
        except Exception as exc:  # no float64/CPU kernel for it: not an internal error
            with self._lock:
                self.not_replayable[op.name] += 1
                first = self.not_replayable[op.name] == 1
            if first:
                log.debug("shadow: %s not replayed on CPU float64: %s: %s", op.name, type(exc).__name__, exc)
            return
        refs: List[Any] = []
        if from_args and replay is func:
            for i, name in op.mutated:
                flat_tensors(ref_args[i] if i < len(ref_args) else ref_kwargs.get(name), refs)
        else:
            flat_tensors(ref, refs)
        if len(outputs) != len(refs):
            with self._lock:
                self._late_skips["no tensor output"] += 1
            return
        block = pre.block
        shapes = block.shapes if block else [list(pre.inputs[tid].shape) for tid in pre.order]
        reduction = standards.reduction_length(op.name, shapes)
        best: Optional[Tuple[int, M.PairMetrics, Verdict]] = None
        for i, (s, r) in enumerate(zip(outputs, refs)):
            # (the output in its own dtype: the screen reads a float32/bf16/fp16 output against a wider
            # reference as it would read it widened, without widening it)
            m, v = judge_output(op.name, pick.take(s.tensor) if pick else s.tensor, r, reduction)
            if best is None or (_LEVELS.get(v.level, 0), v.ratio) > (
                _LEVELS.get(best[2].level, 0),
                best[2].ratio,
            ):
                best = (i, m, v)
        assert best is not None
        out_i, m, v = best
        if v.level == "error" and self.baseline and not own:  # (own: the reference is that baseline)
            v = self._second_opinion(pre, func, args, kwargs, refs[out_i], out_i, v, reduction, pick)
        rows, cols = block.checked() if block else (pick.checked() if pick else None, None)
        self._record(
            ShadowRecord(
                id=pre.rid,
                name=op.name,
                phase=pre.phase,
                call=pre.call,
                module=pre.module,
                site=pre.site,
                metrics=m,
                verdict=v,
                input_shapes=shapes,
                output=out_i,
                step=pre.step,
                rank=self.rank,
                rows=rows,
                cols=cols,
            )
        )

    def _pick(self, pre: _Pending, args: Any, kwargs: Dict[str, Any], outputs: List[Snap]) -> Optional[Pick]:
        """The part of a call's output its check judges (None: all of it; a block is taken already)."""
        op = pre.op
        if not ((op.row_wise or op.heads) and self.rows and pre.block is None):
            return None
        by_id = {tid: s.shape for tid, s in pre.inputs.items()}
        if op.row_wise:  # some of the output's rows (shadow_rows.py)
            out_shapes = [s.shape for s in outputs]
            return pick_rows(op.name, args, kwargs, by_id, out_shapes, self.rows, self._row_draws)
        return pick_heads(op.name, args, kwargs, by_id, self.rows, self._below)  # (shadow_heads.py)

    def _send(self, job: tuple) -> bool:
        """Hand a check to the check process (shadow_process.py): the part of each input and output it reads and
        the call with each tensor marked; False where it is not running or cannot take this call."""
        proc = self._process
        if proc is None or not proc.usable():
            return False
        pre, _, args, kwargs, outputs, from_args = job
        index = {tid: k for k, tid in enumerate(pre.inputs)}
        try:
            sent_args, sent_kwargs = mark(args, index), mark(kwargs, index)
        except (TypeError, KeyError):  # an argument the pipe does not carry: checked here
            return False
        pick = self._pick(pre, args, kwargs, outputs)
        tensors = [s.tensor for s in pre.inputs.values()]
        tensors.extend(s.tensor for s in outputs)
        rows_of: List[Optional[torch.Tensor]] = [None] * len(tensors)
        if isinstance(pick, RowPick):  # the rows gathered into the shared arena: one copy
            rows_of = [pick.rows if tid in pick.cut else None for tid in pre.inputs]
            rows_of.extend(pick.rows for _ in outputs)
        elif pick is not None:  # (an attention's heads)
            tensors = [pick.take(t) if tid in pick.cut else t for tid, t in zip(pre.inputs, tensors)]
            tensors.extend(pick.take(s.tensor) for s in outputs)
        block = pre.block
        shapes = block.shapes if block else [list(pre.inputs[tid].shape) for tid in pre.order]
        rows, cols = block.checked() if block else (pick.checked() if pick else None, None)
        meta = (pre.phase, pre.call, pre.rid, pre.module, pre.site, pre.step)
        written = [index[tid] for tid in pre.written if tid in index]
        n_in = len(pre.inputs)
        header = Header(
            pre.op.name,
            meta,
            sent_args,
            sent_kwargs,
            n_in,
            written,
            from_args,
            shapes,
            rows,
            cols,
            list(range(n_in)),
        )
        return proc.send(header, tensors, rows_of)

    def _record(self, rec: ShadowRecord) -> None:
        line = self._line(rec) if self._file is not None else None
        self._keep(pack(rec), rec.verdict.level, line)

    def _record_packed(self, p: tuple) -> None:
        """:meth:`_record` of a record the check process packed."""
        line = self._line(unpack(p)) if self._file is not None else None
        self._keep(p, level_of(p), line)

    @staticmethod
    def _line(rec: ShadowRecord) -> str:
        return json.dumps(rec.to_json(), separators=(",", ":"), allow_nan=False) + "\n"

    def _keep(self, p: tuple, level: str, line: Optional[str]) -> None:
        with self._lock:
            self.compared += 1
            self._verdicts[level] += 1
            if self.keep or level == "error":
                self._kept.add(p)
            if line is not None:
                self._lines.append((p[0], p[1], line))
            # (not while a window after a backward is open: its lines may still be relabelled)
            full = len(self._lines) >= FLUSH_EVERY and not self._window
        if full:
            self._flush()

    def _second_opinion(
        self,
        pre: _Pending,
        func: Any,
        args: Any,
        kwargs: Dict[str, Any],
        ref: torch.Tensor,
        out_i: int,
        verdict: Verdict,
        reduction: Optional[int],
        pick: Optional[Pick],
    ) -> Verdict:
        """An op judged "error" is run once more on CPU in the device's own dtypes, from the copies of its
        inputs taken before it ran, cast back (exact): what a correct kernel of that precision makes on these
        inputs (cancellation in a softmax backward, rounding of an fp16 ``add_``). The verdict is regraded by
        :func:`replay_verdict.with_baseline`, the rule compare uses too. A wrong device kernel stays far above; on a
        CPU device the two agree. (It is the last use of the copies: an in-place op may overwrite them.)"""
        op = pre.op
        try:
            # (copies of what the op writes: the float64 copies are shared with other ops)
            low = {tid: s.tensor.clone() if tid in pre.written else s.tensor for tid, s in pre.inputs.items()}
            if pick:
                low.update((tid, pick.take(low[tid])) for tid in pick.cut)
            low_args, low_kwargs = _ref_call(op, args, kwargs, low, False)
            outs: List[Any] = []
            flat_tensors(func(*low_args, **low_kwargs), outs)
            base_m = M.compare_tensors(outs[out_i], ref)
            base_v = standards.judge(base_m, op.name, reduction)
        except Exception as exc:  # no CPU kernel for that dtype: keep the verdict
            log.debug("shadow: %s not run on CPU in its own dtype: %s: %s", op.name, type(exc).__name__, exc)
            return verdict
        return with_baseline(verdict, base_v, base_m.target_dtype)

    def _flush(self) -> None:
        with self._lock:  # both threads flush: one batch at a time, in order
            lines, self._lines = self._lines, []
            if self._file is not None and lines:
                self._file.write("".join(line for _, _, line in sorted(lines)))
                self._file.flush()


def _written(op: _Op, args: Any, kwargs: Dict[str, Any]) -> Set[int]:
    """The ids of the tensors the call writes."""
    written: Set[int] = set()
    for i, name in op.mutated:
        found: List[torch.Tensor] = []
        flat_tensors(args[i] if i < len(args) else kwargs.get(name), found)
        written.update(id(t) for t in found)
    return written


def _unit_alpha(op: _Op, args: Any, kwargs: Dict[str, Any]) -> bool:
    """Whether the call's ``alpha`` (add, sub) is absent or 1: ``a + alpha*b`` rounds once only then."""
    if op.alpha is None:
        return True
    alpha = args[op.alpha] if op.alpha < len(args) else kwargs.get("alpha", 1)
    return isinstance(alpha, (int, float)) and alpha == 1


def _replace(value: Any, copies: Dict[int, torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        return copies[id(value)]
    if isinstance(value, (list, tuple)):
        return type(value)(_replace(v, copies) for v in value)
    return value


def _ref_call(
    op: _Op, args: Any, kwargs: Dict[str, Any], copies: Dict[int, torch.Tensor], widened: bool
) -> Tuple[tuple, Dict[str, Any]]:
    """The call's arguments with every tensor replaced by its copy, on the CPU; ``widened`` (float64
    copies): ``half_to_float`` cleared (a float64 softmax has no half input to widen)."""
    ref_args = tuple(_replace(a, copies) for a in args)
    ref_kwargs = {k: _replace(v, copies) for k, v in kwargs.items()} if kwargs else {}
    if "device" in ref_kwargs:
        ref_kwargs["device"] = _CPU
    h = op.half_to_float
    if widened and h is not None:
        if h < len(ref_args):
            ref_args = (*ref_args[:h], False, *ref_args[h + 1 :])
        elif "half_to_float" in ref_kwargs:
            ref_kwargs["half_to_float"] = False
    return ref_args, ref_kwargs


def shadow(
    ops: Optional[Sequence[str]] = None,
    scope: Optional[Sequence[str]] = None,
    sample: int = 1,
    model: Optional[torch.nn.Module] = None,
    max_numel: int = DEFAULT_MAX_NUMEL,
    out: Optional[str] = None,
    steps: Optional[Iterable[int]] = None,
    baseline: bool = True,
    rows: int = DEFAULT_ROWS,
    process: Optional[bool] = None,
) -> Shadow:
    """Compare every op run inside ``with shadow(...) as sh:`` with a CPU float64 run of the same op on
    copies of its inputs; ``sh.results``, ``sh.culprits()`` and ``sh.report()`` after the block.

    ``ops``: op names to compare (``aten::mm``, ``mm``, ``matmul``); ``scope``: module-path prefixes or
    regexes (an op is compared when its innermost module matches one); ``sample``: compare every N-th
    call of each op; ``max_numel``: skip ops over this many elements (a matrix product or pointwise op over it is
    checked on a random block of ``rows`` rows and columns of its output); ``model``: names modules from this
    root; ``out``: a directory to also write the records to as JSON lines (``rank{r}.jsonl``);
    ``steps``: step numbers to compare (steps count ``optimizer.step()`` calls, or ``sh.step()`` calls);
    ``baseline``: re-run an op judged "error" on CPU in its own dtype and allow twice that run's error
    (what the precision itself explains on these inputs); ``rows``: rows of a matrix product's output checked
    per call, drawn at random (``shadow_rows.py``; 0: every row); ``process``: run the checks in a process of
    their own, started after the first step (``shadow_process.py``; None: where the machine has two CPUs for it)."""
    return Shadow(
        ops=ops,
        scope=scope,
        sample=sample,
        model=model,
        max_numel=max_numel,
        out=out,
        steps=steps,
        baseline=baseline,
        rows=rows,
        process=process,
    )


# ----------------------------------------------------------------------------------------------- I/O


def records_path(out: str, rank: int) -> str:
    return os.path.join(out, f"rank{rank}.jsonl")


def meta_path(out: str, rank: int) -> str:
    return os.path.join(out, f"rank{rank}.meta.json")


def written_ranks(out: str) -> List[int]:
    """The ranks whose records (``rank{r}.jsonl``) are in ``out`` (none when it is missing)."""
    names = os.listdir(out) if os.path.isdir(out) else []
    return sorted(int(m.group(1)) for m in (re.fullmatch(r"rank(\d+)\.jsonl", n) for n in names) if m)


def read_results(out: str) -> Tuple[List[ShadowRecord], List[Dict[str, Any]]]:
    """Records and per-rank meta written under ``out`` (a killed rank leaves its records up to the last
    flush, and no meta)."""
    records: List[ShadowRecord] = []
    metas: List[Dict[str, Any]] = []
    for rank in written_ranks(out):
        with open(records_path(out, rank), encoding="utf-8") as f:
            for line in f:
                if line.endswith("\n"):
                    records.append(ShadowRecord.from_json(json.loads(line)))
        meta = meta_path(out, rank)
        if os.path.exists(meta):
            with open(meta, encoding="utf-8") as f:
                metas.append(json.load(f))
        else:
            metas.append({"rank": rank, "incomplete": True})
    return records, metas


def start_from_options(opts: Dict[str, Any]) -> Shadow:
    """Used by ``launch.start_from_env`` in each process of ``ascend-doctor shadow``: records go to
    ``opts["out_dir"]`` and are not kept in memory."""
    sh = Shadow(
        ops=opts.get("ops"),
        scope=opts.get("scope"),
        sample=opts.get("sample", 1),
        max_numel=opts.get("max_numel", DEFAULT_MAX_NUMEL),
        out=opts["out_dir"],
        steps=opts.get("steps"),
        keep=False,
        rows=opts.get("rows", DEFAULT_ROWS),
        process=opts.get("process"),
    )
    sh.start()
    return sh


# -------------------------------------------------------------------------------------------- report

COLUMNS = (
    "order",
    "step",
    "rank",
    "name",
    "module",
    "phase",
    "dtype",
    "verdict",
    "introduced_error",
    "metric",
    "value",
    "tolerance",
    "cosine",
    "max_abs_err",
    "max_rel_err",
    "rel_l2_err",
    "max_ulp_err",
    "max_scaled_ulp_err",
    "rows",
    "cols",
    "site",
)
#: the columns of the "All compared ops" table (the JSON records have all of COLUMNS)
TABLE_COLUMNS = tuple(
    c
    for c in COLUMNS
    if c not in ("max_abs_err", "rel_l2_err", "max_ulp_err", "max_scaled_ulp_err", "rows", "cols")
)
_METRICS = (
    "cosine",
    "max_abs_err",
    "max_rel_err",
    "mean_rel_err",
    "rel_l2_err",
    "max_ulp_err",
    "mean_ulp_err",
    "max_scaled_ulp_err",
    "within_1e3",
    "status",
)
#: ratios below this are drawn at it on the drift plot's log scale (exact ops have ratio 0)
PLOT_FLOOR = 1e-3
PLOT_CAP = 1e6  # and above this at it (a non-finite output's ratio is infinite)


def record_row(order: int, rec: ShadowRecord) -> Dict[str, Any]:
    m, v = rec.metrics, rec.verdict
    return OrderedDict(
        order=order,
        step=rec.step,
        rank=rec.rank,
        name=rec.key,
        module=rec.module,
        phase=rec.phase,
        dtype=m.target_dtype,
        verdict=v.level,
        introduced_error=v.ratio,
        metric=v.metric,
        value=v.value,
        tolerance=v.tolerance,
        cosine=m.cosine,
        max_abs_err=m.max_abs_err,
        max_rel_err=m.max_rel_err,
        rel_l2_err=m.rel_l2_err,
        max_ulp_err=m.max_ulp_err,
        max_scaled_ulp_err=m.max_scaled_ulp_err,
        rows=rec.rows,  # [checked, of] where rows (or heads) were sampled (shadow_rows.py, shadow_heads.py), else null
        cols=rec.cols,  # [checked, of] where a block was (shadow_blocks.py), else null: every column
        site=rec.site,
    )


def culprit_row(rank: int, rec: ShadowRecord) -> Dict[str, Any]:
    v = rec.verdict
    return OrderedDict(
        [
            ("rank", rank),
            ("name", rec.key),
            ("op", rec.name),
            ("call", rec.call),
            ("module", rec.module),
            ("phase", rec.phase),
            ("step", rec.step),
            ("process_rank", rec.rank),
            ("introduced_error", v.ratio),
            ("level", v.level),
            ("metric", v.metric),
            ("value", v.value),
            ("tolerance", v.tolerance),
            ("standard", v.standard),
            ("reason", v.reason),
            ("site", rec.site),
            ("input_shapes", rec.input_shapes),
            ("dtype", rec.metrics.target_dtype),
        ]
        + [(k, getattr(rec.metrics, k)) for k in _METRICS]
    )


def build_report(
    records: Sequence[ShadowRecord],
    metas: Sequence[Dict[str, Any]] = (),
    top: int = 10,
    command: Optional[Sequence[str]] = None,
    exit_status: Optional[int] = None,
) -> Report:
    """The shadow report: summary, ranked culprits, drift plot, every compared op. ``exit_status``: the
    command's, when ``ascend-doctor shadow`` ran one; a failed command or no op compared is the headline."""
    records = sorted(records, key=lambda r: (r.rank, r.step, r.id))
    found = culprits(records)
    first = first_culprit(records)
    near = sorted((r for r in records if r.verdict.level == "warning"), key=lambda r: -r.ratio)
    verdicts: Counter = Counter()
    skipped: Counter = Counter()
    not_replayable: Counter = Counter()
    compared = internal = compiles = 0
    for meta in metas:
        verdicts.update(meta.get("verdicts", {}))
        skipped.update(meta.get("skipped", {}))
        not_replayable.update(meta.get("not_replayable", {}))
        compared += meta.get("compared", 0)
        internal += meta.get("internal_errors", 0)
        compiles += meta.get("torch_compile_calls", 0)
    if not metas or compared < len(records):  # no meta (a killed rank): count what the records say
        verdicts = Counter(r.verdict.level for r in records)
        compared = len(records)
    n_culprits = max(len(found), verdicts.get("error", 0))
    by_verdict = {k: verdicts.get(k, 0) for k in ("pass", "warning", "error")}
    ranks = sorted({r.rank for r in records} | {m.get("rank", 0) for m in metas})
    skipped_by = dict(sorted(skipped.items()))
    not_replayable_by = dict(sorted(not_replayable.items()))
    summary = OrderedDict(
        compared=compared,
        verdicts=by_verdict,
        culprits=n_culprits,
        first_culprit=first.key if first else None,
        steps=sorted({r.step for r in records}),
        ranks=ranks,
        skipped=skipped_by,
        not_replayable=not_replayable_by,
        internal_errors=internal,
        torch_compile_calls=compiles,
        rows_sampled=sum(1 for r in records if r.rows and not r.cols),
        blocks_sampled=sum(1 for r in records if r.cols),
    )
    rows = [record_row(i, r) for i, r in enumerate(records)]
    data: Dict[str, Any] = OrderedDict(
        command=list(command) if command else None,
        command_exit_status=exit_status,
        summary=summary,
        culprits=[culprit_row(i + 1, r) for i, r in enumerate(found[:top])],
        first_culprit=culprit_row(0, first) if first else None,
        near_misses=[culprit_row(i + 1, r) for i, r in enumerate(near[: near_misses.LISTED])],
        records=rows,
    )
    report = Report(
        schema=SCHEMA,
        title="shadow: " + (" ".join(map(drift.short_word, command)) if command else "ops vs CPU float64"),
        data=data,
        headline=_headline(exit_status, compared),
    )
    report.summary = [
        ("ops compared", compared),
        ("verdicts", ", ".join(f"{n} {k}" for k, n in by_verdict.items())),
        ("culprits", n_culprits),
        ("first culprit", summary["first_culprit"] or "none"),
        ("top culprit", found[0].key if found else "none"),
        *(
            [("top near miss", f"{near[0].key} ({near[0].ratio:.3g} tolerances)")]
            if near and not found
            else []
        ),
        ("skipped", ", ".join(f"{n} {k}" for k, n in skipped_by.items()) or "none"),
    ]
    if summary["rows_sampled"]:
        per_call = sorted({r.rows[0] for r in records if r.rows and not r.cols})
        report.summary.append(
            (
                "rows",
                f"{summary['rows_sampled']} ops checked on {', '.join(map(str, per_call))} random rows of their "
                "output (matrix products, pointwise ops; attention: the query rows of a slice of its heads; "
                "--rows 0: every row)",
            )
        )
    if summary["blocks_sampled"]:
        sizes = sorted({f"{r.rows[0]} x {r.cols[0]}" for r in records if r.rows and r.cols})
        report.summary.append(
            (
                "blocks",
                f"{summary['blocks_sampled']} ops over --max-numel (matrix products, pointwise ops) checked on a "
                f"random block of {', '.join(sizes)} of their output (the rows and columns that make it copied, "
                "not the whole inputs)",
            )
        )
    if skipped_by.get("max_numel"):
        limit = max(int((m.get("options") or {}).get("max_numel") or 0) for m in metas)
        largest = max(int(m.get("largest_skipped_numel") or 0) for m in metas)
        report.summary.append(
            (
                "too large",
                f"{skipped_by['max_numel']} op calls over --max-numel ({limit:,} elements) not checked"
                + (f", the largest {largest:,}" if largest else "")
                + ": raise it where host memory holds copies of their tensors",
            )
        )
    if not_replayable:
        report.summary.append(
            ("not replayable", ", ".join(f"{k} ({n})" for k, n in not_replayable_by.items()))
        )
    if internal:
        report.summary.append(("internal errors", internal))
    if compiles:
        report.summary.append(
            (
                "torch.compile",
                f"called {compiles} time(s): ran eagerly under the shadow, the eager ops were compared",
            )
        )
    if command:
        report.summary.append(("command", " ".join(command)))
    _culprit_section(report, data["culprits"], first, compared, len(near))
    near_misses.add_section(report, data["near_misses"], len(near), step=True)
    _drift_section(report, records, found)
    sec = report.section("All compared ops")
    sec.text.append(
        "Each op's output against a CPU float64 run of the same op on copies of its own inputs: the "
        "error this op introduced. introduced_error = value / tolerance of the judged metric."
    )
    cols = [c for c in TABLE_COLUMNS if c != "rank" or len(ranks) > 1]
    sec.tables.append(
        Table(
            "",
            cols,
            [[_cell(row[c]) for c in cols] for row in rows],
            status_column="verdict",
            headline=0,  # in execution order: the culprit sections above are the headline
            note="Every metric of every record is in the JSON report (records).",
        )
    )
    return report


def _headline(exit_status: Optional[int], compared: int) -> str:
    """What the reader must know before the verdict: the command failed, or no op was compared."""
    if exit_status:
        return failed(exit_status) + (
            f" after {compared} op calls were compared — the verdict covers those only"
            if compared
            else " before any op ran — no verdict"
        )
    return "" if compared else "no op was compared (did the command run PyTorch?) — no verdict"


def _culprit_section(
    report: Report, rows: List[Dict[str, Any]], first: Optional[ShadowRecord], compared: int, near: int
) -> None:
    sec = report.section("Culprits")
    if not compared:
        sec.findings.append(
            Finding(
                severity=Severity.WARNING,
                rule="nothing-compared",
                message="no op was compared, so nothing was judged",
                suggestion="check that the command runs PyTorch ops, and --ops/--scope/--steps",
            )
        )
        return
    if not rows:
        sec.text.append(near_misses.no_culprit_text(near))
        return
    sec.text.append(
        "Ops whose output differs from a float64 run on their own inputs by more than their dtype "
        "explains, ranked by that error in tolerances (introduced)."
    )
    if first is not None:
        sec.text.append(
            f"First in execution order: {first.key} in {first.module or '<root>'} ({first.site or 'no site'})."
        )
    sec.tables.append(
        Table(
            "",
            ["#", "call", "module", "phase", "step", "introduced", "metric", "value", "site"],
            [
                [
                    c["rank"],
                    c["name"],
                    c["module"],
                    c["phase"],
                    c["step"],
                    _cell(c["introduced_error"]),
                    c["metric"],
                    _cell(c["value"]),
                    c["site"],
                ]
                for c in rows
            ],
        )
    )
    for c in rows[:3]:
        sec.findings.append(
            Finding(
                severity=Severity.ERROR,
                rule="culprit",
                location=c["site"],
                message=f"{c['name']} in {c['module'] or '<root>'} ({c['phase']}): {c['reason']}",
            )
        )


def _drift_section(report: Report, records: Sequence[ShadowRecord], found: List[ShadowRecord]) -> None:
    many = len({r.rank for r in records}) > 1
    steps = len({r.step for r in records}) > 1
    lines: Dict[str, List[Tuple[float, float]]] = OrderedDict()
    marks: List[Tuple[float, str]] = []
    marked = set()
    for i, r in enumerate(records):
        lines.setdefault(f"rank {r.rank}" if many else "introduced", []).append(
            (float(i), min(max(r.ratio, PLOT_FLOOR), PLOT_CAP))
        )
        if r.phase != "forward" and (r.rank, r.step, r.phase) not in marked:
            marked.add((r.rank, r.step, r.phase))
            where = " ".join(([f"rank {r.rank}"] if many else []) + ([f"step {r.step}"] if steps else []))
            marks.append((float(i), f"{r.phase} ({where})" if where else r.phase))
    order = {id(r): i for i, r in enumerate(records)}
    points = drift.culprit_points(
        ((float(order[id(r)]), r.ratio, r.key) for r in found), PLOT_FLOOR, PLOT_CAP
    )
    sec = report.section("Drift along the run")
    sec.text.append(
        f"The error each op introduced, in tolerances (1 = at tolerance), in execution order; below "
        f"{PLOT_FLOOR:g} drawn at {PLOT_FLOOR:g}, above {PLOT_CAP:g} at {PLOT_CAP:g}. A spike is an op that made "
        f"an error itself; the {drift.LABELLED} culprits with the largest error are labelled."
    )
    sec.series.append(
        Series(
            "introduced error",
            "execution order",
            "error / tolerance",
            lines,
            marks=marks,
            log_y=True,
            points=points,
        )
    )


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}") if math.isfinite(value) else value
    return value
