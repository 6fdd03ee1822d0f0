"""Hang watchdog: one thread per rank that notices a collective not completing and dumps every rank's
stacks.

A rank that skipped a collective is not inside it, so it would never notice the hang itself: the rank
that does notice signals the others (through torch.distributed's store, else through the file
``PROF/hang-signal``), and every rank writes the same dump to ``PROF/rank{r}/hang/``. Signalling comes
before the local dump, so that peers take their stacks at about the same moment. Each watchdog dumps at
most once; a later hang would only overwrite the first one's evidence.

Anyone who reaches the store (a TCPStore listens on the network without authentication) or can write
the file could forge a signal, so a peer's signal is validated before it is acted on (:func:`check_signal`):
a rank of the job other than our own, a finite ``detected_at`` neither in the future (beyond
:data:`CLOCK_SKEW_S`) nor before our start, a bounded ``collective`` dict and, where the job has a token
(``$ASCEND_DOCTOR_JOB_TOKEN``, set by ``ascend-doctor profile``), an HMAC of the signal under that token.
Anything else is ignored, counted in ``ignored_signals`` and logged once. A peer's signal alone never
kills a rank: with ``kill``, a rank dumped on a peer's signal terminates only once it is itself stuck in
a collective.

Layout and fields: docs/profile-format.md; what works where: docs/profiling.md.
"""

import contextlib
import ctypes
import faulthandler
import hashlib
import hmac
import json
import logging
import math
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
TOKEN_ENV = "ASCEND_DOCTOR_JOB_TOKEN"  # one random secret per job, the same on every rank
CLOCK_SKEW_S = 60.0  # a peer's detected_at may be this far ahead of our clock (another host's)
MAX_SIGNAL_BYTES = 256 * 1024  # a longer signal is not parsed
MAX_COLLECTIVE_BYTES = 64 * 1024  # the signal's "collective" as JSON; ours is cut to fit (ranks first)
# linux/prctl.h: with Yama's ptrace_scope=1 only an ancestor may ptrace a process; PR_SET_PTRACER lets
# our own child (py-spy) attach to us. The value is "Yama" as an int. Never PR_SET_PTRACER_ANY
# ((unsigned long)-1): that would let every process of our user attach while py-spy runs.
_PR_SET_PTRACER = 0x59616D61


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


def _prctl(option: int, arg: int) -> None:
    """``prctl(option, arg)``; nothing where libc has no prctl (not Linux). Yama absent: EINVAL, ignored."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    fn(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0), ctypes.c_ulong(0), ctypes.c_ulong(0))


# py-spy starts held: the shell waits for a line on stdin, which we send only once py-spy's pid (the
# shell's, kept by exec) may ptrace us; otherwise it could try to attach before PR_SET_PTRACER and fail.
_HELD = 'read -r _ && exec "$0" "$@"'


@contextlib.contextmanager
def _ptracer(pid: int) -> Iterator[None]:
    """Let process ``pid`` (and no other) ptrace us for the duration (Yama), then go back to the default."""
    _prctl(_PR_SET_PTRACER, pid)
    try:
        yield
    finally:
        _prctl(_PR_SET_PTRACER, 0)


def _run_traced(cmd: List[str]) -> "subprocess.CompletedProcess[bytes]":
    """Run ``cmd`` (py-spy) with ptrace rights on us granted to its pid only, before it starts."""
    proc = subprocess.Popen(
        ["/bin/sh", "-c", _HELD, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        with _ptracer(proc.pid):
            out, err = proc.communicate(b"go\n", timeout=PYSPY_TIMEOUT_S)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


PYSPY_TRIES = 3  # py-spy dumps tried before the dump says why it has no stacks
# wait after the n-th failed try: n times this (two dumpers of one process that collided fall out of step)
PYSPY_BACKOFF_S = 0.2


def dump_pyspy(hang_dir: str, native: bool) -> str:
    """``py-spy dump --json`` of this process into ``pyspy.json``; the file name written.

    ``--nonblocking`` reads the stacks without pausing the process; py-spy refuses it together with
    ``--native``, so a native dump pauses the process for the (sub-second) read. A read without pausing can meet a
    frame another thread is changing ("Failed to copy PyFrameObject: Bad address"): it is tried
    :data:`PYSPY_TRIES` times, :data:`PYSPY_BACKOFF_S` apart and more after each failure."""
    exe = _pyspy_exe()
    if exe is None:
        raise DumpError("py-spy not found on PATH or next to the interpreter (pip install py-spy)")
    cmd = [exe, "dump", "--pid", str(os.getpid()), "--json", "--native" if native else "--nonblocking"]
    for attempt in range(1, PYSPY_TRIES + 1):
        proc = _run_traced(cmd)
        if proc.returncode == 0:
            break
        if attempt < PYSPY_TRIES:
            time.sleep(PYSPY_BACKOFF_S * attempt)
    else:
        err = proc.stderr.decode("utf-8", "replace").strip() or proc.stdout.decode("utf-8", "replace").strip()
        raise DumpError(f"py-spy exited with {proc.returncode} ({PYSPY_TRIES} tries): {err}")
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


def job_token() -> Optional[str]:
    """This job's token, ``$ASCEND_DOCTOR_JOB_TOKEN`` (None when unset: signals are then not signed)."""
    return os.environ.get(TOKEN_ENV) or None


