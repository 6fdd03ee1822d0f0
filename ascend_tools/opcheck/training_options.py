"""Hugging Face training options that fail or change meaning on Ascend, one table for three spellings.

The same option reaches a run as a ``--flag`` of the launch command (HfArgumentParser), as a key of
the JSON/YAML file HfArgumentParser reads, or as a keyword argument / dataclass default in Python
(``TrainingArguments(tf32=True)``, ``from_pretrained(..., load_in_4bit=True)``,
``optim: str = field(default="paged_adamw_32bit")``). :data:`OPTION_RULES` maps the option name to a
function of its value; :func:`option_hits` serves the first two, and each rule is also registered as a
``<kwarg>.NAME`` source rule for the third.
"""

import ast
from typing import Callable, Dict, Iterable, List

from ascend_tools.opcheck.source_rules import TORCH_COMPILE_FIX, TORCH_COMPILE_MESSAGE, Hit, Site, register

# transformers' OptimizerNames that construct bitsandbytes optimizers (training_args.py, trainer.py).
BNB_OPTIMIZERS = frozenset(
    """
adamw_bnb_8bit adamw_8bit ademamix ademamix_8bit lion_8bit lion_32bit paged_adamw_32bit paged_adamw_8bit
paged_ademamix_32bit paged_ademamix_8bit paged_lion_32bit paged_lion_8bit rmsprop_bnb rmsprop_bnb_8bit
rmsprop_bnb_32bit galore_adamw_8bit galore_adamw_8bit_layerwise
""".split()  # noqa: SIM905
)

OptionRule = Callable[[object], List[Hit]]
OPTION_RULES: Dict[str, OptionRule] = {}
_UNSET = object()


