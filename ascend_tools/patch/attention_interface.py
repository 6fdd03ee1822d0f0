"""The ``"ascend_fused"`` attention for Hugging Face models: the function, its registration with
``AttentionInterface`` **and** ``AttentionMaskInterface``, and the default-implementation hook.

Why both interfaces: since transformers 4.53 the masks are built in ``masking_utils``;
``_preprocess_mask_arguments`` returns early, with no mask at all, for any ``config._attn_implementation``
absent from ``ALL_MASK_ATTENTION_FUNCTIONS._global_mapping`` ("for TGI/vLLM backends ... we don't need a
mask"). An attention registered only with ``AttentionInterface`` then gets ``attention_mask=None`` and
padding is silently ignored. We register, under our name, the very function registered for ``"sdpa"``
(``sdpa_mask``: boolean, True = attend, padding / sliding window / packing included, ``None`` when plain
causal is exact), so our function receives exactly what sdpa would. Before 4.53 (4.48-4.52) the models
build the mask themselves (``_update_causal_mask``): for an implementation that is neither sdpa nor flash
it is the 4D additive float mask (0 = attend, dtype-min = masked), which the op takes as it is.

Version differences handled here:
- ``AttentionInterface`` (a class with ``register``) exists from 4.50; 4.48/4.49 have the plain dict
  ``modeling_utils.ALL_ATTENTION_FUNCTIONS``.
- ``AttentionMaskInterface`` exists from 4.53.
- The default implementation is resolved by ``PreTrainedModel.get_correct_attn_implementation`` from
  4.56 (and in 5.x), by the classmethod ``PreTrainedModel._autoset_attn_implementation`` before.
"""

import importlib
import logging
import threading
import weakref
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

log = logging.getLogger("ascend_tools")

ATTN_NAME = "ascend_fused"
_MARK = "_ascend_tools_patch"

_LOCK = threading.RLock()
_STATE: Dict[str, Any] = {}  # registered, mask_function, default
_ORIGINAL_RESOLVER: Dict[str, Any] = {}  # attribute name on PreTrainedModel -> original
_DEFAULTED: List[Tuple["weakref.ref[Any]", Any]] = []  # configs we defaulted to ours, with HF's own choice


def family_kwargs(cls: type) -> Optional[Tuple[Optional[str], Optional[str], Optional[str]]]:
    """(sliding_window, softcap, scaling) attribute paths of the attention module's family (hf.py sets it)."""
    return None


def wants_default(cls: type) -> bool:
    """Does a model of this class default to ours when the user chose nothing? (hf.py sets it)."""
    return False


def _mark(fn: Callable[..., Any], op: str, family: str) -> Callable[..., Any]:
    setattr(fn, _MARK, (op, family))
    return fn


def _is_ours(obj: Any) -> bool:
    return getattr(getattr(obj, "__func__", obj), _MARK, None) is not None


def _attr(obj: Any, path: Optional[str]) -> Any:
    for part in (path or "").split(".") if path else []:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if path else None


def _op() -> Callable[..., Any]:
    return importlib.import_module("ascend_tools.ops.attention").attention


