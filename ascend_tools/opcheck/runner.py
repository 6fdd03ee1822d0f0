"""Run the trace of a check-ops target in a child process, with a timeout."""

import json
import os
import subprocess
import sys
import tempfile
from typing import Any, Dict

from ..errors import InputError


def trace_in_child(
    spec: Dict[str, Any], timeout: float, debug: bool = False, child: str = "ascend_tools.opcheck.child"
) -> Dict[str, Any]:
    """Return the child's payload (see ``child.py``).

    Raises :class:`InputError` (one line) when the child times out, crashes or reports an error, and
    RuntimeError when it reports an internal error (its traceback went to stderr under ``debug``)."""
    with tempfile.TemporaryDirectory(prefix="ascend-doctor-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        out_path = os.path.join(tmp, "trace.json")
        with open(spec_path, "w", encoding="utf-8") as f:
            json.dump(dict(spec, debug=debug), f)
        cmd = [sys.executable, "-m", child, spec_path, out_path]
        env = dict(os.environ, PYTHONPATH=_package_root() + os.pathsep + os.environ.get("PYTHONPATH", ""))
        try:
            proc = subprocess.run(
                cmd,
                env=env,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                stdout=None if debug else subprocess.PIPE,
                stderr=None if debug else subprocess.PIPE,
            )
        except subprocess.TimeoutExpired:
            raise InputError(
                "{}: timed out after {:g} s while building or tracing the model (raise --timeout)".format(
                    spec["target"], timeout
                )
            ) from None
        payload = _read(out_path)
        if payload is None:
            raise InputError(
                "{}: the model process died (exit {}){}".format(
                    spec["target"], proc.returncode, _last_line(proc.stderr)
                )
            )
    if "internal_error" in payload:
        raise RuntimeError(f"in the check-ops model process: {payload['internal_error']}")
    if "error" in payload:
        raise InputError(
            payload["error"]
            if payload["error"].startswith(spec["target"])
            else "{}: {}".format(spec["target"], payload["error"])
        )
    return payload


def _read(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _last_line(stderr: Any) -> str:
    lines = (stderr or b"").decode("utf-8", "replace").strip().splitlines()
    return ": " + lines[-1] if lines else ""


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
