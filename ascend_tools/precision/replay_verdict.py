"""What a replay found, and the rule that grades it (``replay.py`` runs the replays). Without torch: a compare's
replay processes send these back, and the compare reads them without importing torch."""

from dataclasses import dataclass
from typing import Optional

from . import metrics as M
from . import standards

#: a correct same-dtype kernel's error times this is still tolerated (see :func:`with_baseline`)
BASELINE_FACTOR = 2.0


@dataclass
class Replay:
    metrics: M.PairMetrics  # produced vs the wide replay (float64, or float32 for 16-bit outputs)
    verdict: standards.Verdict
    baseline: Optional[M.PairMetrics]  # same-dtype replay vs the wide replay
    baseline_verdict: Optional[standards.Verdict]
    output: int = 0  # which output of the op (the worst of a multi-output op's)

    @property
    def score(self) -> float:
        """How many tolerances off the op's own output is."""
        return self.verdict.ratio or 0.0

    @property
    def level(self) -> str:
        """The verdict's level with the same-dtype baseline's allowance (:func:`with_baseline`)."""
        if self.baseline_verdict is None or self.baseline is None:
            return self.verdict.level
        return with_baseline(self.verdict, self.baseline_verdict, self.baseline.target_dtype).level

    @property
    def is_error(self) -> bool:
        return self.level == "error"


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
