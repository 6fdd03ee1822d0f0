"""Capture op and module records while a training script runs: ``with capture(out_dir) as cap``.

* ``level="op"``: one TorchDispatchMode sees every aten op, forward, backward (the autograd engine is
  running a graph task) and ``optimizer`` (inside ``optimizer.step()``), tagged with the innermost module
  (:class:`ModulePath`).
* ``level="module"``: global module hooks record each module call's tensor inputs and outputs, the
  gradients arriving at its outputs in backward (multi-grad hook on the outputs: the autograd graph
  is not changed) and each parameter's accumulated gradient (``<param path>.grad``).
* ``level="mix"``: both.

Per tensor the mode (``stats`` | ``tensor`` | ``hash``) decides what is kept; statistics are always
computed on the tensor's device, batched to the host from an accelerator (``stats.py``). A record whose
statistics are known is encoded at once (``lines.py``), else at the flush. Records are written as JSON lines at each
flush (every ``flush_every`` records, with the first record :data:`FLUSH_AFTER` seconds after the last flush, at
each step boundary, at exit: a run killed before its first step keeps what was recorded before then). Steps advance at each
``optimizer.step()`` (a global post-hook) until the script calls :meth:`Capture.step` itself, which
then takes over. Everything the capture does fails open: an internal error is logged once and the
user's op returns its own result.
"""

import json
import logging
import os
import queue
import sys
import threading
import time
import weakref
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .. import backend
from ..dispatch import (
    UNDEFINED_VALUES,
    ModulePath,
    dtype_name,
    flat_tensors,
    is_wanted,
    normalise_op,
    op_base,
    op_name,
    written_args,
)
from ..module_names import ModuleNames
from ..session import StepSession, make_module_callable
from ..stacks import StackTable
from . import aliasing, store
from .lines import LineEncoder, stats_json
from .stats import StatsQueue

log = logging.getLogger("ascend_tools")

LEVELS = ("op", "module", "mix")
MODES = ("stats", "tensor", "hash")
_PLAIN = (torch.Tensor, torch.nn.Parameter)
# bookkeeping ops that compute nothing (record_function markers of the profiler and the optimizer)
SKIP_NAMESPACES = ("profiler::",)
FLUSH_AFTER = 1.0  # s: a record this long after the last flush flushes too (what a kill -9 then keeps)


class _Meta:
    __slots__ = ("mutated", "name", "same_values", "selected", "undefined", "view", "view_shares")

    def __init__(self, func: Any, wanted: Optional[set]) -> None:
        self.name = op_name(func)
        self.selected = is_wanted(self.name, wanted) and not self.name.startswith(SKIP_NAMESPACES)
        self.same_values = self.name in aliasing.COPIES
        self.view = aliasing.returns_view(func)  # from the schema (aliasing.py)
        self.view_shares = self.view and aliasing.may_share(self.name)
        self.undefined = op_base(self.name) in UNDEFINED_VALUES
        self.mutated = written_args(func)


class _T:
    """One tensor of a record: dtype, shape and its statistics, file or digest. ``body`` is the part of
    its JSON fragment after dtype and shape (``,"stats":{...}}``), set as soon as the statistics are
    known (at once on the CPU; after the flush's transfer on an accelerator, when ``entry`` is still
    pending). ``ref``/``version``/``ptr`` identify the tensor when it comes back as a later op's input: the
    storage too, since ``model.to(dtype)`` and FSDP swap a parameter's data without a new version.
    ``name``: the parameter it is (``model.norm.weight``) or whose gradient (``model.norm.weight.grad``).

    Few objects live long here on purpose: everything kept until the step ends survives Python's
    young-generation collections, and enough survivors trigger a full collection of the whole heap (a
    model's heap: tens of ms), which was most of the capture's cost."""

    __slots__ = ("body", "dtype", "entry", "file", "has_stats", "name", "ptr", "ref", "shape", "version")

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
        self.name: Optional[str] = None

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
        self.settle(final=True)
        body = self.body
        assert body is not None  # settle(final=True) always writes it
        if self.name is not None:
            return enc.tensor_head(self.dtype, self.shape) + enc.tensor_name(self.name) + body
        return enc.tensor_head(self.dtype, self.shape) + body


def _ptr(t: torch.Tensor) -> int:
    """Address of the tensor's data, -1 where it has none to give (some subclasses)."""
    try:
        return t.data_ptr()
    except Exception:
        return -1


