"""One ranking of the causes of drift, each with its kind, over a compare's :class:`PairResult` list.

Kinds, in ranking order (within a kind, by score):

0. ``data``: the first op, in execution order, with an integer or bool input that no earlier op produced and that
   differs from the reference's (``data_inputs.py``): the two runs were given different data (token ids,
   labels, masks), so every difference after it follows from that. Proven with tensors (the fraction of
   elements that differ), a suspect in statistics. Divergences after it are dropped (their inputs come from
   that data); kernel faults, parameters and target-only ops are still listed.
1. ``nonfinite``: the first op, in execution order, whose output holds NaN, ±Inf or values saturated at
   the dtype's ±max where the paired reference output holds none (target-only ops included). Everything
   after it is poisoned, so it is the headline whatever else is found. Read from the records' counts, so
   it works the same with tensors or statistics only.
2. ``random``: the first random op (``op_names.RANDOM_OPS``: ``randn``, ``uniform_``, dropout), in execution
   order, whose output differs from the reference's while its arguments are the same (and its inputs, where it
   reads any: dropout's): the runs' random generators were in different states (no seed or another seed,
   random numbers drawn in another order, another device's generator). Proven with tensors, a suspect in
   statistics. Divergences after it are dropped, as after other data; kernel faults, parameters and
   target-only ops are still listed (a parameter initialised from those random numbers ranks after it).
3. ``parameter``: a parameter (records name them) differs from the reference's parameter of the same name at its
   first read before the optimizer runs, beyond ``diagnose.PARAMETER_FACTOR`` times what rounding explains: a
   stale or unloaded weight. Proven with tensors, a suspect in statistics (``stats_tolerance``). One first read
   after a kernel fault and a backward pass ranks after the kernel faults: the script may have written it from
   the fault's gradients (a manual update, ``p.data.add_(p.grad)``, that no optimizer step counts; a copy of
   the model kept for evaluation, ``best_model = copy.deepcopy(model)``).
4. ``kernel``: the op's output is off against a float64 replay on its own inputs (tensor mode).
5. ``divergence``: the output is off against the reference while the op's inputs agree: the output's
   error is at least ``AMPLIFICATION_CULPRIT`` times the worst input error (``diagnose``), even where the
   replay passes: the op computed something else (another eps, another formula). The paired ops'
   non-tensor arguments are diffed and the differences named; an optimizer op needs one to differ. None: with
   tensors, an op whose replay passed, whose arguments are the same and whose output has the reference's dtype
   (it computed what the reference's op did); a random fill (``normal_``) whose numbers no later op reads
   (``data_inputs.unread_random_fills``); a value the script only logs (``data_inputs.logged_only``: torchtune's
   tokens per second divide by the wall time).
6. ``target-only``: a forward or optimizer op the reference run does not have (dropout left on), other
   than a cast, a view or an allocation (backward ops follow the forward graph: a bf16 run's extra cast
   adds a gradient sum there), nor one whose value is only logged. A divergence seen in statistics only
   (``STATS_DIVERGENCE``) ranks after these.
"""

import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, List, Optional, Set, Tuple

from ..op_names import ALIAS_VIEWS, COLLECTIVE_NAMESPACES, RANDOM_FILLS, RANDOM_OPS, UNDEFINED_VALUES, op_base
from .align import shared_outputs
from .data_inputs import is_discrete, logged_only, unread_random_fills
from .diagnose import AMPLIFICATION_CULPRIT, PairResult
from .records import Record, TensorInfo

KINDS = ("data", "nonfinite", "random", "parameter", "kernel", "divergence", "target-only")

# target-only ops that change no value: the casts a lower-precision run adds, views, copies and concatenations (DDP
# flattens the parameters it broadcasts at its start by dtype: a bf16 model with fp32 LoRA weights adds a cat)
_NEUTRAL = ALIAS_VIEWS | {
    "_to_copy", "to", "clone", "copy_", "contiguous", "lift_fresh", "_to_dtype", "cat", "stack", "split",
    "split_with_sizes", "unbind", "chunk",
}  # fmt: skip
# ops that alias their input's memory: they cannot make a NaN, only show one already there (FSDP2 views the
# buffers it re-allocates for an all-gather before filling them: uninitialised memory)
_ALIASES = ALIAS_VIEWS
# collectives and FSDP's copies in and out of their buffers: a one-process reference has none, and what they
# deliver is compared where the model reads it
_COMMUNICATION = (*COLLECTIVE_NAMESPACES, "fsdp::")
ARGS_SHOWN = 5
WRITTEN_FROM_A_FAULT = (
    "first read after a backward pass from an earlier kernel fault, which may have written it"
)
# " at 0x7f11...": the address in a default repr (a torch.Generator argument), different in every run
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
# Statistics move more than tensors (a min or a mean near zero): a divergence seen in statistics only needs
# a larger ratio. Measured on tests/precision/test_drift_causes.py: clean bf16 Llama runs reach 42 (backward
# mm, RoPE sin on bf16 angles), the one-layer RMSNorm eps change 39,690.
STATS_DIVERGENCE = 100.0
# Below that bar, statistics cannot tell a fault from bf16 noise (tests/precision/test_fault_localization_
# compare.py: injected mm/softmax faults score 7-59, clean runs up to 10-42), so such divergences are *hints*:
# ranked by their ratio after every cause, never counted as culprits or suspects, shown apart.


