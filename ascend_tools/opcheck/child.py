"""Child process of check-ops: build the target model and trace it; write the trace as JSON.

``python -m ascend_tools.opcheck.child SPEC.json OUT.json``. The user's code runs here, not in the
CLI's process, so a crash or hang in it is reported by the parent (``runner.py``) instead of inherited.
OUT holds either ``{"trace": ...}`` or ``{"error": "one line"}``.
"""
import json
import sys
from dataclasses import asdict

from ..errors import InputError
from . import support, target, trace


def trace_target(spec: dict) -> dict:
    tgt = target.load(spec["target"], spec.get("entry"), spec["batch"], spec["seq_len"], spec["dtype"])
    version = spec["torch_npu_version"]

    def expand(op: str) -> bool:
        return not support.has_npu_kernel(op, version) and support.has_composite_explicit(op)

    result = trace.run_traced(
        tgt.model,
        lambda: tgt.model(*tgt.args, **tgt.kwargs),
        backward=spec["backward"],
        expand=expand,
    )
    result.dtype = spec["dtype"]
    return {
        "description": tgt.description,
        "kind": tgt.kind,
        "source_file": tgt.source_file,
        "trace": asdict(result),
    }


def main(argv: list) -> int:
    spec_path, out_path = argv
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        payload = trace_target(spec)
        code = 0
    except (InputError, target.UserCodeError) as exc:
        payload, code = {"error": str(exc)}, 3
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
