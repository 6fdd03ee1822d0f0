"""Shadow's checks in a process of their own: the float64 replays and the verdicts of a training run's ops on
another core, with no lock shared with the training thread.

In one process the checks and the training share the GIL: the checks are Python between small kernels, and two
threads that both run Python hand the GIL to each other at every kernel and gain nothing (``shadow_worker.py``
says what that measured). Here the training thread takes the part of each op a check reads (the rows it draws,
``shadow_rows.py``; what it would copy anyway), writes it into a shared memory arena (an anonymous memory file
both processes map) and queues a small description of the call; batches of descriptions go down a pipe; the
check process rebuilds each call on its copies, replays and judges it as the training process would
(``Shadow._replay``: the same code, the same rows), and sends back the packed records (``shadow_kept.pack``) with
the sequence number of the last job it finished, which frees the arena up to there. A thread of the training
process reads them and hands them to the shadow.

Only what is safe to send goes: the op is named (``aten::<name>.<overload>``; the check process resolves only
``torch.ops.aten``), and a call whose arguments hold anything but tensors, numbers, strings, None, dtypes,
devices, layouts and memory formats (nested in lists and tuples) is checked in the training process as before.
The pipe carries pickles between two processes of the same run, never a file.

Fail-open: until the process has started (``import torch`` there takes a second or two), while the arena is
too small for a call, after it has died, and in a forked child (a DataLoader worker inherits the mode, not the
pipe), checks run in the training process (``shadow_worker.py``). Jobs lost with a dead process are counted
(``skipped["check process died"]``) and the death is logged once.
"""

import contextlib
import logging
import math
import mmap
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import threading
from collections import deque
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Set, Tuple

import torch

from . import shadow_worker

log = logging.getLogger("ascend_tools")

#: bytes of the shared arena: the parts of the calls in flight (a 4-layer Llama's step sends ~125 MB of parts, but
#: few are in flight at once: the check process keeps up)
ARENA_BYTES = 128 << 20
#: the shadow starts its check process at the end of this step (0: at its start, and waits until it is ready: the
#: tests' setting)
START_AT_STEP = 1
#: jobs sent down the pipe together
BATCH = 32
#: jobs sent and not yet finished before the training thread waits for the check process
MAX_IN_FLIGHT = 512
#: seconds ``stop`` waits for the check process to finish what it was sent before it is killed
STOP_TIMEOUT = 120.0
_ALIGN = 64
_HEADER = struct.Struct("<Q")
#: argument values a job may carry besides tensors (nested in lists and tuples)
_SENDABLE = (
    bool,
    int,
    float,
    complex,
    str,
    type(None),
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
)
# environment of the training run that must not reach the check process: it would instrument itself
_LAUNCH_ENV = ("ASCEND_DOCTOR_LAUNCH", "ASCEND_DOCTOR_ACTIVE")


class Header(NamedTuple):
    """What the check process needs of one call besides its tensors."""

    name: str  # aten::add_.Tensor
    meta: tuple  # phase, call, rid, module, site, step (the record's)
    args: Any  # the call's arguments and keyword arguments, each tensor a Slot
    kwargs: Any
    n_in: int  # tensor inputs, each once: the slots
    written: List[int]  # the slots the op writes
    from_args: bool  # an in-place op that returns nothing: its outputs are what it wrote
    shapes: List[List[int]]  # every tensor argument's shape, in argument order (the record's)
    rows: Optional[list]  # the record's rows and columns checked
    cols: Optional[list]
    placed: List[int]  # the input slots in the order their parts lie among the job's tensors


class Slot(int):
    """A tensor's place among a job's sent tensors, where the call's arguments held the tensor."""


def mark(value: Any, index: Dict[int, int]) -> Any:
    """``value`` with each tensor replaced by its :class:`Slot` (``index``: id of a tensor -> its slot); raises
    ``TypeError`` for a value that is not sendable (see the module docstring)."""
    if isinstance(value, torch.Tensor):
        return Slot(index[id(value)])
    if isinstance(value, (list, tuple)):
        return type(value)(mark(v, index) for v in value)
    if isinstance(value, dict):
        return {k: mark(v, index) for k, v in value.items()}
    if isinstance(value, _SENDABLE):
        return value
    raise TypeError(f"not sent to the check process: {type(value).__name__}")


