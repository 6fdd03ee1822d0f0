"""Run a user's command with one of our tools switched on, without changing the user's code.

:func:`run` writes a ``sitecustomize.py`` into a temporary directory and puts that directory (and this
package's root) first on ``PYTHONPATH``; the tool and its options travel in the environment variable
``ASCEND_DOCTOR_LAUNCH`` (JSON). Every Python process started by the command imports it at interpreter
start; the one that should be instrumented (see :func:`start_from_env`) starts the tool named by
``"tool"`` (:data:`TOOLS`: ``dump``, ``shadow``, ``profile``) and stops it from an ``atexit`` handler. An
existing ``sitecustomize`` further down the path is still run.

Which processes are instrumented: a plain ``python script.py`` / ``python -m module`` child; under
``torchrun`` (``require_rank``), only processes that have ``RANK`` in their environment (the workers, not
the launcher agent), each writing ``rank{RANK}``. An instrumented process sets ``ASCEND_DOCTOR_ACTIVE`` so
the processes it spawns itself (data loader workers started with ``spawn``) are not instrumented again,
except by the tools in :data:`CHILD_TOOLS`: ``profile`` instruments them too, as children (they write
once they initialise a process group: ranks started by ``torch.multiprocessing.spawn``).
"""

import json
import logging
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

from .errors import InputError

ENV = "ASCEND_DOCTOR_LAUNCH"
ENV_ACTIVE = "ASCEND_DOCTOR_ACTIVE"

# tool name -> "module:function" that starts it from the options and returns an object with close()
TOOLS = {
    "dump": "ascend_tools.precision.capture:start_from_options",
    "shadow": "ascend_tools.precision.shadow:start_from_options",
    "profile": "ascend_tools.profiling.profiler:start_from_options",
}

CHILD_TOOLS = ("profile",)

SITECUSTOMIZE = '''"""Written by ascend-doctor: starts its tool in this interpreter (see ascend_tools/launch.py)."""
import os as _os
import sys as _sys


def _ascend_doctor_chain():
    import importlib.machinery
    import importlib.util

    here = _os.path.dirname(_os.path.abspath(__file__))
    rest = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)


if _os.environ.get("{env}"):
    try:
        from ascend_tools.launch import start_from_env as _start

        _start()
    except Exception as _exc:  # never stop the user's program
        _sys.stderr.write("ascend-doctor: not started: %s: %s\\n" % (type(_exc).__name__, _exc))
try:
    _ascend_doctor_chain()
except Exception as _exc:
    _sys.stderr.write("ascend-doctor: the original sitecustomize failed: %s: %s\\n" % (type(_exc).__name__, _exc))
'''.replace("{env}", ENV)

TORCHRUN = ("torchrun", "torch.distributed.run", "torch.distributed.launch")


def is_torchrun(cmd: List[str]) -> bool:
    """Whether ``cmd`` starts torchrun (``torchrun ...`` or ``python -m torch.distributed.run ...``)."""
    if not cmd:
        return False
    if os.path.basename(cmd[0]) == "torchrun":
        return True
    return "-m" in cmd[:3] and any(c in TORCHRUN for c in cmd[1:4])


def start_from_env() -> Any:
    """Start the tool named in ``$ASCEND_DOCTOR_LAUNCH`` in this process and close it at exit (or do
    nothing when this process should not be instrumented). Returns the started object or None."""
    opts: Dict[str, Any] = json.loads(os.environ[ENV])
    if os.environ.get(ENV_ACTIVE):  # a child of an instrumented process
        if opts["tool"] not in CHILD_TOOLS:
            return None
        opts["child"] = True
    elif opts.get("require_rank") and "RANK" not in os.environ:
        return None
    opts.pop("require_rank", None)
    if opts.pop("debug", False):
        _log_debug()
    os.environ[ENV_ACTIVE] = str(os.getpid())
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
    with tempfile.TemporaryDirectory(prefix=f"ascend-doctor-{tool}-") as tmp:
        with open(os.path.join(tmp, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(SITECUSTOMIZE)
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ)
        env.pop(ENV_ACTIVE, None)
        env[ENV] = json.dumps(opts)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tmp, root, os.environ.get("PYTHONPATH", "")) if p)
        sink = open(log, "w", encoding="utf-8") if log else None  # noqa: SIM115 (closed below)
        try:
            proc = subprocess.Popen(
                [exe, *cmd[1:]], env=env, stdout=sink, stderr=subprocess.STDOUT if sink else None
            )
        except OSError as exc:
            raise InputError(f"{cmd[0]}: cannot run: {exc.strerror or exc}") from None
        finally:
            if sink is not None:
                sink.close()
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.wait()
            rc = proc.returncode
    return 128 - rc if rc < 0 else rc
