"""The rule table of the static scan: small handlers keyed by the resolved dotted name.

Shaped like PyTorch's ``torch/utils/flop_counter.py``: each handler is registered with
``@register("torch.cuda.*", ...)`` and receives a :class:`Site` (what the scanner saw: a call,
a reference, an attribute store, an import, a keyword argument, an ``os.environ`` write).
It returns :class:`Hit` objects. ``source_scan`` owns the one ``ast.NodeVisitor`` that
resolves import aliases and calls :func:`lookup`.

Name spaces in the table:

* resolved module paths: ``torch.cuda.synchronize``, ``flash_attn.flash_attn_func`` ...
  A registration ending in ``.*`` matches the name itself and everything below it; the
  longest exact-or-prefix registration wins.
* ``<method>.NAME``: a method call ``x.NAME(...)`` on something that is not an imported module.
* ``<kwarg>.NAME``: a keyword argument ``NAME=...`` in any call (and a parameter default).
* ``<device-var>``: a value assigned to a variable whose name says it is a device.
* ``<backend-var>``: likewise for a backend (also an argparse option's default), ``<assert-cuda>``: an
  ``assert`` that holds only for CUDA tensors, ``<cuda-type-branch>``: an ``if device.type == "cuda":`` test.

Severity: ``error`` breaks on NPU, ``warning`` runs but is slow/lossy or needs a manual change,
``info`` is handled automatically by ``torch_npu.contrib.transfer_to_npu``.
"""

import ast
import re
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, List, Optional, Pattern, Tuple, Union, cast

from .cuda_type_branch import classify

# rule id -> (default severity, what it finds). docs/porting-guide.md has one section per id.
RULE_DOCS: Dict[str, Tuple[str, str]] = {
    "cuda-call": ("info", "torch.cuda.* API; torch.npu.* has the same name (warning when it has none)"),
    "cuda-method": ("info", ".cuda() on a tensor or module"),
    "cuda-device-string": (
        "info",
        '"cuda" / "cuda:N" used as a device (torch.device, .to, device=, autocast)',
    ),
    "cuda-backend-flags": (
        "info",
        "torch.backends.cuda.* settings (TF32, linalg/fft knobs): no effect on NPU",
    ),
    "nccl-backend": ("info", 'distributed backend "nccl" (transfer_to_npu rewrites it to "hccl")'),
    "cuda-assert": ("error", 'assert x.is_cuda / device.type == "cuda": false for NPU tensors'),
    "cuda-device-branch": (
        "warning",
        'if device.type == "cuda": setup skipped on NPU (error: DDP wrapping, process count, else raises)',
    ),
    "nccl-env": ("warning", "NCCL_* / TORCH_NCCL_* environment variables set from Python"),
    "cuda-env": ("warning", "CUDA_* / PYTORCH_CUDA_* environment variables set from Python"),
    "cuda-amp": ("warning", "torch.cuda.amp.* (deprecated, CUDA-only path)"),
    "cudnn-flags": ("info", "torch.backends.cudnn.* settings: no effect on NPU"),
    "sdp-kernel-switch": (
        "warning",
        "CUDA SDPA kernel selection (sdp_kernel, enable_flash_sdp, sdpa_kernel)",
    ),
    "jit-script": ("warning", "TorchScript (torch.jit.script / trace)"),
    "float64": ("warning", "float64 compute (.double(), torch.float64, torch.double)"),
    "cuda-extension": ("error", "CUDA C++ extensions (CUDAExtension, load(with_cuda=True), .cu sources)"),
    "lib-flash-attn": ("error", "flash_attn (CUDA-only) and its calls"),
    "lib-xformers": ("error", "xformers (CUDA kernels)"),
    "lib-apex": ("error", "NVIDIA apex (CUDA kernels; Ascend's apex patch covers amp + fused optimizers)"),
    "lib-bitsandbytes": ("error", "bitsandbytes (8-bit optimizers, LLM.int8, 4-bit)"),
    "lib-triton": ("warning", "Triton kernels (need triton-ascend and retuning)"),
    "lib-deepspeed-ops": ("error", "deepspeed.ops CUDA kernels (warning where DeepSpeed has an NPU builder)"),
    "lib-mamba-ssm": ("error", "mamba_ssm CUDA/Triton kernels"),
    "lib-causal-conv1d": ("error", "causal_conv1d CUDA kernels"),
    "lib-cupy": ("error", "CuPy (CUDA arrays)"),
    "lib-pynvml": ("error", "pynvml / NVML queries"),
    "lib-vllm": ("warning", "vLLM generation (CUDA builds; vllm-ascend on NPU), TRL use_vllm=True"),
    "lib-colossalai-kernels": (
        "error",
        "ColossalAI's fused optimizers (HybridAdam, FusedAdam...): CUDA kernels only",
    ),
    "fp8-training": ("error", "FP8 training (torchao float8, accelerate FP8 recipes, TransformerEngine)"),
    "syntax-error": ("warning", "an imported local file that does not parse (not scanned)"),
    "torch-compile": (
        "warning",
        "torch.compile / inductor (TrainingArguments torch_compile, dynamo backends)",
    ),
    "training-args": ("error", "Hugging Face training options that fail on NPU (tf32=True)"),
    "deepspeed-config": ("info", "DeepSpeed JSON: optimizer type, offload, ZeRO++ quantization, amp, fp16"),
    "accelerate-config": (
        "info",
        "accelerate YAML / launch flags: distributed_type, mixed_precision, gpu_ids",
    ),
    "config-file": ("warning", "a config file the command names that is missing or unreadable (not scanned)"),
    "lightning-accelerator": (
        "warning",
        'Lightning accelerator="gpu"/"cuda", gpus=N (no built-in NPU accelerator)',
    ),
}

TRANSFER = "transfer_to_npu"  # short name used in messages


@dataclass
class Site:
    """One thing the visitor saw, handed to a handler."""

    name: str  # resolved dotted name or table key (``<method>.cuda``)
    kind: str  # call | ref | store | import | kwarg | device-var | setitem
    node: ast.AST
    guarded: bool = False  # inside ``try:`` whose handler catches ImportError
    in_compare: bool = False  # inside a comparison (``x.dtype == torch.float64``)
    value: Optional[ast.AST] = None  # kwarg value, assigned value, parameter default
    key: Optional[str] = None  # env var name for setitem
    names: Tuple[str, ...] = ()  # ``from X import a, b``: the imported names
    # why a CUDA-only call here does not run on NPU (a device-type or availability branch with an else)
    branch: Optional[str] = None
    # follows a variable to the value last assigned to it in scope (``backend = "nccl"``); identity if none
    value_of: Callable[[Optional[ast.AST]], Optional[ast.AST]] = lambda node: node


@dataclass(frozen=True)
class Hit:
    rule: str
    severity: str
    message: str
    suggestion: str
    node: Optional[ast.AST] = None  # where to report; default: the site's node


Handler = Callable[[Site], Iterable[Hit]]
RULES: Dict[str, Handler] = {}
PREFIX_RULES: Dict[str, Handler] = {}
PATTERN_RULES: List[Tuple[Pattern[str], Handler]] = []  # module names no table can list (``*_cuda``)


