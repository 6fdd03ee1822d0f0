"""What precision a script's traced step ran in (the report header says it: ``script_header.py``).

The model-file form traces in the ``--dtype`` it was given; a script picks its own (``model.half()``,
``torch_dtype=torch.bfloat16``, ``torch.autocast("cuda")``, Trainer's ``--bf16``), so the header says what the
trace saw instead: the recorded op calls counted by the dtypes of their outputs (a call with outputs of two
dtypes counts once for each), and the CUDA autocast dtypes the ops ran under (``fake_autocast.py``).
"""

from collections import Counter
from typing import Any, Dict, Set

import torch
from torch.utils._pytree import tree_flatten

from ..dispatch import dtype_name
from .fake_autocast import cuda_autocast_dtype


class TracedPrecision:
    """Fed every recorded op's output by the step tracer (``step_trace.GatedOpTrace``)."""

    def __init__(self) -> None:
        self.outputs: Counter = Counter()
        self.autocast: Set[str] = set()

    def seen(self, out: Any) -> None:
        flat, _ = tree_flatten(out)
        for dtype in {t.dtype for t in flat if isinstance(t, torch.Tensor)}:
            self.outputs[dtype_name(dtype)] += 1
        lower = cuda_autocast_dtype()
        if lower is not None:
            self.autocast.add(dtype_name(lower))

    def facts(self) -> Dict[str, Any]:
        """The payload's ``output_dtypes`` (most calls first) and ``autocast_regions`` ("cuda bfloat16")."""
        return {
            "output_dtypes": dict(self.outputs.most_common()),
            "autocast_regions": [f"cuda {d}" for d in sorted(self.autocast)],
        }
