"""Scaled dot-product attention for Hugging Face models, with tiers.

``attention(q, k, v, attention_mask=None, dropout_p=0.0, scale=None, is_causal=False, sliding_window=None,
softcap=None)`` takes HF's layout: q ``[B, Hq, S, D]``, k/v ``[B, Hkv, S_kv, D]`` (GQA: ``Hq % Hkv == 0``)
and returns ``[B, Hq, S, D]``. Semantics, the same in every tier:

- ``scale`` defaults to ``1/sqrt(D)``.
- ``attention_mask``: ``None``, a bool mask (True = attend, PyTorch's convention) or an additive float
  mask (0 = attend, a large negative such as ``finfo.min`` = masked), broadcastable to ``[B, Hq, S, S_kv]``.
- ``is_causal`` applies only when ``attention_mask`` is None (a given mask already holds the causal
  pattern, as HF's do), **bottom-right aligned** as HF's masks are: query ``i`` sits at position
  ``S_kv - S + i`` and sees keys ``j <= S_kv - S + i`` (decode, S = 1, sees every key). A caller that
  relies on torch SDPA's top-left ``is_causal`` (HF's static-cache prefill shortcut, empty slots at the
  end of K/V) must pass a mask or slice K/V to S.
- ``sliding_window`` = w: HF's window (``masking_utils.sliding_window_overlay``: ``kv_idx > q_idx - w``),
  i.e. the query and the w - 1 keys before it; without causality, also at most w - 1 keys after it (as
  HF's flash path, ``window_size=(w-1, w-1)``). It is applied on top of any mask.
- ``softcap``: ``tanh(scores / softcap) * softcap`` before the mask (Gemma 2).
- ``dropout_p`` is applied as given (HF passes 0.0 outside training).

Tiers:

- ``reference``: the math of HF's ``eager_attention_forward`` (llama; gemma2 with softcap), the same ops in
  the same dtypes: ``matmul(q, repeat_kv(k)^T) * scale``, softcap, ``+ mask`` (a bool mask becomes
  0/``finfo(dtype).min`` as HF's ``eager_mask`` makes it), softmax in fp32, cast, dropout, ``@ v``.
  Fully masked rows (left padding) give the mean of V, as in HF eager (never NaN).
- ``cuda``: ``torch.nn.functional.scaled_dot_product_attention`` (flash / memory-efficient there):
  ``is_causal=True`` when S == S_kv and no mask, an explicit bottom-right mask when S != S_kv,
  ``enable_gqa`` on torch >= 2.5 without a mask, else K/V expanded. Softcap: the reference runs.
- ``npu``: ``torch_npu.npu_fusion_attention``, mapped from the doc (fused_op_docs/torch_npu-npu_fusion_attention.md):
    * layout ``"BSND"``: HF builds q/k/v as ``view(B, S, H, D).transpose(1, 2)``, so ``x.transpose(1, 2)``
      is already contiguous BSND (no copy), and the op's BSND output transposed back is the
      ``[B, Hq, S, D]`` view whose ``transpose(1, 2)`` HF's attention wrapper wants (no copy either way).
    * ``head_num = Hq``; K/V keep their Hkv heads ("Nq/Nkv must be a non-zero integer": GQA, no expand).
    * ``scale`` passed explicitly (the op's default is 1.0); ``keep_prob = 1 - dropout_p``.
    * ``atten_mask`` True = masked **out**: a bool keep-mask is inverted; an additive float mask becomes
      ``mask < -1e3`` (HF's ``finfo.min`` / ``-inf`` / old ``-1e4`` masks; a key at <= -1e3 below the
      rest has weight exp(-1e3) = 0 anyway). Finite biases above that (ALiBi-style) are not representable
      in the op's bool mask: they are dropped, so do not route such masks here (the self-check catches it
      on its first call). The mask is expanded to the documented BNSS/B1SS/11SS shapes, sparse_mode 0.
    * causal, no mask, S > 1: ``sparse_mode=3`` (rightDownCausal, "以右下顶点划分的下三角": bottom-right,
      which is HF's alignment when S != S_kv; for S == S_kv modes 2 and 3 agree) with the compressed
      ``triu(ones(2048, 2048, bool), 1)`` mask. Causal with S == 1: no mask (every key), sparse_mode 0.
    * sliding window, no mask: ``sparse_mode=4`` (band, "参数起点为右下角", bottom-right) with the
      compressed mask, ``pre_tockens = w - 1`` and ``next_tockens = 0`` (causal) or ``w - 1``.
    * the attention output is element ``[0]`` of the 7-tuple ("第1个输出 ... attention_out").
    * not claimed, the reference runs instead (documented, never raised mid-training): ``softcap``
      (the op has none), ``dropout_p >= 1``, Hq > 256, D > 768, dtypes other than fp16/bf16/fp32, K/V
      shapes that differ. ``inner_precise`` stays 0: fully masked rows (left padding) are the op's
      business (the doc warns of "precision loss"; they are padding and carry no loss).
"""