def truthy(value: object) -> bool:
    """A flag's value as HfArgumentParser reads it: bare flag, true/yes/1, or a Python/JSON true."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "yes", "y", "1")
    return value is True or value == 1


def _constant(node: object) -> object:
    return node.value if isinstance(node, ast.Constant) else _UNSET


def option(*names: str, when_computed: object = _UNSET) -> Callable[[OptionRule], OptionRule]:
    """Add a rule for ``names`` to OPTION_RULES and to the source rules as ``<kwarg>.NAME``. A keyword
    whose value is computed (``load_in_4bit=args.bits == 4``) is judged as ``when_computed`` when given
    (the path the script offers), else not at all."""

    def deco(fn: OptionRule) -> OptionRule:
        def kwarg_rule(site: Site) -> Iterable[Hit]:
            value = _constant(site.value)
            if value is _UNSET:
                value = when_computed
            return [] if value is _UNSET else fn(value)

        for name in names:
            OPTION_RULES[name] = fn
            register(f"<kwarg>.{name}")(kwarg_rule)
        return fn

    return deco


def option_hits(name: str, value: object) -> List[Hit]:
    """Hits of option ``name`` (``--name`` or ``name``; dashes or underscores) set to ``value``."""
    rule = OPTION_RULES.get(name.lstrip("-").replace("-", "_"))
    return rule(value) if rule is not None else []


@option("tf32")
def _tf32(value: object) -> List[Hit]:
    if not truthy(value):
        return []
    return [
        Hit(
            "training-args",
            "error",
            "tf32=True: TrainingArguments raises ValueError ('--tf32 requires Ampere or a newer GPU arch') "
            "when torch.version.cuda is None, as on NPU",
            "drop --tf32; for HF32 matmuls on NPU set torch.npu.matmul.allow_hf32 = True (check accuracy)",
        )
    ]


@option("optim")
def _optim(value: object) -> List[Hit]:
    if not isinstance(value, str):
        return []
    if value in BNB_OPTIMIZERS:
        return [
            Hit(
                "lib-bitsandbytes",
                "error",
                f'optim="{value}" makes the Trainer build a bitsandbytes optimizer (CUDA kernels, no NPU backend)',
                'optim="adamw_torch_npu_fused" (torch_npu fused AdamW) or "adamw_torch"',
            )
        ]
    if value == "adamw_apex_fused":
        return [
            Hit(
                "lib-apex",
                "error",
                'optim="adamw_apex_fused" needs NVIDIA apex\'s CUDA FusedAdam',
                'optim="adamw_torch_npu_fused"',
            )
        ]
    return []


@option("attn_implementation")
def _attn_implementation(value: object) -> List[Hit]:
    if value == "flash_attention_2":
        return [
            Hit(
                "lib-flash-attn",
                "warning",
                'attn_implementation="flash_attention_2" needs the flash_attn package on CUDA; recent '
                "transformers route it to torch_npu.npu_fusion_attention on NPU "
                "(transformers/integrations/npu_flash_attention.py), older ones raise ImportError",
                'attn_implementation="sdpa", or keep it with a transformers that has the NPU integration',
            )
        ]
    if value == "flash_attention_3":
        return [
            Hit(
                "lib-flash-attn",
                "error",
                'attn_implementation="flash_attention_3" needs flash-attn 3 (Hopper CUDA kernels)',
                'attn_implementation="sdpa" (or "flash_attention_2" with the NPU integration)',
            )
        ]
    return []


_COMPILE = Hit(
    "torch-compile",
    "warning",
    "the Trainer wraps the model in torch.compile; " + TORCH_COMPILE_MESSAGE,
    TORCH_COMPILE_FIX,
)


@option("torch_compile")
def _torch_compile(value: object) -> List[Hit]:
    return [_COMPILE] if truthy(value) else []


@option("torch_compile_backend", "torch_compile_mode")
def _torch_compile_setting(value: object) -> List[Hit]:
    """Setting either one turns torch_compile on (TrainingArguments.__post_init__)."""
    return [_COMPILE] if isinstance(value, str) and value.lower() not in ("", "none") else []


@option("ddp_backend")
def _ddp_backend(value: object) -> List[Hit]:
    if value != "nccl":
        return []
    return [
        Hit(
            "nccl-backend",
            "info",
            'ddp_backend="nccl": NCCL does not exist on Ascend; transfer_to_npu rewrites it to "hccl"',
            '"hccl"',
        )
    ]


@option("half_precision_backend", "fp16_backend")
def _apex_backend(value: object) -> List[Hit]:
    if value != "apex":
        return []
    return [
        Hit(
            "lib-apex",
            "error",
            'half_precision_backend="apex" uses NVIDIA apex amp (CUDA)',
            'half_precision_backend="auto" (torch.autocast on NPU)',
        )
    ]


@option("use_liger_kernel")
def _liger(value: object) -> List[Hit]:
    if not truthy(value):
        return []
    return [
        Hit(
            "lib-triton",
            "warning",
            "use_liger_kernel=True patches the model with Liger's Triton kernels (tuned for CUDA GPUs)",
            "ascend_tools.patch (fused RMSNorm/RoPE/SwiGLU/linear cross-entropy on torch_npu ops)",
        )
    ]


@option("use_vllm")
def _use_vllm(value: object) -> List[Hit]:
    if not truthy(value):
        return []
    return [
        Hit(
            "lib-vllm",
            "warning",
            "use_vllm=True makes TRL generate with vLLM, whose wheels are CUDA builds (vllm-ascend on NPU)",
            "install vllm-ascend on the NPU host, or use_vllm=False (generation in transformers, slower)",
        )
    ]


@option("load_in_4bit", "load_in_8bit", when_computed=True)
def _load_in_kbit(value: object) -> List[Hit]:
    if not truthy(value):
        return []
    return [
        Hit(
            "lib-bitsandbytes",
            "error",
            "load_in_4bit/load_in_8bit quantizes the weights with bitsandbytes (CUDA kernels, no NPU backend)",
            "load in bf16; for QLoRA-style memory savings check torch_npu's quantization ops / msModelSlim",
        )
    ]
