"""Data for ``ascend-doctor env``: versions, CANN, driver, ``npu-smi``, env vars and problems.

:func:`collect` gathers a plain dict (JSON-ready); :func:`build_report` turns it into a
:class:`~ascend_tools.report.model.Report` with schema ``ascend-doctor/env/1``. Nothing here
imports torch_npu or asks about CUDA directly: :mod:`ascend_tools.backend` does. Package versions
come from ``importlib.metadata`` so heavy packages (transformers, triton) are never imported.

Sources of the env-var descriptions (only variables whose meaning could be confirmed are listed):

- ``torch_npu``: Ascend/pytorch ``docs/zh/api/environment_variable/<group>/<NAME>.md``
- ``hccl``: hicann/hccl ``docs/zh/user_guide/hccl_env/<NAME>.md`` (the CANN HCCL user guide)
- ``cann``: CANN environment variable reference (hiascend.com ``maintenref/envvar``, e.g.
  ``envref_07_0028`` for ASCEND_RT_VISIBLE_DEVICES) and CANN log reference (``logreference``)
- ``docker``: Ascend/ascend-docker-runtime README (ASCEND_VISIBLE_DEVICES)
- ``pytorch``: PyTorch docs (CUDA semantics / torch.distributed / backend autoload)
- ``cuda``: CUDA programming guide; ``nccl``: NCCL user guide, "Environment Variables"
"""

import glob
import os
import platform
import re
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Mapping, Optional, Tuple

from ascend_tools import backend
from ascend_tools.report.model import Finding, Report, Table
from ascend_tools.severity import Severity

SCHEMA = "ascend-doctor/env/1"

# Where a CANN toolkit lives. $ASCEND_HOME_PATH / $ASCEND_TOOLKIT_HOME (set by set_env.sh) come
# first; then the default root install of CANN <= 8.3 (ascend-toolkit/latest) and of CANN >= 8.5
# (/usr/local/Ascend/cann-<version>, with /usr/local/Ascend/cann and ascend-toolkit/latest as links;
# see Ascend/cann-container-image cann/8.5.0-*/Dockerfile), then a non-root install under $HOME.
DEFAULT_CANN_ROOTS = [
    "/usr/local/Ascend/ascend-toolkit/latest",
    "/usr/local/Ascend/cann",
    "/usr/local/Ascend/cann-*",
    "~/Ascend/ascend-toolkit/latest",
    "~/Ascend/cann",
]
# The driver's version file; torch_npu.utils.get_cann_version("DRIVER") reads the same file
# (Ascend/op-plugin docs torch_npu-utils-get_cann_version.md), so containers must mount it.
DRIVER_VERSION_FILES = ["/usr/local/Ascend/driver/version.info"]
NPU_SMI_TIMEOUT_S = 10

# distribution names looked up with importlib.metadata (several spellings where wheels differ)
PACKAGES = {
    "torch": ("torch",),
    "torch_npu": ("torch_npu", "torch-npu"),
    "transformers": ("transformers",),
    "triton": ("triton",),
    "triton-ascend": ("triton-ascend", "triton_ascend"),
    "numpy": ("numpy",),
    "click": ("click",),
    "psutil": ("psutil",),
    "py-spy": ("py-spy", "py_spy"),
}

