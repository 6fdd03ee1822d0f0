"""Hugging Face model families, and the functions that patch them with the fused ops.

One row per family (:class:`Family`) says where HF keeps the pieces we replace: the modeling module
(transformers generates a standalone copy per family), the RMSNorm class name(s), the attribute that
holds eps (``variance_epsilon`` or ``eps``), the norm's offset and casting mode (llama: compute in
fp32, cast back, multiply by the weight; gemma: ``1 + weight``, everything in fp32), the RoPE function
name, and where the attention module keeps ``sliding_window`` / ``softcap`` / ``scaling`` (HF passes
them to the attention interface as keyword arguments; the row is the fallback and the documentation).
Adding a family is adding a row.

Liger-style: one function per family with the same keyword switches (``patch_llama(rms_norm=True,
rope=True, attention=True, model=None)``), and :data:`PATCH_FUNCTIONS`, a dict from ``model_type``
to that function. This file knows nothing about kernel internals: it calls the public op functions
``ascend_tools.ops.rms_norm.rms_norm``, ``ascend_tools.ops.rope.apply_rotary_pos_emb`` and
``ascend_tools.ops.attention.attention`` (which pick and self-check a tier in ``ops/registry.py``).
"""

import functools
import importlib
import logging
import os
import threading
import types
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Type

from . import attention_interface, causal_lm_loss, swiglu_mlp

if TYPE_CHECKING:
    import torch

log = logging.getLogger("ascend_tools")

OPS = ("rms_norm", "rope", "attention", "swiglu", "linear_cross_entropy")
# op -> the public function of its module in ascend_tools/ops
OP_FUNCTIONS = {
    "rms_norm": "rms_norm",
    "rope": "apply_rotary_pos_emb",
    "attention": "attention",
    "swiglu": "swiglu",
    "linear_cross_entropy": "linear_cross_entropy",
}
_MARK = attention_interface._MARK  # attribute set on every function we install: (op, family)
ATTN_NAME = attention_interface.ATTN_NAME


@dataclass(frozen=True)
class Family:
    name: str  # the row's key (a model_type)
    module: str  # the modeling module HF generates for this family
    norm_classes: Tuple[str, ...]  # RMSNorm classes (q_norm/k_norm reuse them in qwen3/gemma3)
    eps_attr: str  # "variance_epsilon" (llama casting) or "eps" (gemma casting)
    offset: float = 0.0  # gemma: y = x_hat * (offset + weight)
    casting: str = "llama"  # "llama" | "gemma": see ops/rms_norm.py
    rope_fn: Optional[str] = (
        "apply_rotary_pos_emb"  # None: the family's RoPE is not ours (partial, interleaved)
    )
    # the family's RoPE returns q and k in their own dtypes (OLMo 2: its cos and sin stay float32, so the rotation
    # is computed in float32 and cast back once)
    rope_casts_back: bool = False
    # where the attention module keeps its attention kwargs (fallback when HF does not pass them)
    sliding_window_attr: Optional[str] = None  # attribute of the attention module, or "config.<name>"
    softcap_attr: Optional[str] = None
    scaling_attr: str = "scaling"
    model_types: Tuple[str, ...] = ()  # further model_type values served by this row
    mlp_classes: Tuple[str, ...] = ()  # gate/up/down MLPs (a SwiGLU where the activation is SiLU)
    gate_up_mlp_classes: Tuple[str, ...] = ()  # MLPs with one fused gate_up_proj (Phi-3)
    # MoE experts, patched where this transformers has them: 5.x's fused 3-D experts (their _apply_gate
    # hook) and 4.x Mixtral's expert MLP (w1 gate, w3 up, w2 down)
    fused_experts_classes: Tuple[str, ...] = ()
    w123_mlp_classes: Tuple[str, ...] = ()
    causal_lm_classes: Tuple[str, ...] = ()  # XForCausalLM: the fused linear cross-entropy forward
    attention: bool = True  # False: the family's attention shape is not one the attention op takes (MLA)


