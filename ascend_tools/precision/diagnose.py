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

``score`` is the introduced error over the dtype tolerance, or the amplification. Which records are
causes, and of which kind (kernel, divergence with agreeing inputs, NaN/Inf, target-only), is ``causes.py``.
"""

import importlib
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from ..errors import InputError
from . import metrics as M
from . import pairpool, replay_job, standards
from .align import Pair, shared_outputs
from .data_inputs import differing_fraction, is_discrete, leaf_inputs, stats_differ
from .dumps import Dump
from .records import Record, TensorInfo
from .replay_job import ReplayJob, ReplayOutcome, TensorFile
from .store import wrap_bits
from .tensor_cache import TensorCache

if TYPE_CHECKING:
    from .replay_pool import ReplayProcesses
    from .replay_verdict import Replay

# Amplification is a heuristic: well-conditioned ops pass on their inputs' relative error at up to a small
# factor (x**2 doubles it; sin and subtraction near zero can do more), so only a large factor names a culprit.
AMPLIFICATION_CULPRIT = 8.0
#: an op off against the reference is replayed (the default, ``replay="auto"``) only where its inputs' error does
#: not explain its output's: amplification at least this, or none measured. An op that adds an error e_k to
#: inputs off by e_in is off by about sqrt(e_in**2 + e_k**2): below 1.5x it added at most ~1.1 e_in, about the
#: drift it was handed, and the op that introduced that drift is earlier. A bf16-vs-fp32 Llama step: 826 of
#: 841 off ops below it; the held-out suite's kernel faults at 2.19 and more (docs/precision.md, "Which ops
#: are replayed"); ``replay="all"`` replays every op off the reference.
REPLAY_AMPLIFICATION = 1.5
#: the relative L2 difference rounding makes between two correct outputs, as a share of
#: ``standards.expected_rounding_error`` (a bound per element, u_t + u_r): an error uniform in +-u a side has an RMS
#: of u/sqrt(3) (0.58 u), two independent ones about 0.8 u, under half the bound; an output off by more than
#: REPLAY_AMPLIFICATION times this from inputs that agree is replayed (a bf16 kernel 3% off on a tenth of its
#: outputs, 0.93% relative L2 from equal inputs: 1.19x the bound, 2.4x this)
ROUNDING_L2 = 0.5
#: what ``Diagnoser(replay=...)`` takes: every op off the reference, those their inputs do not explain, none
REPLAY_MODES = ("all", "auto", "none")
#: a parameter differs from the reference's when its relative L2 error passes this many times what rounding to
#: the two dtypes explains (a bf16 cast of an fp32 weight: about 0.6 of it); statistics: ``stats_tolerance``
PARAMETER_FACTOR = 2.0
#: after the first optimizer step (step > 0) each run's parameters hold what its earlier updates made of them: a
#: bf16 run's differ from an fp32 run's by the drift those steps carried (Hugging Face's Trainer, --bf16 against
#: fp32, step 1: embed_tokens.weight at 1.25e-4 of relative L2). A parameter is then a cause only when it is off
#: by more than this relative error (a weight not loaded, or loaded from elsewhere: about 1 to 1.4)
CARRIED_PARAMETER_ERROR = 0.5


class ParameterCheck(NamedTuple):
    """A parameter an op is the first to read in the step, against the reference's parameter of the same name
    (see causes.py: a stale or unloaded weight)."""

    name: str
    error: float  # relative L2 (tensors) or statistics error
    bar: float  # what it must stay under to be no cause
    tensors: bool  # measured on tensors (else statistics)
    rounding: float  # what rounding explains: the bar of step 0 (later steps raise it for carried drift)


@dataclass
class PairResult:
    pair: Pair
    error: Optional[M.PairMetrics] = None  # target vs reference, tensors
    stats_error: Optional[M.StatsMetrics] = None  # target vs reference, statistics only
    verdict: Optional[standards.Verdict] = None  # of the error vs the reference
    introduced: Optional[M.PairMetrics] = None  # target vs its float64 replay
    introduced_verdict: Optional[standards.Verdict] = None
    replay: Optional["Replay"] = None
    amplification: Optional[float] = None
    output: int = 0  # the output judged: the worst of a multi-output op's against the reference
    params: List[ParameterCheck] = field(default_factory=list)
    # (input position, fraction of its elements that differ; None: statistics only) for each integer/bool input
    # no earlier op produced that differs from the reference's: the runs were given different data (data_inputs.py)
    data_diff: List[Tuple[int, Optional[float]]] = field(default_factory=list)
    method: str = ""  # "replay" | "amplification" | ""
    within_reference: bool = False  # output passed against the reference: not replayed, cannot be a culprit
    explained: bool = False  # off, but by no more than its inputs (REPLAY_AMPLIFICATION): not replayed
    # the error the op's inputs hand it, for the replay gate: their worst error, at least what rounding both
    # outputs explains in relative L2 (:data:`ROUNDING_L2`)
    handed: Optional[float] = None
    score: float = 0.0
    notes: List[str] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)  # what the dumps asked for and were refused

    @property
    def record(self) -> Record:
        rec = self.pair.target if self.pair.target is not None else self.pair.reference
        assert rec is not None  # align() makes no pair without a record
        return rec


def output_error(result: PairResult) -> Optional[float]:
    """One number for "how far from the reference": relative L2 error, or, when only statistics
    exist, the statistics' differences scaled by the tensor's magnitude (a relative difference of a
    mean or a min near zero says nothing)."""
    if result.error is not None and result.error.rel_l2_err is not None:
        return result.error.rel_l2_err
    if result.stats_error is not None:
        return stats_error(result.stats_error)
    return None


def stats_error(s: M.StatsMetrics) -> Optional[float]:
    values = [v for v in (s.scaled_diff, s.norm_rel_diff) if v is not None]
    return max(values) if values else None


class Diagnoser:
    """Computes a :class:`PairResult` per aligned pair, loading tensors from the two dumps on demand."""

    def __init__(
        self,
        target: Dump,
        reference: Dump,
        step: int,
        replay: str = "auto",
        tensors: bool = True,
        workers: Optional[int] = None,
        replayer: Optional["ReplayProcesses"] = None,
    ) -> None:
        if replay not in REPLAY_MODES:
            raise ValueError(f"replay={replay!r}: one of {', '.join(REPLAY_MODES)}")
        self.target, self.reference, self.step, self.replay = target, reference, step, replay
        self.replayer = replayer  # the compare command's replay processes; None: replays run in this process
        # threads for the per-pair work (pairpool.py); 1: in this thread, with torch's own intra-op threads
        self.workers = pairpool.default_workers() if workers is None else max(1, int(workers))
        self.tensors = tensors  # False: statistics only, even where the dumps hold tensors
        # relative L2 error per (target file, reference file): an op's input is usually an earlier op's
        # output, compared already (amplification reads it instead of loading and comparing again)
        self._rel_l2: Dict[Tuple[str, str, str], float] = {}  # (..., "plain" | "masked" | "discrete")
        # an output read for its metrics is read again as a later op's input (replay, amplification)
        self._cache = TensorCache()

    def _load(self, dump: Dump, info: TensorInfo, result: PairResult) -> Any:
        """The tensor (a numpy array, :class:`metrics.RawBits` or a torch tensor: :meth:`Dump.load_array`),
        or None: none saved, statistics only, or a path leading out of the dump (a problem of ``result``)."""
        # (no file: no cache lookup either; its lock, taken by every thread for every tensor, convoyed them)
        if not self.tensors or not info.file:
            return None
        try:
            key = (id(dump), info.file, info.dtype)
            return self._cache.get(key, lambda: wrap_bits(dump.load_array(info, self.step), info.dtype))
        except InputError as exc:  # a path leading out (UnsafePath), a corrupt tensor file
            _add_problem(result, f"tensor not read: {exc}")
            return None

    def run(
        self, pairs: Iterable[Pair], progress: Optional[Callable[[int], None]] = None
    ) -> List[PairResult]:
        """Every pair against the reference (numpy: the compare command's replay processes import torch
        meanwhile), then the amplification of every pair that is off, then the float64 replays of the pairs
        :meth:`_wants_replay` picks."""
        results = pairpool.map_in_order(self.compare_pair, list(pairs), self.workers, progress)
        self._data_inputs(results)
        self._amplification(results)
        todo = []
        for res in results:
            if self._wants_replay(res):
                todo.append(res)
            elif self.replay == "auto" and self._wants_replay(res, gate=False):
                res.explained = True
        if todo:
            self._replays(todo)
        self._parameters(results)
        return results

    def _parameters(self, results: List[PairResult]) -> None:
        """The error of each parameter at its first read before the optimizer runs (records name parameters:
        ``TensorInfo.name``), against the reference's parameter of the same name read by the paired op; after
        step 0 only a gross difference counts (:data:`CARRIED_PARAMETER_ERROR`)."""
        seen = set()
        todo: List[Tuple[PairResult, str, TensorInfo, TensorInfo, float, bool, float]] = []
        for res in sorted((r for r in results if r.pair.target is not None), key=lambda r: r.record.id):
            t, r = res.pair.target, res.pair.reference
            if t is None or r is None or t.phase not in ("init", "forward"):
                continue
            theirs = {b.name: b for b in r.inputs if b.name}
            for a in t.inputs:
                if not a.name or a.name in seen or a.name not in theirs:
                    continue
                seen.add(a.name)
                b = theirs[a.name]
                tensors = self.tensors and bool(a.file and b.file)
                rounding = (
                    PARAMETER_FACTOR * standards.expected_rounding_error(a.dtype, b.dtype)
                    if tensors
                    else standards.stats_tolerance(a.dtype, b.dtype)
                )
                # after step 0: drift carried from the earlier steps' updates
                bar = max(rounding, CARRIED_PARAMETER_ERROR) if self.step > 0 else rounding
                todo.append((res, a.name, a, b, bar, tensors, rounding))
        # the errors on the pool: a parameter is rarely an earlier op's output, so each is a comparison of its own
        errors = pairpool.map_in_order(
            lambda job: self._input_error(job[2], job[3], job[0]), todo, self.workers
        )
        for (res, name, _, _, bar, tensors, rounding), error in zip(todo, errors):
            res.params.append(ParameterCheck(name, error, bar, tensors, rounding))

    # --- error against the reference -----------------------------------------------------------------

    def compare_pair(self, pair: Pair) -> PairResult:
        """Every output pair is judged; the worst (by level, then tolerances off) is the pair's."""
        result = PairResult(pair)
        t, r = pair.target, pair.reference
        if t is None or r is None or not t.outputs or not r.outputs:
            return result
        produced: List[Any] = []
        best: Optional[Tuple[int, Optional[M.PairMetrics], Optional[M.StatsMetrics], standards.Verdict]] = (
            None
        )
        n = shared_outputs(t, r)
        for k, (t_out, r_out) in enumerate(zip(t.outputs[:n], r.outputs[:n])):
            tt = self._load(self.target, t_out, result)
            rt = self._load(self.reference, r_out, result)
            produced.append(tt)
            error: Optional[M.PairMetrics] = None
            stats: Optional[M.StatsMetrics] = None
            if tt is not None and rt is not None:
                error = M.compare_tensors(tt, rt)
                verdict = standards.judge(error, t.name, _reduction(t))
                if t_out.file and r_out.file:
                    self._rel_l2[(t_out.file, r_out.file, "plain")] = error.rel_l2_err or 0.0
            elif t_out.stats is not None and r_out.stats is not None:
                stats = M.compare_stats(t_out.stats, r_out.stats)
                verdict = standards.judge_stats(stats, t_out.dtype, t.name)
            else:
                continue
            if best is None or verdict.severity > best[3].severity:
                best = (k, error, stats, verdict)
        if best is None:
            return result
        result.output, result.error, result.stats_error, result.verdict = best
        if result.error is not None and result.verdict is not None and result.verdict.level == "pass":
            # outputs within their dtype's tolerance of the reference cannot be where the error came from:
            # the float64 replay (most of a compare's time) is spent only on outputs that are off
            result.within_reference = True
        return result

    def _wants_replay(self, result: PairResult, gate: bool = True) -> bool:
        """``gate=False``: whether the op would be replayed were its inputs' error not considered."""
        t = result.pair.target
        out_err = output_error(result)
        explained = (
            result.handed is not None
            and out_err is not None
            and out_err < REPLAY_AMPLIFICATION * result.handed  # False for NaN
        )
        return (
            (self.replay == "all" or (self.replay == "auto" and not (gate and explained)))
            and self.tensors
            and result.verdict is not None
            and not result.within_reference
            and t is not None
            and t.kind == "op"
            and t.args is not None
        )

    # --- introduced error: replay in float64 ----------------------------------------------------------

    def _replays(self, todo: List[PairResult]) -> None:
        """Each result's replay: in the compare command's replay processes, else here on the thread pool."""
        jobs = [(res, self._job(res)) for res in todo]
        ready = [(res, job) for res, job in jobs if job is not None]
        outcomes = self.replayer.run([job for _, job in ready]) if self.replayer is not None else None
        if outcomes is None:
            # here, not in a pool thread: the pool then sets its kernels single-threaded
            importlib.import_module("torch")
            outcomes = pairpool.map_in_order(replay_job.run, [job for _, job in ready], self.workers)
        for (res, _), outcome in zip(ready, outcomes):
            _apply(res, outcome)

    def _job(self, result: PairResult) -> Optional[ReplayJob]:
        """What a replay of the target's op needs (its inputs and the outputs the reference has too), or None:
        not an op name, or an input not saved."""
        rec, ref = result.pair.target, result.pair.reference
        assert rec is not None and ref is not None  # _wants_replay: only pairs measured against the reference
        if "::" not in rec.name:  # msprobe's API names (Functional.linear): no op to call
            result.notes.append("not an op name: not replayed")
            return None
        inputs = [self._source(info, result) for info in rec.inputs]
        produced = [self._source(out, result) for out in rec.outputs[: shared_outputs(rec, ref)]]
        if any(x is None for x in inputs) or all(x is None for x in produced):
            return None
        return ReplayJob(rec.name, rec.args, tuple(inputs), tuple(produced), _reduction(rec))

    def _source(self, info: TensorInfo, result: PairResult) -> Any:
        """A target tensor for a replay job: its file where the dump has ``.npy`` files (a job then carries a
        path, not the tensor), else the tensor; None when none was saved or it cannot be read."""
        try:
            path = self.target.tensor_file(info, self.step)
        except InputError as exc:  # a path leading out of the dump (UnsafePath)
            _add_problem(result, f"tensor not read: {exc}")
            return None
        return TensorFile(path, info.dtype) if path is not None else self._load(self.target, info, result)

    # --- introduced error: amplification over the inputs' error ---------------------------------------

    def _amplification(self, results: List[PairResult]) -> None:
        # before the replays, which it selects; a passing replay does not end it either: outputs off while the
        # inputs agree is a cause of its own (a config or code difference, see causes.py), measured by this ratio
        todo = [
            res
            for res in results
            if res.verdict is not None
            and not res.within_reference
            and output_error(res) is not None
            and res.pair.target is not None
            and res.pair.reference is not None
        ]
        # the inputs' errors first, on the pool (most are cached outputs of earlier pairs; msprobe's dumps save
        # every input as a file of its own, so there they are as many comparisons again)
        worst_inputs = pairpool.map_in_order(self._worst_input_error, todo, self.workers)
        for res, in_err in zip(todo, worst_inputs):
            if in_err is None:  # an input left unread: whether the inputs agree is unknown
                continue
            t, r = res.pair.target, res.pair.reference
            out_err = output_error(res)
            assert t is not None and r is not None and out_err is not None  # selected above
            k = res.output
            floor = standards.expected_rounding_error(t.outputs[k].dtype, r.outputs[k].dtype)
            res.amplification = out_err / max(in_err, floor, 1e-300)
            res.handed = max(in_err, ROUNDING_L2 * floor)
            if not res.method:
                res.method = "amplification"
                res.score = res.amplification

    def _worst_input_error(self, res: PairResult) -> Optional[float]:
        """The largest relative error of the op's inputs, or None where either run left one of them unread (a
        subset view's input: the whole gradient bucket DDP views a parameter's gradient out of). Whether such an op's
        inputs agree is unknown: DDP's ``as_strided`` views were listed as divergences, outputs off and the
        bucket "agreeing" by holding no values. (Uninitialised memory, recorded without values too, is not
        "unread": ``bernoulli_`` overwriting an ``empty`` tensor is judged by its arguments, dropout's p.)"""
        t, r = res.pair.target, res.pair.reference
        assert t is not None and r is not None
        worst = 0.0
        for a, b in zip(t.inputs, r.inputs):
            if a.unread or b.unread:
                return None
            worst = max(worst, self._input_error(a, b, res))
        return worst

    def _input_error(self, a: TensorInfo, b: TensorInfo, result: PairResult) -> float:
        discrete = is_discrete(a.dtype) or is_discrete(b.dtype)
        # an additive mask's extreme values would hide the error of every other element: measured without them
        masked = not discrete and (_holds_masks(a) or _holds_masks(b))
        how = "discrete" if discrete else "masked" if masked else "plain"
        key = (a.file, b.file, how) if a.file and b.file else None
        if key is not None and key in self._rel_l2:
            return self._rel_l2[key]
        err: Optional[float] = None
        if discrete:
            # nothing rounds an integer: one that differs means the op was given other inputs (never "inputs agree")
            err = math.inf if self._discrete_difference(a, b, result)[0] else 0.0
        else:
            at = self._load(self.target, a, result)
            bt = self._load(self.reference, b, result)
            if at is not None and bt is not None and M.dtype_name(at).startswith(("float", "bfloat")):
                err = M.rel_l2_unmasked(at, bt) if masked else M.compare_tensors(at, bt).rel_l2_err
                err = err or 0.0
        if err is not None:
            if key is not None:
                self._rel_l2[key] = err
            return err
        if a.stats is not None and b.stats is not None:
            if masked:
                return _unmasked_stats_error(a, b)
            return stats_error(M.compare_stats(a.stats, b.stats)) or 0.0
        return 0.0

    def _discrete_difference(
        self, a: TensorInfo, b: TensorInfo, result: PairResult
    ) -> Tuple[bool, Optional[float]]:
        """Whether two integer/bool inputs differ (False also where nothing tells), and the fraction of their
        elements that do (None: told by their statistics, no tensors)."""
        at = self._load(self.target, a, result)
        bt = self._load(self.reference, b, result)
        if at is not None and bt is not None:
            frac = differing_fraction(at, bt)
            return frac > 0, frac
        return bool(stats_differ(a, b)), None

    def _data_inputs(self, results: List[PairResult]) -> None:
        """Fill ``data_diff``: the integer/bool inputs no earlier op produced (data_inputs.leaf_inputs) that
        differ from the reference's."""
        leaves = leaf_inputs([r.pair.target for r in results if r.pair.target is not None])
        for res in results:
            t, r = res.pair.target, res.pair.reference
            if t is None or r is None or t.id not in leaves:
                continue
            for i in leaves[t.id]:
                if i < len(r.inputs):
                    differs, frac = self._discrete_difference(t.inputs[i], r.inputs[i], res)
                    if differs:
                        res.data_diff.append((i, frac))


