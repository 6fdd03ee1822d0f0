"""Pair the records of two runs: the same op call on the target and on the reference.

The two op streams are aligned as sequences, per phase, so that an op present in one run only (dropout
left on, an extra cast) shifts nothing after it: it is reported unmatched (target-only or
reference-only) and every later op still pairs with its counterpart.

* Each record's **signature** is (name, module path, output shapes). The common prefix and suffix of the
  two signature streams are paired directly (the whole stream when both runs executed the same ops).
* The middle is diffed with ``difflib.SequenceMatcher`` (longest matching blocks) in two levels: first
  the runs of consecutive records in one scope (a layer: the module path up to its first index, or the
  whole path where it has none), then the records inside each
  pair of matched runs, or inside each gap between them. Records left unpaired in a gap are diffed again
  on (name, output shapes) only, for module paths that differ between the runs (one captured with
  ``model=``, one without). What is still unpaired there is diffed once more with the ops that compute the same
  values by another kernel made one (:data:`SAME_VALUES`: ``bmm``/``mm``, each device's fused attention) and
  shapes without their dimensions of size 1; such a pair is judged on the outputs both kernels make
  (:func:`shared_outputs`) and on the arguments both name (``causes.arg_diff``).
* A pair whose (name, phase, call index) also agree is labelled ``key``, otherwise ``sequence``: the call
  index only breaks ties, it never forces a pairing.

Cost: linear for identical streams; a diff only over the part that differs, where a signature's repeats
are few because module paths carry the layer number (measured in docs/precision.md).
"""

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, TypeVar

from .metrics import squeezed
from .records import PHASES, Record


@dataclass
class Pair:
    target: Optional[Record]
    reference: Optional[Record]
    how: str  # "key" | "sequence" | "unmatched"

    @property
    def order(self) -> int:
        """Position in the target's execution order (reference order for reference-only pairs)."""
        rec = self.target if self.target is not None else self.reference
        return rec.id if rec is not None else -1


def _shapes(rec: Record) -> Tuple[Tuple[int, ...], ...]:
    return tuple(tuple(t.shape) for t in rec.outputs)


def signature(rec: Record) -> Tuple[Any, ...]:
    return (rec.name, rec.module, _shapes(rec))


def _loose(rec: Record) -> Tuple[Any, ...]:
    return (rec.name, _shapes(rec))


_SDPA = "aten::_scaled_dot_product_"
_SDPA_KERNELS = (
    "flash_attention_for_cpu",
    "flash_attention",
    "efficient_attention",
    "cudnn_attention",
    "fused_attention_overrideable",
)
#: ops that compute another op's values by another kernel: the name they pair as, and how many leading outputs hold
#: those values (None: all). aten's matmul folds a 3-D input into an ``mm`` in one run and calls ``bmm`` with one
#: batch in the other (nanochat's smear gate on a sliced input: ``mm`` in float32, ``bmm`` in bfloat16, where the
#: weight's cast makes a copy). ``F.scaled_dot_product_attention`` runs each device's own fused kernel: the CPU's
#: ``flash_attention_for_cpu``; CUDA's flash, memory-efficient or cuDNN one by dtype and shape; an out-of-tree
#: backend's ``fused_attention_overrideable`` (torch >= 2.5); torch_npu registers ``scaled_dot_product_attention``
#: itself and its ``npu_fusion_attention`` family (its op tables, ``opcheck/data/npu_ops.json``; which one a run
#: records is not checked here, and only the BNSD layout has the attention's shape). Their first output is the
#: attention (backward: the first three, the gradients of q, k and v); the rest is each kernel's own (a log-sum-exp
#: padded its own way, softmax statistics, RNG state, debug masks).
SAME_VALUES: Dict[str, Tuple[str, Optional[int]]] = {
    "aten::bmm": ("aten::mm", None),
    "aten::baddbmm": ("aten::addmm", None),
    **{f"{_SDPA}{kernel}": ("sdpa", 1) for kernel in _SDPA_KERNELS},
    "aten::scaled_dot_product_attention": ("sdpa", 1),
    **{f"npu::npu_fusion_attention{v}": ("sdpa", 1) for v in ("", "_v2", "_v3")},
    **{f"npu::npu_fusion_attention_grad{v}": ("sdpa backward", 3) for v in ("", "_v2", "_v3")},
    **{f"{_SDPA}{kernel}_backward": ("sdpa backward", 3) for kernel in _SDPA_KERNELS},
}


#: ops whose trailing outputs are their kernel's scratch, not values of the computation: how many leading outputs hold
#: values. oneDNN's LSTM layer returns (output, hy, cy, workspace), the workspace a uint8 buffer whose bytes differ
#: from run to run (pytorch/examples' word_language_model with ``--model LSTM``: two clean runs, each layer's call
#: an "error" of 245 against the other); cuDNN's and MIOpen's RNNs return (output, hy, cy, reserve, weight_buf)
SCRATCH_AFTER: Dict[str, int] = {"aten::mkldnn_rnn_layer": 3, "aten::_cudnn_rnn": 3, "aten::miopen_rnn": 3}


