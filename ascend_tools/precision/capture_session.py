"""Capture op and module records while a training script runs: ``with capture(out_dir) as cap``.

* ``level="op"``: one dispatch mode (:class:`OpRecordMode`, a ``failopen_mode.FailOpenMode``) sees every
  aten op, forward, backward (the autograd engine is running a graph task) and ``optimizer`` (inside
  ``optimizer.step()``), tagged with the innermost module (:class:`ModulePath`).
* ``level="module"``: global module hooks (``module_recorder.py``) record each module call, the gradients
  arriving at its outputs in backward and each parameter's accumulated gradient (``<param path>.grad``).
* ``level="mix"``: both.

:class:`Capture` is the orchestrator: steps, when recording is on, the per-step counters, the tensors
seen (statistics once per tensor value, see ``TensorEntry``) and when to flush; ``record_writer.py``
takes the records to the rank directory.

A collective (``c10d::allreduce_``, ``_c10d_functional::all_gather_into_tensor``) returns before the communication
writes its tensors: its record holds their dtype and shape, and until the step ends every op that reads their
storages reads their values again (:meth:`Capture._written_later`).

Per tensor the mode (``stats`` | ``tensor`` | ``hash``) decides what is kept; statistics are always
computed on the tensor's device, batched to the host from an accelerator (``stats.py``). A record whose
statistics are known is encoded at once (``lines.py``), else at the flush. Records are written as JSON lines at
each flush (every ``flush_every`` records, with the first record :data:`FLUSH_AFTER` seconds after the last flush, at
each step boundary, at exit: a run killed before its first step keeps what was recorded before then). Steps advance at each
``optimizer.step()`` (a global post-hook) until the script calls :meth:`Capture.step` itself, which
then takes over. Everything the capture does fails open: an internal error is logged once and the
user's op returns its own result.
"""

import logging
import os
import sys
import time
import weakref
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import torch

from .. import __version__, backend, swap_guard
from ..dispatch import PLAIN_TENSORS as _PLAIN
from ..dispatch import ModulePath, dtype_name, flat_tensors
from ..module_names import ModuleNames
from ..op_names import normalise_op
from ..session import StepSession
from ..stacks import StackTable
from . import aliasing, store
from .call_args import split_call
from .failopen_mode import FailOpenMode
from .module_recorder import ModuleRecorder
from .op_facts import OpFacts
from .record_writer import RecordWriter, default_background
from .stats import StatsQueue, cpu_body
from .tensor_entry import TensorEntry, bumped_after, data_ptr, place, storage_ptr

log = logging.getLogger("ascend_tools")

LEVELS = ("op", "module", "mix")
MODES = ("stats", "tensor", "hash")
UNREAD = ',"unread":true}'  # a tensor fragment's end where its values were not read (Capture._view_source)
FLUSH_AFTER = 1.0  # s: a record this long after the last flush flushes too (what a kill -9 then keeps)
# frames from StackTable.stack_id to the code that called the op: _before_op, OpRecordMode.before,
# FailOpenMode.__torch_dispatch__ (skipped without building their frame objects)
_OP_STACK_DEPTH = 4
#: the stack table's context (``StackTable.stack_id``): an evaluation under ``no_grad`` apart from training
_grad_enabled = torch.is_grad_enabled


class OpRecordMode(FailOpenMode):
    """The op-level records: every selected op's record is begun before it runs (its inputs' statistics,
    before an in-place op writes them) and finished after (its outputs)."""

    owner: "Capture"

    def before(self, func: Any, args: Any, kwargs: Dict[str, Any]) -> Optional[tuple]:
        cap = self.owner
        facts = cap._facts.get(id(func))  # by id: OpOverload.__hash__ is a Python call (the facts hold func)
        if facts is None:
            facts = cap._facts[id(func)] = OpFacts(func, cap._wanted)
        if facts.selected:
            return cap._before_op(facts, args, kwargs)
        if cap._paths is not None:
            cap._paths.current()  # an op left out still notes its autograd node's module
        return None

    def after(self, token: tuple, func: Any, args: Any, kwargs: Dict[str, Any], out: Any) -> None:
        self.owner._after_op(token, out)