# name -> (what it does, source key). Only variables that are set are reported.
ENV_VARS: Dict[str, Tuple[str, str]] = {
    # --- HCCL (CANN collective library) ---
    "HCCL_CONNECT_TIMEOUT": (
        "Seconds to wait for socket link setup between devices when a communicator is "
        "created; integer in [120, 7200], default 120 (+20 s to report the failure).",
        "hccl",
    ),
    "HCCL_EXEC_TIMEOUT": (
        "Seconds devices wait for each other inside a collective (e.g. one rank saving a "
        "checkpoint); default 1836, 0 = never time out.",
        "hccl",
    ),
    "HCCL_EVENT_TIMEOUT": (
        "Seconds to wait for an event to complete when HCCL is the backend; default 1868, "
        "0 = never; must be larger than HCCL_EXEC_TIMEOUT.",
        "torch_npu",
    ),
    "HCCL_IF_IP": (
        "Host IP that HCCL uses to reach the root node when creating a communicator "
        "(wins over HCCL_SOCKET_IFNAME).",
        "hccl",
    ),
    "HCCL_IF_BASE_PORT": (
        "First of 32 host ports HCCL uses to gather cluster info (default 60000-60031).",
        "hccl",
    ),
    "HCCL_SOCKET_IFNAME": (
        "Host NIC name(s) HCCL uses to get the host IP: prefix 'eth', exclude '^eth', exact '=eth0'.",
        "hccl",
    ),
    "HCCL_SOCKET_FAMILY": ("IP protocol of the communication NIC: AF_INET (default) or AF_INET6.", "hccl"),
    "HCCL_BUFFSIZE": (
        "Size in MB of each communicator's shared buffer (2x per communicator, HCCL-exclusive); default 200.",
        "hccl",
    ),
    "HCCL_WHITELIST_DISABLE": (
        "1 (default) = no communication whitelist; 0 = only IPs in HCCL_WHITELIST_FILE may communicate.",
        "hccl",
    ),
    "HCCL_WHITELIST_FILE": ("Path of the whitelist file used when HCCL_WHITELIST_DISABLE=0.", "hccl"),
    "HCCL_INTRA_ROCE_ENABLE": (
        "1 = use RoCE links inside a server (Atlas training / A2); default 0. On A3 only for LLM-DataDist.",
        "hccl",
    ),
    "HCCL_INTRA_PCIE_ENABLE": (
        "1 (default) = use PCIe links inside a server; combine with HCCL_INTRA_ROCE_ENABLE, never both 1.",
        "hccl",
    ),
    "HCCL_DETERMINISTIC": (
        "true = deterministic (reproducible) reduction collectives (AllReduce, "
        "ReduceScatter, Reduce); default false.",
        "hccl",
    ),
    "HCCL_ALGO": (
        "Forces the inter-server / inter-superpod algorithm, e.g. 'level0:NA;level1:ring'; "
        "disables adaptive choice.",
        "hccl",
    ),
    "HCCL_OP_EXPANSION_MODE": (
        "Where collectives are expanded: AI_CPU, AIV (vector core), HOST, ... (depends on chip).",
        "hccl",
    ),
    "HCCL_RDMA_TIMEOUT": (
        "RDMA retransmission timeout factor t (minimum 4.096 us * 2^t); default 20.",
        "hccl",
    ),
    "HCCL_OP_RETRY_ENABLE": (
        "Re-run a collective after SDMA/RDMA CQE errors, per level, e.g. 'L1:0,L2:0'.",
        "hccl",
    ),
    # --- torch_npu: HCCL process group ---
    "TORCH_HCCL_ASYNC_ERROR_HANDLING": (
        "1 = ProcessGroupHCCL handles async errors (default 1 with torch >= "
        "2.1); wins over HCCL_ASYNC_ERROR_HANDLING.",
        "torch_npu",
    ),
    "HCCL_ASYNC_ERROR_HANDLING": ("Old name of TORCH_HCCL_ASYNC_ERROR_HANDLING (still read).", "torch_npu"),
    "TORCH_HCCL_BLOCKING_WAIT": (
        "1 = wait()/synchronize() block on the host until the HCCL op ends; no watchdog thread. Default 0.",
        "torch_npu",
    ),
    "HCCL_BLOCKING_WAIT": ("Old name of TORCH_HCCL_BLOCKING_WAIT (still read).", "torch_npu"),
    "TORCH_HCCL_DESYNC_DEBUG": (
        "1 = analyse which rank is out of step when a collective times out.",
        "torch_npu",
    ),
    "P2P_HCCL_BUFFSIZE": (
        "MB of buffer for a separate point-to-point communicator (isend/irecv); 0 = off; default 20.",
        "torch_npu",
    ),
    "RANK_TABLE_FILE": (
        "Path of a rank table JSON used to build communicators instead of negotiation.",
        "torch_npu",
    ),
    # --- torch_npu: memory ---
    "PYTORCH_NPU_ALLOC_CONF": (
        "NPU caching allocator options (expandable_segments, max_split_size_mb, "
        "garbage_collection_threshold, ...).",
        "torch_npu",
    ),
    "PYTORCH_ALLOC_CONF": (
        "Device-neutral allocator options; torch_npu reads it too from TorchNPU 26.2.0 "
        "with torch >= 2.10 (set only one of it and PYTORCH_NPU_ALLOC_CONF).",
        "torch_npu",
    ),
    "PYTORCH_NO_NPU_MEMORY_CACHING": (
        "Set = turn off the NPU caching allocator's memory reuse (debugging).",
        "torch_npu",
    ),
    "OOM_SNAPSHOT_ENABLE": ("Save a memory snapshot when an NPU out-of-memory error happens.", "torch_npu"),
    "OOM_SNAPSHOT_PATH": ("Where the out-of-memory snapshot is written.", "torch_npu"),
    "MULTI_STREAM_MEMORY_REUSE": ("Enables memory reuse across streams.", "torch_npu"),
    # --- torch_npu: op execution / compilation ---
    "TORCH_NPU_FALLBACK_CPU_DISABLE": (
        "1 = an op without an NPU kernel raises instead of silently running "
        "on the CPU; default 0. Read once at start.",
        "torch_npu",
    ),
    "ASCEND_LAUNCH_BLOCKING": (
        "1 = run ops synchronously so errors point at the right Python line (slow, "
        "disables the task queue); default 0.",
        "torch_npu",
    ),
    "TASK_QUEUE_ENABLE": (
        "Op dispatch queue: 0 off, 1 (default) level-1, 2 level-2 (more overlap, may raise peak memory).",
        "torch_npu",
    ),
    "INF_NAN_MODE_ENABLE": (
        "1 (default on A2/A3) = IEEE Inf/NaN results; 0 = saturation mode (overflow -> +-max, NaN -> 0).",
        "torch_npu",
    ),
    "INF_NAN_MODE_FORCE_DISABLE": ("A2/A3: force INF_NAN mode off (saturation).", "torch_npu"),
    "COMBINED_ENABLE": ("1 = optimise the combination of two non-contiguous ops; default 0.", "torch_npu"),
    "ACL_OP_COMPILER_CACHE_MODE": (
        "Op compile disk cache: enable (default), disable, force (refresh).",
        "torch_npu",
    ),
    "ACL_OP_COMPILER_CACHE_DIR": ("Op compile cache directory (default $HOME/atc_data).", "torch_npu"),
    "ACL_DEVICE_SYNC_TIMEOUT": ("Timeout of device synchronisation.", "torch_npu"),
    "TORCH_NPU_LOGS": ("Log settings of torch_npu's own modules.", "torch_npu"),
    "TORCH_NPU_WARNING_DISABLE": ("Suppress torch_npu warnings.", "torch_npu"),
    "TORCH_NPU_COMPACT_ERROR_OUTPUT": ("Short error messages; CANN stacks go to plog.", "torch_npu"),
    "NPU_ASD_ENABLE": ("Feature-value (silent data corruption) detection, TorchNPU <= 7.0.0.", "torch_npu"),
    "NPU_ASD_CONFIG": ("Feature-value (silent data corruption) detection, TorchNPU >= 7.1.0.", "torch_npu"),
    "CPU_AFFINITY_CONF": ("Bind torch_npu threads to CPU cores (coarse/fine-grained).", "torch_npu"),
    "STREAMS_PER_DEVICE": ("Maximum number of streams in the stream pool.", "torch_npu"),
    "TORCH_TRANSFER_TO_NPU": ("Auto-enable transfer_to_npu (CUDA API calls redirected to NPU).", "torch_npu"),
    # --- CANN runtime / logs / devices ---
    "ASCEND_RT_VISIBLE_DEVICES": (
        "Logical NPU ids visible to this process, ascending, comma-separated (the "
        "CUDA_VISIBLE_DEVICES of Ascend).",
        "cann",
    ),
    "ASCEND_VISIBLE_DEVICES": ("NPUs that the Ascend Docker Runtime mounts into a container.", "docker"),
    "ASCEND_GLOBAL_LOG_LEVEL": (
        "CANN app log level: 0 DEBUG, 1 INFO, 2 WARNING, 3 ERROR (default), 4 NULL.",
        "cann",
    ),
    "ASCEND_SLOG_PRINT_TO_STDOUT": ("1 = print CANN logs to the screen instead of plog files.", "cann"),
    "ASCEND_PROCESS_LOG_PATH": ("Directory for CANN app logs (default $HOME/ascend/log).", "cann"),
    "ASCEND_HOME_PATH": ("CANN install root (set by set_env.sh).", "cann"),
    "ASCEND_TOOLKIT_HOME": ("CANN toolkit root (set by set_env.sh).", "cann"),
    "ASCEND_OPP_PATH": ("Operator package directory (set by set_env.sh).", "cann"),
    # --- PyTorch / CUDA / NCCL (the GPU side) ---
    "TORCH_DEVICE_BACKEND_AUTOLOAD": (
        "0 = torch does not auto-import out-of-tree backends such as torch_npu at `import torch`.",
        "pytorch",
    ),
    "PYTORCH_CUDA_ALLOC_CONF": ("CUDA caching allocator options; torch_npu does not read it.", "pytorch"),
    "CUDA_VISIBLE_DEVICES": ("GPUs visible to this process; Ascend ignores it.", "cuda"),
    "CUDA_LAUNCH_BLOCKING": ("1 = synchronous CUDA kernel launches (debugging).", "pytorch"),
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": ("ProcessGroupNCCL async error handling.", "pytorch"),
    "TORCH_NCCL_BLOCKING_WAIT": ("1 = ProcessGroupNCCL wait() blocks until done or timeout.", "pytorch"),
    "NCCL_DEBUG": ("NCCL debug output: VERSION, WARN, INFO, TRACE.", "nccl"),
    "NCCL_DEBUG_SUBSYS": ("Which NCCL subsystems print debug output.", "nccl"),
    "NCCL_SOCKET_IFNAME": ("IP interfaces NCCL uses (prefix list, ^exclude, =exact).", "nccl"),
    "NCCL_IB_DISABLE": ("1 = NCCL does not use InfiniBand/RoCE; falls back to IP sockets.", "nccl"),
    "NCCL_P2P_DISABLE": ("1 = no direct GPU-to-GPU (NVLink/PCI) transport.", "nccl"),
    "NCCL_SHM_DISABLE": ("1 = no shared-memory transport between GPUs.", "nccl"),
    "NCCL_P2P_LEVEL": ("Maximum GPU distance at which NCCL uses P2P (LOC, NVL, PIX, PXB, PHB, SYS).", "nccl"),
}
SOURCES = {
    "torch_npu": "Ascend/pytorch docs/zh/api/environment_variable",
    "hccl": "CANN HCCL user guide (hicann/hccl docs/zh/user_guide/hccl_env)",
    "cann": "CANN environment variable / log reference (hiascend.com)",
    "docker": "Ascend/ascend-docker-runtime README",
    "pytorch": "PyTorch documentation",
    "cuda": "CUDA programming guide",
    "nccl": "NCCL user guide, Environment Variables",
}
UNDOCUMENTED_PREFIXES = ("HCCL_", "ASCEND_", "NPU_", "TORCH_NPU_", "ACL_", "NCCL_", "TORCH_HCCL_")