def shared_outputs(target: Record, reference: Record) -> int:
    """How many leading outputs of a pair hold the same values: all the two have, fewer for two kernels of one
    computation (:data:`SAME_VALUES`), and never a kernel's scratch (:data:`SCRATCH_AFTER`)."""
    n = min(len(target.outputs), len(reference.outputs), SCRATCH_AFTER.get(target.name, len(target.outputs)))
    if target.name != reference.name:
        kept = SAME_VALUES.get(target.name, (target.name, None))[1]
        if kept is not None:
            n = min(n, kept)
    return n


def _same_values(rec: Record) -> Tuple[Any, ...]:
    name, kept = SAME_VALUES.get(rec.name, (rec.name, None))
    return (name, tuple(squeezed(s) for s in _shapes(rec)[:kept]))


def align(target: Sequence[Record], reference: Sequence[Record]) -> List[Pair]:
    """Pairs in target execution order (target-only ones included), then reference-only records."""
    phases = list(PHASES) + sorted({r.phase for r in (*target, *reference)} - set(PHASES))
    pairs: List[Pair] = []
    ref_only: List[Record] = []
    for phase in phases:
        t = [r for r in target if r.phase == phase]
        r = [x for x in reference if x.phase == phase]
        for a, b in _scoped(t, r):
            if a is None:
                assert b is not None
                ref_only.append(b)
            elif b is None:
                pairs.append(Pair(a, None, "unmatched"))
            else:
                pairs.append(Pair(a, b, "key" if a.key == b.key else "sequence"))
    pairs.sort(key=lambda p: p.order)
    pairs.extend(Pair(None, r, "unmatched") for r in sorted(ref_only, key=lambda r: r.id))
    return pairs


Side = Tuple[Optional[Record], Optional[Record]]
T = TypeVar("T")


def _scoped(a: List[Record], b: List[Record]) -> List[Side]:
    """Diff the runs of consecutive records in one module first (few, and their paths nearly unique),
    then the records inside each pair of runs: the record-level diff never spans the whole stream."""
    ra, rb = _runs(a), _runs(b)
    out: List[Side] = []
    for x, y in _matched([_scope(r[0].module) for r in ra], [_scope(r[0].module) for r in rb], ra, rb):
        out.extend(
            _diff(
                [rec for run in x for rec in run],
                [rec for run in y for rec in run],
                signature,
                _loose,
                _same_values,
            )
        )
    return out


def _runs(records: List[Record]) -> List[List[Record]]:
    """Consecutive records of one scope. A record outside every module (``""``: autograd's ``detach`` of each
    gradient it accumulates, in backward) joins the run it falls in rather than splitting it: a mixed-precision
    run casts each gradient back to float32 there too, so its backward alternated between a layer and ``""``
    more often than the reference's, and the run-level diff then paired one layer's runs with shifted ones."""
    runs: List[List[Record]] = []
    scope = None
    for rec in records:
        here = _scope(rec.module)
        if runs and (here == scope or (rec.module == "" and scope is not None)):
            runs[-1].append(rec)
        else:
            runs.append([rec])
            scope = here
    return runs


def _scope(module: str) -> str:
    """The run key: the path up to its first index (``model.layers.3`` for everything inside layer 3), else
    the whole path. A submodule present in one run only (``attn.attn_dropout`` left on) splits its parent's
    records into two runs there and one here; keyed by layer, both stay one run and are diffed by record."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return module


def _matched(
    sa: List[Hashable], sb: List[Hashable], a: List[T], b: List[T]
) -> Iterator[Tuple[List[T], List[T]]]:
    """Alternating (gap, gap) and (equal item, equal item) slices of ``a`` and ``b`` covering both: the
    common prefix and suffix directly, the middle by ``difflib.SequenceMatcher`` on the keys."""
    head = 0
    while head < len(a) and head < len(b) and sa[head] == sb[head]:
        yield [a[head]], [b[head]]
        head += 1
    tail = 0
    while tail < len(a) - head and tail < len(b) - head and sa[-1 - tail] == sb[-1 - tail]:
        tail += 1
    ma, mb = a[head : len(a) - tail], b[head : len(b) - tail]
    if ma and mb:
        matcher = difflib.SequenceMatcher(
            a=sa[head : len(a) - tail], b=sb[head : len(b) - tail], autojunk=False
        )
        i = j = 0
        for block in matcher.get_matching_blocks():
            if block.a > i or block.b > j:
                yield ma[i : block.a], mb[j : block.b]
            for k in range(block.size):
                yield [ma[block.a + k]], [mb[block.b + k]]
            i, j = block.a + block.size, block.b + block.size
    elif ma or mb:
        yield ma, mb
    for k in range(tail):
        yield [a[len(a) - tail + k]], [b[len(b) - tail + k]]


def _diff(
    a: List[Record],
    b: List[Record],
    sig: Callable[[Record], Hashable],
    *fallback: Callable[[Record], Hashable],
) -> List[Side]:
    """(target, reference) pairs and one-sided entries covering ``a`` and ``b``."""
    out: List[Side] = []
    for x, y in _matched([sig(r) for r in a], [sig(r) for r in b], a, b):
        if len(x) == 1 and len(y) == 1 and sig(x[0]) == sig(y[0]):
            out.append((x[0], y[0]))
        elif x and y and fallback:
            out.extend(_diff(x, y, fallback[0], *fallback[1:]))
        else:
            out.extend([(r, None) for r in x] + [(None, r) for r in y])
    return out