def register(*names: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for exact names and ``prefix.*`` names (like flop_counter's
    ``register_flop_formula``)."""

    def deco(fn: Handler) -> Handler:
        for name in names:
            if name.endswith(".*"):
                PREFIX_RULES[name[:-2]] = fn
            else:
                RULES[name] = fn
        return fn

    return deco


def lookup(name: str, prefix_only: bool = False) -> Optional[Handler]:
    """Exact registration first (unless ``prefix_only``: imports use the module-level rules), then the
    longest ``prefix.*`` registration covering ``name``."""
    if not prefix_only and name in RULES:
        return RULES[name]
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        fn = PREFIX_RULES.get(".".join(parts[:i]))
        if fn is not None:
            return fn
    return next((fn for pattern, fn in PATTERN_RULES if pattern.search(name)), None)


def _call_suffix(site: Site) -> str:
    return "()" if site.kind == "call" else ""


def _call(site: Site) -> Optional[ast.Call]:
    return site.node if isinstance(site.node, ast.Call) else None


# ----------------------------------------------------------------------------- device strings

_CUDA_DEVICE = re.compile(r"^cuda(:\d+)?$")


def cuda_device_strings(node: Optional[ast.AST]) -> List[Union[ast.Constant, ast.JoinedStr]]:
    """String constants in ``node`` that name a CUDA device: ``"cuda"``, ``"cuda:0"``,
    ``f"cuda:{rank}"``; looks through ``a if c else b`` and ``a or b``."""
    if node is None:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node] if _CUDA_DEVICE.match(node.value) else []
    if isinstance(node, ast.JoinedStr) and node.values:
        first = node.values[0]
        return [node] if isinstance(first, ast.Constant) and first.value == "cuda:" else []
    if isinstance(node, ast.IfExp):
        return cuda_device_strings(node.body) + cuda_device_strings(node.orelse)
    if isinstance(node, ast.BoolOp):
        return [n for v in node.values for n in cuda_device_strings(v)]
    return []


def _device_hits(values: Iterable[Optional[ast.AST]], where: str) -> List[Hit]:
    hits = []
    for value in values:
        for node in cuda_device_strings(value):
            text = (
                node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else "cuda:{...}"
            )
            hits.append(
                Hit(
                    "cuda-device-string",
                    "info",
                    f'device string "{text}" in {where}; {TRANSFER} rewrites "cuda" to "npu" when passed to '
                    "torch factories, .to(), autocast and device= arguments (not in comparisons or your own code)",
                    '"npu"' if text == "cuda" else f'"{text.replace("cuda", "npu")}"',
                    node,
                )
            )
    return hits


@register(
    "<kwarg>.device", "<kwarg>.device_type", "<kwarg>.map_location", "<kwarg>.device_id", "<device-var>"
)
def _device_kwarg(site: Site) -> Iterable[Hit]:
    where = "a device variable" if site.kind == "device-var" else f"{site.name.split('.', 1)[1]}="
    return _device_hits([site.value_of(site.value)], where)


@register(
    "torch.device",
    "torch.autocast",
    "torch.amp.autocast",
    "torch.amp.GradScaler",
    "torch.set_default_device",
    "torch.get_autocast_dtype",
    "torch.is_autocast_enabled",
)
def _device_positional(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None or not call.args:
        return []
    return _device_hits([call.args[0]], f"{site.name}()")


@register("<method>.to")
def _to_method(site: Site) -> Iterable[Hit]:
    call = _call(site)
    return _device_hits(call.args if call else [], ".to()")


@register("<method>.cuda")
def _cuda_method(site: Site) -> Iterable[Hit]:
    return [
        Hit(
            "cuda-method",
            "info",
            f".cuda() moves to a CUDA device; {TRANSFER} maps Tensor.cuda/Module.cuda to .npu()",
            '.npu()  (or .to(device) with device = torch.device("npu", local_rank))',
        )
    ]


# ----------------------------------------------------------------------------- torch.cuda.*

# Names exported by torch_npu.npu (its __all__), i.e. torch.npu.<name> exists with the same name.
_NPU_MIRRORS = frozenset(
    """
is_initialized init synchronize device_count can_device_access_peer set_device current_device
get_device_name get_device_properties get_device_capability mem_get_info is_available device
device_of StreamContext stream set_stream current_stream default_stream set_sync_debug_mode
get_sync_debug_mode utilization manual_seed manual_seed_all seed seed_all initial_seed
caching_allocator_alloc caching_allocator_delete get_per_process_memory_fraction
set_per_process_memory_fraction empty_cache memory_stats memory_stats_as_nested_dict
reset_accumulated_memory_stats reset_peak_memory_stats reset_max_memory_allocated
reset_max_memory_cached memory_allocated max_memory_allocated memory_reserved max_memory_reserved
memory_cached max_memory_cached memory_snapshot memory_summary MemPool use_mem_pool
get_allocator_backend change_current_allocator Stream Event get_rng_state set_rng_state
get_rng_state_all set_rng_state_all is_bf16_supported BoolTensor ByteTensor CharTensor
DoubleTensor FloatTensor HalfTensor IntTensor LongTensor ShortTensor BFloat16Tensor graph
graph_pool_handle is_current_stream_capturing make_graphed_callables ipc_collect random
""".split()  # noqa: SIM905
)
_NPU_RENAMES = {"CUDAGraph": "NPUGraph", "CUDAPluggableAllocator": "NPUPluggableAllocator"}


@register("torch.cuda.*")
def _torch_cuda(site: Site) -> Iterable[Hit]:
    if site.name.startswith("torch.cuda.nccl"):
        return [
            Hit(
                "cuda-call",
                "warning",
                f"{site.name}: NCCL version/feature probe; there is no NCCL on Ascend (HCCL instead)",
                "drop the probe on NPU (a bf16 gate on it is False there: check torch.npu.is_bf16_supported())",
            )
        ]
    if site.kind == "import" or site.name == "torch.cuda":
        return []
    rest = site.name[len("torch.cuda.") :]
    head = rest.split(".")[0]
    call = _call_suffix(site)
    if head == "nvtx":
        return [
            Hit(
                "cuda-call",
                "warning",
                f"torch.cuda.{rest} (NVTX ranges) has no NPU equivalent",
                "torch_npu.npu.mstx range markers (mstx.range_start/range_end) with the torch_npu profiler",
            )
        ]
    if head == "get_device_capability":
        return [
            Hit(
                "cuda-call",
                "warning",
                f"torch.cuda.{rest}{call}: a CUDA compute-capability gate (e.g. major >= 8 for flash-attn/bf16); "
                "NPUs have no compute capability, so the gate does not mean the same on torch.npu",
                "gate on the feature instead (torch.npu.is_bf16_supported(), the fused op's availability)",
            )
        ]
    if head in _NPU_RENAMES:
        new = rest.replace(head, _NPU_RENAMES[head], 1)
        return [
            Hit(
                "cuda-call",
                "warning",
                f"torch.cuda.{rest} is named differently in torch_npu (not covered by {TRANSFER})",
                f"torch.npu.{new}{call}",
            )
        ]
    if head in _NPU_MIRRORS:
        return [
            Hit(
                "cuda-call",
                "info",
                f"torch.cuda.{rest}{call} is CUDA-specific; {TRANSFER} redirects torch.cuda.* to torch.npu.*",
                f"torch.npu.{rest}{call}",
            )
        ]
    return [
        Hit(
            "cuda-call",
            "warning",
            f"torch.cuda.{rest}{call} has no same-named torch.npu API in torch_npu's torch.npu namespace",
            "check torch_npu docs for an equivalent or drop it on NPU",
        )
    ]


@register("torch.cuda.amp.*")
def _torch_cuda_amp(site: Site) -> Iterable[Hit]:
    if site.kind == "import" or site.name == "torch.cuda.amp":
        return []
    leaf = site.name.rsplit(".", 1)[1]
    if leaf == "autocast":
        return [
            Hit(
                "cuda-amp",
                "warning",
                "torch.cuda.amp.autocast is deprecated and CUDA-only "
                f"({TRANSFER} redirects it to torch.npu.amp.autocast)",
                'torch.autocast("npu", dtype=torch.bfloat16)',
            )
        ]
    if leaf == "GradScaler":
        return [
            Hit(
                "cuda-amp",
                "warning",
                "torch.cuda.amp.GradScaler is deprecated and CUDA-only; bfloat16 autocast needs no loss scaling",
                "bf16: drop the scaler; fp16: torch.npu.amp.GradScaler()",
            )
        ]
    if leaf in ("custom_fwd", "custom_bwd"):
        return [
            Hit(
                "cuda-amp",
                "warning",
                f"torch.cuda.amp.{leaf} is deprecated and CUDA-only",
                f'torch.amp.{leaf}(device_type="npu")',
            )
        ]
    return [
        Hit(
            "cuda-amp",
            "warning",
            f"{site.name} is a CUDA-only AMP API",
            'torch.amp.* with device_type="npu" (check torch_npu docs)',
        )
    ]


# ----------------------------------------------------------------------------- backends flags


@register("torch.backends.cuda.*")
def _backends_cuda(site: Site) -> Iterable[Hit]:
    if site.kind == "import" or site.name == "torch.backends.cuda":
        return []
    if site.name == "torch.backends.cuda.matmul.allow_tf32":
        return [
            Hit(
                "cuda-backend-flags",
                "info",
                "torch.backends.cuda.matmul.allow_tf32 only affects CUDA matmuls (no effect on NPU)",
                "nearest NPU knob: torch.npu.matmul.allow_hf32 = True (HF32, not TF32: check accuracy)",
            )
        ]
    return [
        Hit(
            "cuda-backend-flags",
            "info",
            f"{site.name} is a CUDA-only setting (no effect on NPU)",
            "remove it or guard it with torch.cuda.is_available() on the GPU path",
        )
    ]


@register("torch.backends.cudnn.*")
def _backends_cudnn(site: Site) -> Iterable[Hit]:
    if site.kind == "import" or site.name == "torch.backends.cudnn":
        return []
    leaf = site.name.rsplit(".", 1)[1]
    if leaf == "deterministic":
        return [
            Hit(
                "cudnn-flags",
                "warning",
                "torch.backends.cudnn.deterministic does not make NPU kernels deterministic (no cuDNN on NPU)",
                "torch.use_deterministic_algorithms(True) (check torch_npu docs for op coverage); "
                "HCCL_DETERMINISTIC=true for reductions",
            )
        ]
    if leaf == "allow_tf32":
        return [
            Hit(
                "cudnn-flags",
                "info",
                "torch.backends.cudnn.allow_tf32 only affects cuDNN convolutions",
                "nearest NPU knob: torch.npu.conv.allow_hf32 (HF32, not TF32)",
            )
        ]
    return [
        Hit(
            "cudnn-flags",
            "info",
            f"{site.name} only configures cuDNN (no effect on NPU)",
            "remove it or keep it on the GPU path only",
        )
    ]


_SDP_MSG = (
    "selects CUDA SDPA kernels (flash / mem-efficient / cuDNN); it does not select an NPU fused "
    "kernel (check torch_npu docs for how its SDPA dispatches)"
)
_SDP_FIX = "call torch_npu.npu_fusion_attention for the fused NPU kernel (see docs/porting-guide.md)"


@register(
    "torch.backends.cuda.sdp_kernel",
    "torch.backends.cuda.enable_flash_sdp",
    "torch.backends.cuda.enable_mem_efficient_sdp",
    "torch.backends.cuda.enable_cudnn_sdp",
)
def _sdp_switch(site: Site) -> Iterable[Hit]:
    if site.kind not in ("call", "ref"):
        return []
    return [Hit("sdp-kernel-switch", "warning", f"{site.name} {_SDP_MSG}", _SDP_FIX)]


@register("torch.nn.attention.sdpa_kernel")
def _sdpa_kernel(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None:
        return []
    text = " ".join(ast.unparse(a) for a in [*call.args, *(k.value for k in call.keywords)])
    if not any(b in text for b in ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")):
        return []
    return [
        Hit("sdp-kernel-switch", "warning", f"torch.nn.attention.sdpa_kernel({text}) {_SDP_MSG}", _SDP_FIX)
    ]


# ----------------------------------------------------------------------------- jit, float64


@register("torch.jit.script", "torch.jit.script_method", "torch.jit.ScriptModule")
def _jit_script(site: Site) -> Iterable[Hit]:
    if site.kind not in ("call", "ref"):
        return []
    return [
        Hit(
            "jit-script",
            "warning",
            f"{site.name}: TorchScript is not an NPU graph path, and {TRANSFER} turns it into a no-op "
            "(the function runs eagerly)",
            "run eagerly, or torch.compile with the torch_npu backend (check torch_npu docs)",
        )
    ]


@register("torch.jit.trace", "torch.jit.trace_module")
def _jit_trace(site: Site) -> Iterable[Hit]:
    if site.kind not in ("call", "ref"):
        return []
    return [
        Hit(
            "jit-script",
            "warning",
            f"{site.name}: TorchScript tracing is not an NPU graph path",
            "run eagerly, or torch.compile with the torch_npu backend (check torch_npu docs)",
        )
    ]


_F64_MSG = (
    "NPU has no fast float64 ({} maps torch.cuda.DoubleTensor to FloatTensor: "
    "'the double type is not supported'); most NPU kernels lack float64"
)


@register("torch.float64", "torch.double", "torch.DoubleTensor")
def _float64_ref(site: Site) -> Iterable[Hit]:
    if site.in_compare or site.kind == "import":
        return []
    return [
        Hit(
            "float64",
            "warning",
            f"{site.name}: " + _F64_MSG.format(TRANSFER),
            "compute in torch.float32 (accumulate in float32 if precision matters)",
        )
    ]


@register("<method>.double")
def _double_method(site: Site) -> Iterable[Hit]:
    return [Hit("float64", "warning", ".double() casts to float64: " + _F64_MSG.format(TRANSFER), ".float()")]


# ----------------------------------------------------------------------------- CUDA extensions


@register("torch.utils.cpp_extension.CUDAExtension")
def _cuda_extension(site: Site) -> Iterable[Hit]:
    if site.kind not in ("call", "ref"):
        return []
    return [
        Hit(
            "cuda-extension",
            "error",
            "CUDAExtension builds CUDA C++ that cannot run on Ascend",
            "port the kernel to AscendC (CANN custom op) or use an existing torch_npu op",
        )
    ]


@register("torch.utils.cpp_extension.load", "torch.utils.cpp_extension.load_inline")
def _cpp_load(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None:
        return []
    reasons = []
    for kw in call.keywords:
        if kw.arg == "with_cuda" and isinstance(kw.value, ast.Constant) and kw.value.value is True:
            reasons.append("with_cuda=True")
        if kw.arg in ("cuda_sources", "extra_cuda_cflags"):
            reasons.append(f"{kw.arg}=")
    # sources may sit in a variable: `sources = [os.path.join(d, "k.cu")]; load(name, sources)`
    values = [site.value_of(a) for a in (*call.args, *(k.value for k in call.keywords))]
    for node in (n for v in values if v is not None for n in ast.walk(v)):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.endswith((".cu", ".cuh"))
            and node.value not in reasons
        ):
            reasons.append(node.value)
    if not reasons:
        return []
    return [
        Hit(
            "cuda-extension",
            "error",
            f"{site.name}() compiles CUDA code ({', '.join(reasons)}), which does not build for Ascend",
            "port the kernel to AscendC (CANN custom op) or use an existing torch_npu op",
        )
    ]


# ----------------------------------------------------------------------------- distributed


def _nccl_hits(value: Optional[ast.AST]) -> List[Hit]:
    """``"nccl"`` (also ``"cpu:gloo,cuda:nccl"``), reported where the string is written."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str) and "nccl" in value.value:
        new = value.value.replace("nccl", "hccl").replace("cuda:", "npu:")
        return [
            Hit(
                "nccl-backend",
                "info",
                f'backend "{value.value}": NCCL does not exist on Ascend; {TRANSFER} rewrites it to "hccl"',
                f'"{new}"',
                value,
            )
        ]
    return []


@register("torch.distributed.init_process_group")
def _init_pg(site: Site) -> Iterable[Hit]:
    call = _call(site)
    return _nccl_hits(site.value_of(call.args[0])) if call is not None and call.args else []


@register("<kwarg>.backend", "<kwarg>.process_group_backend", "<backend-var>")
def _backend_kwarg(site: Site) -> Iterable[Hit]:
    """``backend="nccl"``, Lightning's ``DDPStrategy(process_group_backend="nccl")``, ``backend=var`` with
    ``var = "nccl"`` earlier in scope, and a ``*backend`` variable assigned ``"nccl"`` (nanoGPT)."""
    return _nccl_hits(site.value_of(site.value))


@register("torch.distributed.Backend.NCCL", "torch.distributed.is_nccl_available")
def _nccl_ref(site: Site) -> Iterable[Hit]:
    if site.kind == "import":
        return []
    new = site.name.replace("NCCL", "HCCL").replace("nccl", "hccl")
    return [
        Hit(
            "nccl-backend",
            "info",
            f"{site.name}: use the HCCL backend on Ascend "
            f"({TRANSFER} maps is_nccl_available to is_hccl_available)",
            new,
        )
    ]


@register("<assert-cuda>")
def _cuda_assert(site: Site) -> Iterable[Hit]:
    """Kernel wrappers check their inputs with ``assert x.is_cuda``: on NPU the tensor's ``is_cuda`` is
    False (its device type is "npu"), so the assert stops the run before the kernel is reached."""
    return [
        Hit(
            "cuda-assert",
            "error",
            'asserts a CUDA tensor or device (is_cuda / device.type == "cuda"): false for NPU tensors, '
            "so it raises AssertionError on NPU",
            'assert x.device.type != "cpu" (or x.device.type == "npu"), or drop it with the CUDA kernel it guards',
        )
    ]


@register("<raise-unless-cuda>")
def _raise_unless_cuda(site: Site) -> Iterable[Hit]:
    """``if device.type != "cuda": raise ...`` (torchtune's activation offloading): on NPU the device type
    is "npu", so the raise is taken."""
    return [
        Hit(
            "cuda-assert",
            "error",
            'raises unless the device is CUDA (device type != "cuda"): on NPU the device type is "npu", '
            "so this raise is taken",
            'accept "npu" in the test (or turn the feature off on NPU)',
        )
    ]


@register("<cuda-type-branch>")
def _cuda_type_branch(site: Site) -> Iterable[Hit]:
    """``if device.type == "cuda":`` (the site is the comparison, its ``value`` the ``if``): on NPU the
    device type is "npu", so the body is skipped (``cuda_type_branch.classify`` says when that matters)."""
    found = classify(cast(ast.If, site.value))
    if found is None:
        return []
    severity, what = found
    return [
        Hit(
            "cuda-device-branch",
            severity,
            f'branch on device.type == "cuda": on NPU the device type is "npu", so {what}',
            'test the accelerator instead: device.type != "cpu", or device.type in ("cuda", "npu")',
        )
    ]


# ----------------------------------------------------------------------------- environment

# NCCL / CUDA env var -> (replacement, note). Only documented Ascend variables are named.
ENV_EQUIVALENTS: Dict[str, Tuple[str, str]] = {
    "NCCL_SOCKET_IFNAME": ("HCCL_SOCKET_IFNAME", "same prefix / ^exclude / =exact syntax"),
    "NCCL_SOCKET_FAMILY": ("HCCL_SOCKET_FAMILY", "AF_INET or AF_INET6"),
    "NCCL_TIMEOUT": (
        "HCCL_CONNECT_TIMEOUT / HCCL_EXEC_TIMEOUT",
        "link setup timeout in s [120, 7200] / collective execution timeout in s",
    ),
    "NCCL_BUFFSIZE": ("HCCL_BUFFSIZE", "HCCL_BUFFSIZE is in MB (default 200), NCCL_BUFFSIZE in bytes"),
    "NCCL_ALGO": ("HCCL_ALGO", "different value syntax: check the HCCL environment variable reference"),
    "NCCL_DEBUG": (
        "ASCEND_GLOBAL_LOG_LEVEL",
        "0 debug, 1 info, 2 warning, 3 error; ASCEND_SLOG_PRINT_TO_STDOUT=1 prints to stdout",
    ),
    "NCCL_IB_TIMEOUT": ("HCCL_RDMA_TIMEOUT", "different value range: check the HCCL reference"),
    "NCCL_IB_RETRY_CNT": ("HCCL_RDMA_RETRY_CNT", "check the HCCL reference for the range"),
    "NCCL_IB_TC": ("HCCL_RDMA_TC", "RDMA traffic class"),
    "NCCL_IB_SL": ("HCCL_RDMA_SL", "RDMA service level"),
    "NCCL_ASYNC_ERROR_HANDLING": (
        "HCCL_ASYNC_ERROR_HANDLING",
        "newer torch_npu also reads TORCH_HCCL_ASYNC_ERROR_HANDLING",
    ),
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": (
        "HCCL_ASYNC_ERROR_HANDLING",
        "newer torch_npu also reads TORCH_HCCL_ASYNC_ERROR_HANDLING",
    ),
    "NCCL_BLOCKING_WAIT": ("TORCH_HCCL_BLOCKING_WAIT", "torch_npu collective-communication variable"),
    "TORCH_NCCL_BLOCKING_WAIT": ("TORCH_HCCL_BLOCKING_WAIT", "torch_npu collective-communication variable"),
    "NCCL_DESYNC_DEBUG": ("HCCL_DESYNC_DEBUG", "newer torch_npu: TORCH_HCCL_DESYNC_DEBUG"),
    "TORCH_NCCL_DESYNC_DEBUG": ("HCCL_DESYNC_DEBUG", "newer torch_npu: TORCH_HCCL_DESYNC_DEBUG"),
    "CUDA_VISIBLE_DEVICES": ("ASCEND_RT_VISIBLE_DEVICES", "comma-separated device ids"),
    "CUDA_LAUNCH_BLOCKING": ("ASCEND_LAUNCH_BLOCKING", "1 = synchronous op execution (slow; debugging only)"),
    "PYTORCH_CUDA_ALLOC_CONF": ("PYTORCH_NPU_ALLOC_CONF", "e.g. expandable_segments:True"),
}