# ---------------------------------------------------------------- version files


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(65536)
    except OSError:
        return None


def _kv(text: str) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            out.setdefault(key.strip(), value.strip())
    return out


def parse_install_info(text: str) -> Optional[str]:
    """``<arch>-linux/ascend_toolkit_install.info``: ``version=8.0.RC3`` (the release name)."""
    return _kv(text).get("version") or None


def parse_version_cfg(text: str) -> Optional[str]:
    """``version.cfg`` at the toolkit root: ``runtime_running_version=[7.5.0.1.129:8.0.RC3]``;
    the part after the colon is the CANN release."""
    kv = _kv(text)
    keys = ["runtime_running_version", *sorted(k for k in kv if k.endswith("_running_version"))]
    for key in keys:
        m = re.match(r"\[([^:\]]*):([^\]]+)\]", kv.get(key, ""))
        if m:
            return m.group(2).strip()
    return None


def parse_version_info(text: str) -> Optional[str]:
    """``compiler/version.info`` (or ``runtime/``): ``version_dir=8.0.0`` is the release;
    ``Version=7.6.0.1.220`` is the component's internal version, used only without it."""
    kv = _kv(text)
    return kv.get("version_dir") or kv.get("Version") or kv.get("version") or None


def _cann_roots(environ: Mapping[str, str]) -> List[str]:
    roots: List[str] = []
    for var in ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME"):
        if environ.get(var):
            roots.append(environ[var])
    for pattern in DEFAULT_CANN_ROOTS:
        pattern = os.path.expanduser(pattern)
        matches = sorted(glob.glob(pattern), reverse=True) if "*" in pattern else [pattern]
        roots.extend(matches)
    seen, out = set(), []
    for r in roots:
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out


