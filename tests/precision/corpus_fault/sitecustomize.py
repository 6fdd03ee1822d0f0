"""A faulty CPU kernel under an unmodified public training script (tests/precision/test_precision_corpus.py).

On the command's ``PYTHONPATH`` this is the user's own ``sitecustomize`` (``ascend-doctor`` runs it before
starting its tool). It registers a CPU kernel for ``aten::$FAULT_OP`` (``mm``, ``addmm`` or ``convolution``) below
every dispatch mode, as a device kernel is: every call computes the product in float64 and rounds it to its dtype,
except call ``$FAULT_CALL`` (counted from 0 in the process, among the calls of a non-float64 dtype in
``$FAULT_PHASE``: ``forward`` = outside autograd's backward, grad mode on or off; ``backward``), whose output has
10% of its elements scaled by ``1 + $FAULT_SCALE``, and a file ``fault-fired`` is written in the working directory
(the test's check that the known answer exists). The float64 replays of ``compare`` and ``shadow`` get the correct kernel.
Without ``FAULT_OP`` nothing is registered.
"""

import os
from typing import List, Optional

OP = os.environ.get("FAULT_OP")

if OP:
    import torch

    CALL = int(os.environ["FAULT_CALL"])
    PHASE = os.environ.get("FAULT_PHASE", "forward")
    SCALE = float(os.environ.get("FAULT_SCALE", "0.03"))
    _seen = [0]

    def _product(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
        # bmm: mm itself is the kernel being replaced
        return torch.ops.aten.bmm.default(a.double().unsqueeze(0), b.double().unsqueeze(0)).squeeze(0)

    def _faulted(out: "torch.Tensor", dtype: "torch.dtype") -> "torch.Tensor":
        if dtype == torch.float64:
            return out
        now = "backward" if torch._C._current_graph_task_id() != -1 else "forward"
        if now != PHASE:
            return out
        _seen[0] += 1
        if _seen[0] - 1 != CALL:
            return out
        with open("fault-fired", "a") as f:
            f.write(f"{OP} {PHASE} {CALL}\n")
        mask = torch.rand(out.shape, generator=torch.Generator().manual_seed(0)) < 0.1
        return torch.where(mask, out * (1 + SCALE), out)

    def _mm(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
        return _faulted(_product(a, b), a.dtype).to(a.dtype)

    def _addmm(
        s: "torch.Tensor", a: "torch.Tensor", b: "torch.Tensor", beta: float = 1, alpha: float = 1
    ) -> "torch.Tensor":
        return _faulted(beta * s.double() + alpha * _product(a, b), a.dtype).to(a.dtype)

    def _convolution(
        x: "torch.Tensor",
        w: "torch.Tensor",
        bias: "Optional[torch.Tensor]",
        stride: "List[int]",
        padding: "List[int]",
        dilation: "List[int]",
        transposed: bool,
        output_padding: "List[int]",
        groups: int,
    ) -> "torch.Tensor":
        # _convolution: convolution itself is the kernel being replaced
        out = torch.ops.aten._convolution.default(
            x.double(),
            w.double(),
            None if bias is None else bias.double(),
            stride,
            padding,
            dilation,
            transposed,
            output_padding,
            groups,
            False,
            True,
            False,
            False,
        )
        return _faulted(out, x.dtype).to(x.dtype)

    _LIB = torch.library.Library("aten", "IMPL")
    _LIB.impl(OP, {"mm": _mm, "addmm": _addmm, "convolution": _convolution}[OP], "CPU")