import functools
from typing import Any, Dict, List, Optional, Tuple, overload

import torch
import torch.nn.functional as F

from ascend_tools import backend
from ascend_tools.ops import registry
from ascend_tools.ops.autocast import autocast_inputs, autocast_off

OP = "attention"
COMPRESSED_MASK_SIZE = 2048  # sparse_mode 2/3/4: "优化后的压缩下三角矩阵（2048*2048）"
SPARSE_DEFAULT, SPARSE_ALL, SPARSE_LEFT_UP_CAUSAL, SPARSE_RIGHT_DOWN_CAUSAL, SPARSE_BAND = 0, 1, 2, 3, 4
NPU_MAX_TOKENS = 2147483647  # pre_tockens / next_tockens default
NPU_MAX_HEADS = 256  # "Nq取值范围1~256"
NPU_MAX_HEAD_DIM = 768  # "D ... 取值范围1~768"
NPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
NPU_LAYOUT = "BSND"
FLOAT_MASK_MASKED_BELOW = -1e3  # additive-mask values below this are "masked out" for the npu tier


# ----------------------------------------------------------------------------------------------- masks
def _validate(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != 4:
            raise ValueError(f"attention: {name} must be 4-D [B, H, S, D], got shape {tuple(t.shape)}")
    if k.shape[:3] != v.shape[:3] or q.shape[0] != k.shape[0] or q.shape[-1] != k.shape[-1]:
        raise ValueError(
            f"attention: shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)} do not fit"
        )
    if k.shape[1] == 0 or q.shape[1] % k.shape[1]:
        raise ValueError(
            f"attention: query heads {q.shape[1]} not a multiple of key/value heads {k.shape[1]}"
        )


@overload
def structural_keep(
    q_len: int, kv_len: int, is_causal: bool, sliding_window: int, device: torch.device
) -> torch.Tensor: ...
@overload
def structural_keep(
    q_len: int, kv_len: int, is_causal: bool, sliding_window: Optional[int], device: torch.device
) -> Optional[torch.Tensor]: ...
def structural_keep(
    q_len: int, kv_len: int, is_causal: bool, sliding_window: Optional[int], device: torch.device
) -> Optional[torch.Tensor]:
    """Bool ``[q_len, kv_len]`` (True = attend) for causality and/or a sliding window, bottom-right
    aligned (query i at position kv_len - q_len + i); None when nothing is masked."""
    if not is_causal and sliding_window is None:
        return None
    q_pos = torch.arange(kv_len - q_len, kv_len, device=device)[:, None]
    kv_pos = torch.arange(kv_len, device=device)[None, :]
    keep = torch.ones(q_len, kv_len, dtype=torch.bool, device=device)
    if is_causal:
        keep &= kv_pos <= q_pos
    if sliding_window is not None:
        keep &= kv_pos > q_pos - sliding_window
        if not is_causal:
            keep &= kv_pos < q_pos + sliding_window
    return keep


def _window_bites(q_len: int, kv_len: int, is_causal: bool, sliding_window: Optional[int]) -> bool:
    if sliding_window is None:
        return False
    # bottom-right: query i sits at p = kv_len - q_len + i; the farthest key behind the last query is
    # kv_len - 1 back, the farthest ahead of the first query (non-causal) q_len - 1 ahead
    back = kv_len - 1
    ahead = 0 if is_causal else q_len - 1
    return back >= sliding_window or ahead >= sliding_window


@overload
def keep_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    attention_mask: torch.Tensor,
    is_causal: bool,
    sliding_window: Optional[int],
) -> torch.Tensor: ...
@overload
def keep_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    is_causal: bool,
    sliding_window: Optional[int],
) -> Optional[torch.Tensor]: ...
def keep_mask(
    q: torch.Tensor,
    k: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    is_causal: bool,
    sliding_window: Optional[int],
) -> Optional[torch.Tensor]:
    """The combined bool keep-mask (True = attend) broadcastable to [B, Hq, S, S_kv], or None. A float
    mask counts as kept where it is >= -1e3 (see the module doc)."""
    q_len, kv_len = q.shape[2], k.shape[2]
    window = sliding_window if _window_bites(q_len, kv_len, is_causal, sliding_window) else None
    if attention_mask is None:
        return structural_keep(q_len, kv_len, is_causal, window, q.device)
    keep = attention_mask if attention_mask.dtype == torch.bool else attention_mask >= FLOAT_MASK_MASKED_BELOW
    if window is not None:
        keep = keep & structural_keep(q_len, kv_len, False, window, q.device)
    return keep