class Capture(StepSession):
    """See :func:`capture`."""

    tool = "capture"

    def __init__(
        self,
        out_dir: str,
        level: str = "op",
        mode: str = "stats",
        steps: Optional[Iterable[int]] = None,
        scope: Optional[Sequence[str]] = None,
        ops: Optional[Sequence[str]] = None,
        sample: int = 1,
        model: Optional[torch.nn.Module] = None,
        stack: bool = True,
        flush_every: int = 256,
        flush_bytes: int = 1 << 28,
        rank: Optional[int] = None,
        background: Optional[bool] = None,
    ) -> None:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if int(sample) < 1:
            raise ValueError(f"sample must be >= 1, not {sample!r}")
        self.out_dir = out_dir
        self.level = level
        self.mode = mode
        self._init_session(steps, scope)
        self.ops = list(ops or [])
        self._wanted = {n for o in self.ops for n in normalise_op(o)} or None
        self.sample = int(sample)
        self.model = model
        self.keep_stack = stack
        self.flush_every = flush_every
        self.flush_bytes = flush_bytes
        self._flush_due = time.monotonic() + FLUSH_AFTER
        self.rank = backend.rank() if rank is None else rank
        self._busy = False
        self._facts: Dict[int, OpFacts] = {}
        self._queue = StatsQueue(digests=mode == "hash")
        self._save_tensors = mode == "tensor"
        self._json_now = mode == "stats"  # a CPU tensor's fragment is written when it is first seen
        self.background = default_background() if background is None else bool(background)
        self._out = RecordWriter(self.rank, self._queue, self.background, self._fail)
        self._modules = ModuleRecorder(self)
        self._next_id = 0
        self._claimed = False  # the rank directory is this capture's (see start's claim_later)
        self._refused = False  # another capture holds it: nothing is recorded
        self._seen: Dict[int, TensorEntry] = {}
        # writes seen per storage address: an entry holds while the count is the one it was made at
        self._writes: Dict[int, int] = {}
        # storages a collective of this step writes after it returns: their values are read again at every use
        self._volatile: Set[int] = set()
        # stats mode: tensors by the elements they hold (tensor_entry.place), for new views of known values;
        # not in hash mode (a digest depends on the order) nor tensor mode (a record's own file)
        self._by_place: Optional[Dict[tuple, TensorEntry]] = {} if mode == "stats" else None
        self._stack_table = StackTable()
        self._names = ModuleNames()
        self._grad_names: Dict[int, str] = {}  # id of each parameter's .grad while optimizer.step() runs
        # per optimizer in its step: its tensors, their storages and the writes seen to them when it began
        self._step_writes: Dict[int, List[Tuple[torch.Tensor, int, int]]] = {}
        self._paths: Optional[ModulePath] = None
        self._mode: Optional[OpRecordMode] = None
        # the ops of the window since the last backward (session.py): [name, index of its record in the batch]
        self._window: List[List[Any]] = []
        self._window_rids: Dict[int, int] = {}  # record id -> its place in _window, until the record is made
        self._lock: Any = None  # outdir.DirLock of the rank directory while this capture writes it
        self._meta_final = False
        self.start_time = time.time()

    # --- public -------------------------------------------------------------------------------------

    def start(self, claim_later: bool = False) -> None:
        """``claim_later``: take the rank directory when the first record is made, not now. The CLI's process
        without RANK may be a launcher of its own that trains nothing (``llamafactory-cli`` starts torchrun on
        several devices): it must leave ``rank0`` to the worker that trains."""
        if self._active:
            return
        if not claim_later and not self._claim():
            return
        _LIVE.add(self)
        swap_guard.hold(self)
        self._active = True
        self._update_off()
        if self.model is not None:
            self._names.name(self.model)
        if self.level in ("module", "mix"):
            self._modules.install()
        if self.level in ("op", "mix"):
            self._enter_module_paths(None, self._names)
            self._enter_dispatch(OpRecordMode(self))
        self._install_step_hook()

    def _claim(self) -> bool:
        """Take the rank directory (its lock, its meta.json) for the records to come; False, and the capture off
        for good, where another capture holds it."""
        from ..outdir import Busy, rank_lock

        self._claimed = True
        rank_dir = os.path.join(self.out_dir, f"rank{self.rank}")
        try:  # one capture writes a rank directory at a time; a second records nothing and says so
            self._lock = rank_lock(self.out_dir, self.rank, "capture").acquire()
        except (Busy, OSError) as exc:
            log.warning("capture: %s: %s; this capture records nothing (training goes on)", rank_dir, exc)
            self._refused = True
            self._update_off()
            return False
        files = store.RankWriter(self.out_dir, self.rank)
        files.write_meta(self.meta())
        self._flush_due = time.monotonic() + FLUSH_AFTER  # from the claim, not from construction
        self._out.open(files)
        return True

    def close(self) -> None:
        """Flush what is left, remove every hook, leave the dispatch mode. Safe to call twice."""
        if not self._active:
            return
        self._busy = True
        self._update_off()
        try:
            self._exit_dispatch()
            if self.step_no > 0 and not self._step_used and not self._manual:
                # after the last optimizer.step() only ops outside the model ran (loss.item() for the log):
                # not a step of its own
                self._out.batch = []
            self._flush()
        except Exception as exc:
            self._fail(exc)
        finally:
            self._out.close()
            try:
                if self._out.files is not None:
                    self._out.files.write_meta(self.meta(final=True))
            except Exception as exc:
                self._fail(exc)
            self._out.release()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            _LIVE.discard(self)
            swap_guard.let_go(self)
            self._active = False
            self._busy = False

    def counts(self) -> Dict[int, int]:
        """Records written so far, per step."""
        return dict(self._out.files.counts) if self._out.files else {}

    @property
    def records_written(self) -> int:
        return self._out.records_written

    def meta(self, final: bool = False) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "schema": store.SCHEMA,
            "recording": store.RECORDING,
            "rank": self.rank,
            "world_size": backend.world_size(),
            "level": self.level,
            "mode": self.mode,
            "options": {
                "steps": sorted(self.steps) if self.steps is not None else None,
                "scope": self.scope,
                "ops": self.ops,
                "sample": self.sample,
                "stack": self.keep_stack,
            },
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.start_time)),
            "pid": os.getpid(),
            "argv": list(sys.argv),
            "versions": dict(backend.software_versions(), ascend_doctor=__version__),
        }
        if final or self._meta_final:
            info = backend.detect()
            out["backend"] = info.name
            out["device_name"] = info.device_name
            out["torch_npu_version"] = info.torch_npu_version
            out["versions"]["torch_npu"] = info.torch_npu_version
        if final:
            out["end_time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            out["steps_recorded"] = {str(k): v for k, v in sorted(self.counts().items())}
            out["internal_errors"] = self.internal_errors
            out["torch_compile_calls"] = (
                self.compiles.calls
            )  # run eagerly under the capture (compile_watch.py)
        return out

    # --- internals: state ---------------------------------------------------------------------------

    def _update_off(self) -> None:
        self._off = (
            (not self._active)
            or self._busy
            or self._refused
            or (self.steps is not None and self.step_no not in self.steps)
        )

    def _advance(self) -> None:
        was = self._busy
        self._busy = True
        self._update_off()
        try:
            self._flush()
        except Exception as exc:
            self._fail(exc)
        self.step_no += 1
        self._calls = {}
        self._next_id = 0
        # statistics of a tensor unchanged since (optimizer state, parameters) carry over into the next
        # step; in tensor mode every step's records point at files of their own step
        self._seen = (
            {} if self._save_tensors else {k: v for k, v in self._seen.items() if v.ref() is not None}
        )
        if self._by_place is not None:
            self._by_place = {k: v for k, v in self._by_place.items() if v.ref() is not None}
        self._volatile = set()
        self._busy = was
        self._update_off()

    # --- internals: per tensor ----------------------------------------------------------------------

    def _known(self, t: torch.Tensor) -> Optional[TensorEntry]:
        """``t``'s entry where it is current (the same tensor, version, address and writes to its storage)."""
        info = self._seen.get(id(t))
        if (
            info is not None
            and info.version == t._version
            and info.ref() is t
            and info.ptr == data_ptr(t)
            and info.writes == self._writes.get(info.storage, 0)
        ):
            if info.name is None and type(t) is torch.nn.Parameter:
                info.name = self._names.param(t)  # first seen before its model ran (init)
            return info
        return None

    def _view_source(self, t: torch.Tensor, rid: int, index: int) -> TensorEntry:
        """The input of a subset view (``aliasing.SUBSET_VIEWS``): its entry where current, else dtype and shape with
        ``"unread":true`` (not remembered). Reading it would read every element of what is often a large buffer to
        take one part of it: DeepSpeed ZeRO's gradient bucket (500M elements, its uninitialised part NaN-laden)
        read again for every parameter's gradient copied into it, a dump of seconds per op and, in tensor mode, a file
        of 1 GB for each. The part is read by the op that uses it. A parameter is read as ever (its named record)."""
        if type(t) is torch.nn.Parameter:
            return self._tensor(t, rid, "in", index)
        return self._known(t) or TensorEntry(dtype_name(t.dtype), t.shape, body=UNREAD)

    def _tensor(self, t: torch.Tensor, rid: int, slot: str, index: int) -> TensorEntry:
        """The entry of ``t``, the ``index``-th tensor of kind ``slot`` (``in``/``out``) of record ``rid``."""
        info = self._known(t)
        if info is not None:
            return info
        if type(t) not in _PLAIN:
            return TensorEntry(dtype_name(t.dtype), t.shape)
        key = place(t) if self._by_place is not None else None
        if key is not None:
            info = self._same_place(t, key)
            if info is not None:
                self._name_tensor(t, info)
                self._remember(t, info, key)
                return info
        if self._json_now and self._queue.read_now(t):  # stats mode on the CPU: the fragment at once
            body = cpu_body(t)
            info = TensorEntry(dtype_name(t.dtype), t.shape, None, body or "}", has_stats=body is not None)
        else:
            info = TensorEntry(dtype_name(t.dtype), t.shape, self._queue.add(t))
            if self._save_tensors and t.layout == torch.strided and t.device.type != "meta":
                info.file = self._out.rank_files().save_tensor(self.step_no, f"{rid}.{slot}{index}", t)
            info.settle()
        self._name_tensor(t, info)
        self._remember(t, info, key)
        return info

    def _name_tensor(self, t: torch.Tensor, info: TensorEntry) -> None:
        if type(t) is torch.nn.Parameter:
            info.name = self._names.param(t)
        elif self._grad_names:
            info.name = self._grad_names.get(id(t))

    def _place(self, t: torch.Tensor) -> Optional[tuple]:
        """``t``'s place where tensors are indexed by place (stats mode), else None."""
        return place(t) if self._by_place is not None else None

    def _remember(self, t: torch.Tensor, info: TensorEntry, key: Optional[tuple]) -> None:
        """``key``: ``t``'s place (see :meth:`_place`), computed once by the caller."""
        info.ref = weakref.ref(t)
        info.version = t._version
        info.ptr = key[0] if key is not None else data_ptr(t)  # a place starts with the data address
        info.storage = storage = storage_ptr(t)
        info.writes = self._writes.get(storage, 0)
        if storage in self._volatile:
            return
        self._seen[id(t)] = info
        # a live, unwritten holder stays: a transpose made for one op dies with it, its base lives on
        if (
            self._by_place is not None
            and key is not None
            and not _current(self._by_place.get(key), self._writes)
        ):
            self._by_place[key] = info

    def _release_tensors(self, kept: torch.Tensor, gone: torch.Tensor) -> Callable[[], None]:
        """Let go of the weak references to two tensors about to be swapped (``swap_guard.py``): what was known of
        their values (the swap changes them), and ``kept``'s name until the swap is done."""

        def held(entry: TensorEntry) -> bool:
            x = entry.ref() if entry.ref is not None else None
            return x is kept or x is gone

        for key in [k for k, e in self._seen.items() if held(e)]:
            del self._seen[key]
        if self._by_place:
            for place_key in [k for k, e in self._by_place.items() if held(e)]:
                del self._by_place[place_key]
        for rec in self._out.batch:  # records waiting for their flush: only their text is needed now
            if isinstance(rec, tuple):
                for entry in (*rec[6], *rec[7]):
                    if held(entry):
                        entry.ref = None
        return self._names.release_params(kept, gone)

    def _forget(self, t: torch.Tensor) -> None:
        """``t`` is about to be written: its statistics are not its values any more (the caller settles the
        queue's entries of it before the write: ``StatsQueue.settle``). (Its version bump comes only after the op
        returns through the mode: until then the version cannot tell.)"""
        self._queue.before_write(t)
        self._seen.pop(id(t), None)
        storage = storage_ptr(t)  # every entry of the storage, whichever alias it was seen through
        self._writes[storage] = self._writes.get(storage, 0) + 1
        if self._by_place is not None:
            key = place(t)
            if key is not None:
                self._by_place.pop(key, None)

    def _written_later(self, tensors: Sequence[torch.Tensor]) -> None:
        """A collective's tensors: the communication it started writes them after it returns (gloo's threads,
        NCCL's or HCCL's streams: no version bump, no op the mode sees), so no entry of their storages is kept
        in this step: every op that reads them reads their values again (DDP's reducer views its gradient
        buckets once its all-reduce is done: the entries kept from before it held the rank's own gradients)."""
        for t in tensors:
            self._forget(t)
            storage = storage_ptr(t)
            if storage >= 0:
                self._volatile.add(storage)

    def _allocated(self, tensors: Sequence[torch.Tensor]) -> None:
        """The outputs of an op that writes no argument and returns no view are new storages: one may sit where a
        collective's freed tensor was (DDP allocates its buckets where the buffer of its start-up broadcast was),
        and is no collective's to write."""
        for t in tensors:
            self._volatile.discard(storage_ptr(t))

    def _same_place(self, t: torch.Tensor, key: tuple) -> Optional[TensorEntry]:
        """A new entry for ``t`` (at place ``key``) sharing the statistics of a live tensor that holds the
        same elements and has not been written since (views share their base's version counter, so a write
        through any of them shows), or None."""
        src = self._by_place.get(key) if self._by_place is not None else None
        if src is None or not src.has_stats or not _current(src, self._writes) or t._version != src.version:
            return None
        return TensorEntry(src.dtype, t.shape, src.entry, src.body, has_stats=True)

    def _optimizer_enter(self, optimizer: Any = None, *args: Any, **kwargs: Any) -> None:
        """Name the gradients the optimizer reads (``<parameter>.grad``) for the records of its ops."""
        super()._optimizer_enter()
        try:
            names = {}
            for group in getattr(optimizer, "param_groups", ()):
                for p in group["params"]:
                    name = self._names.param(p) if p.grad is not None else None
                    if name is not None:
                        names[id(p.grad)] = name + ".grad"
                        seen = self._seen.get(id(p.grad))
                        if seen is not None and seen.ref() is p.grad:  # recorded in backward already
                            seen.name = names[id(p.grad)]
            self._grad_names = names
            self._step_writes[id(optimizer)] = [
                (t, storage, self._writes.get(storage, 0))
                for t in optimizer_tensors(optimizer)
                for storage in (storage_ptr(t),)
            ]
        except Exception as exc:
            self._fail(exc)

    def _optimizer_exit(self, optimizer: Any = None, *args: Any, **kwargs: Any) -> None:
        """The optimizer's tensors that no op the mode saw wrote in its step were written unseen (see
        :func:`optimizer_tensors`) or not at all: their entries are let go (a torch optimizer's writes are seen)."""
        self._grad_names = {}
        try:
            for t, storage, writes in self._step_writes.pop(id(optimizer), ()):
                if self._writes.get(storage, 0) == writes:
                    self._forget(t)
            self._queue.settle()
        except Exception as exc:
            self._fail(exc)
        super()._optimizer_exit(optimizer, *args, **kwargs)

    def _stack_id(self) -> Optional[int]:
        """Id of the Python stack that issued this op (see :class:`StackTable`)."""
        return self._stack_table.stack_id() if self.keep_stack else None

    # --- internals: op level ------------------------------------------------------------------------

    def _before_op(self, meta: OpFacts, args: Any, kwargs: Dict[str, Any]) -> Optional[tuple]:
        paths = self._paths
        module = paths.current() if paths is not None else ""  # every op: see ModulePath
        phase = self._op_phase()
        key = (meta.name, phase)
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        if self._in_window:
            self._window.append([meta.name, None])
        if self.sample > 1 and call % self.sample:
            return None
        if self.scope and not self._in_scope(module):
            return None
        if not self._claimed and not self._claim():
            return None
        rid = self._next_id
        self._next_id += 1
        if self._in_window:
            self._window_rids[rid] = len(self._window) - 1
        tensors: List[torch.Tensor] = []
        call_args = split_call(args, kwargs, tensors)
        for i in meta.storages:  # set_(storage, ...): never the storage's repr (store.StorageArg)
            if i < len(call_args[0]):
                call_args[0][i] = store.storage_arg(call_args[0][i])
        if meta.subset_view:
            inputs = [self._view_source(t, rid, i) for i, t in enumerate(tensors)]
        else:
            inputs = [self._tensor(t, rid, "in", i) for i, t in enumerate(tensors)]
        written: Optional[List[torch.Tensor]] = [] if meta.mutated else None
        if meta.collective:
            self._written_later(tensors)
        for i, name in meta.mutated:
            t = args[i] if i < len(args) else kwargs.get(name)
            if isinstance(t, torch.Tensor):
                self._forget(t)
                written.append(t)  # type: ignore[union-attr]
            elif isinstance(t, (list, tuple)):  # _foreach_*_ ops write every tensor of a list
                for x in t:
                    if isinstance(x, torch.Tensor):
                        self._forget(x)
        if meta.mutated or meta.collective:  # what _forget set aside, settled before the op writes it
            self._queue.settle()
        sid = self._stack_table.stack_id(_OP_STACK_DEPTH, _grad_enabled()) if self.keep_stack else None
        # the arguments are encoded when the record is written (the writer thread): keep them as they are
        return (meta, phase, call, module, rid, inputs, call_args, sid, written)

    def _after_op(self, pre: tuple, out: Any) -> None:
        meta, phase, call, module, rid, inputs, args_json, sid, written = pre
        if isinstance(out, torch.Tensor):
            tensors = [out]
        else:
            tensors = []
            flat_tensors(out, tensors)
        if self._volatile and not (meta.collective or meta.view or meta.mutated):
            self._allocated(tensors)
        # a view of all of its input's elements shares their statistics; other views get them where read
        shares = meta.same_values or (
            meta.view_shares
            and len(tensors) == 1
            and bool(inputs)
            and aliasing.same_elements(tensors[0].numel(), inputs[0].shape)
        )
        if meta.collective:
            # values written after the op returns (see OpFacts.collective): dtype and shape only; the ops that read
            # them after the wait read them again
            outputs = [TensorEntry(dtype_name(t.dtype), t.shape, body="}") for t in tensors]
            self._written_later(tensors)
        elif shares and len(tensors) == 1 and inputs and inputs[0].has_stats and type(tensors[0]) in _PLAIN:
            t = tensors[0]
            if self._save_tensors:
                outputs = [self._tensor(t, rid, "out", 0)]
            else:
                src = inputs[0]
                outputs = [TensorEntry(src.dtype, t.shape, src.entry, src.body, has_stats=True)]
                self._remember(t, outputs[0], self._place(t))
        elif meta.undefined or (meta.view and inputs and _undefined(inputs[0])):
            # uninitialised memory (FSDP views its all-gather buffers before they are filled): dtype and shape
            # only, also where a later op reads it
            outputs = [TensorEntry(dtype_name(t.dtype), t.shape, body="}") for t in tensors]
            for t, info in zip(tensors, outputs):
                self._remember(t, info, self._place(t))
        elif meta.view and not (self._save_tensors or self._queue.digests):  # subset/repetition: stats mode
            # leaves its statistics to the op that reads it (aliasing.py)
            outputs = [TensorEntry(dtype_name(t.dtype), t.shape, body="}") for t in tensors]
        else:
            outputs = [self._tensor(t, rid, "out", i) for i, t in enumerate(tensors)]
            if written:
                bumped_after(tensors, outputs, written)
        self._emit((rid, meta.name, "op", phase, call, module, inputs, outputs, args_json, sid))

    def _emit(self, rec: tuple) -> None:
        """Queue a record for the next flush (see ``record_writer.py``); flush when the batch is full, its
        tensors' bytes exceed ``flush_bytes`` or :data:`FLUSH_AFTER` has passed. A record of the window after a
        backward waits in the batch as its tuple, unflushed, until the window is closed."""
        at = self._window_rids.pop(rec[0], None) if self._window_rids else None
        if at is None:
            self._out.add(rec, self.step_no)
        else:
            self._out.batch.append(rec)
            self._window[at][1] = len(self._out.batch) - 1
        if self._window:  # (session.WINDOW_MAX bounds it)
            return
        if (
            len(self._out.batch) >= self.flush_every
            or self._queue.pending_bytes > self.flush_bytes
            or time.monotonic() >= self._flush_due
        ):
            self._guarded_busy(self._flush, fail_open=False)

    def _close_window(self) -> None:
        super()._close_window()
        self._window = []
        self._window_rids = {}

    def _window_is_optimizer(self) -> None:
        """The window's ops, recorded or not, are counted as the optimizer's (they come before its own), and
        their records waiting in the batch relabelled."""
        batch = self._out.batch
        for (_, at), call in zip(self._window, self._optimizer_calls(name for name, _ in self._window)):
            if at is not None:
                rec = batch[at]
                batch[at] = (*rec[:3], "optimizer", call, *rec[5:])
        super()._window_is_optimizer()

    def _flush(self) -> None:
        if self._window:  # what it holds is written as it is: forward
            self._close_window()
        if self._out.files is None:  # nothing claimed (no record yet) or refused
            self._out.batch = []
            return
        self._flush_due = time.monotonic() + FLUSH_AFTER
        if not self._meta_final and (self._out.batch or self._stack_table.new):
            self._meta_final = True
            self._out.rank_files().write_meta(self.meta())
        self._out.flush(self.step_no, self._stack_table.drain())

    # --- internals: what the module recorder shares -------------------------------------------------

    def _guarded_busy(self, fn: Any, *args: Any, fail_open: bool = True) -> None:
        """Run ``fn`` with the capture off (its own torch ops are not recorded); an error is the
        capture's (counted, training goes on) unless ``fail_open`` is False (the caller handles it)."""
        was = self._busy
        self._busy = True
        self._update_off()
        try:
            fn(*args)
        except Exception as exc:
            if not fail_open:
                raise
            self._fail(exc)
        finally:
            self._busy = was
            self._update_off()

    def _count_call(self, key: Tuple[str, str]) -> int:
        """The call index of ``key`` (name, phase) in this step, counted."""
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        return call

    def _new_id(self) -> int:
        if not self._claimed:  # a module record first; refused: it is dropped at the flush
            self._claim()
        rid = self._next_id
        self._next_id += 1
        return rid

    def _module_name(self, module: torch.nn.Module) -> str:
        """The module's path; an unnamed module is a root (see ``ModuleNames.add_root``)."""
        name = self._names.get(module)
        if name is None:
            name = self._names.add_root(module)
        return name


def capture(
    out_dir: str,
    level: str = "op",
    mode: str = "stats",
    steps: Optional[Union[Iterable[int], range]] = None,
    scope: Optional[Sequence[str]] = None,
    ops: Optional[Sequence[str]] = None,
    sample: int = 1,
    model: Optional[torch.nn.Module] = None,
    stack: bool = True,
    flush_every: int = 256,
    background: Optional[bool] = None,
) -> Capture:
    """Record ops and/or modules of the code run inside ``with capture(...) as cap:`` into
    ``out_dir/rank{r}/`` (format: docs/dump-format.md).

    ``level``: ``op`` | ``module`` | ``mix``. ``mode``: ``stats`` | ``tensor`` | ``hash``.
    ``steps``: step numbers to record (default all; steps count ``optimizer.step()`` calls, or
    ``cap.step()`` calls once the script makes one). ``scope``: module-path prefixes or regexes
    (an op is kept when its innermost module matches one). ``ops``: op names (``aten::mm``, ``mm``,
    ``matmul``). ``sample``: keep every N-th call of each op (by call index, so two runs keep the same
    calls). ``model``: names modules from this root (default: the first module called is the root).
    ``stack``: keep the Python stack of each record. ``background``: encode and write records on a writer
    thread (default off, see :func:`_default_background`)."""
    return Capture(
        out_dir,
        level=level,
        mode=mode,
        steps=steps,
        scope=scope,
        ops=ops,
        sample=sample,
        model=model,
        stack=stack,
        flush_every=flush_every,
        background=background,
    )


def start_from_options(opts: Dict[str, Any]) -> Capture:
    """Used by ``launch.start_from_env`` in each process of ``ascend-doctor dump``: a process without RANK takes
    its rank directory at its first record (see :meth:`Capture.start`)."""
    opts = dict(opts)
    cap = capture(opts.pop("out_dir"), **opts)
    cap.start(claim_later="RANK" not in os.environ)
    return cap


def optimizer_tensors(optimizer: Any) -> Iterable[torch.Tensor]:
    """The parameters and state tensors of ``optimizer``: what its step writes, whatever runs it. A fused kernel
    called from C++ (apex's and DeepSpeed's FusedAdam launch theirs on ``data_ptr()``) writes them without an op the
    dispatcher sees and without a version bump, so a tool that keeps what it knew of them past the step must forget
    it there."""
    for group in getattr(optimizer, "param_groups", ()):
        for p in group.get("params", ()):
            if isinstance(p, torch.Tensor):
                yield p
    for state in getattr(optimizer, "state", {}).values():
        for value in state.values() if isinstance(state, dict) else ():
            if isinstance(value, torch.Tensor):
                yield value


def _current(entry: Optional[TensorEntry], writes: Dict[int, int]) -> bool:
    """Whether ``entry``'s tensor is alive, unwritten since its statistics (by itself or by any alias of its
    storage: ``writes``, the capture's count per storage) and still at its address (so they are its values:
    FSDP2 frees a live parameter's storage with ``resize_(0)``, no version bump, and a new tensor may then be
    allocated where it was)."""
    held = entry.ref() if entry is not None and entry.ref is not None else None
    return (
        held is not None
        and held._version == entry.version  # type: ignore[union-attr]
        and data_ptr(held) == entry.ptr  # type: ignore[union-attr]
        and writes.get(entry.storage, 0) == entry.writes  # type: ignore[union-attr]
    )


def _undefined(entry: TensorEntry) -> bool:
    """Whether ``entry`` is a tensor of uninitialised memory (no statistics, no file: see ``_after_op``)."""
    return not entry.has_stats and entry.file is None and entry.body == "}"


_LIVE: Any = weakref.WeakSet()


def _after_fork_in_child() -> None:
    # a forked child (a DataLoader worker) has no writer thread and must not append to the parent's files
    for cap in list(_LIVE):
        cap._active = False
        cap._out.forget_thread()
        cap._off = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
