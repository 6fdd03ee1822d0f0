"""Double of ``torch_npu.npu_fusion_attention`` from ``torch_npu-npu_fusion_attention.md``.

Documented: ``attention_out = Dropout(Softmax(Mask(scale * (pse + query @ key^T), atten_mask)), keep_prob) @ value``;
returns 7 values ``(attention_out, softmax_max, softmax_sum, softmax_out (reserved), seed, offset, numels)``
-- the output is element 0. Modelled and checked (anything the doc calls invalid raises):

- query/key/value: fp16/bf16/fp32, one dtype; ``input_layout`` in BSH, SBH, BSND, BNSD, TND (TND needs
  ``actual_seq_qlen``/``actual_seq_kvlen``; varlen itself is not modelled); key and value the same shape;
  same B; Dq == Dk, 1..768; ``head_num`` = query's N (BSH/SBH: H = head_num * D); Nq % Nkv == 0 (GQA),
  Nq 1..256.
- ``scale`` defaults to **1.0**; ``keep_prob`` in (0, 1], default 1.
- ``padding_mask``: "暂不支持该传参" -> raises. ``pse``, ``prefix``, ``sink``, ``dropout_mask``: not modelled.
- ``atten_mask``: bool/uint8, **1 = masked out**; sparse_mode 0/1: shapes BNSS, B1SS, 11SS, SS
  (N = Nq); sparse_mode 2/3/4: must be the compressed ``triu(ones(2048, 2048), 1)`` (the doc: wrong
  masks give wrong results; the double refuses them). ``atten_mask=None``: "sparse_mode, pre_tockens,
  next_tockens 不生效，固定为全计算" -- full attention whatever sparse_mode says.
- sparse_mode 0: the mask, plus the band ``-pre_tockens <= j - i <= next_tockens`` (the doc's example:
  ``triu(k=next+1) | tril(k=-pre-1)``), top-left origin; negative tockens need the documented
  counterpart (next < 0: pre >= |next|, |next| < Skv; pre < 0: next >= |pre|, |pre| < Sq).
  1: the mask only. 2 leftUpCausal: masked ``j > i``. 3 rightDownCausal: masked ``j > i + Skv - Sq``.
  4 band, bottom-right origin: kept ``-pre <= j - (i + Skv - Sq) <= next``, pre + next >= 0 (the band
  must be non-empty). Modes 5-8 are not modelled.

Fully masked rows: the doc only warns of "precision loss"; the double returns 0 there (with finite
gradients). It computes in fp32 and rounds the output once. ``softmax_max``/``softmax_sum`` are
[B, N, Sq, 8] fp32 as on the device. Autograd flows through the PyTorch ops, standing in for torch_npu's
registered backward; dropout uses torch's generator (seeded by ``seed`` when non-zero).
"""

from typing import Any, Optional, Tuple

import torch

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
LAYOUTS = ("BSH", "SBH", "BSND", "BNSD", "TND")
MAX_TOKENS = 2147483647

calls = []  # the keyword arguments of every call (tensors replaced by (shape, dtype)), for tests


