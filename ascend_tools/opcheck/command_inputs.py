"""Findings on what a launch command names besides Python source.

* the script's ``--flags`` that HfArgumentParser turns into TrainingArguments / model arguments
  (:mod:`ascend_tools.opcheck.training_options`), reported at ``command line:argN``;
* a single ``.json``/``.yaml`` argument, which HfArgumentParser reads as those options, or the file
  ``--config``/``--config_file``/``--cfg`` names (TrlParser, torchtune): its options, and any dotted
  component path (``_component_: bitsandbytes.optim.PagedAdamW8bit``) or CUDA device in it;
* the DeepSpeed JSON (``--deepspeed FILE``, ``--deepspeed_config FILE``, accelerate's
  ``deepspeed_config_file``) and the accelerate YAML (the launcher's ``--config_file``).

File paths are relative to the command's working directory. Nothing here runs user code.
"""

import ast
import os
import re
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ascend_tools.opcheck.config_lines import Entry, json_entries, yaml_entries
from ascend_tools.opcheck.source_finding import COMMAND_LINE, LAUNCHER, SourceFinding
from ascend_tools.opcheck.source_rules import Hit, Site, lookup
from ascend_tools.opcheck.training_options import option_hits, truthy

__all__ = ["command_options", "scan_command_inputs"]


def parse_flags(args: Sequence[str]) -> List[Tuple[int, str, object]]:
    """``(N, name, value)`` for each ``--name value`` / ``--name=value`` / bare ``--name`` (value True)
    in ``args``, where ``args[N-1]`` holds the flag (so N indexes ``sys.argv``); dashes in the name
    read as underscores, as HfArgumentParser accepts both."""
    flags: List[Tuple[int, str, object]] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word.startswith("--") and len(word) > 2:
            name, eq, value = word[2:].partition("=")
            name = name.replace("-", "_")
            if eq:
                flags.append((i + 1, name, value))
            elif i + 1 < len(args) and not args[i + 1].startswith("--"):
                flags.append((i + 1, name, args[i + 1]))
                i += 1
            else:
                flags.append((i + 1, name, True))
        i += 1
    return flags


def _finding(file: str, line: int, hit: Hit) -> SourceFinding:
    return SourceFinding(file, line, 1, hit.rule, hit.severity, hit.message, hit.suggestion)


def _read(
    path: str, shown: str, reader: Callable[[str], List[Entry]]
) -> Tuple[List[Entry], List[SourceFinding]]:
    """The entries of a config file, or one warning finding saying why it was not scanned."""
    try:
        with open(path, encoding="utf-8") as f:
            return reader(f.read()), []
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        why = "not found" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})".replace("\n", " ")
        hit = Hit("config-file", "warning", f"{shown}: {why}; not scanned", "pass a readable file")
        return [], [_finding(shown, 1, hit)]


# ---------------------------------------------------------------------------- DeepSpeed JSON

_DS_FUSED_ADAM = ("adam", "adamw", "fusedadam")
_DS_NO_NPU_BUILDER = {
    "lamb": "FusedLamb",
    "onebitadam": "1-bit Adam (compressed allreduce via CuPy/NCCL)",
    "zerooneadam": "0/1 Adam (compressed allreduce via CuPy/NCCL)",
    "onebitlamb": "1-bit LAMB (compressed allreduce via CuPy/NCCL)",
}


