"""diffusers in the check-ops child: models built weightless, xformers attention as a finding.

``ModelMixin.from_pretrained(path, subfolder=...)`` (UNet, VAE, ...) becomes ``cls.from_config`` of the
config read offline, as ``hf_fake`` does for transformers: a pipeline directory of configs without weights
traces, and parameters land on meta as they are registered (``fake_accelerator``).

``enable_xformers_memory_efficient_attention()`` needs xformers (CUDA-only). On NPU the porter drops the
call and diffusers' default attention (``F.scaled_dot_product_attention``) runs, which is what
xformers' ``memory_efficient_attention`` computes: here the call is a finding at the user's line and the
model keeps its default attention. ``is_xformers_available()`` asked by the user's code answers True (its
``import xformers`` gets the stand-in, itself a finding), so the script takes its xformers branch as on a
GPU node; asked by diffusers itself it answers as installed.
"""

import sys
from typing import Any, Callable, Optional, Tuple

from ..errors import InputError
from . import patch_on_import, standins
from .user_code import installed

#: the keyword arguments of ``from_pretrained`` that say where the config is
_WHERE = ("cache_dir", "revision", "subfolder")
#: its other loading options (diffusers 0.42); any other keyword overrides a config value, as in the real one
#: (``UNet2DConditionModel.from_pretrained(path, subfolder="unet", in_channels=8, ...)``)
_LOADING = frozenset(
    {
        *_WHERE,
        "ignore_mismatched_sizes",
        "force_download",
        "proxies",
        "output_loading_info",
        "local_files_only",
        "token",
        "torch_dtype",
        "dtype",
        "device_map",
        "max_memory",
        "offload_folder",
        "offload_state_dict",
        "low_cpu_mem_usage",
        "variant",
        "use_safetensors",
        "quantization_config",
        "disable_mmap",
        "parallel_config",
        "use_flashpack",
        "flashpack_kwargs",
        "from_flax",
        "mirror",
        "keep_in_fp32_modules",
    }
)


def _from_pretrained(cls: Any, name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
    where = {k: kwargs[k] for k in _WHERE if kwargs.get(k) is not None}
    try:
        config = cls.load_config(name_or_path, local_files_only=True, **where)
    except (OSError, ValueError) as exc:
        sub = f" (subfolder {where['subfolder']!r})" if "subfolder" in where else ""
        raise InputError(
            f"from_pretrained({str(name_or_path)!r}){sub}: no config reachable offline ({type(exc).__name__}); "
            "pass a local directory holding its config.json instead"
        ) from None
    model = cls.from_config(config, **{k: v for k, v in kwargs.items() if k not in _LOADING})
    dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
    if dtype is not None and dtype != "auto":
        model = model.to(dtype)
    model.register_to_config(_name_or_path=str(name_or_path))
    return model.eval()  # as the real one leaves it


def _asked_by_user() -> bool:
    """Whether the caller of the function calling this is the user's code."""
    return not installed(sys._getframe(2).f_code.co_filename)


def _users_site() -> Optional[Tuple[str, int]]:
    """The innermost (file, line) of the user's code on the stack (diffusers calls in between)."""
    frame: Any = sys._getframe(1)
    while frame is not None and installed(frame.f_code.co_filename):
        frame = frame.f_back
    return None if frame is None else (frame.f_code.co_filename, frame.f_lineno)


def _users_xformers_probe(original: Callable[[], bool]) -> Callable[[], bool]:
    def is_xformers_available() -> bool:
        return True if _asked_by_user() else original()

    return is_xformers_available


def _xformers_switch(original: Callable[..., None], recorder: standins.Recorder) -> Callable[..., None]:
    def set_use_memory_efficient_attention_xformers(self: Any, valid: bool, attention_op: Any = None) -> None:
        if not valid:
            return original(self, valid, attention_op)
        xformers = standins.PACKAGES["xformers"]
        recorder.note("xformers.ops", "memory_efficient_attention", xformers, _users_site())
        return None

    return set_use_memory_efficient_attention_xformers


def _patches(recorder: standins.Recorder) -> Any:
    def utils(module: Any) -> None:
        probe = _users_xformers_probe(module.import_utils.is_xformers_available)
        module.is_xformers_available = module.import_utils.is_xformers_available = probe

    def modeling_utils(module: Any) -> None:
        mixin = module.ModelMixin
        mixin.from_pretrained = classmethod(_from_pretrained)
        switch = mixin.set_use_memory_efficient_attention_xformers
        mixin.set_use_memory_efficient_attention_xformers = _xformers_switch(switch, recorder)

    def pipeline_utils(module: Any) -> None:
        pipeline = module.DiffusionPipeline
        switch = pipeline.set_use_memory_efficient_attention_xformers
        pipeline.set_use_memory_efficient_attention_xformers = _xformers_switch(switch, recorder)

    return {
        "diffusers.utils": utils,
        "diffusers.models.modeling_utils": modeling_utils,
        "diffusers.pipelines.pipeline_utils": pipeline_utils,
    }


def install(recorder: standins.Recorder) -> None:
    patch_on_import.install(_patches(recorder))