def find_cann(environ: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """The CANN toolkit version and the file it came from; ``version`` is ``None`` when no
    install was found (``searched`` lists the roots tried)."""
    environ = os.environ if environ is None else environ
    roots = _cann_roots(environ)
    arch = platform.machine()
    for root in roots:
        if not os.path.isdir(root):
            continue
        candidates = [
            (os.path.join(root, f"{arch}-linux", "ascend_toolkit_install.info"), parse_install_info)
        ]
        candidates += [
            (p, parse_install_info)
            for p in sorted(glob.glob(os.path.join(root, "*-linux", "ascend_toolkit_install.info")))
        ]
        candidates += [
            (os.path.join(root, "version.cfg"), parse_version_cfg),
            (os.path.join(root, "compiler", "version.info"), parse_version_info),
            (os.path.join(root, "runtime", "version.info"), parse_version_info),
        ]
        for path, parse in candidates:
            text = _read(path)
            version = parse(text) if text else None
            if version:
                return {
                    "version": version,
                    "file": path,
                    "root": root,
                    "realpath": os.path.realpath(root),
                    "searched": roots,
                }
    return {"version": None, "file": None, "root": None, "realpath": None, "searched": roots}


def find_driver() -> Dict[str, Any]:
    """NPU driver version from ``/usr/local/Ascend/driver/version.info`` (``Version=24.1.rc2``)."""
    for path in DRIVER_VERSION_FILES:
        text = _read(path)
        if text:
            kv = _kv(text)
            version = kv.get("Version") or kv.get("version")
            if version:
                return {"version": version, "file": path}
    return {"version": None, "file": None}


def run_npu_smi(timeout: float = NPU_SMI_TIMEOUT_S) -> Dict[str, Any]:
    """``npu-smi info`` output when the binary exists; never raises."""
    exe = shutil.which("npu-smi")
    if exe is None:
        return {"path": None, "returncode": None, "output": None, "error": "npu-smi not found on PATH"}
    try:
        proc = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"path": exe, "returncode": None, "output": None, "error": f"timed out after {timeout:g} s"}
    except OSError as exc:
        return {"path": exe, "returncode": None, "output": None, "error": f"{type(exc).__name__}: {exc}"}
    out = (proc.stdout or "") + (proc.stderr or "")
    return {
        "path": exe,
        "returncode": proc.returncode,
        "output": out.rstrip(),
        "error": None if proc.returncode == 0 else f"exit status {proc.returncode}",
    }


