"""What CUDA autocast does to each op: the table the fake node's autocast (``fake_autocast.py``) follows.

Taken from PyTorch's own source, torch 2.13: the ``AT_FORALL_LOWER_PRECISION_FP``, ``AT_FORALL_FP32``,
``AT_FORALL_FP32_SET_OPT_DTYPE``, ``AT_FORALL_DIFFERENT_REDISPATCH_SIGNATURE`` and ``AT_FORALL_PROMOTE`` lists
of ``aten/src/ATen/autocast_mode.h``, which ``TORCH_LIBRARY_IMPL(aten, Autocast, m)`` in
``aten/src/ATen/autocast_mode.cpp`` registers for CUDA, plus that block's own entries (``cudnn_convolution``,
``cudnn_convolution_transpose``; ``binary_cross_entropy`` banned). Overloads are not told apart: every listed
overload of an op has the op's policy. Documented at https://pytorch.org/docs/stable/amp.html ("CUDA Ops that
can autocast to float16", "... to float32", "... that promote to the widest input type").
"""

import enum
from typing import Dict, Optional


class Policy(enum.Enum):
    LOWER = "lower_precision_fp"  # floating inputs cast to the autocast dtype (float16/bfloat16)
    FP32 = "fp32"  # float16/bfloat16 inputs cast to float32
    FP32_DTYPE = (
        "fp32_set_opt_dtype"  # run with dtype=float32 unless a dtype is given (also fp32_append_dtype)
    )
    PROMOTE = "promote"  # floating inputs cast to the widest of them
    BANNED = "banned"  # raises under autocast


_LOWER = """_convolution conv1d conv2d conv3d conv_tbc conv_transpose1d conv_transpose2d conv_transpose3d
convolution prelu addmm addmv addr matmul einsum mm mv linalg_vecdot linear addbmm baddbmm bmm chain_matmul
linalg_multi_dot _thnn_fused_lstm_cell _thnn_fused_gru_cell lstm_cell gru_cell rnn_tanh_cell rnn_relu_cell
_scaled_dot_product_flash_attention scaled_dot_product_attention cudnn_convolution cudnn_convolution_transpose"""
_FP32 = """acos asin cosh erfinv exp expm1 log log10 log2 log1p reciprocal rsqrt sinh tan pow softplus layer_norm
native_layer_norm rms_norm group_norm frobenius_norm nuclear_norm cosine_similarity poisson_nll_loss
cosine_embedding_loss nll_loss nll_loss2d hinge_embedding_loss kl_div l1_loss smooth_l1_loss huber_loss mse_loss
margin_ranking_loss multilabel_margin_loss soft_margin_loss triplet_margin_loss multi_margin_loss
binary_cross_entropy_with_logits dist pdist cdist renorm logsumexp upsample_nearest1d _upsample_nearest_exact1d
upsample_nearest2d _upsample_nearest_exact2d upsample_nearest3d _upsample_nearest_exact3d upsample_linear1d
upsample_bilinear2d _upsample_bilinear2d_aa upsample_trilinear3d upsample_bicubic2d _upsample_bicubic2d_aa"""
_FP32_DTYPE = "prod softmax log_softmax cumprod cumsum linalg_vector_norm linalg_matrix_norm sum norm"
_PROMOTE = "addcdiv addcmul atan2 bilinear cross dot vdot grid_sampler index_put tensordot scatter_add"

#: aten op name -> CUDA autocast policy
CUDA_AUTOCAST: Dict[str, Policy] = {
    **{op: Policy.LOWER for op in _LOWER.split()},
    **{op: Policy.FP32 for op in _FP32.split()},
    **{op: Policy.FP32_DTYPE for op in _FP32_DTYPE.split()},
    **{op: Policy.PROMOTE for op in _PROMOTE.split()},
    "binary_cross_entropy": Policy.BANNED,
}

#: Python-level names the fake autocast sees (a TorchFunctionMode sees the outermost Python call) for ops
#: whose aten name differs, or which are composites of listed ops
PYTHON_NAMES: Dict[str, str] = {
    "__matmul__": "matmul",
    "__rmatmul__": "matmul",
    "__rpow__": "pow",
    # cross_entropy_loss is not listed: it runs log_softmax (fp32_set_opt_dtype) and nll_loss (fp32)
    "cross_entropy": "nll_loss",
    # F.interpolate runs one of the upsample_* ops, all fp32
    "interpolate": "upsample_bilinear2d",
}


def policy_of(name: str) -> Optional[Policy]:
    """The policy of a Python-level op name (``linear``, ``__matmul__``, ``softmax``), None if unlisted."""
    return CUDA_AUTOCAST.get(PYTHON_NAMES.get(name, name))
