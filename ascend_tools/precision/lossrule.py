"""The rule that decides whether two loss curves agree, and the first step where they do not.

Two rules, on the steps both runs logged with finite losses (``a``: the run under test, ``b``: the
reference), judged from step ``K`` on (``--from-step``; default: the first compared step):

- ``smoothed`` (the default): ``A_i`` and ``B_i`` are the means of the last ``W`` compared losses of each
  run up to step i (fewer at the start: the mean of what there is), and step i fails when
  ``|A_i - B_i| > atol + rtol * |B_i|``. Single noisy steps (bf16 rounding, a different reduction order,
  nondeterministic atomics) average out within the window; a drift, which grows step after step, does not.
- ``per-step``: the same test on the raw losses (``W`` = 1), ``numpy.isclose``'s test with b as reference.

The verdict is *pass* when no judged step fails, else *fail* with its first failing step. A mean lags
behind a change (a 5 % jump crosses a 2 % line on the mean of 10 only 4 steps later), so when the smoothed
test first fails at step j, the step reported is the first step of j's window (the last ``W`` compared
steps up to j, from ``K`` on) whose raw losses are themselves beyond tolerance, and j when none is: the
smoothing decides *whether* the runs part, the raw losses say *where*.
"""

from dataclasses import dataclass
from typing import Optional

import numpy as np

RULES = ("smoothed", "per-step")
DEFAULT_RULE = "smoothed"
DEFAULT_WINDOW = 10


@dataclass
class Rule:
    name: str = DEFAULT_RULE
    rtol: float = 0.02
    atol: float = 0.0
    window: int = DEFAULT_WINDOW
    from_step: Optional[int] = None

    @property
    def effective_window(self) -> int:
        return self.window if self.name == "smoothed" else 1

    def describe(self, start: Optional[int]) -> str:
        """The rule in one sentence, as the report states it."""
        tol = f"{self.rtol:g} x |B|" + (f" + {self.atol:g}" if self.atol else "")
        first = start if start is not None else self.from_step
        since = f"from step {first} on" if first is not None else "on every compared step"
        if self.name == "smoothed":
            return (
                f"|A - B| <= {tol} for the means A, B of the last {self.window} logged losses of each run, "
                f"{since}"
            )
        return f"|A - B| <= {tol} at each step, {since}"


@dataclass
class RuleResult:
    rule: Rule
    start: Optional[int]  # first judged step (None: no step judged)
    smoothed_a: np.ndarray  # per compared step: the values the rule tests (raw for per-step)
    smoothed_b: np.ndarray
    rel: np.ndarray  # |A - B| / |B| per compared step
    fails: np.ndarray  # bool per compared step: judged and beyond tolerance
    first_failing: Optional[int]  # the step reported (see the module docstring)
    detected_at: Optional[int] = None  # the step where the rule's test first fails

    @property
    def passed(self) -> bool:
        return self.first_failing is None

    @property
    def failing(self) -> int:
        return int(np.count_nonzero(self.fails))


def relative_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b| / |b|`` (b is the reference); 0 where both are 0, Inf where only b is 0."""
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):  # Inf is the intended result
        diff = np.abs(a - b)
        den = np.abs(b)
        rel = np.where(den > 0, diff / np.where(den > 0, den, 1.0), np.where(diff > 0, np.inf, 0.0))
    return rel


def trailing_mean(v: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values up to each index (of all of them before ``window`` are seen)."""
    if window <= 1 or v.size == 0:
        return v.copy()
    c = np.cumsum(np.concatenate([[0.0], v]))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def evaluate(rule: Rule, steps: np.ndarray, va: np.ndarray, vb: np.ndarray) -> RuleResult:
    """Judge the compared steps (ascending ``steps`` with finite ``va``, ``vb``) by ``rule``."""
    w = rule.effective_window
    ma, mb = trailing_mean(va, w), trailing_mean(vb, w)
    with np.errstate(over="ignore", invalid="ignore"):  # Inf - Inf: NaN, not beyond; huge: Inf, beyond
        beyond = np.abs(ma - mb) > rule.atol + rule.rtol * np.abs(mb)
    judged = steps >= rule.from_step if rule.from_step is not None else np.ones(steps.shape, dtype=bool)
    fails = beyond & judged
    first_judged = np.flatnonzero(judged)
    idx = np.flatnonzero(fails)
    first = detected = None
    if idx.size:
        j = int(idx[0])
        lo = max(j - w + 1, int(first_judged[0]))
        with np.errstate(over="ignore", invalid="ignore"):
            raw = np.abs(va[lo : j + 1] - vb[lo : j + 1]) > rule.atol + rule.rtol * np.abs(vb[lo : j + 1])
        k = np.flatnonzero(raw)
        first = int(steps[lo + int(k[0])]) if k.size else int(steps[j])
        detected = int(steps[j])
    return RuleResult(
        rule=rule,
        start=int(steps[first_judged[0]]) if first_judged.size else None,
        smoothed_a=ma,
        smoothed_b=mb,
        rel=relative_error(ma, mb),
        fails=fails,
        first_failing=first,
        detected_at=detected,
    )
