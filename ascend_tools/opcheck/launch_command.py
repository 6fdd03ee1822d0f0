"""Parse the launch command after ``check-ops ... --``: which script (or module) it runs, with which args.

``python [-u ...] train.py ARGS``, ``python -m pkg.mod ARGS``, ``torchrun [opts] train.py ARGS`` (also
``python -m torch.distributed.run``/``.launch``), ``accelerate launch [opts] train.py ARGS`` and
``deepspeed [opts] train.py ARGS``. A launcher option takes a value unless it is one of the launcher's
known flags; ``--opt=value`` is always one word. The process count is the launcher's (``--nproc_per_node``,
``--num_processes``, ``--num_gpus``); "all devices" (``deepspeed`` without ``--num_gpus``,
``--nproc_per_node gpu``) is ``devices``.
"""

import os
import re
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from ..errors import InputError


@dataclass(frozen=True)
class LaunchCommand:
    """What the user's launch command runs: exactly one of ``script`` (a path as given) and ``module``."""

    launcher: str  # "python", "torchrun", "accelerate" or "deepspeed"
    script: Optional[str]
    module: Optional[str]
    args: Tuple[str, ...]  # the script's own arguments (its sys.argv[1:])
    nproc: int  # processes per node the launcher would start
    nnodes: int = 1
    launcher_args: Tuple[str, ...] = ()  # the launcher's own options (accelerate's --config_file ...)

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "LaunchCommand":
        """The inverse of ``dataclasses.asdict`` through JSON (args come back as a list)."""
        return cls(
            str(data["launcher"]),
            data["script"],
            data["module"],
            tuple(data["args"]),
            int(data["nproc"]),
            int(data.get("nnodes", 1)),
            tuple(data.get("launcher_args", ())),
        )

    def launcher_option(self, name: str) -> Optional[str]:
        """The value of the launcher's own option ``name`` (``--opt value`` or ``--opt=value``), None if unset."""
        words = self.launcher_args
        for i, word in enumerate(words):
            key, eq, value = word.partition("=")
            if key == name:
                return value if eq else (words[i + 1] if i + 1 < len(words) else None)
        return None

    @property
    def target(self) -> str:
        """The script path or ``-m module``, for messages."""
        return self.script if self.script is not None else f"-m {self.module}"

    @property
    def script_args(self) -> Tuple[str, ...]:
        """The script's ``sys.argv[1:]`` as the launcher starts it: DeepSpeed's launcher puts
        ``--local_rank=N`` first (unless ``--no_local_rank``), and scripts branch on it."""
        if self.launcher == "deepspeed" and "--no_local_rank" not in self.launcher_args:
            return ("--local_rank=0", *self.args)
        return self.args

    @property
    def argv0(self) -> str:
        """``sys.argv[0]`` as the script sees it (a module run by ``-m`` sees its file; the child sets it)."""
        return self.script if self.script is not None else str(self.module)


# Interpreter options that take a value as the next word (everything else starting with "-" is a flag).
_PYTHON_VALUE_OPTS = frozenset({"-W", "-X", "-Q"})
_TORCHRUN_FLAGS = frozenset(
    {"--standalone", "--no_python", "--no-python", "--run_path", "--run-path", "-m", "--module"}
)
_ACCELERATE_FLAGS = frozenset(
    {
        "--cpu",
        "--multi_gpu",
        "--tpu",
        "--ipex",
        "--use_xpu",
        "--use_deepspeed",
        "--use_fsdp",
        "--use_megatron_lm",
        "--same_network",
        "--quiet",
        "-q",
        "--debug",
        "--no_python",
        "-m",
        "--module",
        "--tpu_use_cluster",
        "--tpu_use_sudo",
        "--dynamo_use_fullgraph",
        "--dynamo_use_dynamic",
        "--fsdp_use_orig_params",
        "--enable_cpu_affinity",
        "--downcast_bf16",
    }
)
_DEEPSPEED_FLAGS = frozenset(
    {
        "--no_python",
        "--module",
        "--no_local_rank",
        "--no_ssh_check",
        "--force_multi",
        "--save_pid",
        "--enable_each_rank_log",
        "--bind_cores_to_rank",
        "--elastic_training",
        "--no_ssh",
    }
)
_MODULE_FLAGS = frozenset({"-m", "--module"})
_NPROC_OPTS: Dict[str, Tuple[str, ...]] = {
    "torchrun": ("--nproc_per_node", "--nproc-per-node"),
    "accelerate": ("--num_processes",),
    "deepspeed": ("--num_gpus", "--num_accelerators"),
}
_NNODES_OPTS: Dict[str, Tuple[str, ...]] = {
    "torchrun": ("--nnodes",),
    "accelerate": ("--num_machines",),
    "deepspeed": ("--num_nodes",),
}
_TORCH_LAUNCH_MODULES = ("torch.distributed.run", "torch.distributed.launch")
_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$")