def _ds_hits(entry: Entry) -> List[Hit]:
    path, value = entry.path, entry.value
    key = ".".join(path)
    if key == "optimizer.type" and isinstance(value, str):
        low = value.lower()
        if low in _DS_FUSED_ADAM:
            return [
                Hit(
                    "deepspeed-config",
                    "info",
                    f'optimizer "{value}": DeepSpeed builds its FusedAdam op for the accelerator; on NPU its '
                    "NPU builder (op_builder/npu/fused_adam.py) is used",
                    "keep it; import torch_npu so DeepSpeed selects its NPU accelerator",
                )
            ]
        if low in _DS_NO_NPU_BUILDER:
            return [
                Hit(
                    "deepspeed-config",
                    "error",
                    f'optimizer "{value}": {_DS_NO_NPU_BUILDER[low]} has no NPU op builder in DeepSpeed',
                    '"type": "AdamW" (NPU FusedAdam builder)',
                )
            ]
    if len(path) == 3 and path[0] == "zero_optimization" and path[2] == "device" and value in ("cpu", "nvme"):
        if value == "cpu":
            return [
                Hit(
                    "deepspeed-config",
                    "info",
                    f"{path[1]} to cpu: DeepSpeedCPUAdam; DeepSpeed has an NPU builder for it (op_builder/npu/cpu_adam.py)",
                    "keep it (CANN toolkit headers must be installed to build it)",
                )
            ]
        return [
            Hit(
                "deepspeed-config",
                "warning",
                f"{path[1]} to nvme: DeepSpeed's async_io op (NPU builder exists; needs libaio and its own tuning)",
                "check op_builder/npu/async_io.py builds on the host, or offload to cpu",
            )
        ]
    if key in (
        "zero_optimization.zero_quantized_weights",
        "zero_optimization.zero_quantized_gradients",
    ) and truthy(value):
        return [
            Hit(
                "deepspeed-config",
                "error",
                f"{path[1]}: ZeRO++ quantized communication uses DeepSpeed's CUDA quantizer op (no NPU builder)",
                "set it to false",
            )
        ]
    if key == "amp.enabled" and truthy(value):
        return [
            Hit(
                "deepspeed-config",
                "error",
                'the "amp" section runs NVIDIA apex amp (CUDA)',
                'use "bf16": {"enabled": true} (or "fp16") instead of "amp"',
            )
        ]
    if key == "fp16.enabled" and truthy(value):
        return [
            Hit(
                "deepspeed-config",
                "info",
                "fp16 with dynamic loss scaling runs on NPU; Atlas A2 and later also have bf16, which needs no "
                "loss scaling",
                '"bf16": {"enabled": true} on Atlas A2 (keep fp16 on Atlas 300T/800 training series)',
            )
        ]
    if path == ("sparse_attention",):
        return [
            Hit(
                "deepspeed-config",
                "error",
                "DeepSpeed sparse attention is Triton kernels built for CUDA",
                "remove the section (dense attention / torch_npu.npu_fusion_attention)",
            )
        ]
    if key == "compile.enabled" and truthy(value):
        return option_hits("torch_compile", True)
    return []


def _scan_deepspeed(path: str, shown: str) -> List[SourceFinding]:
    entries, problems = _read(path, shown, json_entries)
    # "torch_adam": true makes DeepSpeed build torch.optim.Adam(W), no fused op: nothing to say on the type
    torch_adam = any(e.path == ("optimizer", "params", "torch_adam") and truthy(e.value) for e in entries)
    return problems + [
        _finding(shown, e.line, h)
        for e in entries
        if not (torch_adam and e.path == ("optimizer", "type"))
        for h in _ds_hits(e)
    ]


# ---------------------------------------------------------------------------- accelerate YAML


def _accelerate_hits(key: str, value: object) -> List[Hit]:
    """One accelerate setting (a YAML key or the same-named ``accelerate launch`` flag)."""
    if key == "distributed_type" and value == "MULTI_GPU":
        return [
            Hit(
                "accelerate-config",
                "info",
                "distributed_type MULTI_GPU: accelerate's NPU type is MULTI_NPU (it also detects torch_npu)",
                "distributed_type: MULTI_NPU",
            )
        ]
    if (key == "distributed_type" and value == "MEGATRON_LM") or key == "megatron_lm_config":
        return [
            Hit(
                "accelerate-config",
                "error",
                "Megatron-LM through accelerate needs Megatron's CUDA fused kernels (apex, TransformerEngine)",
                "MindSpeed (Ascend's Megatron adaptation), or FSDP / DeepSpeed",
            )
        ]
    if key == "mixed_precision" and value == "fp8":
        return [
            Hit(
                "accelerate-config",
                "error",
                "mixed_precision fp8 uses TransformerEngine / MS-AMP / torchao FP8 kernels for CUDA",
                "mixed_precision: bf16",
            )
        ]
    if key == "dynamo_backend" and isinstance(value, str) and value.upper() not in ("NO", ""):
        return option_hits("torch_compile", True)
    if key == "gpu_ids" and value not in (None, "all"):
        return [
            Hit(
                "accelerate-config",
                "info",
                f"gpu_ids {value}: accelerate sets CUDA_VISIBLE_DEVICES from it",
                "ASCEND_RT_VISIBLE_DEVICES on NPU",
            )
        ]
    return []