FAMILIES: Dict[str, Family] = {
    f.name: f
    for f in [
        Family(
            "llama",
            "transformers.models.llama.modeling_llama",
            ("LlamaRMSNorm",),
            "variance_epsilon",
            mlp_classes=("LlamaMLP",),
            causal_lm_classes=("LlamaForCausalLM",),
        ),
        Family(
            "mistral",
            "transformers.models.mistral.modeling_mistral",
            ("MistralRMSNorm",),
            "variance_epsilon",
            sliding_window_attr="config.sliding_window",
            mlp_classes=("MistralMLP",),
            causal_lm_classes=("MistralForCausalLM",),
        ),
        Family(
            "qwen2",
            "transformers.models.qwen2.modeling_qwen2",
            ("Qwen2RMSNorm",),
            "variance_epsilon",
            sliding_window_attr="sliding_window",
            mlp_classes=("Qwen2MLP",),
            causal_lm_classes=("Qwen2ForCausalLM",),
        ),
        Family(
            "qwen3",
            "transformers.models.qwen3.modeling_qwen3",
            ("Qwen3RMSNorm",),
            "variance_epsilon",
            sliding_window_attr="sliding_window",
            mlp_classes=("Qwen3MLP",),
            causal_lm_classes=("Qwen3ForCausalLM",),
        ),
        Family(
            "gemma",
            "transformers.models.gemma.modeling_gemma",
            ("GemmaRMSNorm",),
            "eps",
            1.0,
            "gemma",
            causal_lm_classes=("GemmaForCausalLM",),
        ),
        Family(
            "gemma2",
            "transformers.models.gemma2.modeling_gemma2",
            ("Gemma2RMSNorm",),
            "eps",
            1.0,
            "gemma",
            sliding_window_attr="sliding_window",
            softcap_attr="attn_logit_softcapping",
            causal_lm_classes=("Gemma2ForCausalLM",),
        ),
        Family(
            "gemma3",
            "transformers.models.gemma3.modeling_gemma3",
            ("Gemma3RMSNorm",),
            "eps",
            1.0,
            "gemma",
            sliding_window_attr="sliding_window",
            softcap_attr="attn_logit_softcapping",
            model_types=("gemma3_text",),
            causal_lm_classes=("Gemma3ForCausalLM",),
        ),
        Family(
            "phi3",
            "transformers.models.phi3.modeling_phi3",
            ("Phi3RMSNorm",),
            "variance_epsilon",
            rope_fn=None,  # partial rotary (rotary_dim < head_dim): the rope op rotates whole heads
            sliding_window_attr="config.sliding_window",
            gate_up_mlp_classes=("Phi3MLP",),
            causal_lm_classes=("Phi3ForCausalLM",),
        ),
        Family(
            "mixtral",
            "transformers.models.mixtral.modeling_mixtral",
            ("MixtralRMSNorm",),
            "variance_epsilon",
            sliding_window_attr="config.sliding_window",
            fused_experts_classes=("MixtralExperts",),
            w123_mlp_classes=("MixtralBlockSparseTop2MLP",),
            causal_lm_classes=("MixtralForCausalLM",),
        ),
        Family(
            "qwen3_moe",
            "transformers.models.qwen3_moe.modeling_qwen3_moe",
            ("Qwen3MoeRMSNorm",),
            "variance_epsilon",
            sliding_window_attr="sliding_window",
            mlp_classes=("Qwen3MoeMLP",),  # 4.x: every expert is one
            fused_experts_classes=("Qwen3MoeExperts",),
            causal_lm_classes=("Qwen3MoeForCausalLM",),
        ),
        Family(
            "qwen2_moe",
            "transformers.models.qwen2_moe.modeling_qwen2_moe",
            ("Qwen2MoeRMSNorm",),
            "variance_epsilon",
            sliding_window_attr="sliding_window",
            mlp_classes=("Qwen2MoeMLP",),  # the shared expert; 4.x: every expert too
            fused_experts_classes=("Qwen2MoeExperts",),
            causal_lm_classes=("Qwen2MoeForCausalLM",),
        ),
        Family(
            "olmo2",
            "transformers.models.olmo2.modeling_olmo2",
            ("Olmo2RMSNorm",),  # also the q_norm/k_norm over all heads
            "variance_epsilon",
            casting="gemma",  # (weight * x_hat) in fp32, then cast: gemma's order with no offset
            rope_casts_back=True,
            mlp_classes=("Olmo2MLP",),
            causal_lm_classes=("Olmo2ForCausalLM",),
        ),
        Family(
            "granite",
            "transformers.models.granite.modeling_granite",
            ("GraniteRMSNorm",),
            "variance_epsilon",
            mlp_classes=("GraniteMLP",),
            causal_lm_classes=("GraniteForCausalLM",),  # its logits divided by config.logits_scaling
        ),
        Family(
            "smollm3",
            "transformers.models.smollm3.modeling_smollm3",
            ("SmolLM3RMSNorm",),
            "variance_epsilon",
            sliding_window_attr="sliding_window",
            mlp_classes=("SmolLM3MLP",),
            causal_lm_classes=("SmolLM3ForCausalLM",),
        ),
        Family(
            "glm4",
            "transformers.models.glm4.modeling_glm4",
            ("Glm4RMSNorm",),
            "variance_epsilon",
            rope_fn=None,  # partial rotary (the first half of each head)
            gate_up_mlp_classes=("Glm4MLP",),
            causal_lm_classes=("Glm4ForCausalLM",),
        ),
        Family(
            "ministral",
            "transformers.models.ministral.modeling_ministral",
            ("MinistralRMSNorm",),
            "variance_epsilon",
            sliding_window_attr="sliding_window",
            mlp_classes=("MinistralMLP",),
            causal_lm_classes=("MinistralForCausalLM",),
        ),
        Family(
            "seed_oss",
            "transformers.models.seed_oss.modeling_seed_oss",
            ("SeedOssRMSNorm",),
            "variance_epsilon",
            # no MLP row: SeedOssMLP applies a residual dropout after down_proj, which the SwiGLU forward has not
            causal_lm_classes=("SeedOssForCausalLM",),
        ),
        Family(
            "helium",
            "transformers.models.helium.modeling_helium",
            ("HeliumRMSNorm",),
            "variance_epsilon",
            casting="gemma",  # (weight.float() * x_hat), then cast: gemma's order with no offset
            rope_fn=None,  # interleaved RoPE
            mlp_classes=("HeliumMLP",),
            causal_lm_classes=("HeliumForCausalLM",),
        ),
        Family(
            "ernie4_5",
            "transformers.models.ernie4_5.modeling_ernie4_5",
            ("Ernie4_5RMSNorm",),
            "variance_epsilon",
            rope_fn=None,  # interleaved RoPE, computed in float32
            mlp_classes=("Ernie4_5MLP",),
            causal_lm_classes=("Ernie4_5ForCausalLM",),
        ),
        Family(
            "hunyuan_v1_dense",
            "transformers.models.hunyuan_v1_dense.modeling_hunyuan_v1_dense",
            ("HunYuanDenseV1RMSNorm",),  # also its query/key layernorms (after the RoPE)
            "variance_epsilon",
            mlp_classes=("HunYuanDenseV1MLP",),
            causal_lm_classes=("HunYuanDenseV1ForCausalLM",),
        ),
        Family(
            "hunyuan_v1_moe",
            "transformers.models.hunyuan_v1_moe.modeling_hunyuan_v1_moe",
            ("HunYuanMoEV1RMSNorm",),  # also its query/key layernorms (after the RoPE)
            "variance_epsilon",
            mlp_classes=("HunYuanMoEV1MLP",),  # the shared MLP; 4.x: every expert too
            fused_experts_classes=("HunYuanMoEV1Experts",),
            causal_lm_classes=("HunYuanMoEV1ForCausalLM",),
        ),
        Family(
            "dots1",
            "transformers.models.dots1.modeling_dots1",
            ("Dots1RMSNorm",),  # also q_norm/k_norm per head
            "variance_epsilon",
            sliding_window_attr="sliding_window",  # None on its full-attention layers
            mlp_classes=("Dots1MLP",),  # dense layers and the shared experts
            fused_experts_classes=("Dots1Experts",),
            causal_lm_classes=("Dots1ForCausalLM",),
        ),
        Family(
            "exaone4",
            "transformers.models.exaone4.modeling_exaone4",
            ("Exaone4RMSNorm",),  # also q_norm/k_norm per head
            "variance_epsilon",
            # (HF passes each layer's window, None for its global ones, whose RoPE it skips: NoPE)
            mlp_classes=("Exaone4MLP",),
            causal_lm_classes=("Exaone4ForCausalLM",),
        ),
        Family(
            "olmo3",
            "transformers.models.olmo3.modeling_olmo3",
            ("Olmo3RMSNorm",),  # also the q_norm/k_norm over all heads
            "variance_epsilon",
            casting="gemma",  # (weight * x_hat) in fp32, then cast, as OLMo 2
            rope_casts_back=True,  # float32 cos/sin, q and k cast back, as OLMo 2
            sliding_window_attr="sliding_window",  # None on its full-attention layers
            mlp_classes=("Olmo3MLP",),
            causal_lm_classes=("Olmo3ForCausalLM",),
        ),
        Family(
            "arcee",
            "transformers.models.arcee.modeling_arcee",
            ("ArceeRMSNorm",),
            "variance_epsilon",
            # no MLP row: ArceeMLP is up_proj, ReLU², down_proj (no gate: not a SwiGLU)
            causal_lm_classes=("ArceeForCausalLM",),
        ),
        Family(
            "apertus",
            "transformers.models.apertus.modeling_apertus",
            ("ApertusRMSNorm",),  # also q_norm/k_norm per head
            "variance_epsilon",
            # no MLP row: ApertusMLP is up_proj, xIELU, down_proj (no gate: not a SwiGLU)
            causal_lm_classes=("ApertusForCausalLM",),
        ),
        Family(
            "deepseek_v3",
            "transformers.models.deepseek_v3.modeling_deepseek_v3",
            ("DeepseekV3RMSNorm",),
            "variance_epsilon",
            rope_fn=None,  # interleaved RoPE where config.rope_interleave; MLA's rope part only
            mlp_classes=("DeepseekV3MLP",),  # 4.x: every expert is one
            fused_experts_classes=("DeepseekV3Experts",),
            causal_lm_classes=("DeepseekV3ForCausalLM",),
            attention=False,  # MLA: query/key head dim differs from the value's
        ),
    ]
}