def _describe(v: Any) -> Any:
    return (tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else v


def _to_bnsd(x: torch.Tensor, layout: str, head_num: Optional[int], name: str) -> torch.Tensor:
    if layout == "BNSD":
        return x
    if layout == "BSND":
        return x.transpose(1, 2)
    if layout in ("BSH", "SBH"):
        b_s_h = x if layout == "BSH" else x.transpose(0, 1)
        b, s, h = b_s_h.shape
        if head_num is None or h % head_num:
            raise RuntimeError(f"npu_fusion_attention: {name} hidden {h} not divisible by head dim")
        return b_s_h.reshape(b, s, head_num, h // head_num).transpose(1, 2)
    raise AssertionError(layout)


def npu_fusion_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    head_num: int,
    input_layout: str,
    pse: Optional[torch.Tensor] = None,
    padding_mask: Optional[torch.Tensor] = None,
    atten_mask: Optional[torch.Tensor] = None,
    scale: float = 1.0,
    keep_prob: float = 1.0,
    pre_tockens: int = MAX_TOKENS,
    next_tockens: int = MAX_TOKENS,
    inner_precise: int = 0,
    prefix: Any = None,
    actual_seq_qlen: Any = None,
    actual_seq_kvlen: Any = None,
    sparse_mode: int = 0,
    gen_mask_parallel: bool = True,
    sync: bool = False,
    softmax_layout: str = "",
    sink: Optional[torch.Tensor] = None,
    dropout_mask: Optional[torch.Tensor] = None,
    seed: int = 0,
    offset: int = 0,
) -> Tuple[Any, ...]:
    calls.append(
        {
            k: _describe(v)
            for k, v in dict(
                query=query,
                key=key,
                value=value,
                head_num=head_num,
                input_layout=input_layout,
                atten_mask=atten_mask,
                scale=scale,
                keep_prob=keep_prob,
                pre_tockens=pre_tockens,
                next_tockens=next_tockens,
                sparse_mode=sparse_mode,
                inner_precise=inner_precise,
            ).items()
        }
    )
    # --- argument rules ---------------------------------------------------------------------------------------
    if input_layout not in LAYOUTS:
        raise RuntimeError(
            f"npu_fusion_attention: input_layout must be one of {LAYOUTS}, got {input_layout!r}"
        )
    if input_layout == "TND":
        if actual_seq_qlen is None or actual_seq_kvlen is None:
            raise RuntimeError(
                "npu_fusion_attention: TND (varlen) needs actual_seq_qlen and actual_seq_kvlen"
            )
        raise NotImplementedError("npu_fusion_attention double: varlen (TND) is not modelled")
    if padding_mask is not None:
        raise RuntimeError("npu_fusion_attention: padding_mask is not supported (暂不支持该传参)")
    for name, v in (("pse", pse), ("prefix", prefix), ("sink", sink), ("dropout_mask", dropout_mask)):
        if v is not None:
            raise NotImplementedError(f"npu_fusion_attention double: {name} is not modelled")
    if not (query.dtype == key.dtype == value.dtype) or query.dtype not in DTYPES:
        raise RuntimeError(
            f"npu_fusion_attention: query/key/value dtypes {query.dtype}/{key.dtype}/{value.dtype}"
            " must be one of fp16/bf16/fp32 and equal"
        )
    expected_dim = 3 if input_layout in ("BSH", "SBH") else 4
    for name, t in (("query", query), ("key", key), ("value", value)):
        if t.dim() != expected_dim:
            raise RuntimeError(
                f"npu_fusion_attention: {name} must be {expected_dim}-D for {input_layout}, "
                f"got {tuple(t.shape)}"
            )
    if key.shape != value.shape:
        raise RuntimeError(
            f"npu_fusion_attention: key {tuple(key.shape)} and value {tuple(value.shape)} differ"
        )
    if not isinstance(head_num, int) or head_num < 1:
        raise RuntimeError(f"npu_fusion_attention: head_num must be a positive int, got {head_num!r}")
    if not isinstance(scale, float):
        raise TypeError(f"npu_fusion_attention: scale is a float, got {type(scale).__name__}")
    if not 0.0 < keep_prob <= 1.0:
        raise RuntimeError(f"npu_fusion_attention: keep_prob must be in (0, 1], got {keep_prob}")
    if sparse_mode not in range(9):
        raise RuntimeError(f"npu_fusion_attention: sparse_mode must be 0..8, got {sparse_mode}")
    if sparse_mode >= 5:
        raise NotImplementedError(f"npu_fusion_attention double: sparse_mode {sparse_mode} is not modelled")

    q = _to_bnsd(query, input_layout, head_num, "query")
    d = q.shape[-1]
    kv_heads = None if input_layout not in ("BSH", "SBH") else key.shape[-1] // d
    if kv_heads is not None and key.shape[-1] % d:
        raise RuntimeError("npu_fusion_attention: key hidden size is not a multiple of the head dim")
    k = _to_bnsd(key, input_layout, kv_heads, "key")
    v = _to_bnsd(value, input_layout, kv_heads, "value")
    b, nq, sq, _ = q.shape
    nkv, skv = k.shape[1], k.shape[2]
    if nq != head_num:
        raise RuntimeError(f"npu_fusion_attention: head_num {head_num} != query heads {nq}")
    if k.shape[0] != b:
        raise RuntimeError(f"npu_fusion_attention: batch sizes differ: query {b}, key {k.shape[0]}")
    if k.shape[-1] != d or not 1 <= d <= 768:
        raise RuntimeError(f"npu_fusion_attention: head dims q {d}, k {k.shape[-1]} must be equal and 1..768")
    if not 1 <= nq <= 256 or nkv < 1 or nq % nkv:
        raise RuntimeError(f"npu_fusion_attention: Nq {nq} must be 1..256 and a multiple of Nkv {nkv}")

    # --- mask ------------------------------------------------------------------------------------------------
    i = torch.arange(sq)[:, None]
    j = torch.arange(skv)[None, :]
    masked = torch.zeros(1, 1, sq, skv, dtype=torch.bool)
    if atten_mask is not None:
        if atten_mask.dtype not in (torch.bool, torch.uint8):
            raise RuntimeError(
                f"npu_fusion_attention: atten_mask dtype must be bool or uint8, got {atten_mask.dtype}"
            )
        m = atten_mask.bool().cpu()
        if sparse_mode in (2, 3, 4):
            compressed = torch.triu(torch.ones(2048, 2048, dtype=torch.bool), diagonal=1)
            if m.shape != (2048, 2048) or not torch.equal(m, compressed):
                raise RuntimeError(
                    f"npu_fusion_attention: sparse_mode {sparse_mode} needs the compressed "
                    "2048x2048 triu(ones, 1) atten_mask"
                )
        else:
            allowed = [(b, nq, sq, skv), (b, 1, sq, skv), (1, 1, sq, skv), (sq, skv)]
            if tuple(m.shape) not in allowed:
                raise RuntimeError(
                    f"npu_fusion_attention: atten_mask shape {tuple(m.shape)} is not one of "
                    f"BNSS/B1SS/11SS/SS {allowed}"
                )
            masked = m.reshape((1, 1, *m.shape)) if m.dim() == 2 else m
        if sparse_mode == 0:
            if next_tockens < 0 and (pre_tockens < -next_tockens or -next_tockens >= skv):
                raise RuntimeError(
                    "npu_fusion_attention: next_tockens < 0 needs pre_tockens >= |next_tockens| "
                    "and |next_tockens| < Skv"
                )
            if pre_tockens < 0 and (next_tockens < -pre_tockens or -pre_tockens >= sq):
                raise RuntimeError(
                    "npu_fusion_attention: pre_tockens < 0 needs next_tockens >= |pre_tockens| "
                    "and |pre_tockens| < Sq"
                )
            masked = masked | (j - i > next_tockens) | (i - j > pre_tockens)
        elif sparse_mode == 2:
            masked = j > i
        elif sparse_mode == 3:
            masked = j > i + (skv - sq)
        elif sparse_mode == 4:
            if pre_tockens + next_tockens < 0:
                raise RuntimeError(
                    "npu_fusion_attention: sparse_mode 4 needs pre_tockens and next_tockens to "
                    "overlap (pre_tockens + next_tockens >= 0)"
                )
            diag = j - (i + (skv - sq))
            masked = (diag > next_tockens) | (diag < -pre_tockens)
        masked = masked.expand(b, nq, sq, skv) if masked.dim() == 2 else masked
    masked = masked.to(q.device)

    # --- compute (fp32) --------------------------------------------------------------------------------------
    groups = nq // nkv
    kf = k.float().repeat_interleave(groups, dim=1)
    vf = v.float().repeat_interleave(groups, dim=1)
    scores = torch.matmul(q.float(), kf.transpose(-1, -2)) * scale
    scores = scores.masked_fill(masked, torch.finfo(torch.float32).min)
    row_max = scores.amax(dim=-1, keepdim=True)
    probs = torch.softmax(scores, dim=-1)
    row_valid = (~masked).any(dim=-1, keepdim=True)
    probs = probs * row_valid  # fully masked rows -> 0
    row_sum = torch.exp(scores - row_max).sum(dim=-1, keepdim=True)
    if keep_prob < 1.0:
        gen = torch.Generator(device=probs.device)
        if seed:
            gen.manual_seed(seed)
        else:
            gen.seed()
        keep = torch.rand(probs.shape, generator=gen, device=probs.device) < keep_prob
        probs = probs * keep / keep_prob
    out = torch.matmul(probs, vf).to(query.dtype)  # [B, N, S, D]
    if input_layout == "BSND":
        out = out.transpose(1, 2)
    elif input_layout == "BSH":
        out = out.transpose(1, 2).reshape(b, sq, nq * d)
    elif input_layout == "SBH":
        out = out.permute(2, 0, 1, 3).reshape(sq, b, nq * d)
    softmax_max = row_max.detach().expand(b, nq, sq, 8).contiguous()
    softmax_sum = row_sum.detach().expand(b, nq, sq, 8).contiguous()
    reserved = torch.empty(0, dtype=query.dtype)
    return out, softmax_max, softmax_sum, reserved, seed, offset, b * nq * sq * skv