def _repeat_kv(x: torch.Tensor, groups: int) -> torch.Tensor:
    """HF's ``repeat_kv`` (expand + reshape == ``repeat_interleave(groups, dim=1)``)."""
    if groups == 1:
        return x
    b, h, s, d = x.shape
    return x[:, :, None, :, :].expand(b, h, groups, s, d).reshape(b, h * groups, s, d)


# ------------------------------------------------------------------------------------------- reference
def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    is_causal: bool = False,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
) -> torch.Tensor:
    """HF ``eager_attention_forward`` math, output ``[B, Hq, S, D]`` (not transposed)."""
    _validate(q, k, v)
    groups = q.shape[1] // k.shape[1]
    if scale is None:
        scale = q.shape[-1] ** -0.5
    key_states, value_states = _repeat_kv(k, groups), _repeat_kv(v, groups)
    scores = torch.matmul(q, key_states.transpose(2, 3)) * scale
    if softcap is not None:
        scores = scores / softcap
        scores = torch.tanh(scores)
        scores = scores * softcap
    q_len, kv_len = q.shape[2], k.shape[2]
    window = sliding_window if _window_bites(q_len, kv_len, is_causal, sliding_window) else None
    if attention_mask is not None and attention_mask.dtype != torch.bool:
        additive = attention_mask
        if window is not None:
            window_keep = structural_keep(q_len, kv_len, False, window, q.device)
            additive = additive.masked_fill(~window_keep, torch.finfo(additive.dtype).min)
    else:
        keep = keep_mask(q, k, attention_mask, is_causal, window)
        additive = None
        if keep is not None:  # HF eager_mask: where(keep, 0, finfo(dtype).min) in the model dtype
            zero = torch.tensor(0.0, dtype=q.dtype, device=q.device)
            additive = torch.where(keep, zero, torch.finfo(q.dtype).min)
    if additive is not None:
        scores = scores + additive
    # HF upcasts the softmax to fp32; float64 (the ground truth) stays float64
    probs = F.softmax(scores, dim=-1, dtype=torch.float64 if q.dtype == torch.float64 else torch.float32)
    probs = probs.to(q.dtype)
    if dropout_p > 0.0:
        probs = F.dropout(probs, p=dropout_p, training=True)
    return torch.matmul(probs, value_states)


# ------------------------------------------------------------------------------------ cuda (torch SDPA)
def _torch_at_least(major: int, minor: int) -> bool:
    try:
        parts = torch.__version__.split("+")[0].split(".")
        return (int(parts[0]), int(parts[1])) >= (major, minor)
    except (ValueError, IndexError):
        return False


SDPA_HAS_GQA = _torch_at_least(2, 5)


