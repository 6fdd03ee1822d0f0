"""The error one op call introduced: its output against the same op replayed on its own inputs.

Two replays on the CPU, on the very inputs the target saw: one in a wide dtype (the truth) and one in the
target's own dtypes (what a *correct* kernel in that precision gives). The truth is float64, or float32 where
every output of the target is a 16-bit float and no input is wider than float32 (:func:`reference_dtype`:
the inputs are exact in float32, and its own error, ~sqrt(K) * 2**-24 on a K-term sum, is orders below the
2**-8 / 2**-11 ULP the verdict is counted in; the standards count the reference's rounding in its tolerance;
docs/precision.md). ``replay_verdict.with_baseline`` is the one rule compare and shadow share: the tolerance is raised
to ``BASELINE_FACTOR`` times the correct kernel's error, because some ops are ill-conditioned on some inputs
(a softmax backward on peaked rows cancels) and a correct fp32 kernel is then "beyond tolerance" too; that is
not this op's fault. With ``standards``' warning band (2×), an op is an error only when it is beyond 2× its
tolerance and 4× the correct kernel's error.
"""

from typing import Any, List, Optional, Sequence

import torch

from ..op_names import UNDEFINED_VALUES, op_base
from .replay_verdict import Replay
from .screen import judge_output


def replayable(op: Any, name: str) -> bool:
    # an op whose result is uninitialised memory cannot be matched by a replay
    return op_base(name) not in UNDEFINED_VALUES and torch.Tag.nondeterministic_seeded not in getattr(
        op, "tags", ()
    )


def _tensors(out: Any) -> List[Optional[torch.Tensor]]:
    """The op's outputs in the order a record lists them (a tuple's tensors; anything else is None)."""
    items = out if isinstance(out, (tuple, list)) else [out]
    return [x if isinstance(x, torch.Tensor) else None for x in items]


#: target output dtypes whose replay runs in float32 (see the module's docstring and docs/precision.md)
NARROW = (torch.float16, torch.bfloat16)


def reference_dtype(
    inputs: Sequence[torch.Tensor], produced: Sequence[Optional[torch.Tensor]]
) -> torch.dtype:
    """The dtype of the truth: float32 when every floating output produced is float16/bfloat16 and no
    floating input is wider than float32, else float64."""
    outs = [x.dtype for x in produced if x is not None and x.is_floating_point()]
    narrow = bool(outs) and all(d in NARROW for d in outs)
    if narrow and all(x.element_size() <= 4 for x in inputs if x.is_floating_point()):
        return torch.float32
    return torch.float64


def replay(
    op: Any,
    name: str,
    build_call: Any,
    inputs: List[torch.Tensor],
    produced: Sequence[Optional[torch.Tensor]],
    reduction: Optional[int],
) -> Optional[Replay]:
    """``build_call(tensors) -> (args, kwargs)`` puts tensors back into the call; ``produced``: the target's
    outputs (None where not saved). The truth runs in :func:`reference_dtype`. Every output is judged, and
    the worst is the op's verdict (a wrong ``grad_weight`` of ``native_layer_norm_backward`` is its second
    output). None when no output can be compared (not a tensor, another shape). The same-dtype baseline runs
    only for an output judged "error" (the only verdict it can change); a passing one keeps its screened
    metrics."""
    # a mutating op (add_, an out= overload) writes into its inputs: copies, never the caller's (cached) tensors
    mutates = getattr(getattr(op, "_schema", None), "is_mutable", True)
    cpu = [x.detach().cpu().clone() if mutates else x.detach().cpu() for x in inputs]
    ref = reference_dtype(cpu, produced)
    # copy=mutates: a float32 input of a float32 truth would otherwise be the tensor the baseline runs on
    wide = [x.to(ref, copy=mutates) if x.is_floating_point() else x for x in cpu]
    with torch.no_grad():
        args, kwargs = build_call(wide)
        truths = _tensors(op(*args, **kwargs))
    worst: Optional[Replay] = None
    for k, (mine, truth) in enumerate(zip(produced, truths)):
        if mine is None or truth is None or truth.shape != mine.shape:
            continue
        found, verdict = judge_output(name, mine, truth, reduction)
        if worst is None or verdict.severity > worst.verdict.severity:
            worst = Replay(found, verdict, None, None, k)
    if worst is None or worst.verdict.level != "error":
        return worst
    with torch.no_grad():
        args, kwargs = build_call(cpu)
        try:
            same = _tensors(op(*args, **kwargs))
        except RuntimeError:  # e.g. a half-precision kernel the CPU lacks
            same = []
    k = worst.output
    truth, correct = truths[k], same[k] if k < len(same) else None
    if correct is None or truth is None or correct.shape != truth.shape:
        return worst
    worst.baseline, worst.baseline_verdict = judge_output(name, correct, truth, reduction)
    return worst
