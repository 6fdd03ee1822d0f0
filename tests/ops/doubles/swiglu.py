"""Double of ``torch_npu.npu_swiglu`` from ``torch_npu-npu_swiglu.md``.

Documented: ``swiglu(x, dim=-1) = swish(A) * B = A * sigmoid(A) * B`` with A the first and B the second
half of ``input`` along ``dim``; 1-8 dims, ``dim``'s size even, contiguous, not empty; float32/float16/
bfloat16; the output has the input's dtype. Anything the doc calls invalid raises. The double computes in
fp32 and rounds once (the doc gives the formula only); autograd through the PyTorch ops stands in for
torch_npu's registered backward.
"""

import torch

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
calls = []  # (shape, dtype, dim) of every call, for tests


def npu_swiglu(input: torch.Tensor, dim: int = -1) -> torch.Tensor:
    if input.dtype not in DTYPES:
        raise RuntimeError(f"npu_swiglu: dtype {input.dtype} not supported")
    if not 1 <= input.dim() <= 8 or input.numel() == 0 or not input.is_contiguous():
        raise RuntimeError("npu_swiglu: input must be 1-8 dims, non-empty and contiguous")
    if not -input.dim() <= dim < input.dim() or input.shape[dim] % 2:
        raise RuntimeError(f"npu_swiglu: dim {dim} out of range or of odd size")
    calls.append((tuple(input.shape), input.dtype, dim))
    a, b = input.float().chunk(2, dim=dim)
    return (a * torch.sigmoid(a) * b).to(input.dtype)
