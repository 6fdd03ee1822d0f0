"""The one place that imports ``torch_npu`` or asks about CUDA.

Every other module asks this one which accelerator is present (``npu`` → ``cuda`` → ``cpu``), which
device string to use, how to synchronize, what the caching allocator holds and which
``torch.distributed`` backend fits. Detection is lazy, runs once per process
(:func:`functools.lru_cache`) and never raises: when ``torch_npu`` is absent or broken (installed
but CANN's ``libascendcl.so`` cannot be loaded, say) the reason is recorded in
:attr:`BackendInfo.torch_npu_error` and the process goes on with CUDA or the CPU.

``ASCEND_TOOLS_BACKEND=cpu|cuda|npu`` forces a choice. A forced backend that is not usable here
falls back to ``cpu`` and :attr:`BackendInfo.note` says why; the tool never refuses to run.
"""

import functools
import os
import platform
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import Any, Callable, Dict, Optional, Tuple

import torch

ENV_FORCE = "ASCEND_TOOLS_BACKEND"
BACKENDS = ("npu", "cuda", "cpu")
DIST_BACKENDS = {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}

# torch.{npu,cuda}.memory_stats() key -> our key. torch_npu's allocator mirrors the CUDA
# caching allocator's statistics (torch_npu/npu/memory.py: memory_stats), so one table serves both.
MEMORY_STAT_KEYS = {
    "allocated_bytes.all.current": "allocated_bytes",
    "reserved_bytes.all.current": "reserved_bytes",
    "active_bytes.all.current": "active_bytes",
    "allocated_bytes.all.peak": "peak_allocated_bytes",
    "reserved_bytes.all.peak": "peak_reserved_bytes",
    "num_alloc_retries": "num_alloc_retries",
    "num_ooms": "num_ooms",
}


@dataclass(frozen=True)
class BackendInfo:
    """What :func:`detect` found.

    ``name`` is ``npu``, ``cuda`` or ``cpu``; ``device_type`` is the torch device type string
    (the same three today); ``forced`` is the value of ``ASCEND_TOOLS_BACKEND`` when set, and
    ``note`` says why a forced or expected backend was not used.
    """

    name: str
    device_type: str
    device_count: int
    device_name: str
    torch_npu_version: Optional[str]
    torch_npu_error: Optional[str]
    dist_backend: str
    forced: Optional[str] = None
    note: Optional[str] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


@functools.cache
def torch_npu_status() -> Tuple[Optional[ModuleType], Optional[str]]:
    """``(torch_npu module, None)`` when it imports, else ``(None, reason)``.

    The reason names the failure: ``not installed`` for a missing package, otherwise the
    exception type and message (e.g. ``OSError: libascendcl.so: cannot open shared object file``).
    """
    try:
        import torch_npu  # the only import of torch_npu in the package
    except ModuleNotFoundError as exc:
        if exc.name == "torch_npu":
            return None, "torch_npu is not installed (No module named 'torch_npu')"
        return None, f"ModuleNotFoundError: {exc}"
    except Exception as exc:  # broken install: missing CANN libraries, ABI mismatch, ...
        return None, f"{type(exc).__name__}: {exc}"
    return torch_npu, None


def npu_op_unavailable(dev: Any, name: str) -> Optional[str]:
    """Why torch_npu's fused op ``name`` cannot run for a tensor on ``dev`` (None: it can)."""
    kind = getattr(dev, "type", str(dev))
    if kind != "npu":
        return f"needs an NPU tensor (device here: {kind})"
    mod, err = torch_npu_status()
    if mod is None:
        return err
    return None if hasattr(mod, name) else f"torch_npu has no {name}"


def _torch_npu_version(mod: Optional[ModuleType]) -> Optional[str]:
    if mod is None:
        return None
    version = getattr(mod, "__version__", None)
    return str(version) if version is not None else None


def _npu_count() -> Tuple[int, Optional[str]]:
    """Number of NPUs visible to torch (needs torch_npu imported), with the reason when 0."""
    mod, err = torch_npu_status()
    if mod is None:
        return 0, err
    npu = getattr(torch, "npu", None)
    if npu is None:
        return 0, "torch_npu imported but torch.npu is missing"
    try:
        count = int(npu.device_count())
    except Exception as exc:
        return 0, f"torch.npu.device_count() failed: {type(exc).__name__}: {exc}"
    return count, None if count > 0 else "torch_npu imported but no NPU is visible"


def _cuda_count() -> Tuple[int, Optional[str]]:
    try:
        if not torch.cuda.is_available():
            return 0, "torch.cuda.is_available() is False"
        return int(torch.cuda.device_count()), None
    except Exception as exc:
        return 0, f"CUDA probe failed: {type(exc).__name__}: {exc}"