# --------------------------------------------------------------------------------------------------
# state: what we replaced (to revert it) and what we touched (to report it)

_LOCK = threading.RLock()
_ORIGINALS: Dict[Tuple[str, str], Any] = {}  # (module, "Class.forward" or function name) -> original
_ERRORS: Dict[str, str] = {}  # family or "op:<op>" -> why it was left as is
_MODELS: "weakref.WeakSet[Any]" = weakref.WeakSet()  # models patched by apply()
_DEFAULT_MODULES: Set[str] = set()  # modeling modules whose models default to ATTN_NAME
_LOGGED: Set[str] = set()


def _log_once(key: str, level: int, msg: str, *args: Any) -> None:
    if key not in _LOGGED:
        _LOGGED.add(key)
        log.log(level, msg, *args)


def ops_from_env() -> Tuple[str, ...]:
    """``ASCEND_TOOLS_PATCH_OPS=rms_norm,rope`` → the ops to patch (default: all three)."""
    raw = os.environ.get("ASCEND_TOOLS_PATCH_OPS", "").strip()
    if not raw:
        return OPS
    chosen = [p.strip().lower() for p in raw.split(",") if p.strip()]
    unknown = [op for op in chosen if op not in OPS]
    if unknown:
        _log_once(
            "ops-env",
            logging.WARNING,
            "ascend_tools.patch: ASCEND_TOOLS_PATCH_OPS names unknown op(s) %s (known: %s)",
            ",".join(unknown),
            ",".join(OPS),
        )
    return tuple(op for op in OPS if op in chosen)


