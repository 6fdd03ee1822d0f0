"""Name the op that *introduced* the error, not every op after it.

For each target record two questions: how far is its output from the reference run (``error``, what
every other tool reports), and how much of that did this op add itself (``introduced``)?

* **Replay** (our tensor dumps, op level): the op is run again in float64 on the *target's own* saved
  inputs. The target's output against that replay is the error this op made, whatever its inputs
  already carried. Judged with the dtype-aware standards, so bf16 rounding alone passes.
* **Amplification** (stats-only dumps, msprobe dumps, anything not replayable): the output's error
  against the reference divided by the worst error its inputs already had against the reference
  (floored at the dtype's expected rounding error). An op that only passes on what it was given has an
  amplification near 1; the op where the error appears has a large one.

``score`` (introduced error over the dtype tolerance; or the amplification) ranks the culprits; a
culprit is a record whose own error is judged ``error``.
"""
from dataclasses import dataclass, field
from typing import Callable, Iterable, List, Optional

import torch

from . import metrics as M
from . import standards
from .align import Pair
from .dumps import Dump
from .records import Record, TensorInfo

# ops whose result depends on a random generator or on uninitialised memory: a replay cannot match them
_NOT_REPLAYABLE = ("empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided")


@dataclass
class PairResult:
    pair: Pair
    error: Optional[M.PairMetrics] = None  # target vs reference, tensors
    stats_error: Optional[M.StatsMetrics] = None  # target vs reference, statistics only
    verdict: Optional[standards.Verdict] = None  # of the error vs the reference
    introduced: Optional[M.PairMetrics] = None  # target vs its float64 replay
    introduced_verdict: Optional[standards.Verdict] = None
    amplification: Optional[float] = None
    method: str = ""  # "replay" | "amplification" | ""
    score: float = 0.0
    notes: List[str] = field(default_factory=list)

    @property
    def record(self) -> Record:
        return self.pair.target if self.pair.target is not None else self.pair.reference

    @property
    def is_culprit(self) -> bool:
        if self.method == "replay":
            return self.introduced_verdict is not None and self.introduced_verdict.level == "error"
        if self.method == "amplification":
            return self.verdict is not None and self.verdict.level == "error" and (self.amplification or 0) >= 2.0
        return False


def output_error(result: PairResult) -> Optional[float]:
    """One number for "how far from the reference": relative L2 error, or the worst relative
    difference of the statistics when only those exist."""
    if result.error is not None and result.error.rel_l2_err is not None:
        return result.error.rel_l2_err
    if result.stats_error is not None:
        return result.stats_error.worst_rel_diff
    return None


class Diagnoser:
    """Computes a :class:`PairResult` per aligned pair, loading tensors from the two dumps on demand."""

    def __init__(self, target: Dump, reference: Dump, step: int, replay: bool = True) -> None:
        self.target, self.reference, self.step, self.replay = target, reference, step, replay

    def run(self, pairs: Iterable[Pair], progress: Optional[Callable[[int], None]] = None) -> List[PairResult]:
        results = []
        for pair in pairs:
            results.append(self.compare_pair(pair))
            if progress is not None:
                progress(1)
        self._amplification(results)
        return results

    # --- error against the reference -----------------------------------------------------------------

    def compare_pair(self, pair: Pair) -> PairResult:
        result = PairResult(pair)
        t, r = pair.target, pair.reference
        if t is None or r is None or not t.outputs or not r.outputs:
            return result
        t_out, r_out = t.outputs[0], r.outputs[0]
        tt = self.target.load_tensor(t_out, self.step)
        rt = self.reference.load_tensor(r_out, self.step)
        if tt is not None and rt is not None:
            result.error = M.compare_tensors(tt, rt)
            result.verdict = standards.judge(result.error, t.name, _reduction(t))
        elif t_out.stats is not None and r_out.stats is not None:
            result.stats_error = M.compare_stats(t_out.stats, r_out.stats)
            result.verdict = standards.judge_stats(result.stats_error, t_out.dtype, t.name)
        if self.replay and tt is not None and t.kind == "op" and t.args is not None:
            self._replay(result, t, tt)
        return result

    # --- introduced error: replay in float64 ----------------------------------------------------------

    def _replay(self, result: PairResult, rec: Record, produced: torch.Tensor) -> None:
        from .store import decode_args, resolve_op

        if rec.name.split("::")[-1].split(".")[0] in _NOT_REPLAYABLE:
            return
        try:
            op = resolve_op(rec.name)
            if torch.Tag.nondeterministic_seeded in getattr(op, "tags", ()):
                result.notes.append("random op: not replayed")
                return
            inputs = [self._load_input(info) for info in rec.inputs]
            if any(x is None for x in inputs):
                return
            args, kwargs = decode_args(rec.args, inputs)
            with torch.no_grad():
                out = op(*args, **kwargs)
        except Exception as exc:  # an op we cannot rebuild: fall back to amplification
            result.notes.append(f"not replayed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}")
            return
        if isinstance(out, (tuple, list)):
            out = out[0]
        if not isinstance(out, torch.Tensor) or out.shape != produced.shape:
            return
        result.introduced = M.compare_tensors(produced, out)
        result.introduced_verdict = standards.judge(result.introduced, rec.name, _reduction(rec))
        result.method = "replay"
        result.score = result.introduced_verdict.ratio or 0.0

    def _load_input(self, info: TensorInfo) -> Optional[torch.Tensor]:
        x = self.target.load_tensor(info, self.step)
        if x is None:
            return None
        return x.double() if x.is_floating_point() else x

    # --- introduced error: amplification over the inputs' error ---------------------------------------

    def _amplification(self, results: List[PairResult]) -> None:
        for res in results:
            if res.method or res.verdict is None:
                continue
            t, r = res.pair.target, res.pair.reference
            out_err = output_error(res)
            if out_err is None or t is None or r is None:
                continue
            in_err = max((self._input_error(a, b) for a, b in zip(t.inputs, r.inputs)), default=0.0)
            floor = standards.expected_rounding_error(t.outputs[0].dtype, r.outputs[0].dtype)
            res.amplification = out_err / max(in_err, floor, 1e-300)
            res.method = "amplification"
            res.score = res.amplification

    def _input_error(self, a: TensorInfo, b: TensorInfo) -> float:
        at = self.target.load_tensor(a, self.step)
        bt = self.reference.load_tensor(b, self.step)
        if at is not None and bt is not None and at.is_floating_point():
            m = M.compare_tensors(at, bt)
            return m.rel_l2_err or 0.0
        if a.stats is not None and b.stats is not None:
            return M.compare_stats(a.stats, b.stats).worst_rel_diff or 0.0
        return 0.0


def _reduction(rec: Record) -> Optional[int]:
    return standards.reduction_length(rec.name, [t.shape for t in rec.inputs])


def culprits(results: List[PairResult]) -> List[PairResult]:
    """Culprits, highest score first."""
    return sorted((r for r in results if r.is_culprit), key=lambda r: -r.score)


def ranked(results: List[PairResult], limit: int = 10) -> List[PairResult]:
    """The top records by score (culprits or not), for the stats-only view where a threshold is soft."""
    scored = [r for r in results if r.method and r.pair.target is not None]
    return sorted(scored, key=lambda r: -r.score)[:limit]


def stack_lines(dump: Dump, rec: Record) -> List[str]:
    try:
        return dump.stack(rec.stack)
    except Exception:
        return []