def _probe(name: str) -> Tuple[int, Optional[str]]:
    if name == "npu":
        return _npu_count()
    if name == "cuda":
        return _cuda_count()
    return 1, None


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo`` on Linux), else what :mod:`platform` says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                key, _, value = line.partition(":")
                # x86: "model name"; some aarch64 kernels: "Model name"/"Hardware"
                if key.strip().lower() in ("model name", "hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def _device_name(name: str) -> str:
    if name == "cpu":
        return cpu_name()
    # torch.npu exists once torch_npu is imported (detect() chose npu only then); torch's stubs lack it
    mod: Any = getattr(torch, "npu", None) if name == "npu" else torch.cuda
    try:
        return str(mod.get_device_name(0))
    except Exception as exc:
        return f"unknown ({type(exc).__name__}: {exc})"


@functools.cache
def detect() -> BackendInfo:
    """Detect the backend once: ``npu`` → ``cuda`` → ``cpu``, or the one forced by
    ``ASCEND_TOOLS_BACKEND``. Never raises."""
    raw = os.environ.get(ENV_FORCE, "").strip()
    forced = raw.lower() or None
    notes = []
    if forced is not None and forced not in BACKENDS:
        notes.append(f"{ENV_FORCE}={raw!r} is not one of npu, cuda, cpu; detecting automatically")
        forced = None
    mod, npu_error = torch_npu_status()
    chosen = "cpu"
    count = 1
    for candidate in (forced,) if forced else BACKENDS:
        n, why = _probe(candidate)
        if n > 0:
            chosen, count = candidate, n
            break
        if forced:
            notes.append(f"{ENV_FORCE}={forced} but {forced} is unavailable ({why}); using cpu")
    return BackendInfo(
        name=chosen,
        device_type=chosen,
        device_count=count,
        device_name=_device_name(chosen),
        torch_npu_version=_torch_npu_version(mod),
        torch_npu_error=npu_error,
        dist_backend=DIST_BACKENDS[chosen],
        forced=raw or None,
        note="; ".join(notes) or None,
    )


def reset_cache() -> None:
    """Forget the cached detection (tests; after changing ``ASCEND_TOOLS_BACKEND``).

    An already imported ``torch_npu`` stays in ``sys.modules``; only the answers are recomputed.
    """
    detect.cache_clear()
    torch_npu_status.cache_clear()


def accelerator_module() -> Optional[ModuleType]:
    """``torch.npu`` or ``torch.cuda`` for the detected backend, ``None`` on cpu."""
    name = detect().name
    if name == "npu":
        return getattr(torch, "npu", None)
    if name == "cuda":
        return torch.cuda
    return None


def dist_backend() -> str:
    """``hccl``, ``nccl`` or ``gloo``: the ``torch.distributed`` backend for this machine."""
    return detect().dist_backend


def _dist_int(getter: str, env: str, default: int) -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(getattr(dist, getter)())
    except Exception:  # a half-initialised process group: fall back to the launcher's environment
        pass
    try:
        return int(os.environ.get(env, str(default)))
    except ValueError:
        return default


def rank() -> int:
    """This process's rank: torch.distributed's when initialised, else ``RANK`` (torchrun), else 0."""
    return _dist_int("get_rank", "RANK", 0)


def world_size() -> int:
    """The number of ranks: torch.distributed's when initialised, else ``WORLD_SIZE``, else 1."""
    return _dist_int("get_world_size", "WORLD_SIZE", 1)


def device(index: Optional[int] = None) -> torch.device:
    """``npu:N`` / ``cuda:N`` / ``cpu``. Without ``index`` the accelerator's current device
    (what ``set_device`` chose for this rank), else 0."""
    info = detect()
    if info.name == "cpu":
        return torch.device("cpu")
    if index is None:
        mod = accelerator_module()
        try:
            index = int(mod.current_device()) if mod is not None else 0
        except Exception:
            index = 0
    return torch.device(info.device_type, index)


def synchronize(dev: Any = None) -> None:
    """Wait for queued device work; a no-op on cpu and when the call fails."""
    mod = accelerator_module()
    if mod is None:
        return
    try:
        if dev is None:
            mod.synchronize()
        else:
            mod.synchronize(dev)
    except Exception:
        pass


def normalise_memory_stats(raw: Dict[str, Any]) -> Dict[str, int]:
    """Map ``memory_stats()`` keys (``allocated_bytes.all.current`` ...) to ours; absent keys
    are left out."""
    return {ours: int(raw[theirs]) for theirs, ours in MEMORY_STAT_KEYS.items() if theirs in raw}


def memory_stats(dev: Any = None) -> Dict[str, int]:
    """The caching allocator's counters for ``dev`` (see :data:`MEMORY_STAT_KEYS`);
    ``{}`` on cpu or when the allocator cannot answer."""
    return normalise_memory_stats(memory_stats_raw(dev))


def host_memory() -> Dict[str, int]:
    """This process's host memory in bytes: ``rss``, ``vms`` and ``uss`` where psutil can
    compute it (``uss`` needs ``/proc/<pid>/smaps`` access)."""
    import psutil

    proc = psutil.Process()
    try:
        mem = proc.memory_full_info()
    except (psutil.AccessDenied, OSError, NotImplementedError):
        mem = proc.memory_info()
    out = {"rss": int(mem.rss), "vms": int(mem.vms)}
    uss = getattr(mem, "uss", None)
    if uss is not None:
        out["uss"] = int(uss)
    return out


def memory_snapshot(dev: Any = None) -> Optional[Dict[str, Any]]:
    """The allocator snapshot (``torch.cuda.memory._snapshot()`` or torch_npu's
    ``torch.npu.memory._snapshot()``): segments and, when history recording is on, traces.
    ``None`` on cpu or when the private API is missing or fails."""
    mod = accelerator_module()
    memory = getattr(mod, "memory", None) if mod is not None else None
    fn = getattr(memory, "_snapshot", None) if memory is not None else None
    if fn is None:
        return None
    try:
        return fn(dev) if dev is not None else fn()
    except Exception:
        return None


def event(enable_timing: bool = True) -> Any:
    """A device event (``torch.npu.Event`` / ``torch.cuda.Event``), ``None`` on cpu."""
    mod = accelerator_module()
    cls = getattr(mod, "Event", None) if mod is not None else None
    if cls is None:
        return None
    try:
        return cls(enable_timing=enable_timing)
    except Exception:
        return None


def memory_stats_raw(dev: Any = None) -> Dict[str, Any]:
    """The allocator's whole ``memory_stats()`` dict, keys as torch (or torch_npu) names them
    (``allocated_bytes.large_pool.peak``, ``num_device_alloc`` ...); ``{}`` on cpu or on failure."""
    mod = accelerator_module()
    fn = getattr(mod, "memory_stats", None) if mod is not None else None
    if fn is None:
        return {}
    try:
        return dict((fn(dev) if dev is not None else fn()) or {})
    except Exception:
        return {}


def memory_summary(dev: Any = None) -> Optional[str]:
    """The allocator's human-readable table (``torch.{npu,cuda}.memory_summary()``); ``None`` on cpu or
    on failure."""
    mod = accelerator_module()
    fn = getattr(mod, "memory_summary", None) if mod is not None else None
    if fn is None:
        return None
    try:
        return str(fn(dev) if dev is not None else fn())
    except Exception:
        return None


def attach_oom_observer(fn: Callable[[int, int, int, int], None]) -> Optional[str]:
    """Have the caching allocator call ``fn(device, requested_bytes, device_limit, device_free)`` when
    an allocation fails, before it raises (``device_limit``: the device's total memory, or the cap set
    by ``set_per_process_memory_fraction``). ``None`` when attached, else why not. An observer cannot be
    detached again: attach once per process."""
    name = detect().name
    if name == "npu":
        attach = getattr(
            getattr(torch_npu_status()[0], "_C", None), "_npu_attach_out_of_memory_observer", None
        )
        where = "torch_npu._C._npu_attach_out_of_memory_observer"
    elif name == "cuda":
        attach = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
        where = "torch._C._cuda_attach_out_of_memory_observer"
    else:
        return "no device allocator on cpu"
    if attach is None:
        return f"{where} is not in this build"
    try:
        attach(fn)
    except Exception as exc:
        return f"{where} failed: {type(exc).__name__}: {exc}"
    return None


# Flight-recorder dump functions, tried in order: JSON before pickle, torch_npu's HCCL recorder (npu
# only) before torch's generic (`_dump_fr_trace*`, newer torch) and NCCL-only (`_dump_nccl_trace*`) ones.
_FLIGHT_RECORDERS = (
    ("torch_npu", "_dump_hccl_trace_json"),
    ("torch", "_dump_fr_trace_json"),
    ("torch", "_dump_nccl_trace_json"),
    ("torch_npu", "_dump_hccl_trace"),
    ("torch", "_dump_fr_trace"),
    ("torch", "_dump_nccl_trace"),
)


def flight_recorder() -> Tuple[Optional[bytes], str]:
    """This process's collective flight-recorder dump and the function that gave it, e.g.
    ``(b'{"version": ...}', "torch._C._distributed_c10d._dump_fr_trace_json")``. Functions whose name
    does not end in ``_json`` return pickle bytes (never unpickled here). ``(None, why)`` when no
    recorder answers."""
    npu = torch_npu_status()[0] if detect().name == "npu" else None
    failures = []
    for package, fn_name in _FLIGHT_RECORDERS:
        root = npu if package == "torch_npu" else torch
        c10d = getattr(getattr(root, "_C", None), "_distributed_c10d", None)
        fn = getattr(c10d, fn_name, None)
        if fn is None:
            continue
        where = f"{package}._C._distributed_c10d.{fn_name}"
        try:
            return bytes(fn()), where
        except Exception as exc:
            failures.append(f"{where}: {type(exc).__name__}: {exc}")
    return None, "; ".join(failures) or "no flight recorder in this torch build"


def software_versions() -> Dict[str, Optional[str]]:
    """Python, torch, transformers (without importing it) and torch_npu: what a dump or a profile records
    about the run that wrote it. torch_npu's is added to the dict by callers that already detected it."""
    import sys

    out: Dict[str, Optional[str]] = {"python": sys.version.split()[0], "torch": torch.__version__}
    mod = sys.modules.get("transformers")
    if mod is None:
        try:
            from importlib.metadata import version

            out["transformers"] = version("transformers")
        except Exception:
            out["transformers"] = None
    else:
        out["transformers"] = getattr(mod, "__version__", None)
    return out
