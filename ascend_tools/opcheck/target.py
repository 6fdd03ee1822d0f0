"""Turn a check-ops TARGET (a model file or a Hugging Face config) into a model and its inputs.

Runs inside the child process (see ``child.py``): it imports and executes the user's code.
Models are built on the meta device, so no weights are allocated.
"""

import importlib.util
import inspect
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from ..errors import InputError
from .build_device import on_trace_device

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class UserCodeError(Exception):
    """The user's code raised; ``args[0]`` is the one-line summary with file:line."""


@dataclass
class Target:
    model: torch.nn.Module
    args: Tuple[Any, ...]
    kwargs: Dict[str, Any]
    kind: str  # "python" | "hf"
    description: str  # e.g. "LlamaForCausalLM from config.json" or "build_model() in model.py"
    source_file: Optional[str] = None  # the Python file to scan statically, if any


def is_hf_config(path: str) -> bool:
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, "config.json"))
    return path.endswith(".json")


def load(
    path: str, entry: Optional[str], batch: int, seq_len: int, dtype: Optional[str], build_context: Any = None
) -> Target:
    """Build the model on the meta device (or under ``build_context``, e.g. a FakeTensorMode) and
    make its example inputs."""
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file or directory")
    if os.path.isdir(path) and not is_hf_config(path):
        raise InputError(f"{path}: directory holds no config.json (expected a Hugging Face model directory)")
    device = "meta" if build_context is None else "cpu"  # a FakeTensorMode build fakes CPU tensors
    with on_trace_device(device), build_context if build_context is not None else torch.device("meta"):
        target = load_hf(path, batch, seq_len) if is_hf_config(path) else load_python(path, entry)
    if dtype is None:  # keep the dtypes the model was built with (autocast: fp32 weights)
        return target
    target.model.to(DTYPES[dtype])
    # floating-point example inputs follow the model's dtype, as they must on a real device (the meta
    # device does not check that addmm's input and weight agree)
    target.args, target.kwargs = _cast_floating((target.args, target.kwargs), DTYPES[dtype])
    return target


def _cast_floating(inputs: Any, dtype: torch.dtype) -> Any:
    from torch.utils._pytree import tree_map

    def cast(x: Any) -> Any:
        return (
            x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != dtype else x
        )

    return tree_map(cast, inputs)


# --- Hugging Face configs ------------------------------------------------------------------------


def load_hf(path: str, batch: int, seq_len: int) -> Target:
    try:
        import transformers
    except ImportError:
        raise InputError(
            f"{path}: a Hugging Face config needs transformers: pip install 'ascend-doctor[hf]'"
        ) from None
    config_file = os.path.join(path, "config.json") if os.path.isdir(path) else path
    try:
        with open(config_file, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(f"{config_file}: not a readable JSON config: {exc}") from None
    if not isinstance(raw, dict) or "model_type" not in raw:
        raise InputError(f'{config_file}: no "model_type" key: not a Hugging Face config.json')
    try:
        config = transformers.AutoConfig.for_model(**raw)
    except (ValueError, KeyError) as exc:
        raise InputError(
            f"{config_file}: transformers {transformers.__version__} cannot read it: {exc}"
        ) from None
    model = _hf_model(transformers, config, config_file)
    model.train()
    input_ids = torch.zeros((batch, seq_len), dtype=torch.long)
    kwargs: Dict[str, Any] = {"input_ids": input_ids}
    if "labels" in inspect.signature(model.forward).parameters:
        kwargs["labels"] = input_ids
    name = type(model).__name__
    return Target(model, (), kwargs, "hf", f"{name} from {config_file}")


def _hf_model(transformers: Any, config: Any, config_file: str) -> torch.nn.Module:
    """The class the config names in ``architectures``, else a causal LM, else the base model."""
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, arch, None)
        if cls is not None:
            return cls(config)
    for auto in (transformers.AutoModelForCausalLM, transformers.AutoModel):
        try:
            return auto.from_config(config)
        except ValueError:
            continue
    raise InputError(f"{config_file}: transformers has no model class for model_type {config.model_type!r}")


# --- Python model files --------------------------------------------------------------------------


