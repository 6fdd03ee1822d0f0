"""``profile(out_dir, ...)``: one switch for collectives, hangs and memory, per rank (docs/profiling.md).

A profiler writes ``out_dir/rank{r}/`` once it knows its rank: at once when ``torch.distributed`` is
initialised or ``RANK`` is set (torchrun), else when the process initialises a process group (ranks
started by ``torch.multiprocessing.spawn``), else as ``rank0`` at the end of its first training step, or
before it once :data:`PROVISIONAL_RECORDS` records or :data:`PROVISIONAL_AFTER` seconds have gone by (a
single-process run: what it flushed survives a SIGKILL, even before its first step), or at exit. A process that
calls ``torch.multiprocessing.spawn``/``start_processes`` is a launcher: a ``rank0`` it took before its first
step is removed again and given up for its children (a launcher parent whose children already wrote ``rank0``
writes nothing). Until the rank is known records wait in a buffer of :data:`PENDING` records; past that they
are dropped and counted in ``meta.json``'s ``dropped``. The rank directory is locked while this process
writes it (:mod:`ascend_tools.outdir`): a second profiler of the same rank directory records nothing there and
says so once. Everything fails open: an internal error is logged once and training goes on.
"""

import logging
import os
import socket
import sys
import threading
import time
from typing import Any, Dict, List, Optional

from .. import __version__, backend
from ..session import StepSession
from .always_on import WINDOW_S, WindowRecorder
from .comm import CommInterceptor
from .ddp_stats import DdpRuntimeStats
from .recorder import RankRecorder

log = logging.getLogger("ascend_tools")

HANG_TIMEOUT = 300.0  # s: well under NCCL's 600 s and HCCL_EXEC_TIMEOUT's 1836 s defaults
MEMORY_INTERVAL = 0.5  # s between memory samples
PENDING = 4096  # records kept while the rank is unknown (a spawn launcher's memory samples: ~30 min)
PROVISIONAL_RECORDS = 256  # a top process with this many records pending writes them as rank0 ...
PROVISIONAL_AFTER = 2.0  # s: ... and so does one this long after its start with any pending

_CURRENT: List["Profiler"] = []


def current() -> Optional["Profiler"]:
    """The innermost running profiler of this process (for the Hugging Face callback)."""
    return _CURRENT[-1] if _CURRENT else None


