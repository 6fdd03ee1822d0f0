"""What the op trace records: plain dataclasses, free of torch so the CLI process can use them."""

from dataclasses import dataclass, field
from typing import Dict, List, Tuple


@dataclass
class OpEvent:
    """One call that reached dispatch (or, for ``parent`` events, a fused Python-level call)."""

    op: str  # "aten::mm", "aten::add.Tensor"
    phase: str  # "forward" | "backward" | "optimizer" (inside optimizer.step(), where a script is traced)
    module: str  # "model.layers.3.self_attn", "" for the root
    dtypes: Tuple[str, ...]  # dtypes of the tensor inputs, in order
    shapes: Tuple[Tuple[int, ...], ...]
    sparse: bool = False
    via: str = ""  # the CompositeExplicitAutograd op this call was expanded from
    parent: int = -1  # index of the enclosing fused-call event, -1 if none
    is_parent: bool = False  # a fused Python-level call (its decomposition follows, tagged with parent)
    partly_expanded: bool = (
        False  # its composite kernel stopped on meta tensors: what it calls is not all seen
    )
    # argument values torch_npu's docs say the NPU does not support ("sorted=False"), and where (forward)
    flags: Tuple[str, ...] = ()
    flag_site: str = ""
    # every tensor it took and made is a real host tensor (an optimizer's step counters, data still on the
    # host): torch's CPU kernel runs it on the user's node too, whatever the NPU has
    host: bool = False


@dataclass
class TraceResult:
    events: List[OpEvent] = field(default_factory=list)
    # (op, input dtypes) -> "file:line in function" of the first forward call with those dtypes
    sites: Dict[Tuple[str, Tuple[str, ...]], str] = field(default_factory=dict)
    error: str = ""  # set when the trace stopped early: which op and why
    # data-dependent op -> "file:line in function" where its value was first assumed (trace.DATA_DEPENDENT)
    assumed: Dict[str, str] = field(default_factory=dict)
    device: str = "meta"
    dtype: str = "float32"
    autocast: bool = False
    backward: bool = True