def _bumped_after(
    tensors: Sequence[torch.Tensor], outputs: Sequence[_T], written: Sequence[torch.Tensor]
) -> None:
    """An in-place op's version bump comes after the op returns through the mode (autograd's
    ADInplaceOrView kernel sits above the Python dispatch key): an output that is a written argument is
    remembered at the version it will have, so the next op that reads it reuses its statistics instead of
    computing them again."""
    for t, info in zip(tensors, outputs):
        if info.ref is not None and info.ref() is t and any(t is w for w in written):
            info.version += 1


def _strip(value: Any, out: List[torch.Tensor]) -> Any:
    """``value`` with each tensor moved to ``out`` and replaced by ``store.TENSOR_SLOT``, in the order
    ``store.encode_call`` numbers tensors. What is left holds no tensor and is encoded by the writer."""
    if isinstance(value, torch.Tensor):
        out.append(value)
        return store.TENSOR_SLOT
    if isinstance(value, (list, tuple)):
        n = len(out)
        items = [_strip(v, out) for v in value]
        return value if len(out) == n else items
    if isinstance(value, dict):
        n = len(out)
        d = {k: _strip(v, out) for k, v in value.items()}
        return value if len(out) == n else d
    return value


def _split_call(args: Any, kwargs: Dict[str, Any], out: List[torch.Tensor]) -> tuple:
    """``(args, kwargs)`` without their tensors (see :func:`_strip`), the tensors appended to ``out``."""
    slot = store.TENSOR_SLOT
    stripped = []
    for a in args:
        if isinstance(a, torch.Tensor):
            out.append(a)
            stripped.append(slot)
        elif isinstance(a, (list, tuple, dict)):
            stripped.append(_strip(a, out))
        else:
            stripped.append(a)
    if kwargs:
        kwargs = {k: _strip(v, out) for k, v in kwargs.items()}
    return stripped, kwargs