class Profiler(StepSession):
    """Use :func:`profile`."""

    tool = "profile"

    def __init__(
        self,
        out_dir: str,
        comm: bool = True,
        memory: bool = True,
        hang_timeout: Optional[float] = HANG_TIMEOUT,
        memory_interval: float = MEMORY_INTERVAL,
        stack: bool = True,
        native: bool = False,
        kill_on_hang: bool = False,
        top: bool = True,
        run_id: Optional[str] = None,
        always_on: bool = False,
        window_s: float = WINDOW_S,
    ) -> None:
        self._init_session(None, None)
        self.out_dir = os.path.abspath(out_dir)
        self.options: Dict[str, Any] = {
            "comm": comm,
            "memory": memory,
            "hang_timeout": hang_timeout,
            "memory_interval": memory_interval,
            "stack": stack,
            "native": native,
            "kill_on_hang": kill_on_hang,
            "always_on": always_on,
            "window_s": window_s,
        }
        self.top = top
        self.run_id = run_id  # ascend-doctor profile's run: a rank directory of another run is never written
        self.rank: Optional[int] = None
        self.rank_dir: Optional[str] = None
        self._step_t0 = time.time()
        self.recorder: Optional[RankRecorder] = None
        self.comm: Optional[CommInterceptor] = None
        self.ddp_stats: Optional[DdpRuntimeStats] = None
        self.sampler: Any = None
        self.watchdog: Any = None
        self.oom: Any = None
        self._pending: List[Dict[str, Any]] = []  # records emitted before the rank is known
        self._pending_dropped = 0  # emitted past PENDING before the rank was known
        self._lock: Any = None  # outdir.DirLock of rank_dir while this process writes it
        self._refused = False  # another process holds our rank directory: record nothing
        self._naming = threading.Lock()  # _name from the training thread and the memory sampler's
        self._provisional = False  # rank0 taken before the first step, the watchdog and OOM hooks not started
        self._launcher = (
            False  # this process started ranks with torch.multiprocessing: never rank0 before exit
        )
        self._unhook_spawn: Any = None
        self._unhook_popen: Any = None

    # --- lifecycle -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._active:
            return
        self._active = True
        _CURRENT.append(self)
        try:
            self._install_step_hook()
            if self.options["comm"]:
                if self.options["always_on"]:
                    self.ddp_stats = DdpRuntimeStats(on_device=backend.detect().name != "cpu")
                self.comm = CommInterceptor(
                    self.emit,
                    lambda: self.step_no,
                    stack=self.options["stack"],
                    on_init=self._name_from_dist,
                    on_ddp=self.ddp_stats.watch if self.ddp_stats is not None else None,
                )
                self.comm.install()
            if self.options["memory"]:
                from .memory import MemorySampler

                self.sampler = MemorySampler(self.emit, self.options["memory_interval"], lambda: self.step_no)
                self.sampler.start()
            self._name_from_dist()
            if self.top:
                self._unhook_spawn = _hook_spawn(self._give_up_rank0)
                self._unhook_popen = _hook_launcher_popen(self._give_up_rank0)
        except Exception as exc:
            self._fail(exc)

    def close(self) -> None:
        if not self._active:
            return
        self._active = False
        if self in _CURRENT:
            _CURRENT.remove(self)
        for part in (self.watchdog, self.sampler, self.ddp_stats):
            if part is not None:
                try:
                    part.stop()
                except Exception as exc:
                    self._fail(exc)
        if self.comm is not None:
            self.comm.uninstall()
        if self._unhook_spawn is not None:
            self._unhook_spawn()
        if self._unhook_popen is not None:
            self._unhook_popen()
        self._exit_dispatch()  # the step hooks (the profiler has no dispatch mode)
        if self.oom is not None:
            self.oom.uninstall()
        if self.rank_dir is None and self.top and not self._name(0, 1, final=True, watch=False):
            return
        if self.recorder is not None:
            self.recorder.close(
                steps=self.step_no, internal_errors_comm=self.comm.internal_errors if self.comm else 0
            )
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc is not None:
            self.report_oom(exc)
        self.close()

    # --- naming ----------------------------------------------------------------------------------------

    def _name_from_dist(self) -> None:
        if self.rank_dir is not None and not self._provisional:
            return
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                self._give_up_rank0(launcher=False)  # it was only a guess
                self._name(dist.get_rank(), dist.get_world_size())
                return
        except Exception as exc:
            self._fail(exc)
        if "RANK" in os.environ:
            self._give_up_rank0(launcher=False)
            self._name(backend.rank(), backend.world_size())

    def _name(
        self, rank: int, world: int, final: bool = False, watch: bool = True, provisional: bool = False
    ) -> bool:
        """Open ``rank{rank}``; ``final`` (a process that never learnt its rank, at exit or OOM) writes
        only when no other process already wrote that rank. ``watch``: start the hang watchdog and the OOM
        hooks too (not when closing: nothing would stop them). ``provisional``: rank0 before the first
        step (:meth:`_name_provisionally`)."""
        with self._naming:
            named = self._name_locked(rank, world, final, watch)
            if named and provisional:
                self._provisional = True
            return named

    def _name_locked(self, rank: int, world: int, final: bool, watch: bool) -> bool:
        if self._refused or self.rank_dir is not None:
            return self.rank_dir == os.path.join(self.out_dir, f"rank{rank}")
        rank_dir = os.path.join(self.out_dir, f"rank{rank}")
        if final and os.path.exists(os.path.join(rank_dir, "meta.json")):
            return False
        from ..outdir import Busy, rank_lock

        try:
            self._lock = rank_lock(self.out_dir, rank, "profile").acquire()
        except (Busy, OSError) as exc:
            self._refused = True
            self._pending = []
            log.warning("profile: %s: %s; this process records nothing (training goes on)", rank_dir, exc)
            return False
        other = self._other_run(rank_dir)
        if other is not None:
            self._lock.release()
            self._lock = None
            self._refused = True
            self._pending = []
            log.warning(
                "profile: %s holds %s; this process records nothing (training goes on)", rank_dir, other
            )
            return False
        self.rank, self.rank_dir = rank, rank_dir
        if self.options["always_on"]:
            self.recorder = WindowRecorder(rank_dir, self._meta(rank, world), self.options["window_s"])
        else:
            self.recorder = RankRecorder(rank_dir, self._meta(rank, world))
        if self.comm is not None:
            self.recorder.ticks.append(self.comm.resolve)
        for rec in self._pending:
            self.recorder.emit(rec)
        self.recorder.dropped += self._pending_dropped
        self._pending = []
        self.recorder.start()
        if watch:
            self._start_watchdog(rank, world, self.recorder)
            self._start_oom(rank_dir)
        return True

    def _other_run(self, rank_dir: str) -> Optional[str]:
        """What another run left in ``rank_dir`` (``profile --append`` never writes it again), or None."""
        if self.run_id is None:
            return None
        from .. import boundedio

        try:
            with open(os.path.join(rank_dir, "meta.json"), "rb") as f:
                meta = boundedio.loads(boundedio.read_document(f, boundedio.MAX_LINE))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return "a profile this run cannot read"
        found = meta.get("run_id") if isinstance(meta, dict) else None
        return None if found == self.run_id else f"run {found}'s profile" if found else "an older profile"

    def _meta(self, rank: int, world: int) -> Dict[str, Any]:
        info = backend.detect()
        dist_backend = info.dist_backend
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist_backend = str(dist.get_backend())
        except Exception:
            pass
        return {
            "rank": rank,
            "world_size": world,
            "local_rank": int(os.environ.get("LOCAL_RANK", rank)),
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "backend": info.name,
            "dist_backend": dist_backend,
            "device_name": info.device_name,
            "versions": dict(
                backend.software_versions(), torch_npu=info.torch_npu_version, ascend_tools=__version__
            ),
            "options": self.options,
            "run_id": self.run_id,
            "started_at": self._step_t0,
        }

    def _start_watchdog(self, rank: int, world: int, recorder: RankRecorder) -> None:
        timeout = self.options["hang_timeout"]
        if self.comm is None or not timeout:
            return
        from .hang import Watchdog, job_token

        self.watchdog = Watchdog(
            self.out_dir,
            rank,
            float(timeout),
            inflight=self.comm.inflight,
            recent=self.comm.recent_records,
            flush=lambda: recorder.anomaly("hang"),
            native=self.options["native"],
            kill=self.options["kill_on_hang"],
            world_size=world,
            token=job_token(),  # set by ascend-doctor profile; without it signals are checked but unsigned
        )
        self.watchdog.start()

    def _start_oom(self, rank_dir: str) -> None:
        if not self.options["memory"]:
            return
        from .oom import OomForensics

        recent = self.sampler.recent if self.sampler is not None else list
        self.oom = OomForensics(rank_dir, lambda: self.step_no, recent)
        self.oom.install()

    def _name_provisionally(self) -> None:
        """A top process that does not know its rank yet writes what it has as rank0 now (see the module's
        docstring); the watchdog and OOM hooks wait for its first step."""
        if not self.top or self._launcher or "RANK" in os.environ:
            return
        if len(self._pending) < PROVISIONAL_RECORDS and time.time() - self._step_t0 < PROVISIONAL_AFTER:
            return
        self._name(0, 1, final=True, watch=False, provisional=True)

    def _give_up_rank0(self, launcher: bool = True) -> None:
        """Remove a rank0 taken before the first step and what was written there: ``launcher``, this process
        is about to start ranks (``torch.multiprocessing``), its rank 0 gets it; else this process has just
        learnt its real rank."""
        with self._naming:
            self._launcher = self._launcher or launcher
            if not self._provisional or self.recorder is None:
                return
            self.recorder.discard()
            self.recorder = None
            self.rank = self.rank_dir = None
            self._provisional = False
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    # --- records and steps -----------------------------------------------------------------------------

    def emit(self, rec: Dict[str, Any]) -> None:
        recorder = self.recorder
        if recorder is not None:
            recorder.emit(rec)
            return
        if len(self._pending) < PENDING:
            self._pending.append(rec)
        else:
            self._pending_dropped += 1
        try:
            self._name_provisionally()
        except Exception as exc:
            self._fail(exc)

    def _advance(self) -> None:
        try:
            now = time.time()
            if self.ddp_stats is not None:
                for rec in self.ddp_stats.read(self.step_no):
                    self.emit(rec)
            self.emit({"k": "step", "step": self.step_no, "t0": self._step_t0, "t1": now})
            if self.sampler is not None:
                self.sampler.on_step(self.step_no, now)  # closes the step that just ended
            self._step_t0 = now
            self.step_no += 1
            self._name_from_dist()
            if self.rank_dir is None and self.top:
                # a process that trains without knowing its rank is a single-process run: write as rank0
                # now (not only at exit), so that what the writer flushed survives a kill
                self._name(0, 1, final=True)
            elif self._provisional and self.recorder is not None:
                self._provisional = False
                self._start_watchdog(0, 1, self.recorder)
                self._start_oom(os.path.join(self.out_dir, "rank0"))
        except Exception as exc:
            self._fail(exc)

    def report_oom(self, exc: BaseException) -> Optional[str]:
        """Write the OOM forensics for ``exc`` when it is an out-of-memory error; the path or None."""
        try:
            from .oom import is_oom

            if not is_oom(exc):
                return None
            if self.rank_dir is None and not self._name(backend.rank(), backend.world_size(), final=True):
                return None
            if self.recorder is not None:
                self.recorder.anomaly("oom")
            return self.oom.report(exc) if self.oom is not None else None
        except Exception as err:
            self._fail(err)
            return None


