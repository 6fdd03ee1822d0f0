"""Hang watchdog: one thread per rank that notices a collective not completing and dumps every rank's
stacks.

A rank that skipped a collective is not inside it, so it would never notice the hang itself: the rank
that does notice signals the others (through torch.distributed's store, else through the file
``PROF/hang-signal``), and every rank writes the same dump to ``PROF/rank{r}/hang/``. Signalling comes
before the local dump, so that peers take their stacks at about the same moment. Each watchdog dumps at
most once; a later hang would only overwrite the first one's evidence.

Layout and fields: docs/profile-format.md; what works where: docs/profiling.md.
"""

import contextlib
import ctypes
import faulthandler
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional

from .. import backend
from ..atomic import write_bytes, write_json
from ..failopen import FailOpen
from .background import Background

log = logging.getLogger("ascend_tools")

SIGNAL_KEY = "ascend_doctor/hang"
SIGNAL_FILE = "hang-signal"
PYSPY_TIMEOUT_S = 60.0
# linux/prctl.h: with Yama's ptrace_scope=1 only an ancestor may ptrace a process; PR_SET_PTRACER lets
# our own child (py-spy) attach to us. The value is ("Yama" as an int); ANY is (unsigned long)-1.
_PR_SET_PTRACER = 0x59616D61
_PR_SET_PTRACER_ANY = ctypes.c_ulong(-1).value


class DumpError(Exception):
    """A part of the dump that could not be written; its message goes into ``hang.json``."""


def default_store() -> Optional[Any]:
    """torch.distributed's default store when a process group is initialised, else None."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.distributed_c10d._get_default_store()
    except Exception:
        return None
    return None


def _pyspy_exe() -> Optional[str]:
    """py-spy on PATH, else the one installed next to this interpreter (a venv not on PATH)."""
    found = shutil.which("py-spy")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "py-spy")
    return beside if os.access(beside, os.X_OK) else None


@contextlib.contextmanager
def _ptrace_allowed() -> Iterator[None]:
    """Let any process of our user ptrace us for the duration (Yama), then go back to the default."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        yield
        return
    prctl(_PR_SET_PTRACER, ctypes.c_ulong(_PR_SET_PTRACER_ANY), 0, 0, 0)
    try:
        yield
    finally:
        prctl(_PR_SET_PTRACER, ctypes.c_ulong(0), 0, 0, 0)