def is_ours(obj: Any) -> bool:
    return getattr(getattr(obj, "__func__", obj), _MARK, None) is not None


def _mark(fn: Callable[..., Any], op: str, family: str) -> Callable[..., Any]:
    setattr(fn, _MARK, (op, family))
    return fn


# --------------------------------------------------------------------------------------------------
# the replacements: thin maps from HF's calling conventions onto the op functions


def _op(module: str, name: str) -> Callable[..., Any]:
    return getattr(importlib.import_module("ascend_tools.ops." + module), name)


def make_norm_forward(family: Family) -> Callable[..., Any]:
    rms_norm = _op("rms_norm", "rms_norm")
    eps_attr, offset, casting = family.eps_attr, family.offset, family.casting

    def forward(self: Any, hidden_states: Any) -> Any:
        return rms_norm(
            hidden_states, self.weight, eps=getattr(self, eps_attr), offset=offset, casting=casting
        )

    return _mark(forward, "rms_norm", family.name)


def make_rope(family: Family) -> Callable[..., Any]:
    rope = _op("rope", "apply_rotary_pos_emb")

    # HF 4.x: (q, k, cos, sin, position_ids=None, unsqueeze_dim=1); 5.x: (q, k, cos, sin, unsqueeze_dim=1).
    # Every HF caller passes four positionals, and unsqueeze_dim by keyword if at all.
    def apply_rotary_pos_emb(
        q: Any, k: Any, cos: Any, sin: Any, position_ids: Any = None, unsqueeze_dim: int = 1
    ) -> Any:
        q_out, k_out = rope(q, k, cos, sin, position_ids=position_ids, unsqueeze_dim=unsqueeze_dim)
        if family.rope_casts_back:
            return q_out.to(q.dtype), k_out.to(k.dtype)
        return q_out, k_out

    return _mark(apply_rotary_pos_emb, "rope", family.name)