# ---------------------------------------------------------------- packages and env vars


def package_version(*names: str) -> Optional[str]:
    from importlib import metadata

    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        except Exception:
            continue
    return None


def collect_packages() -> Dict[str, Optional[str]]:
    return {label: package_version(*names) for label, names in PACKAGES.items()}


def collect_env_vars(environ: Optional[Mapping[str, str]] = None) -> List[Dict[str, Any]]:
    """The known variables that are set (with what they do), then unknown ``HCCL_*`` /
    ``ASCEND_*`` / ``NPU_*`` / ... ones as "set, not documented here"."""
    environ = os.environ if environ is None else environ
    rows = []
    for name, (desc, src) in ENV_VARS.items():
        if name in environ:
            rows.append(
                {
                    "name": name,
                    "value": environ[name],
                    "description": desc,
                    "source": SOURCES[src],
                    "documented": True,
                }
            )
    for name in sorted(environ):
        if name not in ENV_VARS and name.startswith(UNDOCUMENTED_PREFIXES):
            rows.append(
                {
                    "name": name,
                    "value": environ[name],
                    "description": "set, not documented here",
                    "source": None,
                    "documented": False,
                }
            )
    return rows


# ---------------------------------------------------------------- problems


def release(version: Optional[str]) -> Optional[Tuple[int, ...]]:
    """``2.8.0+cpu`` / ``2.8.0.post2`` / ``2.1.0rc1`` -> ``(2, 8, 0)``."""
    if not version:
        return None
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", version)
    if not m:
        return None
    return tuple(int(g) for g in m.groups("0"))