def _env_hits(key: Optional[str], node: ast.AST) -> List[Hit]:
    if not key:
        return []
    if key.startswith(("NCCL_", "TORCH_NCCL_")):
        rule = "nccl-env"
    elif key.startswith(("CUDA_", "PYTORCH_CUDA_", "TORCH_CUDA_")):
        rule = "cuda-env"
    else:
        return []
    if key in ENV_EQUIVALENTS:
        new, note = ENV_EQUIVALENTS[key]
        return [
            Hit(
                rule, "warning", f"{key} is read by NCCL/CUDA only, not by HCCL/CANN", f"{new} ({note})", node
            )
        ]
    return [
        Hit(
            rule,
            "warning",
            f"{key} is read by NCCL/CUDA only and has no known HCCL/CANN equivalent",
            "check the CANN HCCL / torch_npu environment variable reference",
            node,
        )
    ]


@register("os.environ.setdefault", "os.putenv")
def _environ_setdefault(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None or not call.args:
        return []
    first = call.args[0]
    key = first.value if isinstance(first, ast.Constant) and isinstance(first.value, str) else None
    return _env_hits(key, first)


@register("os.environ.update")
def _environ_update(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None:
        return []
    hits: List[Hit] = []
    for arg in call.args:
        if isinstance(arg, ast.Dict):
            for k in arg.keys:
                if isinstance(k, ast.Constant) and isinstance(k.value, str):
                    hits += _env_hits(k.value, k)
    for kw in call.keywords:
        hits += _env_hits(kw.arg, kw.value)
    return hits


# ----------------------------------------------------------------------------- CUDA-only libraries


# flash_attn.bert_padding is plain PyTorch: only its import fails (the flash_attn package is absent)
_PURE_TORCH = ("flash_attn.bert_padding.",)


def _lib_use(site: Site) -> bool:
    """A call of, or a value taken from, a library's name (``amp.initialize(...)``,
    ``rotary_emb.apply_rotary(...)``, ``cls = bnb.nn.Linear4bit``): it needs the library as much as its
    import does. Comparisons (``flash_attn_version >= "2.1"``) and pure-PyTorch helpers are left out."""
    if site.kind == "ref" and (site.in_compare or site.name.rsplit(".", 1)[-1].startswith("__")):
        return False  # a test or a probe (`xformers.__version__`), not a use of the kernels
    return site.kind in ("call", "ref") and not site.name.startswith(_PURE_TORCH)


def _lib(rule: str, message: str, suggestion: str, severity: str = "error", uses: bool = True) -> Handler:
    """A handler that reports the import of a CUDA-only library and (with ``uses``) every call or value
    use of its names that has no more specific rule (``warning`` when the import sits in a ``try`` with
    an ImportError fallback or the use in a CUDA-only branch: the script still runs, on the other path)."""

    def handler(site: Site) -> Iterable[Hit]:
        if site.kind != "import" and not (uses and _lib_use(site)):
            return []
        sev = "warning" if (site.guarded or site.branch) and severity == "error" else severity
        fallback = " (guarded: the ImportError fallback runs instead)" if site.guarded else ""
        fallback += f" ({site.branch})" if site.branch else ""
        if site.kind == "import":
            return [Hit(rule, sev, f"import {site.name}: {message}{fallback}", suggestion)]
        return [Hit(rule, sev, f"{site.name}{_call_suffix(site)}: {message}{fallback}", suggestion)]

    return handler


def _lib_call(rule: str, message: str, suggestion: str) -> Handler:
    """A handler for a call site of a CUDA-only library function, with its specific replacement
    (``warning`` when its import has a real fallback or the call sits in a CUDA-only branch)."""

    def handler(site: Site) -> Iterable[Hit]:
        if site.kind != "call":
            return []
        sev = "warning" if site.guarded or site.branch else "error"
        why = f" ({site.branch})" if site.branch else ""
        return [Hit(rule, sev, f"{site.name.rsplit('.', 1)[1]}(): {message}{why}", suggestion)]

    return handler


_NFA = "torch_npu.npu_fusion_attention"
_NFA_TRAPS = (
    "pass scale=1/sqrt(head_dim) (its default is 1.0), keep_prob=1-dropout_p; "
    "atten_mask is bool with True = masked out; causal = sparse_mode=3 (bottom-right, as flash-attn>=2.1) "
    "with a 2048x2048 triu(diagonal=1) mask"
)

register("flash_attn.*")(
    _lib(
        "lib-flash-attn",
        "flash-attn ships CUDA kernels only (no Ascend build)",
        f'{_NFA}(q, k, v, head_num=H, input_layout="BSND", scale=1/math.sqrt(D), keep_prob=1-p, '
        "atten_mask=..., sparse_mode=...)[0]",
    )
)
register(
    "flash_attn.flash_attn_func",
    "flash_attn.flash_attn_interface.flash_attn_func",
    "flash_attn.flash_attn_qkvpacked_func",
    "flash_attn.flash_attn_kvpacked_func",
    "flash_attn.flash_attn_interface.flash_attn_qkvpacked_func",
    "flash_attn.flash_attn_interface.flash_attn_kvpacked_func",
)(
    _lib_call(
        "lib-flash-attn",
        f'no NPU kernel; port to {_NFA}(input_layout="BSND"): ' + _NFA_TRAPS,
        f'{_NFA}(q, k, v, head_num=q.shape[2], input_layout="BSND", scale=1/math.sqrt(q.shape[-1]), '
        "keep_prob=1-dropout_p, atten_mask=torch.triu(torch.ones(2048, 2048, dtype=torch.bool), 1), "
        "sparse_mode=3)[0]",
    )
)
register(
    "flash_attn.flash_attn_varlen_func",
    "flash_attn.flash_attn_interface.flash_attn_varlen_func",
    "flash_attn.flash_attn_varlen_qkvpacked_func",
    "flash_attn.flash_attn_varlen_kvpacked_func",
)(
    _lib_call(
        "lib-flash-attn",
        f'no NPU kernel; port to {_NFA}(input_layout="TND") with actual_seq_qlen/actual_seq_kvlen = '
        "cumulative lengths without the leading 0 (cu_seqlens[1:].tolist()); " + _NFA_TRAPS,
        f'{_NFA}(q, k, v, head_num=H, input_layout="TND", actual_seq_qlen=cu_q[1:].tolist(), '
        "actual_seq_kvlen=cu_k[1:].tolist(), scale=1/math.sqrt(D), keep_prob=1-p, atten_mask=mask2048, "
        "sparse_mode=3)[0]",
    )
)

# flash-attn's compiled extensions are imported by their own module names (flash_attn/layers/rotary.py,
# flash_attn/losses/cross_entropy.py, flash_attn/ops/layer_norm.py); ring-flash-attn calls flash-attn.
register(
    "rotary_emb.*", "xentropy_cuda_lib.*", "dropout_layer_norm.*", "flash_attn_2_cuda.*", "ring_flash_attn.*"
)(
    _lib(
        "lib-flash-attn",
        "a flash-attn CUDA extension (no Ascend build)",
        "rotary -> torch_npu.npu_rotary_mul; layer norm -> torch_npu.npu_rms_norm / nn.LayerNorm; "
        f"cross-entropy -> torch.nn.functional.cross_entropy; attention -> {_NFA}",
    )
)

register("xformers.*")(
    _lib(
        "lib-xformers",
        "xformers kernels are CUDA-only",
        f'{_NFA}(..., input_layout="BSND") or torch.nn.functional.scaled_dot_product_attention',
    )
)


@register(
    "<method>.enable_xformers_memory_efficient_attention",
    "<method>.set_use_memory_efficient_attention_xformers",
)
def _xformers_switch(site: Site) -> Iterable[Hit]:
    """diffusers' switch on every pipeline and model: it imports xformers and raises without it."""
    if site.kind != "call":
        return []
    sev = "warning" if site.branch else "error"
    return [
        Hit(
            "lib-xformers",
            sev,
            f"{site.name.split('.', 1)[1]}(): switches attention to xformers' CUDA kernels (raises where "
            "xformers is not installed, as on NPU)",
            "leave it off on NPU: diffusers' default attention processor uses "
            "torch.nn.functional.scaled_dot_product_attention",
        )
    ]


register("xformers.ops.memory_efficient_attention", "xformers.ops.fmha.memory_efficient_attention")(
    _lib_call(
        "lib-xformers",
        f'no NPU kernel; inputs are (B, S, H, D) = {_NFA} layout "BSND"; '
        "pass scale=1/sqrt(D) explicitly; LowerTriangularMask -> sparse_mode with a bool mask (True = masked out)",
        f'{_NFA}(q, k, v, head_num=q.shape[2], input_layout="BSND", scale=1/math.sqrt(q.shape[-1]))[0]',
    )
)

_APEX_FIX = (
    'amp -> torch.autocast("npu", dtype=torch.bfloat16); FusedAdam -> torch_npu.optim.NpuFusedAdamW '
    "or torch.optim.AdamW; FusedRMSNorm -> torch_npu.npu_rms_norm; FusedLayerNorm -> nn.LayerNorm"
)
register(
    "apex.*",
    "apex.normalization.*",
    "apex.contrib.*",
    "apex.transformer.*",
    "apex.fused_dense.*",
    "apex.mlp.*",
)(
    _lib(
        "lib-apex",
        "NVIDIA apex's fused kernels are CUDA-only (Ascend's apex patch covers amp and fused optimizers only)",
        _APEX_FIX,
    )
)
register("apex.amp.*", "apex.optimizers.*")(
    _lib(
        "lib-apex",
        "stock apex is CUDA-only; Ascend's apex patch provides amp O1/O2 and NPU fused optimizers",
        _APEX_FIX,
        severity="warning",
    )
)
register("apex.optimizers.FusedAdam")(
    _lib_call(
        "lib-apex",
        "CUDA multi-tensor kernel",
        "torch_npu.optim.NpuFusedAdamW(params, lr=..., weight_decay=...) or torch.optim.AdamW",
    )
)
register("apex.normalization.FusedRMSNorm")(
    _lib_call("lib-apex", "CUDA kernel", "torch_npu.npu_rms_norm(x, weight, epsilon=eps)[0]")
)
register("apex.normalization.FusedLayerNorm")(_lib_call("lib-apex", "CUDA kernel", "torch.nn.LayerNorm"))

register("bitsandbytes.*")(
    _lib(
        "lib-bitsandbytes",
        "the bitsandbytes wheels ship CUDA kernels; 8-bit optimizers and LLM.int8 have no NPU "
        "backend (an NPU NF4 backend is in development upstream)",
        "torch.optim.AdamW or torch_npu.optim.NpuFusedAdamW; for quantization, torch_npu quant ops (check docs)",
    )
)

register("triton.*")(
    _lib(
        "lib-triton",
        "Triton kernels run on NPU only through triton-ascend and usually need retuning "
        "(grid/block sizes for AI cores); transfer_to_npu makes torch's has_triton() return False",
        "install triton-ascend and re-validate each @triton.jit kernel, or use the torch / torch_npu op",
        severity="warning",
        uses=False,  # every tl.* call inside a kernel would be a finding; the @triton.jit rule reports kernels
    )
)
register("triton.jit", "triton.autotune")(
    lambda site: (
        []
        if site.kind not in ("ref", "call")
        else [
            Hit(
                "lib-triton",
                "warning",
                f"{site.name} kernel: needs triton-ascend on NPU and retuned block sizes",
                "validate with triton-ascend or replace with a torch / torch_npu op",
            )
        ]
    )
)

register("liger_kernel.*")(
    _lib(
        "lib-triton",
        "Liger's kernels are Triton kernels tuned for CUDA GPUs",
        "ascend_tools.patch (fused RMSNorm/RoPE/SwiGLU/linear cross-entropy on torch_npu ops), "
        "or validate each kernel with triton-ascend",
        severity="warning",
    )
)

register("deepspeed.ops.*")(
    _lib(
        "lib-deepspeed-ops",
        "these DeepSpeed kernels have no NPU op builder",
        "use DeepSpeed's NPU accelerator (FusedAdam/CPUAdam/Lamb/Lion have NPU builders) or torch ops",
    )
)
register("deepspeed.ops.adam.*", "deepspeed.ops.lamb.*", "deepspeed.ops.lion.*", "deepspeed.ops.aio.*")(
    _lib(
        "lib-deepspeed-ops",
        "built for CUDA by default; DeepSpeed has NPU op builders for it "
        "(op_builder/npu) when run with the NPU accelerator",
        "keep it with DeepSpeed's NPU accelerator (import torch_npu), or torch_npu.optim.NpuFusedAdamW",
        severity="warning",
    )
)

register("mamba_ssm.*")(
    _lib(
        "lib-mamba-ssm",
        "selective-scan CUDA/Triton kernels have no NPU port",
        "uninstall/skip it: HF transformers' Mamba falls back to its pure-PyTorch path when mamba_ssm and "
        "causal_conv1d are missing (slow, sequential scan)",
    )
)
register("causal_conv1d.*")(
    _lib(
        "lib-causal-conv1d",
        "CUDA kernels have no NPU port",
        "depthwise nn.Conv1d(groups=channels, padding=k-1) and trim the right padding (HF's fallback path)",
    )
)
register("vllm.*")(
    _lib(
        "lib-vllm",
        "the vLLM wheels are CUDA builds; on Ascend vLLM runs through its plugin vllm-ascend",
        "install vllm-ascend (same vllm API), or generate with transformers (TRL: use_vllm=False)",
        severity="warning",
    )
)
_FP8_FIX = (
    "train in bf16 (Atlas A2/A3 have no FP8 matmul); FP8 needs Ascend 950-class hardware and its own recipe"
)
_FP8_LIB = _lib(
    "fp8-training",
    "FP8 training (float8 matmuls: torch._scaled_mm / TransformerEngine CUDA kernels)",
    _FP8_FIX,
)
register("transformer_engine.*")(_FP8_LIB)  # its import already needs CUDA


@register("torchao.float8.*")
def _torchao_float8(site: Site) -> Iterable[Hit]:
    """torchao is pure Python until a Float8Linear runs: its uses are the finding, not its import."""
    return [] if site.kind == "import" else _FP8_LIB(site)


register(
    "accelerate.utils.AORecipeKwargs",
    "accelerate.utils.FP8RecipeKwargs",
    "accelerate.utils.TERecipeKwargs",
    "accelerate.utils.MSAMPRecipeKwargs",
    "accelerate.utils.dataclasses.AORecipeKwargs",
    "accelerate.utils.dataclasses.FP8RecipeKwargs",
)(
    _lib_call(
        "fp8-training",
        "accelerate's FP8 recipe (float8 matmuls: torch._scaled_mm / TransformerEngine)",
        _FP8_FIX,
    )
)
register(
    "colossalai.nn.optimizer.HybridAdam",
    "colossalai.nn.optimizer.FusedAdam",
    "colossalai.nn.optimizer.FusedLAMB",
    "colossalai.nn.optimizer.FusedSGD",
    "colossalai.nn.optimizer.hybrid_adam.HybridAdam",
    "colossalai.nn.optimizer.fused_adam.FusedAdam",
)(
    _lib_call(
        "lib-colossalai-kernels",
        "ColossalAI loads its fused optimizer kernel through FusedOptimizerLoader, which has only a CUDA extension "
        "(HybridAdam's step raises for NPU parameters)",
        "torch.optim.AdamW or torch_npu.optim.NpuFusedAdamW (ColossalAI's CPUAdam for CPU-offloaded states)",
    )
)
register("cupy.*")(
    _lib("lib-cupy", "CuPy arrays live on CUDA devices", 'torch tensors on "npu" (or numpy on CPU)')
)
register("pynvml.*")(
    _lib(
        "lib-pynvml",
        "NVML queries need an NVIDIA driver",
        "torch.npu.mem_get_info() / torch.npu.memory_allocated() in-process, npu-smi on the host",
    )
)


# ----------------------------------------------------------------------------- compiled CUDA modules

# Project-built extensions are named for CUDA by convention: fused_adam_cuda, selective_scan_cuda,
# cuda_ext, my_ops.nms_cuda. A plain ``cuda`` component (torch.cuda, numba.cuda) is left to other rules.
_CUDA_MODULE = re.compile(r"(^|[._])(\w+_cuda|cuda_\w+)($|\.)")


_PORT_KERNEL = "port its kernels to AscendC (CANN custom op) or replace them with torch / torch_npu ops"


def _compiled_cuda_module(site: Site) -> Iterable[Hit]:
    if site.kind == "import":
        what = f"import {site.name}: a compiled CUDA extension module (named *_cuda / cuda_*)"
    elif site.kind == "call":
        what = f"{site.name}(): a call into a compiled CUDA extension"
    else:
        return []
    return [Hit("cuda-extension", "error", f"{what}; it has no Ascend build", _PORT_KERNEL)]


# `wkv_cuda = load(name="wkv", sources=[...".cu"])`: the scanner aliases the variable to this prefix.
CPP_EXTENSION_MODULE = "<cpp_extension>"
register(f"{CPP_EXTENSION_MODULE}.*")(_compiled_cuda_module)


PATTERN_RULES.append((_CUDA_MODULE, _compiled_cuda_module))


# ----------------------------------------------------------------------------- torch.compile, TF32

TORCH_COMPILE_MESSAGE = (
    "torch.compile's default inductor backend generates Triton/C++ kernels for CUDA/CPU; torch_npu "
    'documents torch.compile with backend="npugraphs" (like "cudagraphs") and torchair\'s NPU backend'
)
TORCH_COMPILE_FIX = (
    "run eager first; then torch.compile(model, backend=torchair.get_npu_backend()) and re-validate"
)


@register("torch.compile")
def _torch_compile(site: Site) -> Iterable[Hit]:
    if site.kind not in ("call", "ref"):
        return []
    return [Hit("torch-compile", "warning", TORCH_COMPILE_MESSAGE, TORCH_COMPILE_FIX)]


@register(
    "accelerate.TorchDynamoPlugin",
    "accelerate.utils.TorchDynamoPlugin",
    "accelerate.utils.dataclasses.TorchDynamoPlugin",
)
def _dynamo_plugin(site: Site) -> Iterable[Hit]:
    """accelerate's ``TorchDynamoPlugin(backend="inductor")``: torch.compile by another name."""
    call = _call(site)
    if call is None:
        return []
    backend = next((kw.value for kw in call.keywords if kw.arg == "backend"), None)
    if isinstance(backend, ast.Constant) and str(backend.value).lower() in ("no", "none", "npugraphs"):
        return []
    return [Hit("torch-compile", "warning", TORCH_COMPILE_MESSAGE, TORCH_COMPILE_FIX)]


@register("torch.set_float32_matmul_precision")
def _fp32_matmul_precision(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None or not call.args:
        return []
    mode = site.value_of(call.args[0])
    if isinstance(mode, ast.Constant) and mode.value == "highest":
        return []
    return [
        Hit(
            "cuda-backend-flags",
            "warning",
            "set_float32_matmul_precision lets CUDA matmuls use TF32; torch_npu lists it for Atlas A2/A3 only "
            "(not Ascend 950DT), where the reduced-precision format is HF32, not TF32",
            "torch.npu.matmul.allow_hf32 = True if HF32 accuracy is acceptable, else drop it",
        )
    ]


# ----------------------------------------------------------------------------- bitsandbytes via transformers

_BNB_FIX = "load in bf16 (no bitsandbytes); for quantized weights check torch_npu's quant ops / msModelSlim"


@register("transformers.BitsAndBytesConfig", "transformers.utils.quantization_config.BitsAndBytesConfig")
def _bnb_config(site: Site) -> Iterable[Hit]:
    if site.kind != "call":
        return []
    return [
        Hit(
            "lib-bitsandbytes",
            "error",
            "BitsAndBytesConfig quantizes the model with bitsandbytes (CUDA kernels, no NPU backend)",
            _BNB_FIX,
        )
    ]


def _bnb_calls(site: Site) -> Iterable[Hit]:
    if site.kind == "import":
        return _BNB_IMPORT(site)
    if not _lib_use(site):
        return []
    leaf = site.name.rsplit(".", 1)[1]
    fix = (
        "torch.optim.AdamW or torch_npu.optim.NpuFusedAdamW" if ".optim." in site.name else "torch.nn.Linear"
    )
    sev = "warning" if site.guarded or site.branch else "error"  # behind an ImportError fallback
    why = f" ({site.branch})" if site.branch else ""
    return [
        Hit(
            "lib-bitsandbytes",
            sev,
            f"bitsandbytes {leaf}{_call_suffix(site)}: CUDA kernels, no NPU backend{why}",
            fix,
        )
    ]


_BNB_IMPORT = lookup("bitsandbytes") or (lambda site: [])
register("bitsandbytes.nn.*", "bitsandbytes.optim.*")(_bnb_calls)


# ----------------------------------------------------------------------------- flash_attn_interface spellings


def _flash_attn_interface(site: Site) -> Iterable[Hit]:
    """Every call into flash_attn.flash_attn_interface (``_flash_attn_forward``, ``flash_attn_with_kvcache``,
    v1's ``flash_attn_unpadded_func`` ...) that has no specific rule."""
    if site.kind == "import":
        return _FLASH_IMPORT(site)
    if site.kind != "call":
        return []
    sev = "warning" if site.guarded or site.branch else "error"
    why = f" ({site.branch})" if site.branch else ""
    return [
        Hit(
            "lib-flash-attn",
            sev,
            f"{site.name.rsplit('.', 1)[1]}(): flash-attn CUDA kernel, no NPU build{why}",
            f"{_NFA}(q, k, v, head_num=H, input_layout=..., scale=1/math.sqrt(D))[0]",
        )
    ]


_FLASH_IMPORT = lookup("flash_attn") or (lambda site: [])
register("flash_attn.flash_attn_interface.*")(_flash_attn_interface)


# ----------------------------------------------------------------------------- device meshes, Lightning


@register(
    "torch.distributed.device_mesh.init_device_mesh",
    "torch.distributed.init_device_mesh",
    "torch.distributed.device_mesh.DeviceMesh",
)
def _device_mesh(site: Site) -> Iterable[Hit]:
    call = _call(site)
    if call is None or not call.args:
        return []
    first = site.value_of(call.args[0])
    if not cuda_device_strings(first):
        return []
    return [
        Hit(
            "cuda-device-string",
            "warning",
            f'{site.name.rsplit(".", 1)[1]}("cuda", ...) builds the mesh on CUDA devices; '
            f"{TRANSFER} rewrites device= keywords, not this positional device type",
            f'{site.name.rsplit(".", 1)[1]}("npu", ...)',
            first,
        )
    ]


@register("<kwarg>.accelerator", "<kwarg>.gpus")
def _lightning_accelerator(site: Site) -> Iterable[Hit]:
    value = site.value_of(site.value)
    if not isinstance(value, ast.Constant):
        return []
    name = site.name.split(".", 1)[1]
    if name == "accelerator" and value.value not in ("gpu", "cuda"):
        return []
    if name == "gpus" and (value.value in (None, 0) or isinstance(value.value, bool)):
        return []
    return [
        Hit(
            "lightning-accelerator",
            "warning",
            f"{name}={value.value!r} selects Lightning's CUDAAccelerator; Lightning has no built-in NPU "
            "accelerator",
            "register an NPU Accelerator (Lightning's Accelerator API on torch.npu) and pass it, or "
            'accelerator="auto" with transfer_to_npu (check the run)',
            value,
        )
    ]


# ----------------------------------------------------------------------------- CUDA toolkit probes

_CUDA_PROBES = ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT", "TORCH_CUDA_ARCH_LIST", "CUDNN_HOME")


def _probe_hit(key: str, node: ast.AST) -> Hit:
    return Hit(
        "cuda-env",
        "warning",
        f"{key} probes the CUDA toolkit, absent on an Ascend host (code that needs it fails or builds nothing)",
        "CANN: ASCEND_HOME_PATH / ASCEND_TOOLKIT_HOME; skip the CUDA build on NPU",
        node,
    )


def _visible_devices_hit(node: ast.AST) -> Hit:
    return Hit(
        "cuda-env",
        "warning",
        "reads CUDA_VISIBLE_DEVICES to find the devices: unset on an Ascend host (os.environ[...] raises "
        "KeyError), where ASCEND_RT_VISIBLE_DEVICES selects the NPUs",
        'os.environ.get("ASCEND_RT_VISIBLE_DEVICES") on NPU, or torch.npu.device_count()',
        node,
    )


def _env_read_hits(key: object, node: ast.AST) -> List[Hit]:
    if key in _CUDA_PROBES:
        return [_probe_hit(str(key), node)]
    return [_visible_devices_hit(node)] if key == "CUDA_VISIBLE_DEVICES" else []


@register("os.environ.get", "os.getenv", "os.environ")
def _cuda_probe(site: Site) -> Iterable[Hit]:
    if site.kind == "setitem":
        return _env_hits(site.key, site.node)
    if site.kind == "load":
        return _env_read_hits(site.key, site.node)
    call = _call(site)
    if call is None or not call.args:
        return []
    first = call.args[0]
    return _env_read_hits(first.value, first) if isinstance(first, ast.Constant) else []


@register("torch.utils.cpp_extension.CUDA_HOME", "torch.utils.cpp_extension.CUDNN_HOME")
def _cpp_extension_home(site: Site) -> Iterable[Hit]:
    if site.kind not in ("ref", "import"):
        return []
    return [_probe_hit(site.name.rsplit(".", 1)[1], site.node)]


_APEX_PARALLEL = {
    "convert_syncbn_model": "torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)",
    "SyncBatchNorm": "torch.nn.SyncBatchNorm",
    "DistributedDataParallel": "torch.nn.parallel.DistributedDataParallel",
}


def _apex_parallel(site: Site) -> Iterable[Hit]:
    if site.kind == "import":
        return _APEX_IMPORT(site)
    if site.kind != "call":
        return []
    leaf = site.name.rsplit(".", 1)[1]
    fix = _APEX_PARALLEL.get(leaf, "the torch.nn / torch.distributed equivalent")
    return [Hit("lib-apex", "error", f"apex.parallel.{leaf}(): NVIDIA apex CUDA code", fix)]


_APEX_IMPORT = lookup("apex.parallel") or (lambda site: [])
register("apex.parallel.*")(_apex_parallel)


_UNSLOTH_IMPORT = _lib(
    "lib-triton",
    "unsloth's kernels are Triton/CUDA only and it refuses to import without an NVIDIA GPU",
    "transformers + peft (and ascend_tools.patch for fused RMSNorm/RoPE/SwiGLU/cross-entropy)",
    severity="error",
)
register("unsloth.*", "unsloth_zoo.*")(
    lambda site: (
        _UNSLOTH_IMPORT(site)
        if site.kind == "import"
        else [
            Hit(
                "lib-triton",
                "error",
                f"{site.name}(): unsloth patches models with Triton/CUDA kernels and requires an NVIDIA GPU",
                "transformers AutoModelForCausalLM.from_pretrained + peft.get_peft_model, with ascend_tools.patch",
            )
        ]
        if site.kind == "call"
        else []
    )
)


@register(
    "deepspeed.ops.adam.FusedAdam", "deepspeed.ops.adam.DeepSpeedCPUAdam", "deepspeed.ops.lamb.FusedLamb"
)
def _deepspeed_optimizer(site: Site) -> Iterable[Hit]:
    if site.kind != "call":
        return []
    leaf = site.name.rsplit(".", 1)[1]
    if leaf == "FusedLamb":
        return [
            Hit(
                "lib-deepspeed-ops",
                "error",
                "FusedLamb(): no NPU op builder in DeepSpeed",
                "torch.optim.AdamW",
            )
        ]
    return [
        Hit(
            "lib-deepspeed-ops",
            "warning",
            f"{leaf}(): built for CUDA by default; DeepSpeed's NPU accelerator has a builder for it "
            "(op_builder/npu)",
            "keep it with DeepSpeed's NPU accelerator (import torch_npu), or torch_npu.optim.NpuFusedAdamW",
        )
    ]


@register("<method>.strip", "<method>.lstrip", "<method>.replace", "<method>.removeprefix", "<method>.split")
def _device_string_parsing(site: Site) -> Iterable[Hit]:
    """RWKV-LM's ``int(str(self.device).strip('cuda:'))``: a device index parsed out of a "cuda:N" string."""
    call = _call(site)
    first = site.value_of(call.args[0]) if call is not None and call.args else None
    if not (
        isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.startswith("cuda")
    ):
        return []
    return [
        Hit(
            "cuda-device-string",
            "error",
            f"parses a device index out of a CUDA device string ({site.name.split('.', 1)[1]}({first.value!r})); "
            "the NPU device string is 'npu:N', which this does not parse",
            "torch.device(device).index (or the LOCAL_RANK the launcher sets)",
            first,
        )
    ]