# --------------------------------------------------------------------------------------------------
# patching one family: module level, and optionally one built model's instances


def _module(family: Family) -> Optional[types.ModuleType]:
    try:
        return importlib.import_module(family.module)
    except ImportError:  # the family is not in this transformers
        return None


def _replace(owner: Any, attr: str, key: Tuple[str, str], new: Any) -> None:
    """``owner.attr = new``, remembering the original once; a no-op if ours is already there."""
    current = owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)
    if current is None:
        raise AttributeError(f"{key[0]} has no {key[1]}")
    if not is_ours(current):
        _ORIGINALS.setdefault(key, current)
        setattr(owner, attr, new)


def _with_op(make: Callable[..., Any], op: Callable[..., Any], original: Any) -> Any:
    return make(original, op)


MakeMethod = Callable[[Callable[..., Any], Callable[..., Any]], Callable[..., Any]]  # (HF's, op) -> ours


def swiglu_targets(mod: types.ModuleType, family: Family) -> "List[Tuple[str, str, MakeMethod]]":
    """``(class name, attribute, make)`` of each SwiGLU the family computes, as this transformers spells it:
    the dense/shared MLPs (required), then the MoE experts of whichever layout this version has."""
    targets: List[Tuple[str, str, MakeMethod]] = [
        (n, "forward", swiglu_mlp.make_mlp_forward) for n in family.mlp_classes
    ]
    targets += [(n, "forward", swiglu_mlp.make_fused_mlp_forward) for n in family.gate_up_mlp_classes]
    targets += [
        (n, "forward", swiglu_mlp.make_w123_mlp_forward) for n in family.w123_mlp_classes if hasattr(mod, n)
    ]
    targets += [
        (n, "_apply_gate", swiglu_mlp.make_experts_apply_gate)
        for n in family.fused_experts_classes
        if hasattr(mod, n)
    ]
    return targets


def _replace_methods(
    mod: types.ModuleType,
    family: Family,
    targets: Sequence[Tuple[str, str, Callable[[Any], Any]]],
    op: str,
) -> None:
    """``Class.attr = make(HF's attr)`` for each ``(class name, attr, make)`` of the module, marked ours."""
    for cls_name, attr, make in targets:
        cls = getattr(mod, cls_name, None)
        if cls is None:
            raise AttributeError(f"{family.module} has no {cls_name}")
        current = cls.__dict__.get(attr)
        if current is None or is_ours(current):
            continue
        key = (family.module, cls_name + "." + attr)
        _replace(cls, attr, key, _mark(make(current), op, family.name))


def _norm_classes(mod: types.ModuleType, family: Family) -> "List[Type[torch.nn.Module]]":
    missing = [n for n in family.norm_classes if not hasattr(mod, n)]
    if missing:
        raise AttributeError(f"{family.module} has no {', '.join(missing)}")
    return [getattr(mod, n) for n in family.norm_classes]


