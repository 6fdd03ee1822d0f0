"""The error one op call introduced: its output against the same op replayed on its own inputs.

Two replays on the CPU, on the very inputs the target saw: one in float64 (the truth) and one in the
target's own dtypes (what a *correct* kernel in that precision gives). :func:`with_baseline` is the one rule
compare and shadow share: the tolerance is raised to ``BASELINE_FACTOR`` times the correct kernel's error,
because some ops are ill-conditioned on some inputs (a softmax backward on peaked rows cancels) and a
correct fp32 kernel is then "beyond tolerance" too; that is not this op's fault. With ``standards``'
warning band (2×), an op is an error only when it is beyond 2× its tolerance and 4× the correct kernel's error.
"""

from dataclasses import dataclass
from typing import Any, List, Optional

import torch

from ..dispatch import UNDEFINED_VALUES, op_base
from . import metrics as M
from . import standards
from .screen import judge_output

#: a correct same-dtype kernel's error times this is still tolerated (see :func:`with_baseline`)
BASELINE_FACTOR = 2.0


@dataclass
class Replay:
    metrics: M.PairMetrics  # produced vs float64 replay
    verdict: standards.Verdict
    baseline: Optional[M.PairMetrics]  # same-dtype replay vs float64 replay
    baseline_verdict: Optional[standards.Verdict]

    @property
    def score(self) -> float:
        """How many tolerances off the op's own output is."""
        return self.verdict.ratio or 0.0

    @property
    def is_error(self) -> bool:
        if self.baseline_verdict is None or self.baseline is None:
            return self.verdict.level == "error"
        return with_baseline(self.verdict, self.baseline_verdict, self.baseline.target_dtype).level == "error"


def with_baseline(verdict: standards.Verdict, baseline: standards.Verdict, dtype: str) -> standards.Verdict:
    """``verdict`` regraded with its tolerance raised to ``BASELINE_FACTOR`` times ``baseline``'s value (the
    error a correct kernel in ``dtype`` makes on the same inputs). Unchanged when the two judged different
    metrics or a value is missing."""
    if baseline.metric != verdict.metric or baseline.value is None or verdict.value is None:
        return verdict
    tol = max(verdict.tolerance, BASELINE_FACTOR * baseline.value)
    if tol == verdict.tolerance:
        return verdict
    value = verdict.value
    level = "pass" if value <= tol else "warning" if value <= standards.WARNING_FACTOR * tol else "error"
    reason = (
        f"{verdict.reason}; the same op on CPU in {dtype} is {baseline.value:.4g} off, "
        f"so the tolerance is {BASELINE_FACTOR:g}x that: {tol:.4g}"
    )
    return standards.Verdict(level, reason, tol, verdict.metric, value, verdict.standard)


def replayable(op: Any, name: str) -> bool:
    # an op whose result is uninitialised memory cannot be matched by a replay
    return op_base(name) not in UNDEFINED_VALUES and torch.Tag.nondeterministic_seeded not in getattr(
        op, "tags", ()
    )


def _first_tensor(out: Any) -> Optional[torch.Tensor]:
    if isinstance(out, (tuple, list)):
        out = out[0] if out else None
    return out if isinstance(out, torch.Tensor) else None


def replay(
    op: Any,
    name: str,
    build_call: Any,
    inputs: List[torch.Tensor],
    produced: torch.Tensor,
    reduction: Optional[int],
) -> Optional[Replay]:
    """``build_call(tensors) -> (args, kwargs)`` puts tensors back into the call. None when the op's
    output cannot be compared (not a tensor, another shape). The same-dtype baseline runs only for an
    output judged "error" (the only verdict it can change); a passing one keeps its screened metrics."""
    cpu = [x.detach().cpu() for x in inputs]
    wide = [x.double() if x.is_floating_point() else x for x in cpu]
    with torch.no_grad():
        args, kwargs = build_call(wide)
        truth = _first_tensor(op(*args, **kwargs))
    if truth is None or truth.shape != produced.shape:
        return None
    found, verdict = judge_output(name, produced, truth, reduction)
    if verdict.level != "error":
        return Replay(found, verdict, None, None)
    with torch.no_grad():
        args, kwargs = build_call(cpu)
        try:
            same = _first_tensor(op(*args, **kwargs))
        except RuntimeError:  # e.g. a half-precision kernel the CPU lacks
            same = None
    if same is None or same.shape != truth.shape:
        return Replay(found, verdict, None, None)
    base, base_verdict = judge_output(name, same, truth, reduction)
    return Replay(found, verdict, base, base_verdict)