def _number(value: Optional[str]) -> Optional[float]:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def find_problems(info: Dict[str, Any], environ: Optional[Mapping[str, str]] = None) -> List[Dict[str, str]]:
    """Checks with a documented basis (each names its source in a comment)."""
    env = os.environ if environ is None else environ
    problems: List[Dict[str, str]] = []

    def add(severity: str, rule: str, message: str, suggestion: str = "") -> None:
        problems.append({"severity": severity, "rule": rule, "message": message, "suggestion": suggestion})

    pk = info.get("packages", {})
    npu = info.get("torch_npu", {})
    npu_installed = npu.get("installed_version")
    cann = info.get("cann", {})

    # torch_npu X.Y.Z[.postN] is built for torch X.Y.Z: every row of Ascend/pytorch COMPATIBILITY.en.md
    # ("TorchNPU version mapping table") pairs them so, and the release branch is named v<torch>-<npu>.
    torch_rel, npu_rel = release(pk.get("torch")), release(npu_installed)
    if torch_rel and npu_rel and torch_rel != npu_rel:
        add(
            "error",
            "torch-npu-mismatch",
            f"torch {pk.get('torch')} with torch_npu {npu_installed}: torch_npu "
            f"{'.'.join(map(str, npu_rel))}.x is built for torch {'.'.join(map(str, npu_rel))}",
            f"pip install torch=={'.'.join(map(str, npu_rel))} (or the torch_npu matching your torch); "
            "see the Ascend/pytorch compatibility table",
        )
    if npu_installed and npu.get("error"):
        add(
            "error",
            "torch-npu-import",
            f"torch_npu {npu_installed} is installed but `import torch_npu` failed: {npu['error']}",
            "source /usr/local/Ascend/ascend-toolkit/set_env.sh (CANN) before starting Python",
        )
    # `import torch_npu` needs the CANN libraries (libascendcl.so, libhccl.so).
    if npu_installed and not cann.get("version"):
        add(
            "error",
            "cann-missing",
            "torch_npu is installed but no CANN toolkit was found (searched ASCEND_HOME_PATH, "
            "ASCEND_TOOLKIT_HOME, /usr/local/Ascend/...)",
            "install CANN and source its set_env.sh",
        )
    if (npu_installed or cann.get("version")) and not info.get("driver", {}).get("version"):
        add(
            "info",
            "driver-version-unknown",
            "NPU driver version unknown: /usr/local/Ascend/driver/version.info is missing",
            "in a container, mount it: -v /usr/local/Ascend/driver/version.info:/usr/local/Ascend/driver/version.info",
        )

    # hccl_env/HCCL_CONNECT_TIMEOUT.md: integer in [120, 7200]
    ct = env.get("HCCL_CONNECT_TIMEOUT")
    if ct is not None:
        v = _number(ct)
        if v is None or v != int(v) or not 120 <= v <= 7200:
            add(
                "warning",
                "hccl-connect-timeout-range",
                f"HCCL_CONNECT_TIMEOUT={ct!r} is outside the documented integer range [120, 7200] seconds",
            )
    # hccl_env/HCCL_EXEC_TIMEOUT.md: 0 = never time out (default 1836)
    et = env.get("HCCL_EXEC_TIMEOUT")
    if et is not None and _number(et) == 0:
        add(
            "warning",
            "hccl-exec-timeout-zero",
            "HCCL_EXEC_TIMEOUT=0: a collective waiting for a stuck rank never times out, so a hang never errors",
            "set a finite value (default 1836 s)",
        )
    # torch_npu HCCL_EVENT_TIMEOUT.md: when set, must be larger than HCCL_EXEC_TIMEOUT
    ev = _number(env.get("HCCL_EVENT_TIMEOUT"))
    exec_effective = _number(et) if et is not None else 1836.0
    if ev is not None and ev != 0 and exec_effective is not None and ev <= exec_effective:
        add(
            "warning",
            "hccl-event-timeout",
            f"HCCL_EVENT_TIMEOUT={env['HCCL_EVENT_TIMEOUT']} is not larger than HCCL_EXEC_TIMEOUT "
            f"({exec_effective:g} s); the documentation requires it to be larger",
        )
    # hccl_env/HCCL_INTRA_PCIE_ENABLE.md: unsupported combinations
    pcie, roce = env.get("HCCL_INTRA_PCIE_ENABLE"), env.get("HCCL_INTRA_ROCE_ENABLE")
    if (pcie, roce) in (("1", "1"), ("0", None), (None, "0")):
        add(
            "error",
            "hccl-intra-link",
            f"HCCL_INTRA_PCIE_ENABLE={pcie} with HCCL_INTRA_ROCE_ENABLE={roce} is not a supported combination",
            "use PCIE=1/ROCE=0 (PCIe) or PCIE=0/ROCE=1 (RoCE)",
        )
    # hccl_env/HCCL_WHITELIST_DISABLE.md: whitelist on needs HCCL_WHITELIST_FILE
    if env.get("HCCL_WHITELIST_DISABLE") == "0" and not env.get("HCCL_WHITELIST_FILE"):
        add(
            "warning",
            "hccl-whitelist-file",
            "HCCL_WHITELIST_DISABLE=0 turns the whitelist on but HCCL_WHITELIST_FILE is not set",
        )
    # TORCH_HCCL_ASYNC_ERROR_HANDLING.md: the TORCH_ name wins when both are set
    new, old = env.get("TORCH_HCCL_ASYNC_ERROR_HANDLING"), env.get("HCCL_ASYNC_ERROR_HANDLING")
    if new is not None and old is not None and new != old:
        add(
            "info",
            "hccl-async-error-handling",
            f"TORCH_HCCL_ASYNC_ERROR_HANDLING={new} overrides HCCL_ASYNC_ERROR_HANDLING={old}",
        )
    # PYTORCH_NPU_ALLOC_CONF.md: from TorchNPU 26.2.0 both set is an error that exits the program
    if env.get("PYTORCH_ALLOC_CONF") is not None and env.get("PYTORCH_NPU_ALLOC_CONF") is not None:
        add(
            "warning",
            "alloc-conf-both",
            "PYTORCH_ALLOC_CONF and PYTORCH_NPU_ALLOC_CONF are both set; newer torch_npu refuses to start",
            "keep one of them",
        )
    # the NPU allocator reads PYTORCH_NPU_ALLOC_CONF (PYTORCH_NPU_ALLOC_CONF.md), not the CUDA variable
    if (
        npu_installed
        and env.get("PYTORCH_CUDA_ALLOC_CONF") is not None
        and env.get("PYTORCH_NPU_ALLOC_CONF") is None
        and env.get("PYTORCH_ALLOC_CONF") is None
    ):
        add(
            "info",
            "cuda-alloc-conf-on-npu",
            "PYTORCH_CUDA_ALLOC_CONF is set but the NPU allocator reads PYTORCH_NPU_ALLOC_CONF",
            f"export PYTORCH_NPU_ALLOC_CONF={env['PYTORCH_CUDA_ALLOC_CONF']}",
        )
    if (
        npu_installed
        and env.get("CUDA_VISIBLE_DEVICES") is not None
        and env.get("ASCEND_RT_VISIBLE_DEVICES") is None
    ):
        add(
            "info",
            "cuda-visible-devices-on-npu",
            "CUDA_VISIBLE_DEVICES is set but NPUs are selected with ASCEND_RT_VISIBLE_DEVICES",
            f"export ASCEND_RT_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}",
        )
    # ASCEND_LAUNCH_BLOCKING.md: synchronous mode slows every op and turns off the task queue
    if env.get("ASCEND_LAUNCH_BLOCKING") == "1":
        add(
            "warning",
            "launch-blocking",
            "ASCEND_LAUNCH_BLOCKING=1 runs every op synchronously (slow; TASK_QUEUE_ENABLE has no effect)",
            "unset it outside debugging",
        )
    # INF_NAN_MODE_ENABLE.md: saturation mode changes Inf/NaN results vs. IEEE (GPU) behaviour
    if env.get("INF_NAN_MODE_ENABLE") == "0":
        add(
            "warning",
            "saturation-mode",
            "INF_NAN_MODE_ENABLE=0 (saturation mode): overflow becomes +-max and NaN becomes 0, unlike a GPU",
            "unset it when comparing precision against GPU/CPU",
        )
    return problems