def patch_family(
    name: str,
    rms_norm: bool = True,
    rope: bool = True,
    attention: bool = True,
    model: Any = None,
    swiglu: bool = True,
    linear_cross_entropy: bool = True,
) -> List[str]:
    """Patch family ``name`` in its modeling module: the RMSNorm class ``forward``, the RoPE function
    and, with ``attention``, ``"ascend_fused"`` registered and made the default for its models. With
    ``model``: also bind the norm forward on that model's norm instances (q_norm/k_norm included).
    Returns the ops patched (empty if this transformers lacks the family). Idempotent; raises on a
    family whose names changed (callers fail open)."""
    family = FAMILIES[name]
    with _LOCK:
        mod = _module(family)
        if mod is None:
            return []
        done: List[str] = []
        if rms_norm:
            classes = _norm_classes(mod, family)
            forward = make_norm_forward(family)
            for cls in classes:
                _replace(cls, "forward", (family.module, cls.__name__ + ".forward"), forward)
            if model is not None:
                norm_types: Tuple[Type[torch.nn.Module], ...] = tuple(classes)
                for sub in model.modules():
                    if isinstance(sub, norm_types) and not is_ours(sub.__dict__.get("forward")):
                        sub.forward = types.MethodType(forward, sub)
            done.append("rms_norm")
        if rope and family.rope_fn is not None:
            _replace(mod, family.rope_fn, (family.module, family.rope_fn), make_rope(family))
            done.append("rope")
        targets = swiglu_targets(mod, family)
        if swiglu and targets:
            op = _op("swiglu", "swiglu")
            bound = [(n, attr, functools.partial(_with_op, make, op)) for n, attr, make in targets]
            _replace_methods(mod, family, bound, "swiglu")
            done.append("swiglu")
        if linear_cross_entropy and family.causal_lm_classes:
            op = _op("linear_cross_entropy", "linear_cross_entropy")
            make = functools.partial(_with_op, causal_lm_loss.make_causal_lm_forward, op)
            bound = [(n, "forward", make) for n in family.causal_lm_classes]
            _replace_methods(mod, family, bound, "linear_cross_entropy")
            done.append("linear_cross_entropy")
        if attention and _attention_interface(family):
            _op("attention", "attention")  # the op must exist before a model may default to it
            attention_interface.register()
            _DEFAULT_MODULES.add(family.module)
            done.append("attention")
        _ERRORS.pop(family.name, None)
        return sorted(done, key=OPS.index)


def _attention_interface(family: Family) -> bool:
    """Whether the family's attention can be ours: a shape the op takes (``Family.attention``), called through
    HF's attention interface. Some modeling modules of transformers 4.x pick an attention class per
    implementation from a table instead (``QWEN2MOE_ATTENTION_CLASSES``): no ``"ascend_fused"`` there (building
    the model would fail on the key)."""
    mod = _module(family)
    return (
        family.attention and mod is not None and not any(n.endswith("_ATTENTION_CLASSES") for n in vars(mod))
    )


def _family_kwargs(cls: type) -> Optional[Tuple[Optional[str], Optional[str], Optional[str]]]:
    fam = _BY_MODULE.get(cls.__module__)
    return (fam.sliding_window_attr, fam.softcap_attr, fam.scaling_attr) if fam else None


def _wants_default(cls: type) -> bool:
    return any(k.__module__ in _DEFAULT_MODULES for k in cls.__mro__)


_BY_MODULE: Dict[str, Family] = {f.module: f for f in FAMILIES.values()}
attention_interface.family_kwargs = _family_kwargs
attention_interface.wants_default = _wants_default

# Liger-style: one function per family with the same switches, and model_type -> that function
PATCH_FUNCTIONS: Dict[str, Callable[..., List[str]]] = {}
for _family in FAMILIES.values():
    _patch = functools.partial(patch_family, _family.name)
    globals()["patch_" + _family.name] = _patch
    for _model_type in (_family.name, *_family.model_types):
        PATCH_FUNCTIONS[_model_type] = _patch


def _usable_ops(ops: Tuple[str, ...]) -> Tuple[str, ...]:
    """The ops whose op module imports; one log line per op that does not."""
    usable = []
    for op in ops:
        try:
            _op(op, OP_FUNCTIONS[op])
            usable.append(op)
        except Exception as exc:
            _ERRORS["op:" + op] = f"{type(exc).__name__}: {exc}"
            _log_once(
                "op-" + op,
                logging.WARNING,
                "ascend_tools.patch: op %s unavailable (%s: %s); HF's own is kept",
                op,
                type(exc).__name__,
                exc,
            )
    return tuple(usable)


def _family_failed(name: str, exc: BaseException) -> None:
    _ERRORS[name] = f"{type(exc).__name__}: {exc}"
    _log_once(
        "family-" + name,
        logging.WARNING,
        "ascend_tools.patch: could not patch %s (%s: %s); it is left as is",
        name,
        type(exc).__name__,
        exc,
    )