def _holds_masks(info: TensorInfo) -> bool:
    """Whether a tensor's statistics count values at its dtype's largest magnitude or infinite ones (an additive
    attention mask: ``finfo(dtype).min`` or -inf)."""
    s = info.stats
    return s is not None and bool(s.sat or s.inf)


def _unmasked_stats_error(a: TensorInfo, b: TensorInfo) -> float:
    """The statistics error of an input holding an additive mask: the mask sets its min, mean and norm, so only
    an extreme that is a value of the tensor (finite, below the dtype's largest magnitude) is compared, relatively;
    Inf where neither is (nothing then says the inputs agree)."""
    assert a.stats is not None and b.stats is not None
    top = M.largest(b.dtype) or math.inf
    diffs = [
        abs(t - r) / abs(r)
        for t, r in ((a.stats.max, b.stats.max), (a.stats.min, b.stats.min))
        if t is not None and r is not None and math.isfinite(t) and r != 0 and abs(r) < top
    ]
    return max(diffs) if diffs else math.inf


def _add_problem(result: PairResult, problem: str) -> None:
    if problem not in result.problems:
        result.problems.append(problem)


def _apply(result: PairResult, outcome: ReplayOutcome) -> None:
    if outcome.problem:
        _add_problem(result, outcome.problem)
    if outcome.note:
        result.notes.append(outcome.note)
    found = outcome.replay
    if found is None:
        return
    result.replay = found
    result.introduced, result.introduced_verdict = found.metrics, found.verdict
    result.method = "replay"
    result.score = found.score


def _reduction(rec: Record) -> Optional[int]:
    return standards.reduction_length(rec.name, [t.shape for t in rec.inputs])


def stack_lines(dump: Dump, rec: Record) -> List[str]:
    """The record's stack, paths shortened as in check-ops (relative, or from site-packages on)."""
    from ..stacks import short_path

    try:
        frames = dump.stack(rec.stack)
    except (KeyError, IndexError, ValueError, OSError):
        return []
    out = []
    for frame in frames:
        path, sep, rest = frame.partition(":")
        out.append(short_path(path) + sep + rest if sep and os.path.isabs(path) else frame)
    return out