def _hook_spawn(before: Any) -> Any:
    """Call ``before()`` whenever this process starts ranks with ``torch.multiprocessing.spawn`` or
    ``start_processes``; returns the function that removes the hook."""
    import torch.multiprocessing as tmp

    tmp_spawn = sys.modules["torch.multiprocessing.spawn"]  # the attribute ``spawn`` is the function

    original = tmp_spawn.start_processes

    def start_processes(*args: Any, **kwargs: Any) -> Any:
        try:
            before()
        except Exception as exc:  # never stop the user's program
            log.warning("profile: %s: %s", type(exc).__name__, exc)
        return original(*args, **kwargs)

    for module in (tmp_spawn, tmp):
        setattr(module, "start_processes", start_processes)  # noqa: B010 (not in torch's stubs everywhere)

    def unhook() -> None:
        for module in (tmp_spawn, tmp):
            if getattr(module, "start_processes", None) is start_processes:
                setattr(module, "start_processes", original)  # noqa: B010

    return unhook


def _hook_launcher_popen(before: Any) -> Any:
    """Call ``before()`` whenever this process starts a launcher with ``subprocess`` (``launch.is_launcher``: a
    CLI that runs torchrun on several devices, ``llamafactory-cli train``): the ranks it starts are the run's, and
    rank 0 gets ``rank0``. Returns the function that removes the hook."""
    import shlex
    import subprocess

    from ..launch import is_launcher

    original = subprocess.Popen.__init__
    unread: List[str] = []  # the first command this hook could not read (said once)

    def __init__(self: Any, args: Any, *rest: Any, **kwargs: Any) -> None:
        try:
            cmd = shlex.split(args) if isinstance(args, str) else [os.fsdecode(a) for a in args]
            if is_launcher(cmd):
                before()
        except Exception as exc:  # never stop the user's program; Popen judges its own arguments
            if not unread:
                unread.append(repr(args))
                log.warning(
                    "profile: could not tell whether %.200s starts a launcher (%s: %s); said once",
                    unread[0],
                    type(exc).__name__,
                    exc,
                )
        original(self, args, *rest, **kwargs)

    subprocess.Popen.__init__ = __init__  # type: ignore[method-assign]

    def unhook() -> None:
        if subprocess.Popen.__init__ is __init__:
            subprocess.Popen.__init__ = original  # type: ignore[method-assign]

    return unhook