def attention_sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    is_causal: bool = False,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
) -> torch.Tensor:
    """torch SDPA with our (bottom-right) semantics; softcap runs the reference."""
    if softcap is not None:
        return attention_reference(
            q, k, v, attention_mask, dropout_p, scale, is_causal, sliding_window, softcap
        )
    _validate(q, k, v)
    q_len, kv_len = q.shape[2], k.shape[2]
    groups = q.shape[1] // k.shape[1]
    window = sliding_window if _window_bites(q_len, kv_len, is_causal, sliding_window) else None
    mask: Optional[torch.Tensor] = None
    causal = False
    if attention_mask is None and window is None:
        if is_causal and q_len > 1:
            if q_len == kv_len:
                causal = True  # top-left == bottom-right
            else:
                mask = structural_keep(q_len, kv_len, True, None, q.device)
    elif attention_mask is not None and attention_mask.dtype != torch.bool:
        mask = attention_mask
        if window is not None:
            window_keep = structural_keep(q_len, kv_len, False, window, q.device)
            mask = mask.masked_fill(~window_keep, torch.finfo(mask.dtype).min)
    else:
        mask = keep_mask(q, k, attention_mask, is_causal, window)
    kwargs: Dict[str, Any] = {}
    if groups > 1:
        if mask is None and SDPA_HAS_GQA:
            kwargs["enable_gqa"] = True
        else:
            k, v = _repeat_kv(k, groups), _repeat_kv(v, groups)
    return F.scaled_dot_product_attention(
        q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal, scale=scale, **kwargs
    )


SDPA_DEVICES = ("cuda", "cpu")  # fused SDPA kernels (flash / memory-efficient on CUDA, flash on CPU)


def _sdpa_available(device: torch.device) -> bool:
    return torch.device(device).type in SDPA_DEVICES


def _sdpa_unavailable_reason(device: Any) -> Optional[str]:
    return None if _sdpa_available(device) else "the torch SDPA tier serves CUDA and CPU tensors"


# ------------------------------------------------------------------------------------------------- npu
@functools.lru_cache(maxsize=8)
def compressed_causal_mask(device: torch.device) -> torch.Tensor:
    """The doc's compressed mask for sparse_mode 2/3/4: ``triu(ones(2048, 2048, bool), diagonal=1)``."""
    ones = torch.ones(COMPRESSED_MASK_SIZE, COMPRESSED_MASK_SIZE, dtype=torch.bool, device=device)
    return torch.triu(ones, diagonal=1)


def npu_arguments(
    q: torch.Tensor,
    k: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    dropout_p: float,
    scale: Optional[float],
    is_causal: bool,
    sliding_window: Optional[int],
) -> Dict[str, Any]:
    """Keyword arguments of ``npu_fusion_attention`` besides query/key/value (see the module doc)."""
    b, hq, q_len, d = q.shape
    kv_len = k.shape[2]
    window = sliding_window if _window_bites(q_len, kv_len, is_causal, sliding_window) else None
    kwargs: Dict[str, Any] = {
        "head_num": hq,
        "input_layout": NPU_LAYOUT,
        "scale": float(d**-0.5 if scale is None else scale),
        "keep_prob": 1.0 - float(dropout_p),
    }
    if attention_mask is None:
        if window is not None:
            kwargs.update(
                sparse_mode=SPARSE_BAND,
                atten_mask=compressed_causal_mask(q.device),
                pre_tockens=window - 1,
                next_tockens=0 if is_causal else window - 1,
            )
        elif is_causal and q_len > 1:
            kwargs.update(sparse_mode=SPARSE_RIGHT_DOWN_CAUSAL, atten_mask=compressed_causal_mask(q.device))
        return kwargs
    keep = keep_mask(q, k, attention_mask, False, window)
    while keep.dim() < 4:
        keep = keep.unsqueeze(0)
    mb, mh = keep.shape[0], keep.shape[1]
    shape = (b if mb != 1 else 1, hq if mh != 1 else 1, q_len, kv_len)  # BNSS / B1SS / 11SS
    kwargs.update(sparse_mode=SPARSE_DEFAULT, atten_mask=(~keep).expand(shape).contiguous())
    return kwargs