def patch_all(ops: Tuple[str, ...] = OPS) -> Dict[str, List[str]]:
    """Patch every family this transformers has (what ``import ascend_tools.patch`` does). Fails open:
    a family that raises is logged once and left as is; the others go on."""
    ops = _usable_ops(ops)
    out: Dict[str, List[str]] = {}
    for name in FAMILIES:
        try:
            done = patch_family(
                name,
                rms_norm="rms_norm" in ops,
                rope="rope" in ops,
                attention="attention" in ops,
                swiglu="swiglu" in ops,
                linear_cross_entropy="linear_cross_entropy" in ops,
            )
        except Exception as exc:
            _family_failed(name, exc)
            continue
        if done:
            out[name] = done
    if "attention" in ops and _DEFAULT_MODULES:
        try:
            attention_interface.install_default()
        except Exception as exc:
            _log_once(
                "default-attn",
                logging.WARNING,
                "ascend_tools.patch: could not make %r the default attention "
                "(%s: %s); models keep HF's default",
                ATTN_NAME,
                type(exc).__name__,
                exc,
            )
    return out


def families_in(model: Any) -> List[Family]:
    """The table rows whose modeling module defines a class used in ``model``."""
    seen: Dict[str, Family] = {}
    for sub in model.modules():
        for klass in type(sub).__mro__:
            fam = _BY_MODULE.get(klass.__module__)
            if fam is not None:
                seen.setdefault(fam.name, fam)
    return list(seen.values())


def apply(
    model: Any,
    rms_norm: bool = True,
    rope: bool = True,
    attention: bool = True,
    swiglu: bool = True,
    linear_cross_entropy: bool = True,
) -> Any:
    """Patch an already-built model in place and return it: the norm forward bound on each RMSNorm
    instance (q_norm/k_norm included), its family's RoPE function, SwiGLU MLP and fused-loss forward
    (module and class level: HF looks them up at call time, so other models of the family get them too),
    and its attention switched to ``"ascend_fused"`` (``attention=False`` keeps the model's own).
    Idempotent; fails open."""
    fams = families_in(model)
    if not fams:
        _log_once(
            "apply-" + type(model).__name__,
            logging.WARNING,
            "ascend_tools.patch.apply: %s is not from a supported family (%s); left as is",
            type(model).__name__,
            ", ".join(FAMILIES),
        )
        return model
    switches = (rms_norm, rope, attention, swiglu, linear_cross_entropy)
    ops = _usable_ops(tuple(op for op, on in zip(OPS, switches) if on))
    for fam in fams:
        try:
            patch_family(
                fam.name,
                rms_norm="rms_norm" in ops,
                rope="rope" in ops,
                attention=False,
                model=model,
                swiglu="swiglu" in ops,
                linear_cross_entropy="linear_cross_entropy" in ops,
            )
        except Exception as exc:
            _family_failed(fam.name, exc)
    if "attention" in ops and all(_attention_interface(fam) for fam in fams):
        try:
            attention_interface.register()
            current = getattr(model.config, "_attn_implementation", None)
            if current != ATTN_NAME:
                if "_ascend_tools_prev_attn" not in model.__dict__:
                    model.__dict__["_ascend_tools_prev_attn"] = current
                attention_interface.set_model(model, ATTN_NAME)
        except Exception as exc:
            _log_once(
                "apply-attn",
                logging.WARNING,
                "ascend_tools.patch.apply: attention left as is (%s: %s)",
                type(exc).__name__,
                exc,
            )
    _MODELS.add(model)
    return model


def revert(model: Any = None) -> None:
    """Undo. With ``model``: that model's instance patches and attention only. Without: everything:
    module-level classes and functions, the interface registrations, the default-attention hook, every
    model patched by :func:`apply`, and every config we defaulted to ``"ascend_fused"`` (back to HF's
    own choice)."""
    with _LOCK:
        if model is not None:
            _revert_model(model)
            return
        for m in list(_MODELS):
            _revert_model(m)
        attention_interface.uninstall_default()
        for (mod_name, path), original in list(_ORIGINALS.items()):
            owner: Any = importlib.import_module(mod_name)
            if "." in path:
                cls_name, path = path.split(".", 1)
                owner = getattr(owner, cls_name)
            setattr(owner, path, original)
        _ORIGINALS.clear()
        attention_interface.unregister()
        _DEFAULT_MODULES.clear()
        _ERRORS.clear()


def _revert_model(model: Any) -> None:
    for sub in model.modules():
        if is_ours(sub.__dict__.get("forward")):
            del sub.forward
    prev = model.__dict__.pop("_ascend_tools_prev_attn", ATTN_NAME)
    if prev != ATTN_NAME and getattr(model.config, "_attn_implementation", None) == ATTN_NAME:
        attention_interface.set_model(model, prev)
    _MODELS.discard(model)