def profile(
    out_dir: str,
    comm: bool = True,
    memory: bool = True,
    hang_timeout: Optional[float] = HANG_TIMEOUT,
    memory_interval: float = MEMORY_INTERVAL,
    stack: bool = True,
    native: bool = False,
    kill_on_hang: bool = False,
    always_on: bool = False,
    window_s: float = WINDOW_S,
) -> Profiler:
    """Profile the code run inside ``with profile(out_dir) as prof:`` into ``out_dir/rank{r}/``.

    ``comm``: time every collective (``torch.distributed`` functions, DDP bucket all-reduces, FSDP).
    ``memory``: sample device and host memory every ``memory_interval`` seconds, per-step peaks, and
    write forensics on an out-of-memory error (then it propagates). ``hang_timeout``: seconds a
    collective may stay incomplete before every rank dumps its stacks (None: no watchdog); with
    ``kill_on_hang`` the rank then terminates itself. ``native``: py-spy also shows native frames.
    Steps advance at each ``optimizer.step()`` until the script calls ``prof.step()``. ``always_on``: keep
    the disk bounded for runs of days: one aggregate record per ``window_s`` seconds and the last full
    records dumped around an anomaly (slow window, hang, OOM) instead of every record (always_on.py)."""
    return Profiler(
        out_dir,
        comm=comm,
        memory=memory,
        hang_timeout=hang_timeout,
        memory_interval=memory_interval,
        stack=stack,
        native=native,
        kill_on_hang=kill_on_hang,
        always_on=always_on,
        window_s=window_s,
    )


def start_from_options(opts: Dict[str, Any]) -> Profiler:
    """Used by ``launch.start_from_env`` in each Python process of ``ascend-doctor profile``."""
    opts = dict(opts)
    top = not opts.pop("child", False)
    prof = Profiler(opts.pop("out_dir"), top=top, **opts)
    prof.start()
    return prof