def ascend_fused_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: Optional[float] = None,
    is_causal: Optional[bool] = None,
    **kwargs: Any,
) -> Tuple[Any, None]:
    """HF's attention-interface signature: ``query/key/value`` in [B, H, S, D], K/V with the KV heads
    (GQA is not expanded here) → ``(output [B, S, H, D], None)``, like ``sdpa_attention_forward``."""
    fallback = family_kwargs(type(module)) or (None, None, None)
    sliding_window = kwargs["sliding_window"] if "sliding_window" in kwargs else _attr(module, fallback[0])
    softcap = kwargs["softcap"] if "softcap" in kwargs else _attr(module, fallback[1])
    if scaling is None:
        scaling = _attr(module, fallback[2])
    q_len, kv_len = query.shape[2], key.shape[2]
    mask = attention_mask
    if mask is not None:
        if mask.dim() == 4 and mask.shape[-1] != kv_len:  # 4.x: the 4D mask may be longer than the keys
            mask = mask[:, :, :, :kv_len]
        if mask.dtype != torch.bool and not mask.dtype.is_floating_point:
            mask = mask.bool()
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = bool(causal) and mask is None and q_len > 1  # as sdpa: decode (q_len 1) is not causal
    if causal and kv_len > q_len:  # as sdpa: a static cache's unused tail on prefill
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    if mask is not None:
        # The mask is the truth where there is one: HF's mask functions already hold the window wherever it
        # bites (sdpa_mask skips the mask only when kv_length < window). Applying the kwarg on top would
        # differ from the unpatched model where HF's mask has no window although the kwarg is passed
        # (4.48 qwen2: "Sliding Window Attention is enabled but not implemented for sdpa/eager").
        sliding_window = None
    out = _op()(
        query,
        key,
        value,
        attention_mask=mask,
        dropout_p=dropout,
        scale=scaling,
        is_causal=causal,
        sliding_window=sliding_window,
        softcap=softcap,
    )
    return out.transpose(1, 2).contiguous(), None


_mark(ascend_fused_attention, "attention", "*")


def interfaces() -> Tuple[Any, Any]:
    """(AttentionInterface class, or the 4.48/4.49 dict; AttentionMaskInterface class or None)."""
    from transformers import modeling_utils

    attn = getattr(modeling_utils, "AttentionInterface", None)
    if attn is None:
        attn = modeling_utils.ALL_ATTENTION_FUNCTIONS
    try:
        from transformers.masking_utils import AttentionMaskInterface
    except ImportError:
        return attn, None
    return attn, AttentionMaskInterface


def register() -> None:
    """Register ``"ascend_fused"`` with both interfaces (idempotent)."""
    with _LOCK:
        if _STATE.get("registered"):
            return
        attn, masks = interfaces()
        if isinstance(attn, dict):
            attn[ATTN_NAME] = ascend_fused_attention
        else:
            attn.register(ATTN_NAME, ascend_fused_attention)
        if masks is not None:
            sdpa_mask = masks._global_mapping["sdpa"]
            masks.register(ATTN_NAME, sdpa_mask)
            _STATE["mask_function"] = getattr(sdpa_mask, "__name__", "sdpa_mask")
        else:
            _STATE["mask_function"] = "4D additive mask built by the modeling code"
        _STATE["registered"] = True


def unregister() -> None:
    with _LOCK:
        if not _STATE.get("registered"):
            return
        attn, masks = interfaces()
        (attn if isinstance(attn, dict) else attn._global_mapping).pop(ATTN_NAME, None)
        if masks is not None:
            masks._global_mapping.pop(ATTN_NAME, None)
        _STATE.clear()


def registered() -> Dict[str, Any]:
    """Asked of transformers itself, not of our bookkeeping."""
    try:
        attn, masks = interfaces()
    except ImportError:
        return {"attention_interface": False, "mask_interface": False, "mask_function": None}
    mapping = attn if isinstance(attn, dict) else attn._global_mapping
    return {
        "attention_interface": mapping.get(ATTN_NAME) is ascend_fused_attention,
        "mask_interface": masks is not None and ATTN_NAME in masks._global_mapping,
        "mask_function": _STATE.get("mask_function"),
    }


# --------------------------------------------------------------------------------------------------
# the default implementation for models built without an explicit ``attn_implementation``