# --------------------------------------------------------------------------------------------------
# status


def _tier_status(op: str) -> Dict[str, Any]:
    from .. import backend
    from ..ops import registry

    try:
        device = backend.device()
    except Exception:
        import torch

        device = torch.device("cpu")
    registered = list(registry.tiers(op))
    cands = [t.name for t in registry.candidates(op, device)]
    checks = [c for c in registry.status() if c.op == op and c.device == device.type]
    selected, verdict = None, ""
    for name in cands:
        if name == "reference":
            selected, verdict = name, "ground truth"
            break
        mine = [c for c in checks if c.tier == name]
        if not mine:
            selected, verdict = name, "self-check on first call"
            break
        ok = [c.dtype for c in mine if c.ok]
        bad = [f"{c.dtype}: {c.reason}" for c in mine if not c.ok]
        if ok:
            selected = name
            verdict = (
                "self-checked ok (" + ", ".join(ok) + ")" + (f"; refused for {'; '.join(bad)}" if bad else "")
            )
            break
    return {
        "op": op,
        "device": str(device),
        "registered": registered,
        "forced": registry.forced(op),
        "candidates": cands,
        "tier": selected,
        "verdict": verdict or "no tier registered",
        "checks": [
            {
                "tier": c.tier,
                "dtype": c.dtype,
                "ok": c.ok,
                "max_err_forward": c.max_err_forward,
                "max_err_backward": c.max_err_backward,
                "reason": c.reason,
            }
            for c in checks
        ],
    }


def status() -> Dict[str, Any]:
    """What is patched, read from the live objects (introspection, not bookkeeping), with the tier each
    op runs on this machine's device (from ``ops.registry``)."""
    import sys

    out: Dict[str, Any] = {
        "attn_name": ATTN_NAME,
        "transformers": None,
        "families": [],
        "models": [],
        "tiers": [],
        "errors": dict(_ERRORS),
    }
    tf = sys.modules.get("transformers")
    if tf is not None:
        out["transformers"] = getattr(tf, "__version__", "?")
    for fam in FAMILIES.values():
        row: Dict[str, Any] = {
            "family": fam.name,
            "module": fam.module,
            "loaded": fam.module in sys.modules,
            "rms_norm": False,
            "rope": False,
            "swiglu": False,
            "linear_cross_entropy": False,
            "attention_default": False,
            "norm_classes": list(fam.norm_classes),
            "eps_attr": fam.eps_attr,
            "offset": fam.offset,
            "casting": fam.casting,
            "error": _ERRORS.get(fam.name, ""),
        }
        mod = sys.modules.get(fam.module)
        if mod is not None:
            classes = [getattr(mod, n, None) for n in fam.norm_classes]
            row["rms_norm"] = all(c is not None and is_ours(c.__dict__.get("forward")) for c in classes)
            row["rope"] = fam.rope_fn is not None and is_ours(getattr(mod, fam.rope_fn, None))
            for op, targets in (
                ("swiglu", [(n, attr) for n, attr, _ in swiglu_targets(mod, fam)]),
                ("linear_cross_entropy", [(n, "forward") for n in fam.causal_lm_classes]),
            ):
                row[op] = bool(targets) and all(
                    is_ours(getattr(mod, n, type).__dict__.get(attr)) for n, attr in targets
                )
            row["attention_default"] = (
                fam.module in _DEFAULT_MODULES and attention_interface.default_installed()
            )
        out["families"].append(row)
    out["attention"] = dict(attention_interface.registered(), default=attention_interface.default_installed())
    for model in list(_MODELS):
        out["models"].append(
            {
                "model": type(model).__name__,
                "families": [f.name for f in families_in(model)],
                "norm_instances": sum(is_ours(s.__dict__.get("forward")) for s in model.modules()),
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
            }
        )
    for op in OPS:
        try:
            _op(op, OP_FUNCTIONS[op])
            out["tiers"].append(_tier_status(op))
        except Exception as exc:
            out["tiers"].append(
                {
                    "op": op,
                    "tier": None,
                    "verdict": f"op unavailable ({type(exc).__name__})",
                    "device": "",
                    "registered": [],
                    "candidates": [],
                    "forced": None,
                    "checks": [],
                }
            )
    return out
