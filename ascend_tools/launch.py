"""Run a user's command with one of our tools switched on, without changing the user's code.

:func:`run` puts ``ascend_tools/_site`` (a directory holding only our ``sitecustomize.py``) on the command's
``PYTHONPATH``; the tool and its options travel in the environment variable ``ASCEND_DOCTOR_LAUNCH`` (JSON).
Every Python process started by the command imports that ``sitecustomize`` at interpreter start. It takes its
directory off ``sys.path`` again (the user's modules resolve as without us: the package root is never on the
path), runs the user's own ``sitecustomize`` first, and in a process to instrument only installs an import
hook: the tool named by ``"tool"`` (:data:`TOOLS`: ``dump``, ``shadow``, ``profile``) starts (see
:func:`start_from_env`) once the process has imported ``torch``, and stops from an ``atexit`` handler.

Which processes are instrumented: the first Python process of the command to import torch (``python
script.py``, ``python -m module``, or the ``python train.py`` that a Python launcher which never imports torch
starts); under ``torchrun`` (``require_rank``, or torchrun started by a script), only processes that have
``RANK`` in their environment (the workers, not the launcher agent), each writing ``rank{RANK}``. An
instrumented process sets ``ASCEND_DOCTOR_ACTIVE`` when it imports torch, so the processes it starts from
then on are not instrumented again,
except by the tools in :data:`CHILD_TOOLS`: ``profile`` instruments those that import torch too, as
children (they write once they initialise a process group: ranks started by
``torch.multiprocessing.spawn``). A descendant that never imports torch (``python -c "print(1)"``) starts
as fast as without the tool.

The command runs in a session of its own: SIGINT, SIGTERM and SIGHUP sent to ``ascend-doctor`` go to its
process group, ``ascend-doctor`` waits for it and exits with its status; on Linux it dies with
``ascend-doctor`` even when that is SIGKILLed (``PR_SET_PDEATHSIG``).
"""

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

from .errors import InputError

ENV = "ASCEND_DOCTOR_LAUNCH"
ENV_ACTIVE = "ASCEND_DOCTOR_ACTIVE"
# one random secret per job for ``profile``: the hang watchdog signs its signals with it (profiling/hang.py).
# One already in the environment is kept: a job over several nodes needs the same one on every node.
ENV_TOKEN = "ASCEND_DOCTOR_JOB_TOKEN"

# tool name -> "module:function" that starts it from the options and returns an object with close()
TOOLS = {
    "dump": "ascend_tools.precision.capture_session:start_from_options",
    "shadow": "ascend_tools.precision.shadow_session:start_from_options",
    "profile": "ascend_tools.profiling.profiler:start_from_options",
}

CHILD_TOOLS = ("profile",)  # the same tuple is in _site/sitecustomize.py (it imports nothing of ours)

# the directory launch.run puts on PYTHONPATH: it holds only our sitecustomize.py (shipped as package data)
SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_site")

TORCHRUN = ("torchrun", "torch.distributed.run", "torch.distributed.launch")  # and in _site/sitecustomize.py
# launchers that start the processes that train (as _site/sitecustomize.py's LAUNCHER_SCRIPTS, LAUNCHER_MODULES)
LAUNCHER_SCRIPTS = ("torchrun", "accelerate", "accelerate-launch", "deepspeed", "trl")
LAUNCHER_MODULES = (
    *TORCHRUN[1:],
    "accelerate.commands.launch",
    "accelerate.commands.accelerate_cli",
    "deepspeed.launcher.runner",
    "deepspeed.launcher.launch",
)


def is_torchrun(cmd: List[str]) -> bool:
    """Whether ``cmd`` starts torchrun (``torchrun ...`` or ``python -m torch.distributed.run ...``)."""
    return _starts(cmd, ("torchrun",), TORCHRUN[1:])


def is_launcher(cmd: List[str]) -> bool:
    """Whether ``cmd`` starts a launcher (torchrun, ``accelerate launch``, ``deepspeed``, ``trl``, or their
    ``python -m`` modules): the processes it starts are the ones that train."""
    return _starts(cmd, LAUNCHER_SCRIPTS, LAUNCHER_MODULES)


def _starts(cmd: List[str], scripts: Sequence[str], modules: Sequence[str]) -> bool:
    """``cmd`` runs one of ``scripts`` (by file name), or Python on one of ``scripts`` or ``-m`` one of ``modules``."""
    if not cmd:
        return False
    if os.path.basename(cmd[0]) in scripts:
        return True
    for i, arg in enumerate(cmd[1:], 1):  # python's own options, then -m MODULE (not a script's -m)
        if arg == "-m":
            return cmd[i + 1] in modules if i + 1 < len(cmd) else False
        if not arg.startswith("-"):
            return os.path.basename(arg) in scripts and os.path.basename(cmd[0]).startswith("python")
    return False