class _OpMode(TorchDispatchMode):
    def __init__(self, cap: "Capture") -> None:
        super().__init__()
        self.cap = cap

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        cap = self.cap
        if kwargs is None:
            kwargs = {}
        if cap._off:
            return func(*args, **kwargs)
        pre = None
        try:
            meta = cap._metas.get(func)
            if meta is None:
                meta = cap._metas[func] = _Meta(func, cap._wanted)
            if meta.selected:
                pre = cap._before_op(meta, args, kwargs)
            elif cap._paths is not None:
                cap._paths.current()  # an op left out still notes its autograd node's module
        except Exception as exc:
            cap._fail(exc)
        out = func(*args, **kwargs)
        if pre is not None:
            try:
                cap._after_op(pre, out)
            except Exception as exc:
                cap._fail(exc)
        return out


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
        self.records_written = 0
        self._busy = False
        self._metas: Dict[Any, _Meta] = {}
        self._queue = StatsQueue(digests=mode == "hash")
        self._save_tensors = mode == "tensor"
        self.background = _default_background() if background is None else bool(background)
        self._jobs: queue.Queue[Any] = queue.Queue(maxsize=QUEUE_JOBS)  # a fresh one per start()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()
        self._batch: List[Union[str, tuple]] = []  # a record's line, or its tuple until its stats are known
        self._calls: Dict[Tuple[str, str], int] = {}
        self._next_id = 0
        self._seen: Dict[int, _T] = {}
        self._stack_table = StackTable()
        self._param_hooked: set = set()
        self._names = ModuleNames()
        self._grad_names: Dict[int, str] = {}  # id of each parameter's .grad while optimizer.step() runs
        self._init = True  # no module forward has run yet: ops are phase "init"
        self._step_used = False  # a module forward, a backward or an optimizer op ran in this step
        self._running: List[bool] = []  # per module running now (module levels): does it get a record
        self._paths: Optional[ModulePath] = None
        self._mode: Optional[_OpMode] = None
        self._writer: Optional[store.RankWriter] = None
        self._lock: Any = None  # outdir.DirLock of the rank directory while this capture writes it
        self._encoder = LineEncoder(self.rank)
        self._meta_final = False
        self.start_time = time.time()

    # --- public -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._active:
            return
        from ..outdir import Busy, rank_lock

        rank_dir = os.path.join(self.out_dir, f"rank{self.rank}")
        try:  # one capture writes a rank directory at a time; a second records nothing and says so
            self._lock = rank_lock(self.out_dir, self.rank, "capture").acquire()
        except (Busy, OSError) as exc:
            log.warning("capture: %s: %s; this capture records nothing (training goes on)", rank_dir, exc)
            return
        self._writer = store.RankWriter(self.out_dir, self.rank)
        self._writer.write_meta(self.meta())
        self._flush_due = time.monotonic() + FLUSH_AFTER  # from the start, not from construction
        self._pid = os.getpid()
        if self.background:
            self._jobs = queue.Queue(maxsize=QUEUE_JOBS)
            self._thread = threading.Thread(target=self._work, name="ascend-doctor-capture", daemon=True)
            self._thread.start()
        _LIVE.add(self)
        self._active = True
        self._update_off()
        if self.model is not None:
            self._names.name(self.model)
        if self.level in ("module", "mix"):
            self._running = []
            self._install_module_hooks()
        if self.level in ("op", "mix"):
            self._enter_module_paths(None, self._names)
            self._mode = _OpMode(self)
            self._mode.__enter__()
        self._install_step_hook()

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
                self._batch = []
            self._flush()
        except Exception as exc:
            self._fail(exc)
        finally:
            self._stop_worker()
            try:
                if self._writer is not None:
                    self._writer.write_meta(self.meta(final=True))
            except Exception as exc:
                self._fail(exc)
            if self._writer is not None:
                self._writer.close()
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            _LIVE.discard(self)
            self._active = False
            self._busy = False

    def counts(self) -> Dict[int, int]:
        """Records written so far, per step."""
        return dict(self._writer.counts) if self._writer else {}

    def meta(self, final: bool = False) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "schema": store.SCHEMA,
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
            "versions": backend.software_versions(),
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
        return out

    # --- internals: state ---------------------------------------------------------------------------

    def _update_off(self) -> None:
        self._off = (
            (not self._active) or self._busy or (self.steps is not None and self.step_no not in self.steps)
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
        self._init = False
        self._step_used = False
        self._busy = was
        self._update_off()

    # --- internals: per tensor ----------------------------------------------------------------------

    def _tensor(self, t: torch.Tensor, rid: int, slot: str) -> _T:
        info = self._seen.get(id(t))
        if info is not None and info.version == t._version and info.ref() is t and info.ptr == _ptr(t):
            if info.name is None and type(t) is torch.nn.Parameter:
                info.name = self._names.param(t)  # first seen before its model ran (init)
            return info
        plain = type(t) in _PLAIN
        info = _T(dtype_name(t.dtype), t.shape, self._queue.add(t) if plain else None)
        if plain:
            if type(t) is torch.nn.Parameter:
                info.name = self._names.param(t)
            elif self._grad_names:
                info.name = self._grad_names.get(id(t))
            if self._save_tensors and t.layout == torch.strided and t.device.type != "meta":
                info.file = self._rank_writer().save_tensor(self.step_no, f"{rid}.{slot}", t)
            info.settle()
            self._remember(t, info)
        return info

    def _remember(self, t: torch.Tensor, info: _T) -> None:
        info.ref = weakref.ref(t)
        info.version = t._version
        info.ptr = _ptr(t)
        self._seen[id(t)] = info

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
        except Exception as exc:
            self._fail(exc)

    def _optimizer_exit(self, *args: Any, **kwargs: Any) -> None:
        self._grad_names = {}
        super()._optimizer_exit(*args, **kwargs)

    def _stack_id(self) -> Optional[int]:
        """Id of the Python stack that issued this op (see :class:`StackTable`)."""
        return self._stack_table.stack_id() if self.keep_stack else None

    # --- internals: op level ------------------------------------------------------------------------

    def _before_op(self, meta: _Meta, args: Any, kwargs: Dict[str, Any]) -> Optional[tuple]:
        paths = self._paths
        module = paths.current() if paths is not None else ""  # every op: see ModulePath
        phase = self._phase()
        if not self._step_used and (phase != "forward" or (paths is not None and paths.running())):
            self._step_used = True
            self._init = False
        if self._init:
            phase = "init"
        key = (meta.name, phase)
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        if self.sample > 1 and call % self.sample:
            return None
        if self.scope and not self._in_scope(module):
            return None
        rid = self._next_id
        self._next_id += 1
        tensors: List[torch.Tensor] = []
        call_args = _split_call(args, kwargs, tensors)
        inputs = [self._tensor(t, rid, f"in{i}") for i, t in enumerate(tensors)]
        written: Optional[List[torch.Tensor]] = [] if meta.mutated else None
        for i, name in meta.mutated:
            t = args[i] if i < len(args) else kwargs.get(name)
            if isinstance(t, torch.Tensor):
                self._queue.before_write(t)
                self._seen.pop(id(t), None)
                written.append(t)  # type: ignore[union-attr]
            elif isinstance(t, (list, tuple)):  # _foreach_*_ ops write every tensor of a list
                for x in t:
                    if isinstance(x, torch.Tensor):
                        self._queue.before_write(x)
                        self._seen.pop(id(x), None)
        # the arguments are encoded when the record is written (the writer thread): keep them as they are
        return (meta, phase, call, module, rid, inputs, call_args, self._stack_id(), written)

    def _after_op(self, pre: tuple, out: Any) -> None:
        meta, phase, call, module, rid, inputs, args_json, sid, written = pre
        if isinstance(out, torch.Tensor):
            tensors = [out]
        else:
            tensors = []
            flat_tensors(out, tensors)
        # a view of all of its input's elements shares their statistics; other views get them where read
        shares = meta.same_values or (
            meta.view_shares
            and len(tensors) == 1
            and bool(inputs)
            and aliasing.same_elements(tensors[0].numel(), inputs[0].shape)
        )
        if shares and len(tensors) == 1 and inputs and inputs[0].has_stats and type(tensors[0]) in _PLAIN:
            t = tensors[0]
            if self._save_tensors:
                outputs = [self._tensor(t, rid, "out0")]
            else:
                src = inputs[0]
                outputs = [_T(src.dtype, t.shape, src.entry, src.body, has_stats=True)]
                self._remember(t, outputs[0])
        elif meta.undefined:  # uninitialised memory: dtype and shape only, also where a later op reads it
            outputs = [_T(dtype_name(t.dtype), t.shape, body="}") for t in tensors]
            for t, info in zip(tensors, outputs):
                self._remember(t, info)
        elif meta.view and not (self._save_tensors or self._queue.digests):  # subset/repetition: stats mode
            # leaves its statistics to the op that reads it (aliasing.py)
            outputs = [_T(dtype_name(t.dtype), t.shape, body="}") for t in tensors]
        else:
            outputs = [self._tensor(t, rid, f"out{i}") for i, t in enumerate(tensors)]
            if written:
                _bumped_after(tensors, outputs, written)
        self._emit((rid, meta.name, "op", phase, call, module, inputs, outputs, args_json, sid))

    def _emit(self, rec: tuple) -> None:
        """Queue a record for the next flush: as its line when every tensor's statistics are known (a
        string outlives the young generation without adding to what the garbage collector scans), else
        as the tuple the flush encodes once its statistics arrive."""
        if all(t.body is not None for t in rec[6]) and all(t.settle() for t in rec[7]):
            self._batch.append(self._line(rec, self.step_no))
        else:
            self._batch.append(rec)
        if (
            len(self._batch) >= self.flush_every
            or self._queue.pending_bytes > self.flush_bytes
            or time.monotonic() >= self._flush_due
        ):
            was = self._busy
            self._busy = True
            self._update_off()
            try:
                self._flush()
            finally:
                self._busy = was
                self._update_off()

    def _flush(self) -> None:
        """Hand the records and statistics gathered since the last flush to the writer: the writer
        thread when there is one (the user's thread does not wait), else write them now. Statistics of
        accelerator tensors are moved to the host here, on the user's thread and stream."""
        self._flush_due = time.monotonic() + FLUSH_AFTER
        q = self._queue
        on_device = q.on_device
        pending = q.take()
        if on_device or self._thread is None:
            q.resolve(pending)
            pending = []
        batch, self._batch = self._batch, []
        if not self._meta_final and (batch or self._stack_table.new):
            self._meta_final = True
            self._rank_writer().write_meta(self.meta())
        stacks = [
            store._dumps({"id": sid, "frames": frames}) + "\n" for sid, frames in self._stack_table.drain()
        ]
        if not (batch or stacks or pending):
            return
        job = (self.step_no, batch, stacks, pending)
        if self._thread is not None and self._thread.is_alive() and os.getpid() == self._pid:
            self._jobs.put(job)  # blocks when QUEUE_JOBS flushes are waiting: memory stays bounded
        else:
            self._write_job(job)

    def _line(self, rec: tuple, step: int) -> str:
        rid, name, kind, phase, call, module, inputs, outputs, call_args, sid = rec
        enc = self._encoder
        return enc.line(
            rid,
            name,
            kind,
            phase,
            call,
            module,
            ",".join([t.encoded(enc) for t in inputs]),
            ",".join([t.encoded(enc) for t in outputs]),
            enc.args(call_args) if call_args is not None else "",
            sid,
            step,
        )

    def _write_job(self, job: tuple) -> None:
        step, batch, stacks, pending = job
        if pending:
            self._queue.resolve(pending)
        pause = time.sleep if threading.current_thread() is self._thread else None
        lines = []
        for n, rec in enumerate(batch):
            if isinstance(rec, str):
                lines.append(rec)
                continue
            if pause is not None and not n % YIELD_EVERY:
                # let the user's thread take the GIL: it would otherwise wait up to the switch interval
                # (5 ms) each time one of its kernels returns while this thread encodes
                pause(0)
            lines.append(self._line(rec, step))
        if lines or stacks:
            self._rank_writer().write(step, lines, stacks)
            self.records_written += len(lines)

    def _rank_writer(self) -> store.RankWriter:
        """The writer :meth:`start` opened (records are made and flushed only after it)."""
        writer = self._writer
        if writer is None:
            raise RuntimeError("capture not started")
        return writer

    def _work(self) -> None:
        """The writer thread: statistics of CPU tensors, JSON encoding and file writes, one flush at
        a time in order. Torch ops here do not pass through the capture's mode (modes are per thread)."""
        jobs = self._jobs
        while True:
            job = jobs.get()
            if job is None:
                return
            try:
                self._write_job(job)
            except Exception as exc:
                self._fail(exc)

    def _stop_worker(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if thread.is_alive():
            self._jobs.put(None)
            thread.join()
        # a job left behind by a thread that died (it cannot: _work catches everything) is written here
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self._write_job(job)

    # --- internals: module level --------------------------------------------------------------------

    def _name(self, module: torch.nn.Module) -> str:
        """The module's path; an unnamed module is a root (see ``ModuleNames.add_root``)."""
        name = self._names.get(module)
        if name is None:
            self._names.add_root(module)
            name = ""
        return name

    def _install_module_hooks(self) -> None:
        mm = torch.nn.modules.module
        # names are given when a module starts (outermost first): the forward hook runs innermost first
        self._handles.append(mm.register_module_forward_pre_hook(self._enter_module))
        try:
            self._handles.append(mm.register_module_forward_hook(self._module_hook, with_kwargs=True))
        except TypeError:  # torch without kwargs in global hooks
            self._handles.append(
                mm.register_module_forward_hook(lambda m, a, o: self._module_hook(m, a, {}, o))
            )
        # after the record hook; always_call: a forward that raises still leaves
        try:
            self._handles.append(mm.register_module_forward_hook(self._leave_module, always_call=True))
        except TypeError:  # torch without always_call
            self._handles.append(mm.register_module_forward_hook(self._leave_module))

    def _enter_module(self, module: torch.nn.Module, _args: Any) -> None:
        """Forward pre-hook (must return None: anything else would replace the module's inputs). A module
        without a name entered while another runs (a hub-kernel function module such as transformers 5's
        ``apply_rotary_pos_emb``, a module kept in a plain list) gets no record of its own: its work belongs
        to the caller's record, as in :class:`ModulePath` and msprobe. With nothing running it is a root,
        named with everything below it."""
        recorded = True
        try:
            if module not in self._names:
                recorded = not self._running
                if recorded:
                    self._name(module)
        except Exception as exc:
            self._fail(exc)
        self._running.append(recorded)

    def _leave_module(self, _module: torch.nn.Module, _args: Any, _output: Any) -> None:
        if self._running:
            self._running.pop()

    def _module_hook(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if self._off or not (self._running and self._running[-1]):
            return
        self._busy = True
        self._update_off()
        try:
            self._record_module(module, args, kwargs, output)
        except Exception as exc:
            self._fail(exc)
        finally:
            self._busy = False
            self._update_off()

    def _record_module(self, module: torch.nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        path = self._name(module)
        if self.scope and not self._in_scope(path):
            return
        name = path or "<root>"
        self._hook_params(module, path)
        key = (name, "forward")
        call = self._calls.get(key, 0)
        self._calls[key] = call + 1
        if self.sample > 1 and call % self.sample:
            return
        ins: List[torch.Tensor] = []
        flat_tensors((args, kwargs), ins)
        outs: List[torch.Tensor] = []
        flat_tensors(output, outs)
        rid = self._next_id
        self._next_id += 1
        sid = self._stack_id()
        inputs = [self._tensor(t, rid, f"in{i}") for i, t in enumerate(ins)]
        outputs = [self._tensor(t, rid, f"out{i}") for i, t in enumerate(outs)]
        self._emit((rid, name, "module", "forward", call, path, inputs, outputs, None, sid))
        grads_of = [t for t in outs if t.requires_grad]
        if grads_of and torch.is_grad_enabled():
            from torch.autograd.graph import register_multi_grad_hook

            step = self.step_no
            register_multi_grad_hook(grads_of, lambda grads: self._module_grad(name, path, grads, step))

    def _module_grad(self, name: str, path: str, grads: Sequence[Optional[torch.Tensor]], step: int) -> None:
        if self._off or step != self.step_no:
            return
        self._busy = True
        self._update_off()
        try:
            key = (name, "backward")
            call = self._calls.get(key, 0)
            self._calls[key] = call + 1
            rid = self._next_id
            self._next_id += 1
            inputs = [self._tensor(g, rid, f"in{i}") for i, g in enumerate(grads) if g is not None]
            self._emit((rid, name, "module", "backward", call, path, inputs, [], None, None))
        except Exception as exc:
            self._fail(exc)
        finally:
            self._busy = False
            self._update_off()

    def _hook_params(self, module: torch.nn.Module, path: str) -> None:
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in self._param_hooked or not p.requires_grad:
                continue
            self._param_hooked.add(id(p))
            full = f"{path}.{pname}" if path else pname
            register = getattr(p, "register_post_accumulate_grad_hook", None)
            if register is not None:
                self._handles.append(
                    register(lambda param, full=full: self._param_grad(full, param, param.grad))
                )
            else:
                ref = weakref.ref(p)
                self._handles.append(
                    p.register_hook(lambda g, full=full, ref=ref: self._param_grad(full, ref(), g))
                )

    def _param_grad(self, full: str, param: Optional[torch.Tensor], grad: Optional[torch.Tensor]) -> None:
        """``full``: the parameter's path when its hook was set; a root found later may have renamed it."""
        if self._off or grad is None:
            return
        self._busy = True
        self._update_off()
        try:
            full = (self._names.param(param) if param is not None else None) or full
            name = f"{full}.grad"
            if self.scope and not self._in_scope(full):
                return
            key = (name, "backward")
            call = self._calls.get(key, 0)
            self._calls[key] = call + 1
            rid = self._next_id
            self._next_id += 1
            outputs = [self._tensor(grad, rid, "out0")]
            self._emit(
                (rid, name, "module", "backward", call, full.rpartition(".")[0], [], outputs, None, None)
            )
        except Exception as exc:
            self._fail(exc)
        finally:
            self._busy = False
            self._update_off()


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
    """Used by ``launch.start_from_env`` in each process of ``ascend-doctor dump``."""
    opts = dict(opts)
    cap = capture(opts.pop("out_dir"), **opts)
    cap.start()
    return cap


YIELD_EVERY = 8  # records the writer thread encodes between two offers of the GIL
QUEUE_JOBS = 4  # flushes waiting for the writer thread before the user's thread waits for it
_LIVE: Any = weakref.WeakSet()


def _default_background() -> bool:
    """The writer thread is off unless ASCEND_DOCTOR_CAPTURE_THREAD=1: on the CPU bench it made steps
    slower (its JSON encoding holds the GIL; the training thread waits up to the 5 ms switch interval
    each time one of its kernels returns)."""
    env = os.environ.get("ASCEND_DOCTOR_CAPTURE_THREAD", "")
    return env.strip().lower() in ("1", "true", "yes", "on")


def _after_fork_in_child() -> None:
    # a forked child (a DataLoader worker) has no writer thread and must not append to the parent's files
    for cap in list(_LIVE):
        cap._active = False
        cap._thread = None
        cap._off = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


make_module_callable(__name__, capture)