def is_launcher(word: str) -> bool:
    """Whether ``word`` starts a launch command (python, torchrun, accelerate, deepspeed)."""
    head = os.path.basename(word)
    return bool(_PYTHON_NAME.match(head)) or head in ("torchrun", "torchrun.exe", "accelerate", "deepspeed")


def parse(argv: Sequence[str], devices: int = 8) -> LaunchCommand:
    """Parse a launch command; raises :class:`InputError` (one line) on one this cannot run."""
    words = list(argv)
    if not words:
        raise InputError("check-ops --: no command after '--' (expected e.g. 'python train.py ARGS')")
    head = os.path.basename(words[0])
    if _PYTHON_NAME.match(head):
        return _python(words[1:], devices)
    if head in ("torchrun", "torchrun.exe"):
        return _launcher("torchrun", words[1:], _TORCHRUN_FLAGS, devices)
    if head == "accelerate":
        if len(words) < 2 or words[1] != "launch":
            raise InputError(f"check-ops --: only 'accelerate launch ...' runs a script (got {_show(words)})")
        return _launcher("accelerate", words[2:], _ACCELERATE_FLAGS, devices)
    if head == "deepspeed":
        return _launcher("deepspeed", words[1:], _DEEPSPEED_FLAGS, devices)
    if head.endswith(".py"):
        raise InputError(f"check-ops --: {words[0]}: put the interpreter first: 'python {words[0]} ...'")
    raise InputError(
        f"check-ops --: {words[0]}: unknown launcher (expected python, torchrun, accelerate launch or deepspeed)"
    )


def _python(words: List[str], devices: int) -> LaunchCommand:
    i = 0
    while i < len(words) and words[i].startswith("-") and words[i] != "-":
        word = words[i]
        if word == "-m" or (word.startswith("-m") and len(word) > 2):
            module = word[2:] or (words[i + 1] if i + 1 < len(words) else "")
            rest = words[i + 1 :] if word[2:] else words[i + 2 :]
            if not module:
                raise InputError("check-ops --: python -m: no module named")
            if module in _TORCH_LAUNCH_MODULES:
                return _launcher("torchrun", rest, _TORCHRUN_FLAGS, devices)
            return LaunchCommand("python", None, module, tuple(rest), 1)
        if word == "-c":
            raise InputError("check-ops --: python -c: give a script file or -m module, not inline code")
        i += 2 if word in _PYTHON_VALUE_OPTS else 1
    if i >= len(words):
        raise InputError("check-ops --: python: no script named")
    return LaunchCommand("python", words[i], None, tuple(words[i + 1 :]), 1)


def _launcher(name: str, words: List[str], flags: FrozenSet[str], devices: int) -> LaunchCommand:
    options: Dict[str, str] = {}
    module = False
    i = 0
    while i < len(words) and words[i].startswith("-"):
        word = words[i]
        if word == "--":
            i += 1
            break
        key, eq, value = word.partition("=")
        if key in _MODULE_FLAGS:
            module = True
        if eq or key in flags:
            options[key] = value
            i += 1
        else:
            if i + 1 >= len(words):
                raise InputError(f"check-ops --: {name} {key}: needs a value")
            options[key] = words[i + 1]
            i += 2
    if i >= len(words):
        raise InputError(f"check-ops --: {name}: no training script named")
    first, rest = words[i], tuple(words[i + 1 :])
    nproc = _count(name, options, _NPROC_OPTS[name], devices, default=1 if name != "deepspeed" else devices)
    nnodes = _count(name, options, _NNODES_OPTS[name], devices, default=1)
    own = tuple(words[:i])
    if module:
        return LaunchCommand(name, None, first, rest, nproc, nnodes, own)
    return LaunchCommand(name, first, None, rest, nproc, nnodes, own)


def _count(name: str, options: Dict[str, str], keys: Tuple[str, ...], devices: int, default: int) -> int:
    value = next((options[k] for k in keys if k in options), None)
    if value is None:
        return default
    if value in ("gpu", "auto", "cuda", "xpu"):
        return devices
    # torchrun's --nnodes takes MIN:MAX; the run is sized at MAX
    text = value.split(":")[-1]
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"check-ops --: {name} {keys[0]} {value}: expected a positive count")
    return int(text)


def _show(words: Sequence[str]) -> str:
    return "'" + " ".join(words[:3]) + (" ...'" if len(words) > 3 else "'")