def _scan_accelerate(path: str, shown: str, cwd: str) -> List[SourceFinding]:
    entries, found = _read(path, shown, yaml_entries)
    for e in entries:
        key = e.path[-1]
        found += [_finding(shown, e.line, h) for h in _accelerate_hits(key, e.value)]
        if key == "deepspeed_config_file" and isinstance(e.value, str) and e.value not in ("none", ""):
            found += _scan_deepspeed(os.path.join(cwd, e.value), e.value)
        if key in ("offload_optimizer_device", "offload_param_device") and e.value in ("cpu", "nvme"):
            kind = "offload_optimizer" if "optimizer" in key else "offload_param"
            found += [
                _finding(shown, e.line, h)
                for h in _ds_hits(Entry(("zero_optimization", kind, "device"), e.value, e.line))
            ]
    return found


# ---------------------------------------------------------------------------- the command


DOTTED_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_CUDA_DEVICE = re.compile(r"^cuda(:\d+)?$")
_CONFIG_FLAGS = ("config", "config_file", "cfg")  # TrlParser / torchtune / omegaconf scripts' own YAML


# model-config keys that pick a CUDA-only attention kernel: MPT / llm-foundry, axolotl
_ATTENTION_KEYS = {
    ("attn_impl", "flash"): (
        "lib-flash-attn",
        "error",
        "MPT's attention through the flash_attn package",
        "attn_impl: torch",
    ),
    ("attn_impl", "triton"): ("lib-triton", "warning", "MPT's Triton attention kernel", "attn_impl: torch"),
    ("flash_attention", True): (
        "lib-flash-attn",
        "error",
        "axolotl's flash-attn patches",
        "sdp_attention: true",
    ),
    ("xformers_attention", True): (
        "lib-xformers",
        "error",
        "xformers attention (CUDA kernels)",
        "sdp_attention: true",
    ),
}


def _config_value_hits(key: str, value: object) -> List[Hit]:
    """A value anywhere in a script's config file: a dotted import path the rule table knows (torchtune's
    ``_component_: bitsandbytes.optim.PagedAdamW8bit``, hydra's ``_target_``), a CUDA device, or an attention
    kernel choice (``attn_impl: flash``)."""
    attention = _ATTENTION_KEYS.get((key, value if isinstance(value, str) else truthy(value)))
    if attention is not None:
        rule, severity, what, fix = attention
        return [Hit(rule, severity, f"{key}: {value}: {what} (CUDA-only)", fix)]
    if not isinstance(value, str):
        return []
    if key in ("device", "device_type") and _CUDA_DEVICE.match(value):
        return [
            Hit(
                "cuda-device-string",
                "info",
                f"{key}: {value}: a CUDA device named in the config",
                f"{key}: npu (or torch_npu.contrib.transfer_to_npu)",
            )
        ]
    handler = lookup(value) if DOTTED_PATH.match(value) else None
    return list(handler(Site(value, "ref", ast.Constant(value)))) if handler else []


