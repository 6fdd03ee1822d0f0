"""Child process of check-ops: build the target model, trace it, judge every op; write JSON.

``python -m ascend_tools.opcheck.child SPEC.json OUT.json``. The user's code runs here, not in the
CLI's process, so a crash or hang in it is reported by the parent (``runner.py``) instead of inherited.
Everything that needs torch happens here too; OUT holds the verdict rows and pattern rows (small),
``{"error": "one line"}`` (bad input, or the user's code raised: its traceback on stderr when the spec says
``debug``), or ``{"internal_error": "one line"}`` (a bug here: its traceback on stderr).
"""

import json
import os
import sys
import traceback
from typing import Any, Callable, Dict, List, Tuple, Type

from ..errors import InputError
from . import patterns, support, target, trace, verdicts


def autocast_contexts(dtype: str) -> Tuple[Any, List[Any]]:
    """Autocast does not apply to meta tensors, so ``--autocast`` traces fake CPU tensors instead:
    (the mode to build the model under, the contexts to trace under). SDPA is held to its math
    backend, which is what decomposes the same way on every device."""
    import contextlib

    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    fake = FakeTensorMode(allow_non_fake_inputs=True)
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel

        math_sdpa: Any = sdpa_kernel([SDPBackend.MATH])
    except ImportError:  # torch < 2.3: CPU SDPA has only the math backend there
        math_sdpa = contextlib.nullcontext()
    return fake, [fake, torch.autocast("cpu", dtype=target.DTYPES[dtype]), math_sdpa]


def trace_target(spec: dict) -> dict:
    build, outer = (None, []) if not spec.get("autocast") else autocast_contexts(spec["dtype"])
    model_dtype = None if spec.get("autocast") else spec["dtype"]  # autocast keeps the fp32 weights
    tgt = target.load(spec["target"], spec.get("entry"), spec["batch"], spec["seq_len"], model_dtype, build)
    version = spec["torch_npu_version"]

    def expand(op: str) -> bool:
        # Not under --autocast: a composite kernel called directly on FakeTensors bypasses FakeTensorMode
        # (an infra mode) for the ops it calls, which then return meta tensors.
        return (
            not spec.get("autocast")
            and op.startswith("aten::")
            and not support.has_npu_kernel(op, version)
            and support.has_composite_explicit(op)
        )

    result = trace.run_traced(
        tgt.model,
        lambda: tgt.model(*tgt.args, **tgt.kwargs),
        backward=spec["backward"],
        expand=expand,
        outer=outer,
    )
    stream = verdicts.npu_stream(result.events, version)
    top_level = [e for e in stream if not e.via]
    return {
        "description": tgt.description,
        "kind": tgt.kind,
        "source_file": tgt.source_file,
        "trace": {
            "error": result.error,
            "assumed": result.assumed,
            "events": len(result.events),
            "device": "fake cpu" if spec.get("autocast") else "meta",
        },
        "ops": verdicts.op_rows(stream, version, result.sites, expanded=not spec.get("autocast")),
        "patterns": patterns.summarize(patterns.find(top_level)),
    }


def serve(
    argv: List[str],
    run: Callable[[Dict[str, Any]], Dict[str, Any]],
    expected: Tuple[Type[BaseException], ...],
) -> int:
    """The child protocol shared by check-ops' children: read the spec at ``argv[0]``, run it, write
    the result, ``{"error"}`` (an ``expected`` exception: status 3) or ``{"internal_error"}`` (status 4)
    to ``argv[1]``."""
    spec_path, out_path = argv
    with open(spec_path, encoding="utf-8") as f:
        spec = json.load(f)
    try:
        payload, code = run(spec), 0
    except expected as exc:
        if spec.get("debug") and exc.__cause__ is not None:
            traceback.print_exception(type(exc.__cause__), exc.__cause__, exc.__cause__.__traceback__)
        payload, code = {"error": str(exc)}, 3
    except Exception as exc:
        traceback.print_exc()
        payload, code = {"internal_error": f"{type(exc).__name__}: {exc}"}, 4
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(payload, f)
    return code


def exit_now(status: int) -> None:
    """Skip interpreter teardown (about 1 s with torch and transformers loaded): the result is written."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    exit_now(serve(sys.argv[1:], trace_target, (InputError, target.UserCodeError)))