@dataclass
class Cause:
    kind: str  # one of KINDS
    result: PairResult
    level: str  # "error" (proven) | "suspect" | "hint" (statistics only, below STATS_DIVERGENCE)
    detail: str = ""  # what was produced (nonfinite), which arguments differ (divergence)
    score: float = 0.0  # kernel: tolerances off its replay; divergence: output error over input error
    arg_diff: List[str] = field(default_factory=list)
    # parameter: maybe written from an earlier kernel fault (_mark_written_from_a_fault)
    written: bool = False


def optimizer_kernels(records: Iterable[Record]) -> str:
    """How a run's optimizer stepped: "fused" (``_fused_adamw_``: one op for every parameter), "foreach"
    (``_foreach_*``: one op per update for a list of parameters), "single" (ops per parameter) or "" (no optimizer
    op). torch picks by device where the script does not: foreach on CUDA and NPU, single-tensor on the CPU. Read
    from the step's last in-place optimizer op: the update comes last, after the gradient clipping of the same
    phase, which picks its kernels on its own (``clip_grad_norm_`` runs ``_foreach_norm`` on the CPU too)."""
    seen = ""
    for rec in records:
        if rec.phase != "optimizer" or rec.kind != "op":
            continue
        base = op_base(rec.name)
        if base.startswith("_fused_"):
            return "fused"
        if base.endswith("_"):
            seen = "foreach" if base.startswith("_foreach_") else "single"
    return seen


def optimizer_kernels_differ(results: List[PairResult]) -> Optional[Tuple[str, str]]:
    """``(target's, reference's)`` :func:`optimizer_kernels` where both stepped and not alike, else None. The same
    update by other ops: they cannot pair one to one, and none of them is a cause by being unpaired."""
    t = optimizer_kernels(r.pair.target for r in results if r.pair.target is not None)
    r = optimizer_kernels(x.pair.reference for x in results if x.pair.reference is not None)
    return (t, r) if t and r and t != r else None


def rank(results: List[PairResult], optimizers: Optional[Tuple[str, str]]) -> List[Cause]:
    """Every cause found, in ranking order. ``optimizers``: :func:`optimizer_kernels_differ` of ``results`` (the
    report's note shows it too: computed once by the caller)."""
    found: List[Cause] = []
    other_optimizer = optimizers is not None
    data = first_data_difference(results)
    if data is not None:
        found.append(data)
    targets = [r.pair.target for r in results if r.pair.target is not None]
    unread = unread_random_fills(targets)
    logged = logged_only(targets)  # changes nothing the model computes
    first = first_nonfinite(results)
    if first is not None:
        found.append(first)
    drawn = first_random_difference(results, unread)
    if drawn is not None:
        found.append(drawn)
    taken = {id(c.result) for c in (data, first, drawn) if c is not None}
    op_level = any(r.record.kind == "op" for r in results)
    for res in results:
        found.extend(_parameters(res))
        if id(res) in taken:
            continue
        cause = _classify(res, op_level)
        if (
            cause is not None
            and cause.kind == "target-only"
            and other_optimizer
            and res.record.phase == "optimizer"
        ):
            continue  # the same update by other ops (see optimizer_kernels_differ)
        if cause is not None and cause.kind == "divergence" and cause.result.record.id in unread:
            continue  # other random numbers that nothing reads
        if (
            cause is not None
            and cause.kind in ("divergence", "target-only")
            and cause.result.record.id in logged
        ):
            continue
        if cause is not None and not _after_other_data(cause, data) and not _after_other_data(cause, drawn):
            found.append(cause)
    _mark_written_from_a_fault(found, results)
    return sorted(found, key=lambda c: (_order(c), -c.score))


