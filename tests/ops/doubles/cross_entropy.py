"""Double of ``torch_npu.npu_cross_entropy_loss`` and its backward, from torch_npu's API page (Ascend
PyTorch 7.0.0 ``ptaoplist_000867``: the fused ``log_softmax`` + ``nll_loss``) and the schemas in
``../shared/data/torch_npu/op_plugin_functions.yaml`` / ``derivatives.yaml``.

Documented: ``input`` (N, C) float16/float32/bfloat16, C > 0, N in (0, 200000]; ``target`` (N,) int64 in
``[0, C)``; ``reduction`` in mean/sum/none; ``ignore_index`` must be < C, and < 0 means nothing is ignored;
``label_smoothing`` in [0, 1); z-loss not supported (``lse_square_scale_for_zloss`` 0, ``return_zloss``
False). Outputs ``(loss, log_prob, zloss, lse_for_zloss)``: ``loss`` in the input dtype, shape (N,) for
``none``, else (1,); ``log_prob`` (N, C) in the input dtype; the z-loss outputs empty. The backward
(``npu_cross_entropy_loss_backward(grad_loss, log_prob, target, ...)``, registered as the derivative of
the forward) returns the input gradient in ``grad_loss``'s dtype. Anything the doc calls invalid raises.
The double computes in fp32 and rounds once.
"""

from typing import Optional, Tuple

import torch

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
MAX_ROWS = 200_000
calls = []  # (op, shape, dtype, reduction, label_smoothing) of every call, for tests


def _check(
    input: torch.Tensor, target: torch.Tensor, reduction: str, ignore_index: int, smoothing: float
) -> None:
    if input.dtype not in DTYPES or input.dim() != 2 or input.shape[1] == 0:
        raise RuntimeError(f"npu_cross_entropy_loss: input {tuple(input.shape)} {input.dtype} not supported")
    if not 0 < input.shape[0] <= MAX_ROWS:
        raise RuntimeError(f"npu_cross_entropy_loss: N={input.shape[0]} outside (0, {MAX_ROWS}]")
    if target.dtype != torch.int64 or target.shape != input.shape[:1]:
        raise RuntimeError("npu_cross_entropy_loss: target must be int64 of shape (N,)")
    if reduction not in ("mean", "sum", "none") or ignore_index >= input.shape[1] or not 0 <= smoothing < 1:
        raise RuntimeError("npu_cross_entropy_loss: reduction, ignore_index or label_smoothing out of range")
    counted = target[_kept(target, ignore_index)]
    if bool(((counted < 0) | (counted >= input.shape[1])).any()):
        raise RuntimeError("npu_cross_entropy_loss: target outside [0, C)")


def _kept(target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    return target != ignore_index if ignore_index >= 0 else torch.ones_like(target, dtype=torch.bool)


def npu_cross_entropy_loss(
    input: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    lse_square_scale_for_zloss: float = 0.0,
    return_zloss: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    _check(input, target, reduction, ignore_index, label_smoothing)
    if weight is not None or lse_square_scale_for_zloss or return_zloss:
        raise RuntimeError("npu_cross_entropy_loss: class weights and z-loss are not covered by this double")
    calls.append(("forward", tuple(input.shape), input.dtype, reduction, label_smoothing))
    log_prob = torch.log_softmax(input.float(), dim=-1)
    kept = _kept(target, ignore_index)
    nll = -log_prob.gather(1, target.clamp(0, input.shape[1] - 1).unsqueeze(1)).squeeze(1)
    loss = (1 - label_smoothing) * nll - label_smoothing * log_prob.mean(-1)
    loss = torch.where(kept, loss, torch.zeros_like(loss))
    if reduction == "sum":
        loss = loss.sum().reshape(1)
    elif reduction == "mean":
        loss = (loss.sum() / kept.sum()).reshape(1)
    empty = input.new_empty(0)
    return loss.to(input.dtype), log_prob.to(input.dtype), empty, empty


def npu_cross_entropy_loss_backward(
    grad_loss: torch.Tensor,
    log_prob: torch.Tensor,
    target: torch.Tensor,
    weight: Optional[torch.Tensor] = None,
    grad_zloss: Optional[torch.Tensor] = None,
    lse_for_zloss: Optional[torch.Tensor] = None,
    reduction: str = "mean",
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    lse_square_scale_for_zloss: float = 0.0,
) -> torch.Tensor:
    _check(log_prob, target, reduction, ignore_index, label_smoothing)
    if (
        weight is not None
        or grad_zloss is not None
        or lse_for_zloss is not None
        or lse_square_scale_for_zloss
    ):
        raise RuntimeError("npu_cross_entropy_loss_backward: class weights and z-loss are not covered")
    calls.append(("backward", tuple(log_prob.shape), log_prob.dtype, reduction, label_smoothing))
    n, c = log_prob.shape
    kept = _kept(target, ignore_index)
    onehot = torch.nn.functional.one_hot(target.clamp(0, c - 1), c).float()
    dz = log_prob.float().exp() - (1 - label_smoothing) * onehot - label_smoothing / c
    g = grad_loss.float().reshape(-1)
    if reduction == "mean":
        g = g / kept.sum()
    per_row = g if reduction == "none" else g.expand(n)
    dz = dz * torch.where(kept, per_row, torch.zeros_like(per_row)).unsqueeze(1)
    return dz.to(grad_loss.dtype)