def start_from_env(child: bool = False) -> Any:
    """Start the tool named in ``$ASCEND_DOCTOR_LAUNCH`` in this process and close it at exit; ``child``:
    this process descends from an instrumented one. Called by our ``sitecustomize`` once the process has
    imported torch (it decided that the process is one to instrument). Returns the started object."""
    opts: Dict[str, Any] = json.loads(os.environ[ENV])
    if child:
        opts["child"] = True
    opts.pop("require_rank", None)
    if opts.pop("debug", False):
        _log_debug()
    import atexit
    import importlib

    module, _, func = TOOLS[opts.pop("tool")].partition(":")
    started = getattr(importlib.import_module(module), func)(opts)
    atexit.register(started.close)
    return started


def _log_debug() -> None:
    """``ascend-doctor --debug``: this package's log (its internal errors with their traceback) on stderr at
    debug level, without touching the user's own logging configuration."""
    log = logging.getLogger("ascend_tools")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("ascend-doctor: %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    log.propagate = False


def failed(rc: int) -> str:
    """How a verb says that the command it ran failed, first: ``the command failed (exit 2)``."""
    return f"the command failed (exit {rc})"


def run(tool: str, cmd: List[str], out_dir: str, options: Dict[str, Any], log: Optional[str] = None) -> int:
    """Run ``cmd`` with ``tool`` (a key of :data:`TOOLS`) on; return its exit status (128+N when killed by
    signal N). ``log``: a file for the command's stdout and stderr (default: this process's). An option
    ``debug`` (``ascend-doctor --debug``) logs the tool's internal errors with their traceback there.

    Raises InputError when the command cannot be started."""
    if not cmd:
        raise InputError(
            f"no command to run: give it after --, e.g. ascend-doctor {tool} -o DIR -- python train.py"
        )
    exe = shutil.which(cmd[0])
    if exe is None:
        raise InputError(f"{cmd[0]}: command not found")
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{out_dir}: cannot create the output directory ({exc.strerror or exc})") from None
    opts = dict(options, tool=tool, out_dir=os.path.abspath(out_dir), require_rank=is_torchrun(cmd))
    env = dict(os.environ)
    env.pop(ENV_ACTIVE, None)
    env[ENV] = json.dumps(opts)
    if tool == "profile":
        env[ENV_TOKEN] = os.environ.get(ENV_TOKEN) or secrets.token_hex(16)
    # ours first only so that our sitecustomize is the one Python imports: the directory holds nothing else,
    # and that sitecustomize takes it off sys.path again and runs the user's own sitecustomize first
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SITE_DIR, os.environ.get("PYTHONPATH", "")) if p)
    sink = open(log, "w", encoding="utf-8") if log else None  # noqa: SIM115 (closed below)
    try:
        proc = subprocess.Popen(
            [exe, *cmd[1:]],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT if sink else None,
            start_new_session=True,  # its own process group, which gets the signals this process gets
            preexec_fn=_die_with_parent(),  # no threads of ours run yet
        )
    except OSError as exc:
        raise InputError(f"{cmd[0]}: cannot run: {exc.strerror or exc}") from None
    finally:
        if sink is not None:
            sink.close()
    with _forward_signals(proc.pid):
        rc = proc.wait()
    return 128 - rc if rc < 0 else rc


FORWARDED = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


@contextlib.contextmanager
def _forward_signals(pgid: int) -> Iterator[None]:
    """While the command runs, SIGINT, SIGTERM and SIGHUP sent to this process go to the command's process
    group instead (it is in a session of its own, so a Ctrl-C in the terminal reaches it only this way);
    this process goes on waiting for it and then returns its status."""

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(OSError):  # the group is gone already
            os.killpg(pgid, signum)

    before: Dict[int, Any] = {}
    try:
        for sig in FORWARDED:
            before[sig] = signal.signal(sig, forward)
    except ValueError:  # not the main thread (the CLI always is): signals stay as they were
        pass
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _die_with_parent() -> Optional[Callable[[], None]]:
    """The child's ``preexec_fn`` on Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so that the command dies
    with this process even when this process is SIGKILLed (nothing to forward then). Elsewhere None: a
    SIGKILL of ``ascend-doctor`` leaves the command running there."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl
            os._exit(137)

    return preexec