def _mark_written_from_a_fault(found: List[Cause], results: List[PairResult]) -> None:
    """Mark (``written``) each parameter cause first read after the earliest kernel fault with a backward op
    between them (or the fault itself in backward): the weight may have been updated from that fault's
    gradients, so the fault leads (see the module docstring)."""
    faults = [c.result.record.id for c in found if c.kind == "kernel"]
    if not faults:
        return
    fault = min(faults)
    backward = sorted(r.record.id for r in results if r.record.phase == "backward" and r.record.id >= fault)
    if not backward:
        return
    for cause in found:
        if cause.kind == "parameter" and cause.result.record.id > backward[0]:
            cause.written = True
            cause.detail += f"; {WRITTEN_FROM_A_FAULT}"


def _after_other_data(cause: Cause, data: Optional[Cause]) -> bool:
    """A divergence after the op that read other data (or drew other random numbers): its inputs come from that
    data, so the ratio of its output's difference to theirs measures nothing (statistics of unrelated tensors).
    Kernel faults (a replay on the op's own inputs), parameters and target-only ops stay causes."""
    return data is not None and cause.kind == "divergence" and cause.result.record.id > data.result.record.id


def _order(cause: Cause) -> float:
    """KINDS order, except that a divergence seen in statistics only (a soft hint: a statistic can move
    more than the tensor) comes after the target-only ops (a fact of the op streams), and a parameter possibly
    written from a kernel fault comes after the kernel faults."""
    if cause.level == "hint":
        return len(KINDS) + 1
    if cause.kind == "divergence" and cause.level != "error":
        return len(KINDS)
    if cause.written:
        return KINDS.index("kernel") + 0.5
    return KINDS.index(cause.kind)


def _parameters(res: PairResult) -> List[Cause]:
    """A cause per parameter this op read first that is off the reference's."""
    out = []
    for p in res.params:
        if p.error > p.bar:
            detail = f"{p.name} differs from the reference's: error {p.error:.3g} > {p.bar:.3g}"
            out.append(
                Cause("parameter", res, "error" if p.tensors else "suspect", detail, score=p.error / p.bar)
            )
    return out


def carried_parameters(results: List[PairResult]) -> List[Tuple[str, float]]:
    """``(name, error)`` of the parameters off the reference's by more than rounding explains but not by enough
    to be a cause: after step 0, the drift the earlier steps carried into them (``diagnose``), largest first."""
    out = [(p.name, p.error) for res in results for p in res.params if p.rounding < p.error <= p.bar]
    return sorted(out, key=lambda p: -p[1])


