"""Run a user's command with capture switched on, without changing the user's code.

:func:`run` writes a ``sitecustomize.py`` into a temporary directory and puts that directory (and this
package's root) first on ``PYTHONPATH``; the options travel in the environment variable
``ASCEND_DOCTOR_DUMP`` (JSON). Every Python process started by the command imports it at interpreter
start; the one that should capture (see :func:`start_from_env`) enters :func:`capture.capture` and leaves
it from an ``atexit`` handler. An existing ``sitecustomize`` further down the path is still run.

Which processes capture: a plain ``python script.py`` / ``python -m module`` child; under ``torchrun``
(``require_rank``), only processes that have ``RANK`` in their environment (the workers, not the
launcher agent), each writing ``rank{RANK}``. A capturing process sets ``ASCEND_DOCTOR_DUMP_ACTIVE``
so the processes it spawns itself (data loader workers started with ``spawn``) do not capture again.

``ascend-doctor shadow`` uses the same launch with ``"tool": "shadow"`` in the options: the process
enters :func:`shadow.shadow` instead and writes its records to ``out_dir`` (see ``start_from_env``).
"""
import json
import os
import shutil
import subprocess
import tempfile
from typing import Any, Dict, List, Optional

from ..errors import InputError

ENV = "ASCEND_DOCTOR_DUMP"
ENV_ACTIVE = "ASCEND_DOCTOR_DUMP_ACTIVE"

SITECUSTOMIZE = '''"""Written by ascend-doctor dump: starts the capture in this interpreter (see ascend_tools/precision/launch.py)."""
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


if _os.environ.get("{env}") and not _os.environ.get("{active}"):
    try:
        from ascend_tools.precision.launch import start_from_env as _start

        _start()
    except Exception as _exc:  # never stop the user's program
        _sys.stderr.write("ascend-doctor dump: capture not started: %s: %s\\n" % (type(_exc).__name__, _exc))
try:
    _ascend_doctor_chain()
except Exception as _exc:
    _sys.stderr.write("ascend-doctor dump: the original sitecustomize failed: %s: %s\\n" % (type(_exc).__name__, _exc))
'''.replace("{env}", ENV).replace("{active}", ENV_ACTIVE)

TORCHRUN = ("torchrun", "torch.distributed.run", "torch.distributed.launch")


def parse_steps(text: Optional[str]) -> Optional[List[int]]:
    """``"0,2-4"`` → ``[0, 2, 3, 4]``; None or empty → None (all steps). Raises ValueError."""
    if text is None or not text.strip():
        return None
    out: List[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"--steps: {part!r} is not a step number or a range like 2-4")
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            raise ValueError(f"--steps: {part!r} is an empty range")
        out.extend(range(a, b + 1))
    return sorted(set(out))


def check_options(steps: Optional[str], sample: int, scope: Any) -> Optional[List[int]]:
    """Validate the options ``dump`` and ``shadow`` share; the parsed step list. InputError names the
    option and the problem."""
    import re

    try:
        step_list = parse_steps(steps)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if sample < 1:
        raise InputError(f"--sample: must be at least 1, not {sample}")
    for s in scope:
        try:
            re.compile(s)
        except re.error as exc:
            raise InputError(f"--scope: {s!r} is not a valid prefix or regex ({exc})") from None
    return step_list


def is_torchrun(cmd: List[str]) -> bool:
    """Whether ``cmd`` starts torchrun (``torchrun ...`` or ``python -m torch.distributed.run ...``)."""
    if not cmd:
        return False
    if os.path.basename(cmd[0]) == "torchrun":
        return True
    return "-m" in cmd[:3] and any(c in TORCHRUN for c in cmd[1:4])


def start_from_env() -> Any:
    """Start capture from ``$ASCEND_DOCTOR_DUMP`` in this process and stop it at exit (or do nothing
    when this process should not capture). Returns the Capture or None. With ``"tool": "shadow"`` in
    the options it starts :mod:`shadow` instead (``ascend-doctor shadow``) and returns the Shadow."""
    opts: Dict[str, Any] = json.loads(os.environ[ENV])
    if opts.pop("require_rank", False) and "RANK" not in os.environ:
        return None
    os.environ[ENV_ACTIVE] = str(os.getpid())
    import atexit

    if opts.pop("tool", "dump") == "shadow":  # ascend-doctor shadow: the same launch, another tool
        from .shadow import start_from_options

        sh = start_from_options(opts)
        atexit.register(sh.close)
        return sh
    from .capture import capture

    cap = capture(opts.pop("out_dir"), **opts)
    cap.start()
    atexit.register(cap.close)
    return cap


def run(cmd: List[str], out_dir: str, options: Dict[str, Any]) -> int:
    """Run ``cmd`` with capture on; return its exit status (128+N when killed by signal N).

    Raises InputError when the command cannot be started."""
    if not cmd:
        raise InputError("no command to run: give it after --, e.g. ascend-doctor dump -o DIR -- python train.py")
    exe = shutil.which(cmd[0])
    if exe is None:
        raise InputError(f"{cmd[0]}: command not found")
    os.makedirs(out_dir, exist_ok=True)
    opts = dict(options, out_dir=os.path.abspath(out_dir), require_rank=is_torchrun(cmd))
    with tempfile.TemporaryDirectory(prefix="ascend-doctor-dump-") as tmp:
        with open(os.path.join(tmp, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(SITECUSTOMIZE)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ)
        env.pop(ENV_ACTIVE, None)
        env[ENV] = json.dumps(opts)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tmp, root, os.environ.get("PYTHONPATH", "")) if p)
        try:
            proc = subprocess.Popen([exe, *cmd[1:]], env=env)
        except OSError as exc:
            raise InputError(f"{cmd[0]}: cannot run: {exc.strerror or exc}") from None
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.wait()
            rc = proc.returncode
    return 128 - rc if rc < 0 else rc


def summary(out_dir: str) -> List[Dict[str, Any]]:
    """Per rank: ``{"rank", "path", "steps": {step: records}}`` of the dump under ``out_dir``."""
    from .store import OurDump

    out = []
    for rank in OurDump.ranks(out_dir):
        dump = OurDump(os.path.join(out_dir, f"rank{rank}"))
        steps = {}
        for s in dump.steps():
            with open(os.path.join(dump.path, f"step{s}", "records.jsonl"), "rb") as f:
                steps[s] = sum(1 for line in f if line.endswith(b"\n"))
        out.append({"rank": rank, "path": dump.path, "steps": steps})
    return out