# ---------------------------------------------------------------- collect / report


def collect() -> Dict[str, Any]:
    """Everything ``ascend-doctor env`` shows, as a JSON-ready dict."""
    import torch

    info_backend = backend.detect()
    packages = collect_packages()
    info: Dict[str, Any] = {
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "torch": {
            "version": torch.__version__,
            "cuda": getattr(torch.version, "cuda", None),
            "hip": getattr(torch.version, "hip", None),
            "git_version": getattr(torch.version, "git_version", None),
        },
        "torch_npu": {
            "installed_version": packages.get("torch_npu"),
            "imported_version": info_backend.torch_npu_version,
            "error": info_backend.torch_npu_error,
        },
        "backend": info_backend.as_dict(),
        "cann": find_cann(),
        "driver": find_driver(),
        "npu_smi": run_npu_smi(),
        "packages": packages,
        "env": collect_env_vars(),
    }
    info["problems"] = find_problems(info)
    return info


def build_report(info: Dict[str, Any]) -> Report:
    """The ``env`` report; ``report.data`` is ``info`` itself."""
    b = info.get("backend", {})
    npu = info.get("torch_npu", {})
    cann = info.get("cann", {})
    driver = info.get("driver", {})
    npu_text = npu.get("imported_version") or (
        f"{npu['installed_version']} (import failed)" if npu.get("installed_version") else "not installed"
    )
    report = Report(
        schema=SCHEMA,
        title="ascend-doctor env",
        summary=[
            ("backend", f"{b.get('name')} x{b.get('device_count')} ({b.get('device_name')})"),
            ("torch", info.get("torch", {}).get("version")),
            ("torch_npu", npu_text),
            ("CANN", cann.get("version") or "not found"),
            ("driver", driver.get("version") or "not found"),
            ("problems", len(info.get("problems", []))),
        ],
        data=info,
    )
    sec = report.section("Versions")
    t = info.get("torch", {})
    rows = [
        ["python", info.get("python", {}).get("version"), info.get("python", {}).get("executable")],
        ["platform", info.get("platform", {}).get("platform"), info.get("platform", {}).get("machine")],
        ["torch", t.get("version"), f"cuda={t.get('cuda')} hip={t.get('hip')}"],
        ["torch_npu", npu_text, npu.get("error") or ""],
        [
            "CANN",
            cann.get("version") or "not found",
            cann.get("file") or ", ".join(cann.get("searched") or []),
        ],
        ["driver", driver.get("version") or "not found", driver.get("file") or ""],
    ]
    rows += [
        [name, version or "not installed", ""]
        for name, version in info.get("packages", {}).items()
        if name not in ("torch", "torch_npu")
    ]
    sec.tables.append(Table(title="", columns=["component", "version", "detail"], rows=rows))

    sec = report.section("Backend")
    sec.tables.append(
        Table(title="", columns=["field", "value"], rows=[[k, "" if v is None else v] for k, v in b.items()])
    )

    sec = report.section("Environment variables")
    env_rows = [[r["name"], r["value"], r["description"]] for r in info.get("env", [])]
    if env_rows:
        sec.tables.append(
            Table(
                title="Set variables",
                columns=["name", "value", "what it does"],
                rows=env_rows,
                note="only variables that are set are listed; see docs/env.md for sources",
            )
        )
    else:
        sec.text.append("No HCCL / Ascend / allocator / CUDA / NCCL variables are set.")

    smi = info.get("npu_smi", {})
    sec = report.section("npu-smi info")
    sec.text.append(smi.get("output") or f"(not run: {smi.get('error')})")

    sec = report.section("Problems")
    for p in info.get("problems", []):
        sec.findings.append(
            Finding(
                severity=Severity.parse(p["severity"]),
                rule=p["rule"],
                message=p["message"],
                suggestion=p.get("suggestion", ""),
            )
        )
    if not sec.findings:
        sec.text.append("none")
    return report
