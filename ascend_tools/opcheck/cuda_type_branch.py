"""``if device.type == "cuda":`` branches that change what a run does on an NPU, where the device type is "npu".

The scan reports the comparison (``source_rules``' ``<cuda-type-branch>``) when skipping its body changes the
run: an error when the body builds the distributed wrapper (DDP, DataParallel, FSDP) or sets the process count
(``ngpus_per_node``, ``world_size``), or when the else branch raises; a warning for any other setup work. It
is not reported when skipping the body is what the NPU should do anyway: a body that only logs (``print``,
``logger.info``, ``warnings.warn``), only calls ``torch.cuda.*`` (the scan reports those calls on their own
lines), or returns a CUDA fast path whose fallback follows the ``if`` (a flash-attn or Triton kernel).
Only a device object's ``.type`` counts: a ``device_type`` string the script set to "cuda" stays "cuda" on an
NPU (transfer_to_npu rewrites device arguments, not the script's strings).
"""

import ast
import re
from typing import List, Optional, Tuple

#: calls that build a distributed wrapper around the model (the callee's last name)
_WRAPPERS = frozenset(
    {"DistributedDataParallel", "DataParallel", "FullyShardedDataParallel", "DDP", "FSDP", "fully_shard"}
)
#: assigned names that hold a process or device count
_PROCESS_COUNT = re.compile(r"(^|_)(n_?gpus|num_gpus|gpus_per_node|nprocs?|world_size|num_processes)($|_)")
_LOG_METHODS = frozenset(
    {"print", "info", "warning", "warn", "debug", "log", "error", "exception", "critical"}
)


def cuda_type_test(test: ast.expr) -> Optional[ast.Compare]:
    """The ``x.type == "cuda"`` comparison (either side) an ``if`` holds on, alone or and-ed with others."""
    parts = test.values if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And) else [test]
    for part in parts:
        if not (isinstance(part, ast.Compare) and len(part.ops) == 1 and isinstance(part.ops[0], ast.Eq)):
            continue
        sides = (part.left, part.comparators[0])
        if any(isinstance(s, ast.Constant) and s.value == "cuda" for s in sides) and any(
            isinstance(s, ast.Attribute) and s.attr == "type" for s in sides
        ):
            return part
    return None


def _callee(call: ast.Call) -> List[str]:
    """``torch.cuda.set_device`` -> ["torch", "cuda", "set_device"]; the names of a call's dotted callee."""
    parts: List[str] = []
    node = call.func
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def _skippable(stmt: ast.stmt) -> bool:
    """A statement whose skipping on an NPU changes nothing that matters: a log line, a ``torch.cuda.*`` call."""
    if isinstance(stmt, ast.Pass):
        return True
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, (ast.Call, ast.Constant))):
        return False
    if isinstance(stmt.value, ast.Constant):  # a docstring or a bare string
        return True
    names = _callee(stmt.value)
    if names[:2] == ["torch", "cuda"] or names == ["print"]:
        return True
    return len(names) > 1 and names[-1] in _LOG_METHODS  # logger.info(...), warnings.warn(...)


def _assigned_names(body: List[ast.stmt]) -> List[str]:
    out: List[str] = []
    for node in (n for stmt in body for n in ast.walk(stmt)):
        targets = node.targets if isinstance(node, ast.Assign) else []
        if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        for target in targets:
            for t in ast.walk(target):
                name = t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", None)
                if name:
                    out.append(name)
    return out


def classify(branch: ast.If) -> Optional[Tuple[str, str]]:
    """(severity, what skipping the body does on an NPU) for a ``device.type == "cuda"`` branch; None when
    skipping it is harmless (see the module docstring)."""
    body = branch.body
    if branch.orelse and any(isinstance(s, ast.Raise) for s in branch.orelse):
        return "error", "the else branch, which raises, is taken"
    if all(_skippable(s) for s in body) or isinstance(body[-1], (ast.Return, ast.Raise)):
        return None
    wrappers = sorted(
        {
            names[-1]
            for node in (n for stmt in body for n in ast.walk(stmt))
            if isinstance(node, ast.Call)
            for names in [_callee(node)]
            if names and names[-1] in _WRAPPERS
        }
    )
    if wrappers:
        return (
            "error",
            f"the body that wraps the model in {', '.join(wrappers)} is skipped: the model trains unwrapped",
        )
    counts = sorted({n for n in _assigned_names(body) if _PROCESS_COUNT.search(n.lower())})
    if counts:
        return (
            "error",
            f"the body that sets the process count ({', '.join(counts)}) is skipped: the else value is used",
        )
    return "warning", "the body is skipped and the other path runs"