def _npu_fits(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float, softcap: Optional[float]
) -> bool:
    return (
        softcap is None
        and 0.0 <= dropout_p < 1.0
        and q.dtype in NPU_DTYPES
        and q.dtype == k.dtype == v.dtype
        and k.shape == v.shape
        and q.shape[1] <= NPU_MAX_HEADS
        and q.shape[-1] <= NPU_MAX_HEAD_DIM
    )


def attention_npu(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    is_causal: bool = False,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
) -> torch.Tensor:
    """``torch_npu.npu_fusion_attention`` in BSND; the reference for what the op does not take."""
    _validate(q, k, v)
    torch_npu = backend.torch_npu_status()[0]
    if torch_npu is None or not _npu_fits(q, k, v, dropout_p, softcap):
        return attention_reference(
            q, k, v, attention_mask, dropout_p, scale, is_causal, sliding_window, softcap
        )
    kwargs = npu_arguments(q, k, attention_mask, dropout_p, scale, is_causal, sliding_window)

    def bsnd(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).contiguous()  # a no-op for HF's view(B, S, H, D).transpose(1, 2)

    out = torch_npu.npu_fusion_attention(bsnd(q), bsnd(k), bsnd(v), **kwargs)[0]
    return out.transpose(1, 2)


def _npu_unavailable_reason(device: Any) -> Optional[str]:
    return backend.npu_op_unavailable(device, "npu_fusion_attention")


def _npu_available(device: torch.device) -> bool:
    return _npu_unavailable_reason(device) is None