def unmark(value: Any, tensors: Sequence[torch.Tensor]) -> Any:
    if isinstance(value, Slot):
        return tensors[value]
    if isinstance(value, (list, tuple)):
        return type(value)(unmark(v, tensors) for v in value)
    if isinstance(value, dict):
        return {k: unmark(v, tensors) for k, v in value.items()}
    return value


def _aligned(n: int) -> int:
    return (n + _ALIGN - 1) // _ALIGN * _ALIGN


def _write_frame(stream: Any, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read_exact(stream: Any, n: int) -> Optional[bytes]:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_frame(stream: Any) -> Any:
    """The next object on ``stream``, or None at its end."""
    head = _read_exact(stream, _HEADER.size)
    if head is None:
        return None
    data = _read_exact(stream, _HEADER.unpack(head)[0])
    return None if data is None else pickle.loads(data)


def _memory_file(size: int) -> int:
    """A file descriptor of ``size`` bytes of memory with no name left (``memfd_create``, else a temporary file in
    ``/dev/shm`` or the temp directory, unlinked at once)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("ascend-doctor-shadow")
    else:
        where = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, path = tempfile.mkstemp(prefix="ascend-doctor-shadow-", dir=where)
        os.unlink(path)
    os.ftruncate(fd, size)
    return fd


def available() -> bool:
    """Whether this machine can run the check process beside the training: POSIX, and at least two CPUs this
    process may use (on one, the two would only take turns)."""
    if os.name != "posix":
        return False
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return cpus >= 2


def wanted(option: Optional[bool]) -> bool:
    """``option`` (``Shadow(process=...)``) where given, else ``ASCEND_DOCTOR_SHADOW_PROCESS`` (``0``/``1``) where
    set, else :func:`available`."""
    if option is not None:
        return bool(option) and os.name == "posix"
    env = os.environ.get("ASCEND_DOCTOR_SHADOW_PROCESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return os.name == "posix"
    return available()


class Job:
    """A job being built: its number, and where each tensor it has put lies in the arena."""

    __slots__ = ("descs", "seq")

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.descs: List[tuple] = []  # (start, bytes, dtype, shape) of each tensor


class CheckProcess:
    """The training process's end. A job is opened (:meth:`open`), its tensors put into the arena one by one
    (:meth:`put`: an in-place op's inputs before it runs, the rest after) and committed with its header
    (:meth:`commit`), or all at once (:meth:`send`). ``deliver(records, not_replayable, skipped, errors)`` is called
    on the reader thread with each batch of results (packed records, counters, error messages)."""

    def __init__(
        self, options: Dict[str, Any], deliver: Callable[..., None], size: Optional[int] = None
    ) -> None:
        self._deliver = deliver
        self.size = size = ARENA_BYTES if size is None else size
        self._fd = _memory_file(size)
        self._map: Optional[mmap.mmap] = mmap.mmap(self._fd, size)
        self._arena = torch.frombuffer(self._map, dtype=torch.uint8)
        self._views: Dict[
            torch.dtype, torch.Tensor
        ] = {}  # the arena as each dtype (its size is a multiple of 64)
        env = {k: v for k, v in os.environ.items() if k not in _LAUNCH_ENV}
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        code = (
            f"import sys; sys.path.insert(0, {root!r}); "
            "from ascend_tools.precision.shadow_process import child_main; child_main()"
        )
        self._proc = subprocess.Popen(
            [sys.executable, "-c", code, str(self._fd), str(size), repr(options)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            pass_fds=(self._fd,),
            env=env,
        )
        self._forks = shadow_worker.fork_count()
        self._lock = threading.Lock()  # the arena's head, the batch, the pipe's writing end, the open jobs
        self._cond = threading.Condition(threading.Lock())  # what the reader thread updates
        self._ready = False
        self._dead = False
        self._seq = 0  # the last job opened
        self._done = 0  # every job up to this one is finished
        self._finished: Set[int] = set()  # jobs finished after one before them that is not
        self._ring: Deque[Tuple[int, int, int]] = deque()  # (job, start, end) of the parts in flight
        self._head = 0
        self._batch: List[tuple] = []
        self._open: Dict[int, Job] = {}  # thread id -> the job it is building
        self._checks: Set[int] = set()  # jobs with a check to make, committed and not finished
        self.lost = 0  # checks committed to a process that died before it made them
        self._stopping = False  # stop() ends it: its end is no death
        self._reader = threading.Thread(target=self._read, name="ascend-doctor-shadow-results", daemon=True)
        self._reader.start()
        if START_AT_STEP == 0:
            self.wait_ready()

    def wait_ready(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Wait until the process takes checks (its ``import torch`` done); False where it died or the time ran
        out first."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready or self._dead, timeout)
        return self.usable()

    def usable(self) -> bool:
        """The process has started and is alive, and this is the process that started it."""
        return self._ready and not self._dead and shadow_worker.fork_count() == self._forks

    def open(self) -> Job:
        """A new job for this thread. A job this thread opened and never committed (its op raised before the check
        could finish it) is committed empty first: the arena it holds is freed when the check process gets to it."""
        thread = threading.get_ident()
        with self._lock:
            stale = self._open.pop(thread, None)
            if stale is not None:
                self._queue(stale, None)
            self._seq += 1
            job = self._open[thread] = Job(self._seq)
        return job

    def put(self, job: Job, items: Sequence[Tuple[torch.Tensor, Optional[torch.Tensor]]]) -> bool:
        """Copy each ``(tensor, rows)`` of ``items`` into the arena for ``job``: the ``rows`` of dim -2 where they
        are not None (gathered straight into it), else the whole tensor. False where they cannot go (too large
        for the arena, the process gone)."""
        parts, total = [], 0
        for t, rows in items:
            shape = t.shape if rows is None else (*t.shape[:-2], len(rows), t.shape[-1])
            numel = math.prod(shape)
            parts.append((t, rows, shape, numel, total))
            total += _aligned(numel * t.element_size())
        total = max(total, _ALIGN)  # (never an empty reservation: the ring's head and tail would meet)
        if total > self.size // 2:
            return False
        with self._lock:
            start = self._reserve(job.seq, total)
            if start is None:
                return False
            for t, rows, shape, numel, at in parts:
                size = t.element_size()
                view = self._views.get(t.dtype)
                if view is None:
                    view = self._views[t.dtype] = self._arena.view(t.dtype)
                part = view.narrow(0, (start + at) // size, numel).view(shape)
                if rows is None:
                    part.copy_(t)
                elif t.device.type == "cpu":
                    torch.index_select(t, t.dim() - 2, rows, out=part)
                else:
                    part.copy_(t.index_select(t.dim() - 2, rows.to(t.device)))
                job.descs.append((start + at, numel * size, t.dtype, shape))
        return True

    def commit(self, job: Job, header: Optional[tuple]) -> None:
        """Queue ``job`` for the check process (``header`` None: nothing to check, its arena is freed)."""
        with self._lock:
            if self._open.get(threading.get_ident()) is job:
                del self._open[threading.get_ident()]
            self._queue(job, header)

    def send(
        self, header: tuple, tensors: Sequence[torch.Tensor], rows: Sequence[Optional[torch.Tensor]]
    ) -> bool:
        """One job of ``tensors`` (each, where ``rows[i]`` is not None, only those rows); False (and nothing
        sent) where one cannot go."""
        if not self.usable():
            return False
        job = self.open()
        if not self.put(job, list(zip(tensors, rows))):
            self.commit(job, None)
            return False
        self.commit(job, header)
        return True

    def drain(self) -> None:
        """Send what is queued and wait until the check process has finished every job (or died)."""
        with self._lock:
            self._send_batch()
            # (a job still open is not sent: its op has not returned)
            target = min(job.seq for job in self._open.values()) - 1 if self._open else self._seq
        with self._cond:
            while self._done < target and not self._dead:
                self._cond.wait()

    def stop(self) -> None:
        """Finish what was sent, then end the process and free the arena. Safe to call twice."""
        proc, stdin = self._proc, self._proc.stdin
        self._stopping = True
        if shadow_worker.fork_count() != self._forks or proc.poll() is not None:
            pass  # (a forked child's copy of the shadow: the process is its parent's)
        elif not self._ready:  # still starting: it holds no check
            proc.kill()
            proc.wait()
        elif stdin is not None:
            try:
                with self._lock:
                    for job in self._open.values():
                        self._queue(job, None)
                    self._open.clear()
                    self._send_batch()
                    _write_frame(stdin, None)
                    stdin.close()
                proc.wait(STOP_TIMEOUT)
            except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
                log.warning("shadow: the check process did not end (%s); killed", exc)
                proc.kill()
                proc.wait()
        self._reader.join()
        for pipe in (stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        with self._cond:
            self.lost = len(self._checks)  # (with those committed after its death)
        if self._map is not None:
            del self._arena
            self._views.clear()
            with contextlib.suppress(BufferError):  # a view of the arena still alive: the map goes with it
                self._map.close()
            os.close(self._fd)
            self._map = None

    # --- the training thread's side --------------------------------------------------------------------

    def _queue(self, job: Job, header: Optional[tuple]) -> None:
        """(under ``_lock``)"""
        if header is not None:
            with self._cond:
                self._checks.add(job.seq)
        self._batch.append((job.seq, header, job.descs))
        if len(self._batch) >= BATCH:
            self._send_batch()

    def _reserve(self, seq: int, n: int) -> Optional[int]:
        """The start of ``n`` free bytes of the arena for job ``seq`` (waiting for the check process where they are
        in flight), or None once it has died. The parts in flight lie in one run of the ring from ``tail`` (the
        oldest part's start) to ``head``, which wraps to the arena's start when the end has no room (under
        ``_lock``)."""
        while True:
            with self._cond:
                if self._dead:
                    return None
                if self._seq - self._done < MAX_IN_FLIGHT:
                    start = self._free(n)
                    if start is not None:
                        self._head = start + n
                        self._ring.append((seq, start, start + n))
                        return start
                if self._ring and self._ring[0][0] == seq:  # the job's own parts fill the arena
                    return None
                done = self._done  # (read with the room: a job finished since wakes the wait at once)
            self._send_batch()  # (what waits for room must be sent to make room)
            with self._cond:
                if not self._cond.wait_for(self._moved(done), STOP_TIMEOUT):
                    return None

    def _moved(self, done: int) -> Callable[[], bool]:
        """Whether a job past ``done`` has finished, or the process died (a condition to wait for)."""
        return lambda: self._done != done or self._dead

    def _free(self, n: int) -> Optional[int]:
        """Where ``n`` bytes fit now, or None (under ``_cond``). Head and tail never meet while parts are in
        flight: a wrapped head stays strictly below the tail."""
        if not self._ring:
            return 0 if n <= self.size else None
        head, tail = self._head, self._ring[0][1]
        if head > tail:  # free: from head to the end, and from the start to tail
            if head + n <= self.size:
                return head
            return 0 if n < tail else None
        return head if head + n < tail else None

    def _send_batch(self) -> None:
        """Send the queued jobs (under ``_lock``); a broken pipe is the reader thread's to see."""
        if not self._batch:
            return
        batch, self._batch = self._batch, []
        try:
            _write_frame(self._proc.stdin, batch)
        except (OSError, ValueError):
            with self._cond:
                self._dead = True
                self._cond.notify_all()

    # --- the reader thread ---------------------------------------------------------------------------

    def _read(self) -> None:
        stream = self._proc.stdout
        while True:
            try:
                frame = _read_frame(stream)
            except Exception:  # a torn frame: the process died writing it
                frame = None
            if frame is None:
                break
            if frame == "ready":
                with self._cond:
                    self._ready = True
                    self._cond.notify_all()
                continue
            finished, records, not_replayable, skipped, errors = frame
            try:
                self._deliver(records, not_replayable, skipped, errors)
            finally:
                with self._cond:
                    self._finished.update(finished)
                    self._checks.difference_update(finished)
                    while self._done + 1 in self._finished:
                        self._done += 1
                        self._finished.discard(self._done)
                    while self._ring and self._ring[0][0] <= self._done:
                        self._ring.popleft()
                    self._cond.notify_all()
        with self._cond:
            self._dead = True
            lost = len(self._checks)
            self._cond.notify_all()
        if not self._stopping:
            try:
                status: Optional[int] = self._proc.wait(5)
            except subprocess.TimeoutExpired:
                status = None
            log.warning(
                "shadow: the check process ended (exit status %s) with %d checks not made; checks go on here",
                status,
                lost,
            )


# --- the check process ------------------------------------------------------------------------------------


class _Sent:
    """What a job's check needs of the whole call, the parts being already taken: the record's input shapes and
    its rows and columns checked (``Shadow._replay``'s ``block`` interface)."""

    __slots__ = ("cols", "rows", "shapes")

    def __init__(self, shapes: List[List[int]], rows: Optional[list], cols: Optional[list]) -> None:
        self.shapes, self.rows, self.cols = shapes, rows, cols

    def checked(self) -> Tuple[Optional[list], Optional[list]]:
        return self.rows, self.cols


def child_main() -> None:
    """The check process: ``python -c ... FD SIZE OPTIONS``; jobs on stdin, results on stdout. It lives as long
    as the pipe: Ctrl-C in the terminal is the training process's to handle (it stops this one)."""
    import ast
    import signal

    from . import shadow_session as ss
    from .shadow_kept import pack
    from .shadow_snaps import Snap

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    results = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # (anything printed goes to stderr, not into the frames)
    fd, size, options = int(sys.argv[1]), int(sys.argv[2]), ast.literal_eval(sys.argv[3])
    torch.set_num_threads(int(options.get("threads", 1)))
    arena = torch.frombuffer(mmap.mmap(fd, size), dtype=torch.uint8)
    records: List[tuple] = []
    errors: List[str] = []
    checker = ss.Shadow(
        rows=0, baseline=options.get("baseline", True), keep=False, rank=options.get("rank", 0)
    )
    checker._record = lambda rec: records.append(pack(rec))  # type: ignore[method-assign]
    ops: Dict[str, Tuple[Any, Any]] = {}
    jobs = sys.stdin.buffer
    _write_frame(results, "ready")
    while True:
        batch = _read_frame(jobs)
        if batch is None:
            return
        finished = []
        for seq, header, descs in batch:
            finished.append(seq)
            if header is None:
                continue
            name = header.name
            try:
                func, op = ops.get(name) or ops.setdefault(name, _resolve(name))
                tensors = [arena.narrow(0, at, n).view(dt).view(shape) for at, n, dt, shape in descs]
                ins = [tensors[0]] * header.n_in
                for k, t in zip(header.placed, tensors):  # (an in-place op's written inputs were put first)
                    ins[k] = t
                inputs = {id(t): Snap(t) for t in ins}
                sent: Any = _Sent(header.shapes, header.rows, header.cols)  # (what _replay reads of a block)
                written = {id(ins[i]) for i in header.written}
                pre = ss.pending_of(op, header.meta, [], inputs, written, sent)
                outputs = [Snap(t) for t in tensors[header.n_in :]]
                args, kwargs = unmark(header.args, ins), unmark(header.kwargs, ins)
                with torch.no_grad():
                    checker._replay((pre, func, args, kwargs, outputs, header.from_args))
            except Exception as exc:  # told to the training process, which logs it once
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
        _write_frame(
            results, (finished, records, dict(checker.not_replayable), dict(checker._late_skips), errors)
        )
        del records[:], errors[:]
        checker.not_replayable.clear()
        checker._late_skips.clear()


def _resolve(name: str) -> Tuple[Any, Any]:
    """``aten::add_.Tensor`` -> ``torch.ops.aten.add_.Tensor`` and its facts (``shadow_session._Op``); nothing
    outside ``torch.ops.aten``."""
    from .shadow_session import _Op

    if not name.startswith("aten::"):
        raise ValueError(f"not an aten op: {name!r}")
    base, _, overload = name[len("aten::") :].partition(".")
    func = getattr(getattr(torch.ops.aten, base), overload or "default")
    return func, _Op(func, None)
