"""``from_pretrained`` in the check-ops child: the model is built from its config, no weights are read.

``PreTrainedModel.from_pretrained(name_or_path)`` (and the Auto classes, which call it) becomes
``cls._from_config(config)``, with the config read from the local directory or the offline hub cache; its
parameters land on meta as they are registered (``fake_accelerator``). The patch is applied when the script
imports ``transformers.modeling_utils`` (a meta path hook), so a script without transformers does not pay
for importing it.
"""

import contextlib
from typing import Any

from ..errors import InputError
from . import patch_on_import, standins


def _config(name_or_path: Any, config: Any, kwargs: Any) -> Any:
    from transformers import AutoConfig, PretrainedConfig

    if isinstance(config, PretrainedConfig):
        return config
    # where the user's own call looks: a cache_dir of its own (the hub cache otherwise), a revision
    where = {k: kwargs[k] for k in ("cache_dir", "revision", "subfolder") if kwargs.get(k) is not None}
    try:
        return AutoConfig.from_pretrained(
            name_or_path,
            local_files_only=True,
            trust_remote_code=bool(kwargs.get("trust_remote_code")),
            **where,
        )
    except (OSError, ValueError) as exc:
        raise InputError(
            f"from_pretrained({name_or_path!r}): no config reachable offline ({type(exc).__name__}); "
            "pass a local directory holding its config.json instead"
        ) from None


def _from_pretrained(cls: Any, name_or_path: Any, *args: Any, config: Any = None, **kwargs: Any) -> Any:
    config = _config(name_or_path, config, kwargs)
    dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
    extra = {"torch_dtype": dtype} if dtype is not None and dtype != "auto" else {}
    attention = kwargs.get("attn_implementation")
    if attention:
        # transformers runs "flash_attention_2" on NPU through torch_npu's fused attention; here, without
        # flash_attn (CUDA-only), SDPA is the same attention
        config._attn_implementation = FLASH_ON_NPU.get(attention, attention)
    with _no_init_weights():
        return cls._from_config(config, **extra)


def _no_init_weights() -> Any:
    """The real ``from_pretrained`` builds without initialising weights (the checkpoint overwrites them), and
    under DeepSpeed ZeRO-3 must: ``_init_weights`` indexes parameters ``zero.Init`` has already partitioned
    to empty tensors (``weight.data[padding_idx]``)."""
    try:
        from transformers.initialization import no_init_weights  # transformers >= 5
    except ImportError:
        from transformers.modeling_utils import no_init_weights  # type: ignore[attr-defined,no-redef]
    return no_init_weights()


FLASH_ON_NPU = {"flash_attention_2": "sdpa", "flash_attention_3": "sdpa"}


def _patch_modeling_utils(module: Any) -> None:
    module.PreTrainedModel.from_pretrained = classmethod(_from_pretrained)


def _patch_auto_factory(module: Any) -> None:
    """The Auto classes read the config before the model class's from_pretrained: offline, from disk."""
    original = module._BaseAutoModelClass.from_pretrained.__func__

    def from_pretrained(cls: Any, name_or_path: Any, *args: Any, config: Any = None, **kwargs: Any) -> Any:
        return original(cls, name_or_path, *args, config=_config(name_or_path, config, kwargs), **kwargs)

    module._BaseAutoModelClass.from_pretrained = classmethod(from_pretrained)


def _patch_quantization_config(module: Any) -> None:
    """``BitsAndBytesConfig(load_in_4bit=True)`` reads the installed bitsandbytes' version, and bitsandbytes
    is CUDA-only (its uses are findings): a missing one passes, and ``from_pretrained`` above builds the
    model unquantized, in its ``torch_dtype``."""
    import importlib.metadata

    config = module.BitsAndBytesConfig
    original = config.post_init

    def post_init(self: Any) -> None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            original(self)

    config.post_init = post_init


def _patch_trainer(module: Any) -> None:
    """``--optim paged_adamw_32bit`` / ``adamw_bnb_8bit``: Trainer refuses the bitsandbytes optimizers where
    bitsandbytes (CUDA-only; the flag is a finding of the scan) is not installed (transformers 5 raises
    ImportError where 4.x raised ValueError). They step as AdamW, so
    the traced step runs AdamW's update with the run's learning rate, betas and eps."""
    trainer = module.Trainer
    original = trainer.get_optimizer_cls_and_kwargs

    def get_optimizer_cls_and_kwargs(args: Any, model: Any = None) -> Any:
        try:
            return original(args, model)
        except (ValueError, ImportError) as exc:  # transformers 4.x raises ValueError, 5.x ImportError
            if "bitsandbytes" not in str(exc):
                raise
        betas = (args.adam_beta1, args.adam_beta2)
        return standins.AdamW, {"lr": args.learning_rate, "betas": betas, "eps": args.adam_epsilon}

    trainer.get_optimizer_cls_and_kwargs = staticmethod(get_optimizer_cls_and_kwargs)


_PATCHES = {
    "transformers.modeling_utils": _patch_modeling_utils,
    "transformers.models.auto.auto_factory": _patch_auto_factory,
    "transformers.utils.quantization_config": _patch_quantization_config,
    "transformers.trainer": _patch_trainer,
}


def install() -> None:
    patch_on_import.install(_PATCHES)