def install_default() -> None:
    """Models whose class ``wants_default`` and whose user chose no ``attn_implementation`` get ours.

    - transformers >= 4.56 and 5.x: ``PreTrainedModel.__init__`` sets
      ``config._attn_implementation_internal = self._check_and_adjust_attn_implementation(
      self.config._attn_implementation, is_init_check=True)``, which ends in
      ``get_correct_attn_implementation(requested_attention, is_init_check)`` whose first line is
      ``applicable_attention = "sdpa" if requested_attention is None else requested_attention``:
      ``None`` is exactly "the user chose nothing". We wrap that method.
    - 4.48-4.55: the classmethod ``_autoset_attn_implementation(config, ...)`` reads
      ``config._attn_implementation_internal`` (``None`` = not chosen) and falls back to sdpa/eager;
      we wrap it and replace that fallback.
    An explicit ``attn_implementation=...`` (from_pretrained / from_config / the config) never takes
    our branch."""
    from transformers.modeling_utils import PreTrainedModel

    with _LOCK:
        if "get_correct_attn_implementation" in PreTrainedModel.__dict__:
            name = "get_correct_attn_implementation"
            original = PreTrainedModel.__dict__[name]
            if _is_ours(original):
                return

            def get_correct_attn_implementation(
                self: Any, requested_attention: Any = None, *args: Any, **kwargs: Any
            ) -> Any:
                hf_choice = original(self, requested_attention, *args, **kwargs)
                if requested_attention is None and _STATE.get("registered") and wants_default(type(self)):
                    _remember(self.config, hf_choice)
                    return ATTN_NAME
                return hf_choice

            replacement: Any = _mark(get_correct_attn_implementation, "attention", "*")
        elif "_autoset_attn_implementation" in PreTrainedModel.__dict__:
            name = "_autoset_attn_implementation"
            original = PreTrainedModel.__dict__[name]
            if _is_ours(original):
                return
            func = original.__func__

            def _autoset_attn_implementation(cls: Any, config: Any, *args: Any, **kwargs: Any) -> Any:
                chosen = getattr(config, "_attn_implementation_internal", None)
                config = func(cls, config, *args, **kwargs)
                if chosen is None and _STATE.get("registered") and wants_default(cls):
                    _remember(config, config._attn_implementation)
                    config._attn_implementation = ATTN_NAME
                return config

            replacement = classmethod(_mark(_autoset_attn_implementation, "attention", "*"))
        else:
            raise AttributeError(
                "transformers.PreTrainedModel has neither get_correct_attn_implementation "
                "nor _autoset_attn_implementation"
            )
        _ORIGINAL_RESOLVER[name] = original
        setattr(PreTrainedModel, name, replacement)


def uninstall_default() -> None:
    """Restore HF's resolver, and HF's own choice on every config we defaulted that still has ours."""
    with _LOCK:
        if _ORIGINAL_RESOLVER:
            from transformers.modeling_utils import PreTrainedModel

            for name, original in _ORIGINAL_RESOLVER.items():
                setattr(PreTrainedModel, name, original)
            _ORIGINAL_RESOLVER.clear()
        for ref, hf_choice in _DEFAULTED:
            config = ref()
            if config is not None and getattr(config, "_attn_implementation", None) == ATTN_NAME:
                config._attn_implementation = hf_choice
        _DEFAULTED.clear()


def default_installed() -> bool:
    try:
        from transformers.modeling_utils import PreTrainedModel
    except ImportError:
        return False
    return any(
        _is_ours(PreTrainedModel.__dict__.get(n))
        for n in ("get_correct_attn_implementation", "_autoset_attn_implementation")
    )


def _remember(config: Any, hf_choice: Any) -> None:
    try:
        _DEFAULTED.append((weakref.ref(config), hf_choice))
    except TypeError:
        return
    if len(_DEFAULTED) > 512:
        _DEFAULTED[:] = [(r, c) for r, c in _DEFAULTED if r() is not None]


def set_model(model: Any, name: Optional[str]) -> None:
    """Switch a built model's attention: ``set_attn_implementation`` where it exists (>= 4.56; it also
    validates the name and updates sub-models), else the config attribute the modeling code reads."""
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation(name)
    else:
        model.config._attn_implementation = name