def load_python(path: str, entry: Optional[str]) -> Target:
    module = _import_file(path)
    name = os.path.basename(path)
    found = _find_model(module, entry, path)
    where = f"{found[0]} in {name}"
    obj = found[1]
    made = _call_user(obj, path) if callable(obj) and not isinstance(obj, torch.nn.Module) else obj
    inputs: Any = None
    if isinstance(made, tuple) and len(made) == 2 and isinstance(made[0], torch.nn.Module):
        made, inputs = made
    if not isinstance(made, torch.nn.Module):
        raise InputError(f"{path}: {found[0]} returned {type(made).__name__}, not an nn.Module")
    if inputs is None:
        make_inputs = getattr(module, "example_inputs", None)
        if not callable(make_inputs):
            raise InputError(
                f"{path}: no example inputs: define example_inputs() or return (model, example_inputs) from {found[0]}"
            )
        inputs = _call_user(make_inputs, path)
    args, kwargs = _split_inputs(inputs)
    return Target(made, args, kwargs, "python", where, source_file=os.path.abspath(path))


def _import_file(path: str) -> Any:
    directory = os.path.dirname(os.path.abspath(path))
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        with open(path, encoding="utf-8") as f:
            compile(f.read(), path, "exec")
    except SyntaxError as exc:
        raise InputError(f"{path}:{exc.lineno}: syntax error: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    spec = importlib.util.spec_from_file_location("ascend_doctor_target", path)
    if spec is None or spec.loader is None:  # no .py suffix (check_ops rejects those before)
        raise InputError(f"{path}: not a Python file (.py)")
    loader = spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["ascend_doctor_target"] = module
    _call_user(lambda: loader.exec_module(module), path)
    return module


def _find_model(module: Any, entry: Optional[str], name: str) -> Tuple[str, Any]:
    """``name`` is the target as the user gave it: messages start with it."""
    if entry:
        if not hasattr(module, entry):
            raise InputError(f"{name}: --entry {entry}: no such name in the file")
        return entry + ("()" if callable(getattr(module, entry)) else ""), getattr(module, entry)
    if callable(getattr(module, "build_model", None)):
        return "build_model()", module.build_model
    instances = [
        (k, v) for k, v in vars(module).items() if isinstance(v, torch.nn.Module) and not k.startswith("_")
    ]
    if len(instances) == 1:
        return instances[0]
    if len(instances) > 1:
        names = ", ".join(k for k, _ in instances)
        raise InputError(
            f"{name}: several nn.Module instances at module level ({names}): choose one with --entry"
        )
    raise InputError(
        f"{name}: no model found: looked for --entry NAME, a function build_model(), "
        "and an nn.Module instance at module level"
    )


def _split_inputs(inputs: Any) -> Tuple[Tuple[Any, ...], Dict[str, Any]]:
    if isinstance(inputs, dict):
        return (), dict(inputs)
    if isinstance(inputs, (list, tuple)):
        return tuple(inputs), {}
    return (inputs,), {}


def _call_user(fn: Callable[[], Any], path: str) -> Any:
    """Call user code; an exception becomes one line naming the innermost frame in the user's files."""
    try:
        return fn()
    except InputError:
        raise
    except Exception as exc:
        raise UserCodeError(
            describe_user_exception(exc, os.path.dirname(os.path.abspath(path)), path)
        ) from exc


def describe_user_exception(exc: BaseException, user_dir: str, target: Optional[str] = None) -> str:
    import traceback

    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if os.path.abspath(f.filename).startswith(user_dir)
    ]
    where = f"{_shown_path(frames[-1].filename, target)}:{frames[-1].lineno}: " if frames else ""
    text = str(exc).strip().splitlines()
    return "{}{}: {}".format(where, type(exc).__name__, text[0] if text else "").rstrip(": ")


def _shown_path(filename: str, target: Optional[str]) -> str:
    """The target file as the user named it; another file relative to the working directory when it is
    below it, else absolute."""
    full = os.path.abspath(filename)
    if target is not None and full == os.path.abspath(target):
        return target
    rel = os.path.relpath(full)
    return full if rel.startswith(os.pardir) else rel