# --------------------------------------------------------------------------------------- tier plumbing
def unmask_empty_rows(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` with every row that keeps no key (a left-padded sequence's pad queries) keeping all keys.

    Such a row has no defined output, only conventions: HF eager gives the mean of V, torch SDPA (>= 2.5)
    zeros, the NPU op its own. The unpatched model's pad rows are whatever its implementation gives, and
    a self-check that compared them would refuse a correct tier over a convention (it refused SDPA on every
    left-padded batch: the patched model then ran the eager-math reference where the unpatched one runs
    SDPA, and 4.x Mixtral's top-2 routing amplified their last-bit differences to 0.3% of the loss in 20
    steps). Unmasked, those rows are ordinary attention, which every tier must compute alike."""
    if mask.dtype == torch.bool:
        return mask | ~mask.any(dim=-1, keepdim=True)
    return mask.masked_fill((mask < FLOAT_MASK_MASKED_BELOW).all(dim=-1, keepdim=True), 0.0)


def check_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    is_causal: bool = False,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
) -> Tuple[tuple, dict]:
    """A small slice for the self-check: batch 1, at most 2 key/value heads (and their query heads), the
    last 16 queries against all keys (bottom-right alignment keeps every query's position), no dropout;
    rows that keep no key attend to every key (see :func:`unmask_empty_rows`)."""
    groups = q.shape[1] // max(1, k.shape[1])
    hkv = min(k.shape[1], 2)
    hq = hkv * groups
    sq = min(q.shape[2], 16)
    mask = attention_mask
    if mask is not None and mask.dim() == 4:
        mask = mask[:1, : hq if mask.shape[1] > 1 else 1, -sq if mask.shape[2] > 1 else 0 :, :]
    kwargs = {
        "attention_mask": None if mask is None else unmask_empty_rows(mask),
        "dropout_p": 0.0,
        "scale": scale,
        "is_causal": is_causal,
        "sliding_window": sliding_window,
        "softcap": softcap,
    }
    return (q[:1, :hq, -sq:], k[:1, :hkv], v[:1, :hkv]), kwargs


def tolerance(dtype: torch.dtype) -> Tuple[float, float]:
    """(rtol, atol) against the fp64 reference (errors relative to 1 + |ref|). A wrong scale or an
    un-inverted mask is off by O(1), far above these."""
    if dtype == torch.bfloat16:
        return 2e-2, 2e-2
    if dtype == torch.float16:
        return 5e-3, 5e-3
    return 1e-3, 1e-3


def _register() -> None:
    registry.register(
        registry.Tier(
            OP, "reference", forward=attention_reference, check_inputs=check_inputs, tolerance=tolerance
        )
    )
    registry.register(
        registry.Tier(
            OP,
            "npu",
            forward=attention_npu,
            available=_npu_available,
            unavailable_reason=_npu_unavailable_reason,
            check_inputs=check_inputs,
            tolerance=tolerance,
        )
    )
    # torch SDPA: PyTorch's fused kernels on CUDA (flash there) and on the CPU
    registry.register(
        registry.Tier(
            OP,
            "sdpa",
            forward=attention_sdpa,
            available=_sdpa_available,
            unavailable_reason=_sdpa_unavailable_reason,
            check_inputs=check_inputs,
            tolerance=tolerance,
        )
    )


_register()


# ----------------------------------------------------------------------------------------------- API
def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attention_mask: Optional[torch.Tensor] = None,
    dropout_p: float = 0.0,
    scale: Optional[float] = None,
    is_causal: bool = False,
    sliding_window: Optional[int] = None,
    softcap: Optional[float] = None,
) -> torch.Tensor:
    """Attention in HF's layout through the best tier: q [B, Hq, S, D], k/v [B, Hkv, S_kv, D] ->
    [B, Hq, S, D]. See the module doc for the semantics of each argument. Under ``torch.autocast`` the
    inputs (a float mask too) are cast to the autocast dtype as autocast casts ``scaled_dot_product_attention``'s
    (HF's RoPE leaves q and k in float32 beside a bf16 v there), and the tiers run in it."""
    _validate(q, k, v)
    device_type = q.device.type
    q, k, v, attention_mask = autocast_inputs(device_type, q, k, v, attention_mask)
    with autocast_off(device_type):
        return registry.call(
            OP,
            q,
            k,
            v,
            attention_mask=attention_mask,
            dropout_p=dropout_p,
            scale=scale,
            is_causal=is_causal,
            sliding_window=sliding_window,
            softcap=softcap,
        )


def golden_cases() -> List[Tuple[str, Dict[str, Any]]]:
    """Inputs for the golden vectors, fp64: (name, kwargs of the tiers' forward). The expected output is
    ``attention_reference(**kwargs)`` in fp64."""
    gen = torch.Generator().manual_seed(4321)

    def qkv(b: int, hq: int, hkv: int, s: int, skv: int, d: int) -> Dict[str, torch.Tensor]:
        return {
            "q": torch.randn(b, hq, s, d, generator=gen, dtype=torch.float64),
            "k": torch.randn(b, hkv, skv, d, generator=gen, dtype=torch.float64),
            "v": torch.randn(b, hkv, skv, d, generator=gen, dtype=torch.float64),
        }

    # bool masks only (a float mask would be a float input with a gradient only the reference has), and
    # no fully masked row (what a fused kernel returns there is its own business)
    pad_right = torch.ones(2, 1, 6, 6, dtype=torch.bool).tril()
    pad_right[1, :, :, 4:] = False
    pad_right[1, :, 4:, :] = True  # padded queries see everything; their outputs are ignored anyway
    pad_left = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    pad_left[1, :, :, :2] = False  # bidirectional (encoder-style) left padding
    return [
        ("causal_no_mask", {**qkv(2, 4, 4, 6, 6, 64), "is_causal": True}),
        ("gqa_8to1_causal_d128", {**qkv(1, 8, 1, 5, 5, 128), "is_causal": True}),
        ("decode_seq1", {**qkv(2, 4, 2, 1, 9, 64), "is_causal": True}),
        ("causal_s_ne_skv", {**qkv(1, 4, 2, 3, 8, 80), "is_causal": True}),
        ("right_padding_bool", {**qkv(2, 4, 2, 6, 6, 64), "attention_mask": pad_right}),
        ("left_padding_bool", {**qkv(2, 4, 2, 6, 6, 64), "attention_mask": pad_left}),
        ("sliding_window_3", {**qkv(1, 4, 2, 8, 8, 64), "is_causal": True, "sliding_window": 3}),
        ("softcap_50", {**qkv(1, 4, 2, 6, 6, 64), "is_causal": True, "softcap": 50.0}),
    ]