def _classify(res: PairResult, op_level: bool) -> Optional[Cause]:
    """``op_level``: the dump holds op records (``level`` op or mix)."""
    t, r = res.pair.target, res.pair.reference
    if t is None:
        return None
    if r is None:
        base = op_base(t.name)
        # backward ops follow the forward graph (a bf16 run's extra cast adds a gradient sum there)
        if (
            t.kind == "op"
            and t.phase != "backward"
            and base not in _NEUTRAL
            and base not in UNDEFINED_VALUES
            and not t.name.startswith(_COMMUNICATION)
        ):
            return Cause("target-only", res, "suspect", "no counterpart in the reference run")
        return None
    if res.replay is not None and res.replay.is_error:
        return Cause("kernel", res, "error", score=res.score)
    # tensors prove the inputs agree; statistics only suggest it
    proven = res.error is not None
    ratio = res.amplification or 0.0
    if res.verdict is None or res.verdict.level == "pass":
        return None
    diff = arg_diff(t, r)
    if res.verdict.level != "error" and not diff:
        # within twice its tolerance: a cause only where it was given other arguments (AdamW's weight decay 0.02
        # against 0.01: its mul_ by 1 - lr * wd 1.3 tolerances off, karpathy/makemore)
        return None
    if op_level and t.kind != "op":
        # a module's difference is its ops', judged one by one with every input (its parameters too, which a
        # module record does not hold: after step 0 a LoRA weight's drift read as the module diverging)
        return None
    if (t.inputs or t.kind != "op") and all(is_discrete(i.dtype) for i in t.inputs) and not diff:
        # it read nothing float that could agree (a module-level gradient record, the model's forward on token ids,
        # an op on integers): its difference is that of what produced it, judged there (a factory op, which reads
        # nothing, stays: randn with another seed)
        return None
    if proven and ratio < AMPLIFICATION_CULPRIT:
        return None
    # statistics cannot tell a small amplification from rounding noise, unless the op was given other arguments
    bar = AMPLIFICATION_CULPRIT if diff else STATS_DIVERGENCE
    if not proven and ratio < bar:
        if ratio <= 1:  # it carried its inputs' error, did not amplify it
            return None
        why = f"statistics only, {ratio:.3g}x below the {bar:g}x bar: a hint, not a cause"
        return Cause("divergence", res, "hint", why, score=ratio)
    if proven and not diff and res.replay is not None and (_same_output_dtype(res) or t.phase == "backward"):
        # the same op with the same arguments, in the same precision, correct for its own inputs (the replay
        # passed): it computed what the reference's did, so its difference is its inputs', however a relative L2
        # of them reads (Gemma's RMSNorm in bf16 autocast: rsqrt makes the smallest variances, the least precise,
        # its largest outputs: 2e-5 in, 4.5e-4 out, where elementwise it halves a relative error). A backward op
        # runs in the precision autograd gives it from its forward: an ill-conditioned one in bf16 (nanochat's
        # gradient of a scalar gate, a sum over a whole activation that cancels: 116 tolerances off fp32's from
        # inputs within theirs) is no cause of its own; a dtype chosen in the forward shows there (RoPE in bf16)
        return None
    if t.phase == "optimizer" and not diff:
        # an optimizer divides by its moments (Adam's first m/sqrt(v) is +-1 for every element, whatever |g|): a
        # near-zero gradient whose sign differs between bf16 and fp32 moves the weight by 2 lr, far beyond its
        # inputs' relative error (clean bf16 GPT-2/GPT-NeoX runs: addcdiv_ at 22-88x). Only an argument differing
        # (eps, lr, betas) makes an optimizer op a cause.
        return None
    detail = "arguments differ: " + "; ".join(diff[:ARGS_SHOWN]) if diff else "no non-tensor argument differs"
    # proven: tensors show the inputs agree and a non-tensor argument differs; else a suspect (a clean bf16
    # run has a few ill-conditioned ops past the ratio: tests/precision/test_fault_localization_compare.py)
    level = "error" if proven and diff else "suspect"
    return Cause("divergence", res, level, detail, score=ratio, arg_diff=diff)


def _same_output_dtype(res: PairResult) -> bool:
    """Whether the judged output has one dtype in both runs (a bf16 op against an fp32 one rounds differently:
    RoPE angles made in bf16 are a divergence of their own)."""
    t, r, i = res.pair.target, res.pair.reference, res.output
    return (
        t is not None
        and r is not None
        and i < min(len(t.outputs), len(r.outputs))
        and (t.outputs[i].dtype == r.outputs[i].dtype)
    )


# --- other data ------------------------------------------------------------------------------------------


def first_data_difference(results: List[PairResult]) -> Optional[Cause]:
    """The first op (execution order) whose integer/bool leaf input differs from the reference's."""
    for res in sorted((r for r in results if r.data_diff), key=lambda r: r.record.id):
        t = res.record
        parts = []
        for i, frac in res.data_diff:
            info = t.inputs[i]
            what = f"in {frac:.1%} of its elements" if frac is not None else "(its statistics differ)"
            parts.append(f"input {i} ({info.dtype} {list(info.shape)}) differs from the reference's {what}")
        proven = all(frac is not None for _i, frac in res.data_diff)
        return Cause("data", res, "error" if proven else "suspect", "; ".join(parts), score=1.0)
    return None


# --- other random numbers --------------------------------------------------------------------------------

RANDOM_DETAIL = (
    "it drew other random numbers than the reference's with the same arguments: the runs' random generators "
    "were in different states (no seed or another seed, random numbers drawn in another order, or another "
    "device's generator: dropout on an NPU against a GPU); seed both runs alike and turn dropout off to compare"
)


def first_random_difference(results: List[PairResult], unread: Set[int]) -> Optional[Cause]:
    """The first random op (execution order) whose output is off the reference's while its arguments agree, and
    its inputs where it reads any (dropout: its amplification of their error is a cause's); a fill that nothing
    reads (``unread``: :func:`data_inputs.unread_random_fills`) is none."""
    for res in sorted((r for r in results if r.pair.target is not None), key=lambda r: r.record.id):
        t, r = res.pair.target, res.pair.reference
        assert t is not None
        base = op_base(t.name)
        if r is None or t.kind != "op" or base not in RANDOM_OPS or res.record.id in unread:
            continue
        if res.verdict is None or res.verdict.level != "error" or arg_diff(t, r):
            continue
        reads = base not in RANDOM_FILLS and any(not is_discrete(i.dtype) for i in t.inputs)
        if reads and (res.amplification or 0.0) < AMPLIFICATION_CULPRIT:
            continue  # its inputs differ already: what it carried, not what it drew
        return Cause("random", res, "error" if res.error is not None else "suspect", RANDOM_DETAIL, score=1.0)
    return None


