"""``check-ops -- python train.py ARGS``: the static scan of the launch command plus one traced training step.

The script runs in ``script_child.py`` (a child process, like the model-file form's ``child.py``); its
stand-in uses are merged with the static scan's findings (one per file, line and rule), and a step that
did not complete is an error finding (``checkops.build_report``), with the static scan kept.
"""

import dataclasses
import os
from typing import Any, Dict, List

from ..errors import InputError
from . import checkops, source_scan, support
from .launch_command import LaunchCommand
from .runner import trace_in_child
from .source_finding import SourceFinding


def _check_script_exists(cmd: LaunchCommand, cwd: str) -> None:
    if cmd.script is not None and not os.path.isfile(os.path.join(cwd, cmd.script)):
        raise InputError(f"{cmd.script}: no such file")


def static_findings(cmd: LaunchCommand, cwd: str, script: str) -> List[Any]:
    return source_scan.scan_command(script, cmd.args, cwd, cmd.launcher_args) if script else []


def check_script(opts: checkops.Options, cmd: LaunchCommand, devices: int, scan_only: bool = False) -> Any:
    """The report for ``cmd`` run in the working directory; raises InputError when it cannot run."""
    opts.torch_npu_version = support.normalize_version(opts.torch_npu_version)
    cwd = os.getcwd()
    _check_script_exists(cmd, cwd)
    description = " ".join([cmd.launcher, cmd.target, *cmd.args])
    if scan_only:
        payload: Dict[str, Any] = {"description": description, "kind": "script", "trace": None}
        script = cmd.script or _module_file(cmd, cwd)
        return checkops.build_report(
            opts, payload, static_findings(cmd, cwd, script) if opts.scan_source else []
        )
    spec = {
        "target": cmd.target,
        "command": dataclasses.asdict(cmd),
        "cwd": cwd,
        "devices": devices,
        "torch_npu_version": opts.torch_npu_version,
    }
    payload = trace_in_child(spec, opts.timeout, debug=opts.debug, child="ascend_tools.opcheck.script_child")
    script = os.path.relpath(payload["source_file"], cwd) if payload.get("source_file") else ""
    findings = static_findings(cmd, cwd, script) if opts.scan_source else []
    return checkops.build_report(opts, payload, merge(findings, payload.get("runtime_findings", []), cwd))


def merge(static: List[Any], runtime: List[Dict[str, Any]], cwd: str) -> List[Any]:
    """The static findings, then each stand-in use the scan did not already report at that line and rule."""
    seen = {(os.path.abspath(os.path.join(cwd, f.file)), f.line, f.rule) for f in static}
    extra = [
        SourceFinding(
            os.path.relpath(r["file"], cwd),
            r["line"],
            1,
            r["rule"],
            r["severity"],
            r["message"],
            r["suggestion"],
        )
        for r in runtime
        if (os.path.abspath(r["file"]), r["line"], r["rule"]) not in seen
    ]
    return [*static, *extra]


def _module_file(cmd: LaunchCommand, cwd: str) -> str:
    """``pkg/mod.py`` (or ``pkg/mod/__main__.py``) of ``-m pkg.mod`` under ``cwd``, for the static scan."""
    base = os.path.join(cwd, *str(cmd.module).split("."))
    for candidate in (base + ".py", os.path.join(base, "__main__.py")):
        if os.path.isfile(candidate):
            return os.path.relpath(candidate, cwd)
    return ""