def dump_pyspy(hang_dir: str, native: bool) -> str:
    """``py-spy dump --json`` of this process into ``pyspy.json``; the file name written.

    ``--nonblocking`` reads the stacks without pausing the process; py-spy refuses it together with
    ``--native``, so a native dump pauses the process for the (sub-second) read."""
    exe = _pyspy_exe()
    if exe is None:
        raise DumpError("py-spy not found on PATH or next to the interpreter (pip install py-spy)")
    cmd = [exe, "dump", "--pid", str(os.getpid()), "--json", "--native" if native else "--nonblocking"]
    with _ptrace_allowed():
        proc = subprocess.run(cmd, capture_output=True, timeout=PYSPY_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip() or proc.stdout.decode("utf-8", "replace").strip()
        raise DumpError(f"py-spy exited with {proc.returncode}: {err}")
    try:
        json.loads(proc.stdout)
    except ValueError:
        write_bytes(os.path.join(hang_dir, "pyspy.txt"), proc.stdout)
        return "pyspy.txt"
    write_bytes(os.path.join(hang_dir, "pyspy.json"), proc.stdout)
    return "pyspy.json"


def dump_faulthandler(hang_dir: str, native: bool) -> str:
    """Python stacks of all threads, as the interpreter itself sees them (no ptrace needed)."""
    with tempfile.TemporaryFile() as f:
        faulthandler.dump_traceback(file=f, all_threads=True)
        f.seek(0)
        write_bytes(os.path.join(hang_dir, "faulthandler.txt"), f.read())
    return "faulthandler.txt"


def dump_flight_recorder(hang_dir: str, native: bool) -> str:
    """The collective flight recorder's dump: JSON where the backend offers it, else its pickle bytes
    as they are (``flight_recorder.pkl``, for torch's own ``fr_trace`` analyzer; never unpickled)."""
    data, where = backend.flight_recorder()
    if data is None:
        raise DumpError(f"no flight recorder: {where}")
    name = "flight_recorder.json" if where.endswith("_json") else "flight_recorder.pkl"
    write_bytes(os.path.join(hang_dir, name), data)
    return name


# (name in hang.json's "files", writer) in the order they run: the stacks first, closest to the moment.
DUMPERS = (
    ("pyspy", dump_pyspy),
    ("faulthandler", dump_faulthandler),
    ("flight_recorder", dump_flight_recorder),
)


def _run_dumper(fn: Callable[[str, bool], str], hang_dir: str, native: bool) -> str:
    try:
        return fn(hang_dir, native)
    except DumpError as exc:
        return str(exc)
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


class Watchdog(Background, FailOpen):
    """Watches this rank's in-flight collectives from a daemon thread (see the module docstring).

    ``inflight()`` lists the collectives entered but not completed (dicts with ``gid, seq, op, api, t0,
    bytes, n, ranks, step``; ``t0`` is ``time.time()`` at entry); ``recent()`` the last completed
    ``coll`` records; ``flush()`` pushes buffered records to disk; ``store()`` returns the store peers
    share (None: none yet; asked again at each poll until one appears). With ``kill``, a rank that has
    dumped waits ``kill_grace`` s (its peers dump meanwhile), sends itself SIGTERM and, ``kill_grace`` s
    later, SIGKILL; it kills nothing once :meth:`stop` was called. ``triggered`` holds ``hang.json``'s
    content once the dump is written.
    """

    def __init__(
        self,
        out_dir: str,
        rank: int,
        timeout: float,
        inflight: Callable[[], List[dict]],
        recent: Callable[[], List[dict]],
        flush: Callable[[], None],
        store: Callable[[], Optional[Any]] = default_store,
        native: bool = False,
        kill: bool = False,
        poll: Optional[float] = None,
        kill_grace: float = 10.0,
    ) -> None:
        self.out_dir = out_dir
        self.rank = int(rank)
        self.timeout = float(timeout)
        self.poll = float(poll) if poll is not None else min(1.0, self.timeout / 10)
        self.native = native
        self.kill = kill
        self.kill_grace = float(kill_grace)
        self.hang_dir = os.path.join(out_dir, f"rank{self.rank}", "hang")
        self.signal_path = os.path.join(out_dir, SIGNAL_FILE)
        self.triggered: Optional[Dict[str, Any]] = None
        self._inflight = inflight
        self._recent = recent
        self._flush = flush
        self._store_fn = store
        self._store: Optional[Any] = None
        self._store_broken = False
        self._started_at = 0.0
        self.thread_name = f"ascend-doctor-hang-{self.rank}"
        self._init_background()

    def start(self) -> None:
        self._started_at = time.time()
        super().start()

    # --- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                cause = self._stuck() or self._peer_signal()
                if cause is not None:
                    self._dump(cause)
                    if self.kill:
                        self._terminate()
                    return
            except Exception as exc:
                self._fail(exc)

    def _stuck(self) -> Optional[Dict[str, Any]]:
        now = time.time()
        late = [c for c in self._inflight() if now - float(c["t0"]) > self.timeout]
        if not late:
            return None
        return {"trigger": "self", "peer": None, "via": None, "collective": min(late, key=lambda c: c["t0"])}

    def _peer_signal(self) -> Optional[Dict[str, Any]]:
        store = self._get_store()
        via, sig = ("store", self._read_store(store)) if store is not None else ("file", self._read_file())
        # a signal from an earlier run (a stale hang-signal file, a reused store) predates our start
        if sig is None or sig.get("rank") == self.rank or float(sig.get("detected_at", 0)) < self._started_at:
            return None
        return {"trigger": "peer", "peer": sig.get("rank"), "via": via, "collective": sig.get("collective")}

    def _get_store(self) -> Optional[Any]:
        if self._store is None and not self._store_broken:
            self._store = self._store_fn()
        return self._store

    def _read_store(self, store: Any) -> Optional[Dict[str, Any]]:
        try:
            if not store.check([SIGNAL_KEY]):
                return None
            return json.loads(store.get(SIGNAL_KEY))
        except Exception as exc:  # the store's host went away: fall back to the file
            self._drop_store(exc)
            return None

    def _read_file(self) -> Optional[Dict[str, Any]]:
        try:
            with open(self.signal_path, encoding="utf-8") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _drop_store(self, exc: BaseException) -> None:
        self._store, self._store_broken = None, True
        self._fail(exc)

    def _signal(self, detected_at: float, collective: Dict[str, Any]) -> None:
        payload = json.dumps(
            {
                "rank": self.rank,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "detected_at": detected_at,
                "collective": collective,
            },
            default=str,
        )
        store = self._get_store()
        if store is not None:
            try:
                store.set(SIGNAL_KEY, payload)
                return
            except Exception as exc:
                self._drop_store(exc)
        write_bytes(self.signal_path, payload.encode("utf-8"))

    def _dump(self, cause: Dict[str, Any]) -> None:
        detected_at = time.time()
        if cause["trigger"] == "self":
            self._guarded(self._signal, detected_at, cause["collective"])
        self._guarded(self._flush)
        inflight = self._guarded(self._inflight) or []
        recent = self._guarded(self._recent) or []
        os.makedirs(self.hang_dir, exist_ok=True)
        files = {name: _run_dumper(fn, self.hang_dir, self.native) for name, fn in DUMPERS}
        report = {
            "rank": self.rank,
            "trigger": cause["trigger"],
            "peer": cause["peer"],
            "via": cause["via"],
            "collective": cause["collective"],
            "timeout": self.timeout,
            "detected_at": detected_at,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "inflight": inflight,
            "recent": recent,
            "files": files,
        }
        write_json(os.path.join(self.hang_dir, "hang.json"), report)  # last: its presence means complete
        self.triggered = report
        log.warning(
            "hang: rank %d: %s; stacks in %s", self.rank, _describe(cause, self.timeout), self.hang_dir
        )

    def _terminate(self) -> None:
        if self._stop.wait(self.kill_grace):
            return
        log.warning("hang: rank %d: kill=True, sending SIGTERM to pid %d", self.rank, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)
        if not self._stop.wait(self.kill_grace):
            os.kill(os.getpid(), signal.SIGKILL)

    def _fail_message(self) -> str:
        return f"hang watchdog: rank {self.rank}: internal error, a hang may go unreported (training goes on)"


def _describe(cause: Dict[str, Any], timeout: float) -> str:
    coll = cause.get("collective") or {}
    what = f"{coll.get('api') or coll.get('op', '?')} (group {coll.get('gid', '?')}, #{coll.get('seq', '?')})"
    if cause["trigger"] == "self":
        return f"{what} not complete after {timeout:g} s"
    return f"rank {cause['peer']} reported {what} stuck (signal via {cause['via']})"