_SIGNED = ("rank", "host", "pid", "detected_at", "collective")


def sign(token: str, sig: Dict[str, Any]) -> str:
    """HMAC-SHA256 under ``token`` of the signal's fields (canonical JSON), hex."""
    msg = json.dumps({k: sig.get(k) for k in _SIGNED}, sort_keys=True, separators=(",", ":"))
    return hmac.new(token.encode("utf-8"), msg.encode("utf-8"), hashlib.sha256).hexdigest()


def _json_len(value: Any) -> int:
    return len(json.dumps(value, default=str))


def _fit(collective: Dict[str, Any]) -> Dict[str, Any]:
    """Our collective cut to :data:`MAX_COLLECTIVE_BYTES` (a huge group's ``ranks`` go first)."""
    if _json_len(collective) <= MAX_COLLECTIVE_BYTES:
        return collective
    small = {k: v for k, v in collective.items() if k != "ranks"}
    if _json_len(small) <= MAX_COLLECTIVE_BYTES:
        return small
    keys = ("gid", "seq", "op", "api", "t0", "bytes", "n", "step")
    return {k: str(collective[k])[:256] for k in keys if k in collective}


def check_signal(
    sig: Any, rank: int, world_size: Optional[int], started_at: float, token: Optional[str], now: float
) -> Optional[str]:
    """Why a peer's signal ``sig`` (parsed JSON) must be ignored, or None when it may be acted on."""
    if not isinstance(sig, dict):
        return "not a JSON object"
    peer = sig.get("rank")
    if type(peer) is not int or peer < 0 or (world_size is not None and peer >= world_size):
        return f"rank {peer!r} is not a rank of this job" + (
            f" (world size {world_size})" if world_size else ""
        )
    if peer == rank:
        return f"rank {peer} is this rank"
    at_any = sig.get("detected_at")
    if not isinstance(at_any, (int, float)) or isinstance(at_any, bool) or not math.isfinite(at_any):
        return f"detected_at {at_any!r} is not a finite number"
    at = float(at_any)
    if at > now + CLOCK_SKEW_S:
        return f"detected_at {at!r} is in the future"
    if at < started_at:  # an earlier run's (a stale hang-signal file, a reused store)
        return f"detected_at {at!r} is before this watchdog started"
    coll = sig.get("collective")
    if not isinstance(coll, dict) or _json_len(coll) > MAX_COLLECTIVE_BYTES:
        return f"collective is not a JSON object of at most {MAX_COLLECTIVE_BYTES} bytes"
    if token is not None:
        mac = sig.get("mac")
        if not isinstance(mac, str) or not hmac.compare_digest(mac, sign(token, sig)):
            return f"not signed with this job's token (${TOKEN_ENV})"
    return None


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
    later, SIGKILL; it kills nothing once :meth:`stop` was called. A rank that dumped on a peer's signal
    does so only once a collective of its own is stuck (it keeps watching until then). ``triggered``
    holds ``hang.json``'s content once the dump is written.

    A peer's signal counts only when :func:`check_signal` accepts it: ``world_size`` bounds its rank
    (None: any rank >= 0), ``token`` (see :func:`job_token`) signs our signals and must have signed theirs
    (None: signals are neither signed nor checked for a signature). ``ignored_signals`` counts the
    distinct signals ignored; the first is logged.
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
        world_size: Optional[int] = None,
        token: Optional[str] = None,
    ) -> None:
        self.out_dir = out_dir
        self.rank = int(rank)
        self.timeout = float(timeout)
        self.poll = float(poll) if poll is not None else min(1.0, self.timeout / 10)
        self.native = native
        self.kill = kill
        self.kill_grace = float(kill_grace)
        self.world_size = int(world_size) if world_size is not None else None
        self.token = token
        self.ignored_signals = 0
        self._last_ignored: Optional[bytes] = None
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
        dumped: Optional[Dict[str, Any]] = None
        while not self._stop.wait(self.poll):
            try:
                if dumped is None:
                    cause = self._stuck() or self._peer_signal()
                    if cause is None:
                        continue
                    self._dump(cause)
                    if not self.kill:
                        return
                    dumped = cause
                    if cause["trigger"] == "peer" and self._stuck() is None:
                        log.warning(
                            "hang: rank %d: kill=True, but no collective of this rank is stuck: not killed "
                            "on rank %s's signal (only once one of its own is)",
                            self.rank,
                            cause["peer"],
                        )
                        continue
                elif self._stuck() is None:  # dumped on a peer's signal: killed only once stuck itself
                    continue
                self._terminate()
                return
            except Exception as exc:
                self._fail(exc)

    def _stuck(self) -> Optional[Dict[str, Any]]:
        """The oldest collective this rank has been blocked on longer than the timeout, as a trigger."""
        now = time.time()
        late = [c for c in self._inflight() if now - _blocking_since(c) > self.timeout]
        if not late:
            return None
        return {"trigger": "self", "peer": None, "via": None, "collective": min(late, key=lambda c: c["t0"])}

    def _peer_signal(self) -> Optional[Dict[str, Any]]:
        store = self._get_store()
        via, raw = ("store", self._read_store(store)) if store is not None else ("file", self._read_file())
        if raw is None:
            return None
        if len(raw) > MAX_SIGNAL_BYTES:
            self._ignore(raw, via, f"longer than {MAX_SIGNAL_BYTES} bytes")
            return None
        try:
            sig = json.loads(raw)
        except ValueError:
            sig = None  # not JSON (also a file caught half-written by a non-atomic writer)
        why = check_signal(sig, self.rank, self.world_size, self._started_at, self.token, time.time())
        if why is not None:
            self._ignore(raw, via, why)
            return None
        return {"trigger": "peer", "peer": sig["rank"], "via": via, "collective": sig["collective"]}

    def _ignore(self, raw: bytes, via: str, why: str) -> None:
        """Count a signal that fails validation (once per distinct content) and log the first."""
        digest = hashlib.sha256(raw).digest()
        if digest == self._last_ignored:
            return
        self._last_ignored = digest
        self.ignored_signals += 1
        if self.ignored_signals == 1:
            log.warning(
                "hang watchdog: rank %d: ignored a hang signal from the %s: %s", self.rank, via, why[:300]
            )

    def _get_store(self) -> Optional[Any]:
        if self._store is None and not self._store_broken:
            self._store = self._store_fn()
        return self._store

    def _read_store(self, store: Any) -> Optional[bytes]:
        try:
            if not store.check([SIGNAL_KEY]):
                return None
            return bytes(store.get(SIGNAL_KEY))
        except Exception as exc:  # the store's host went away: fall back to the file
            self._drop_store(exc)
            return None

    def _read_file(self) -> Optional[bytes]:
        try:
            with open(self.signal_path, "rb") as f:
                return f.read(MAX_SIGNAL_BYTES + 1)
        except OSError:
            return None

    def _drop_store(self, exc: BaseException) -> None:
        self._store, self._store_broken = None, True
        self._fail(exc)

    def _signal(self, detected_at: float, collective: Dict[str, Any]) -> None:
        # through JSON first: the signature covers the values exactly as the peers will parse them
        sig = json.loads(
            json.dumps(
                {
                    "rank": self.rank,
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "detected_at": detected_at,
                    "collective": _fit(collective),
                },
                default=str,
            )
        )
        if self.token is not None:
            sig["mac"] = sign(self.token, sig)
        payload = json.dumps(sig)
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


def _blocking_since(call: Dict[str, Any]) -> float:
    """Since when ``call`` (an in-flight collective) holds its rank: from its start, or, for a functional collective
    (``funcol.py``), from when its wait began (``waited_at``; None: not waited for yet, +inf here: never late)."""
    if "waited_at" in call:
        at = call["waited_at"]
        return float("inf") if at is None else float(at)
    return float(call["t0"])