# --- first NaN / Inf / saturation ------------------------------------------------------------------------


def _counts(info: Optional[TensorInfo]) -> Tuple[int, int, int]:
    s = info.stats if info is not None else None
    return (s.nan, s.inf, s.sat) if s is not None else (0, 0, 0)


def new_nonfinite(target: List[TensorInfo], reference: List[TensorInfo]) -> List[str]:
    """What ``target`` holds that the paired ``reference`` tensors do not: "NaN", "Inf", "saturated"."""
    out = []
    for k, info in enumerate(target):
        ref = _counts(reference[k]) if k < len(reference) else (0, 0, 0)
        for name, t_n, r_n in zip(("NaN", "Inf", "saturated"), _counts(info), ref):
            if t_n and not r_n and name not in out:
                out.append(name)
    return out


def _overflows_a_mask(rec: Record) -> bool:
    """An input in the output's dtype already held values at that dtype's ±max: an additive mask of
    ``finfo(dtype).min`` that overflows to -inf when added to (Hugging Face's eager attention, bf16), by design.
    A cast that makes -inf of float32's min (an input in another dtype) is not this."""
    dtypes = {o.dtype for o in rec.outputs}
    return any(i.dtype in dtypes and i.stats is not None and i.stats.sat for i in rec.inputs)


def first_nonfinite(results: List[PairResult]) -> Optional[Cause]:
    for res in sorted((r for r in results if r.pair.target is not None), key=lambda r: r.record.id):
        t, r = res.pair.target, res.pair.reference
        assert t is not None
        if t.kind != "op" or op_base(t.name) in _ALIASES:
            continue
        made = new_nonfinite(t.outputs, []) if r is None else new_nonfinite(*_shared(t, r))
        if r is None and "saturated" in made:
            # a target-only cast of a mask built from finfo(fp16).min holds -65504 by design: only NaN/Inf count
            made.remove("saturated")
        if "Inf" in made and _overflows_a_mask(t):
            made.remove("Inf")
        if not made:
            continue
        carried = new_nonfinite(t.inputs, r.inputs) if r is not None else []
        detail = "/".join(made) + (
            f" (its inputs already held {'/'.join(carried)}: made outside the capture)" if carried else ""
        )
        return Cause("nonfinite", res, "error", detail)
    return None


# --- non-tensor arguments ---------------------------------------------------------------------------------


def _shared(t: Record, r: Record) -> Tuple[List[TensorInfo], List[TensorInfo]]:
    """The outputs of a pair that hold the same values (``align.shared_outputs``)."""
    n = shared_outputs(t, r)
    return t.outputs[:n], r.outputs[:n]


def arg_diff(target: Record, reference: Record) -> List[str]:
    """``"args[1]: 1e-06 vs 0.001"`` for every non-tensor argument leaf that differs (tensors skipped;
    dtype and device arguments too: a bf16 run against an fp32 one differs there by design). Two kernels of one
    computation (``align.SAME_VALUES``: CUDA's efficient attention against the CPU's flash) order their
    positional arguments each their own way: only the keyword arguments both name are compared."""
    ta, ra = dict(_leaves(target.args)), dict(_leaves(reference.args))
    if target.name != reference.name:
        both = [p for p in ta if p.startswith("kwargs.") and p in ra]
        ta, ra = {p: ta[p] for p in both}, {p: ra[p] for p in both}
    out = []
    for path in sorted(set(ta) | set(ra)):
        a, b = ta.get(path, "<absent>"), ra.get(path, "<absent>")
        if path.endswith(
            "repr"
        ):  # an object with no JSON form: its repr, less the address it has in this run
            a, b = (_ADDRESS.sub("", v) if isinstance(v, str) else v for v in (a, b))
        if not _same(a, b) and not path.endswith(("dtype", "device")):
            out.append(f"{path}: {a!r} vs {b!r}")
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)


def _leaves(value: Any, path: str = "") -> Iterator[Tuple[str, Any]]:
    if isinstance(value, dict):
        if "tensor" in value and len(value) == 1:
            return
        for k, v in value.items():
            yield from _leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{path}[{i}]")
    else:
        yield path, value