def _option_file(
    path: str, shown: str, reader: Callable[[str], List[Entry]], cwd: str
) -> List[SourceFinding]:
    """A config file of the script (HfArgumentParser's ``train.py args.yaml``, ``--config x.yaml``): top-level
    keys are the options; every value is also read for the components and devices it names."""
    entries, found = _read(path, shown, reader)
    for e in entries:
        found += [_finding(shown, e.line, h) for h in _config_value_hits(e.path[-1], e.value)]
        if len(e.path) != 1:
            continue
        found += [_finding(shown, e.line, h) for h in option_hits(e.path[0], e.value)]
        if e.path[0] == "deepspeed" and isinstance(e.value, str):
            found += _scan_deepspeed(os.path.join(cwd, e.value), e.value)
    return found


def _is_file_arg(value: object, suffixes: Iterable[str]) -> bool:
    return isinstance(value, str) and value.lower().endswith(tuple(suffixes))


def command_options(script_args: Sequence[str], cwd: str) -> Dict[str, object]:
    """The options the script's arguments set: its ``--flags``, or the top-level keys of the single
    ``.json``/``.yaml`` file HfArgumentParser reads (an unreadable file sets none; scan_command_inputs
    reports it)."""
    options: Dict[str, object] = {}
    options.update((e.path[0], e.value) for e in config_file_entries(script_args, cwd) if len(e.path) == 1)
    options.update((name, value) for _, name, value in parse_flags(script_args))  # flags win over the file
    return options


def config_file_entries(script_args: Sequence[str], cwd: str) -> List[Entry]:
    """The entries of every config file the script's arguments name (see :func:`_config_files`), in
    order; an unreadable file gives none (:func:`scan_command_inputs` reports it)."""
    return [
        e
        for name, reader in _config_files(script_args, cwd)
        for e in _read(os.path.join(cwd, name), name, reader)[0]
    ]


def _reader(value: object) -> Optional[Callable[[str], List[Entry]]]:
    if _is_file_arg(value, (".json",)):
        return json_entries
    if _is_file_arg(value, (".yaml", ".yml")):
        return yaml_entries
    return None


def _config_files(script_args: Sequence[str], cwd: str) -> List[Tuple[str, Callable[[str], List[Entry]]]]:
    """The script's config files with their readers: HfArgumentParser's single ``python train.py sft.yaml``
    argument, and the value of ``--config``/``--config_file``/``--cfg`` when that file exists (one that
    does not may be a file the script writes: ColossalChat saves its arguments to ``--config_file``)."""
    named: List[object] = (
        [script_args[0]] if len(script_args) == 1 and not script_args[0].startswith("-") else []
    )
    named += [
        value
        for _, name, value in parse_flags(script_args)
        if name in _CONFIG_FLAGS and isinstance(value, str) and os.path.isfile(os.path.join(cwd, value))
    ]
    return [(str(v), r) for v in named for r in [_reader(v)] if r is not None]


def scan_command_inputs(
    script_args: Sequence[str], cwd: str, launcher_args: Sequence[str] = ()
) -> List[SourceFinding]:
    """Findings on the script's flags and the config files the command names (unsorted)."""
    found: List[SourceFinding] = []
    for n, name, value in parse_flags(script_args):
        flag = script_args[n - 1].split("=", 1)[0]  # the flag as the user wrote it, named in the message
        found += [
            SourceFinding(COMMAND_LINE, n, 1, h.rule, h.severity, f"{flag}: {h.message}", h.suggestion)
            for h in option_hits(name, value)
        ]
        if name in ("deepspeed", "deepspeed_config") and _is_file_arg(value, (".json",)):
            found += _scan_deepspeed(os.path.join(cwd, str(value)), str(value))
    for name, reader in _config_files(script_args, cwd):
        found += _option_file(os.path.join(cwd, name), name, reader, cwd)
    for n, name, value in parse_flags(launcher_args):
        if name == "config_file" and isinstance(value, str):
            found += _scan_accelerate(os.path.join(cwd, value), value, cwd)
        elif name == "deepspeed_config_file" and isinstance(value, str):
            found += _scan_deepspeed(os.path.join(cwd, value), value)
        else:  # accelerate launch's flags mirror its YAML keys
            found += [_finding(LAUNCHER, n, h) for h in _accelerate_hits(name, value)]
    return found
