"""Double of ``torch_npu.npu_rms_norm`` from ``torch_npu-npu_rms_norm.md``.

Documented: ``npu_rms_norm(self, gamma, epsilon=1e-06) -> (Tensor, Tensor)``: ``RmsNorm(x) = x / Rms(x) * g``
with ``Rms(x) = sqrt(mean(x**2) + eps)`` over the dims covered by ``gamma``
(``gamma_shape == self_shape[n:]``, n < self.dim()); ``self`` has 2-8 dims (the doc's example passes a
1-d gamma); element 0 is the output (dtype and shape of ``self``), element 1 is ``rstd`` = 1/Rms(x),
float32, with the leading (non-normalised) dims of ``self`` (here kept as size-1 dims, as torch_npu's
meta function does). Supported (self, gamma) dtype pairs on Atlas A2/A3: fp16/fp32, bf16/fp32,
fp16/fp16, bf16/bf16, fp32/fp32; anything else raises. The doc gives no internal precision; the double
computes in fp32 and rounds the output once (what CANN's fp32 internal computation gives). Autograd
flows through the PyTorch ops, standing in for torch_npu's registered backward.
"""

from typing import Tuple

import torch

SUPPORTED_DTYPES = {
    (torch.float16, torch.float32),
    (torch.bfloat16, torch.float32),
    (torch.float16, torch.float16),
    (torch.bfloat16, torch.bfloat16),
    (torch.float32, torch.float32),
}

calls = []  # (self shape, self dtype, gamma shape, gamma dtype, epsilon) of every call, for tests


def npu_rms_norm(
    self: torch.Tensor, gamma: torch.Tensor, epsilon: float = 1e-6
) -> Tuple[torch.Tensor, torch.Tensor]:
    if not 2 <= self.dim() <= 8:
        raise RuntimeError(f"npu_rms_norm: self must have 2-8 dims, got {self.dim()}")
    if not 1 <= gamma.dim() < self.dim() or tuple(gamma.shape) != tuple(
        self.shape[self.dim() - gamma.dim() :]
    ):
        raise RuntimeError(
            f"npu_rms_norm: gamma shape {tuple(gamma.shape)} is not a trailing part of "
            f"self shape {tuple(self.shape)}"
        )
    if (self.dtype, gamma.dtype) not in SUPPORTED_DTYPES:
        raise RuntimeError(f"npu_rms_norm: unsupported dtypes self={self.dtype}, gamma={gamma.dtype}")
    if not isinstance(epsilon, float):
        raise TypeError(f"npu_rms_norm: epsilon is a double, got {type(epsilon).__name__}")
    calls.append((tuple(self.shape), self.dtype, tuple(gamma.shape), gamma.dtype, epsilon))
    dims = tuple(range(self.dim() - gamma.dim(), self.dim()))
    xf = self.float()
    rstd = torch.rsqrt(xf.pow(2).mean(dim=dims, keepdim=True) + epsilon)
    y = (xf * rstd * gamma.float()).to(self.dtype)
    return y, rstd
