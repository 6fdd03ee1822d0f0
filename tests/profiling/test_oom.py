"""OOM forensics: which errors are OOMs, the report's content, hook chaining (in process and for a script
that dies of an OOM), the allocator observer, and live blocks from a snapshot in torch's documented format."""

import os
import subprocess
import sys
import threading
import types

import psutil
import pytest
import torch
from gloo_ranks import read_json

from ascend_tools import backend
from ascend_tools.profiling import oom
from ascend_tools.profiling.analyze.memory import oom_summary
from ascend_tools.profiling.oom import OomForensics, is_oom, snapshot_summary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# torch_npu's allocator message (NPUCachingAllocator.cpp), as users report it (vllm-project/vllm-ascend#19)
NPU_MESSAGE = (
    "NPU out of memory. Tried to allocate 22.00 MiB (NPU 0; 60.97 GiB total capacity; 10.24 GiB already "
    "allocated; 10.24 GiB current active; 19.52 MiB free; 10.65 GiB reserved in total by PyTorch)"
)

# The format torch/cuda/memory.py's `_snapshot` docstring documents: segments of blocks, each block with
# a state and the frames that allocated it (innermost first; C++ frames mixed in with stacks="all").
MiB = 1 << 20
SNAPSHOT = {
    "segments": [
        {
            "address": 0x7F0000000000,
            "total_size": 30 * MiB,
            "stream": 0,
            "segment_type": "large",
            "segment_pool_id": (0, 0),
            "allocated_size": 12 * MiB,
            "active_size": 22 * MiB,
            "blocks": [
                {
                    "address": 0x7F0000000000,
                    "size": 8 * MiB,
                    "requested_size": 8000000,
                    "state": "active_allocated",
                    "frames": [
                        {"filename": "??", "line": 0, "name": "c10::cuda::CUDACachingAllocator::malloc"},
                        {"filename": "/work/train.py", "line": 41, "name": "forward"},
                        {"filename": "/work/train.py", "line": 80, "name": "train_step"},
                    ],
                },
                {
                    "address": 0x7F0000800000,
                    "size": 4 * MiB,
                    "requested_size": 4 * MiB,
                    "state": "active_allocated",
                    "frames": [],
                },
                {
                    "address": 0x7F0000C00000,
                    "size": 10 * MiB,
                    "requested_size": 10 * MiB,
                    "state": "active_awaiting_free",
                    "frames": [],
                },  # freed, but another stream still uses it
                {
                    "address": 0x7F0001600000,
                    "size": 8 * MiB,
                    "requested_size": 0,
                    "state": "inactive",
                    "frames": [],
                },
            ],
        },
        {
            "address": 0x7F1000000000,
            "total_size": 2 * MiB,
            "stream": 0,
            "segment_type": "small",
            "segment_pool_id": (0, 0),
            "allocated_size": 512,
            "active_size": 1024,
            "blocks": [
                {
                    "address": 0x7F1000000000,
                    "size": 512,
                    "requested_size": 500,
                    "state": "active_allocated",
                    "frames": [{"filename": "/work/model.py", "line": 7, "name": "__init__"}],
                },
                {
                    "address": 0x7F1000000200,
                    "size": 512,
                    "requested_size": 512,
                    "state": "active_awaiting_free",
                    "frames": [],
                },
                {
                    "address": 0x7F1000000400,
                    "size": 2 * MiB - 1024,
                    "requested_size": 0,
                    "state": "inactive",
                    "frames": [],
                },
            ],
        },
    ],
    "device_traces": [[{"action": "oom", "size": 2 << 30, "stream": 0, "device_free": MiB, "frames": []}]],
}


# torch.OutOfMemoryError in newer torch; torch.cuda.OutOfMemoryError (now an alias of it) in older ones
OOM_ERROR = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)


def train_step():
    raise OOM_ERROR("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.fixture
def forensics(tmp_path):
    f = OomForensics(
        str(tmp_path / "rank0"), current_step=lambda: 7, recent_memory=lambda: [{"k": "mem", "t": 1.0}]
    )
    yield f
    f.uninstall()


def test_is_oom():
    assert is_oom(OOM_ERROR("CUDA out of memory."))
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert is_oom(RuntimeError(NPU_MESSAGE))
    assert not is_oom(RuntimeError("Expected all tensors to be on the same device"))
    assert not is_oom(ValueError(NPU_MESSAGE))  # only the allocator's RuntimeError carries it
    assert not is_oom(MemoryError())  # host memory: not the device allocator's


def test_report_of_an_oom_in_a_step(forensics, monkeypatch):
    monkeypatch.setenv("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    monkeypatch.setenv("PYTORCH_NPU_ALLOC_CONF", "max_split_size_mb:128")
    monkeypatch.setenv("PYTORCH_NO_CUDA_MEMORY_CACHING", "1")
    monkeypatch.setenv("PYTORCH_JIT", "0")
    try:
        train_step()
    except OOM_ERROR as exc:
        path = forensics.report(exc)
        assert forensics.report(exc) is None  # once per exception
    rep = read_json(path)
    assert path == forensics.path and path.endswith(os.path.join("rank0", "oom.json"))
    assert rep["step"] == 7
    assert rep["error"]["type"] in ("torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError")
    assert rep["error"]["message"] == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert "in train_step" in "".join(rep["error"]["traceback"])
    assert rep["allocator_env"] == {
        "PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True",
        "PYTORCH_NO_CUDA_MEMORY_CACHING": "1",
        "PYTORCH_NPU_ALLOC_CONF": "max_split_size_mb:128",
    }
    assert rep["host_memory"]["process"]["rss"] > 0
    assert rep["host_memory"]["system"]["total"] == psutil.virtual_memory().total
    assert rep["recent_memory"] == [{"k": "mem", "t": 1.0}]
    # on the CPU there is no device allocator to ask
    assert rep["device"] == {"memory": {}, "fragmentation": None, "stats": {}, "summary": None}
    assert rep["snapshot"] is None and rep["at_oom"] is None
    assert forensics.reports == 1


def test_not_an_oom_writes_nothing(forensics):
    assert forensics.report(ValueError("bad shape")) is None
    assert not os.path.exists(forensics.path)


def test_device_state_through_backend(forensics, monkeypatch):
    """With an allocator (faked behind backend's accelerator module), the report carries its counters,
    summary and snapshot, and what the OOM observer saw at the failed allocation."""
    raw = {"allocated_bytes.all.current": 12 * MiB, "reserved_bytes.all.current": 22 * MiB, "num_ooms": 1}
    fake = types.SimpleNamespace(
        memory_stats=lambda dev=None: raw,
        memory_summary=lambda dev=None: "|  PyTorch CUDA memory summary  |",
        memory=types.SimpleNamespace(_snapshot=lambda dev=None: SNAPSHOT),
    )
    monkeypatch.setattr(backend, "accelerator_module", lambda: fake)
    forensics.install()
    assert forensics.observer == "no device allocator on cpu"  # the real attach: this is a CPU build
    oom._OBSERVER.on_oom(0, 2 << 30, 80 << 30, MiB)  # what CUDA / torch_npu call before raising
    rep = read_json(forensics.report(RuntimeError(NPU_MESSAGE)))
    assert rep["error"]["type"] == "builtins.RuntimeError"
    assert rep["device"]["stats"] == raw
    assert rep["device"]["memory"] == {"allocated_bytes": 12 * MiB, "reserved_bytes": 22 * MiB, "num_ooms": 1}
    assert rep["device"]["fragmentation"] == round(1 - 12 / 22, 4)
    assert rep["device"]["summary"] == "|  PyTorch CUDA memory summary  |"
    assert rep["snapshot"]["top_blocks"][0]["size"] == 8 * MiB
    at = rep["at_oom"]
    assert (at["device"], at["requested_bytes"], at["device_limit"], at["device_free"]) == (
        0,
        2 << 30,
        80 << 30,
        MiB,
    )
    assert at["stats"] == raw and at["snapshot"]["largest_inactive_block"] == 8 * MiB
    # analyze's headline of this file: the error's first line, and the numbers that matter one level down
    head = oom_summary(3, rep)
    assert head["error"] == "RuntimeError: " + NPU_MESSAGE
    assert (
        head["facts"]["requested_bytes"],
        head["facts"]["allocated_bytes"],
        head["facts"]["fragmentation"],
    ) == (2 << 30, 12 * MiB, round(1 - 12 / 22, 4))
    forensics.uninstall()
    assert oom._OBSERVER.target is None


def test_snapshot_summary():
    s = snapshot_summary(SNAPSHOT, top=2)
    assert {k: v for k, v in s.items() if k != "top_blocks"} == {
        "segments": 2,
        "reserved_bytes": 32 * MiB,
        "allocated_bytes": 12 * MiB + 512,
        "live_blocks": 3,
        "largest_inactive_block": 8 * MiB,
        "history": True,
    }
    assert s["top_blocks"] == [
        {
            "size": 8 * MiB,
            "requested_size": 8000000,
            "address": 0x7F0000000000,
            "segment_type": "large",
            "stream": 0,
            "frames": ["/work/train.py:41 in forward", "/work/train.py:80 in train_step"],
        },
        {
            "size": 4 * MiB,
            "requested_size": 4 * MiB,
            "address": 0x7F0000800000,
            "segment_type": "large",
            "stream": 0,
            "frames": [],
        },
    ]
    no_history = snapshot_summary(
        {
            "segments": [
                {
                    "total_size": 512,
                    "allocated_size": 512,
                    "blocks": [{"size": 512, "state": "active_allocated", "frames": []}],
                }
            ]
        }
    )
    assert no_history["history"] is False and no_history["top_blocks"][0]["requested_size"] == 512


def test_excepthook_chain(forensics, monkeypatch):
    seen = []
    previous = lambda *info: seen.append(info)  # noqa: E731
    monkeypatch.setattr(sys, "excepthook", previous)
    forensics.install()
    assert sys.excepthook != previous
    try:
        train_step()
    except OOM_ERROR:
        info = sys.exc_info()
    sys.excepthook(*info)
    assert seen == [info]  # the previous hook still runs, with the same arguments
    assert read_json(forensics.path)["step"] == 7
    forensics.uninstall()
    assert sys.excepthook is previous


def test_threading_excepthook_chain(forensics, monkeypatch):
    seen = []
    previous = seen.append
    monkeypatch.setattr(threading, "excepthook", previous)
    forensics.install()
    worker = threading.Thread(target=train_step)
    worker.start()
    worker.join()
    assert len(seen) == 1 and isinstance(seen[0].exc_value, OOM_ERROR)
    assert read_json(forensics.path)["error"]["message"].startswith("CUDA out of memory")
    forensics.uninstall()
    assert threading.excepthook == previous


def test_a_hook_chained_after_ours_keeps_working(forensics, monkeypatch):
    """Uninstalling under someone else's hook leaves ours in their chain, passing through."""
    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: seen.append(info))
    forensics.install()
    ours = sys.excepthook
    monkeypatch.setattr(sys, "excepthook", lambda *info: ours(*info))
    forensics.uninstall()
    try:
        train_step()
    except OOM_ERROR:
        sys.excepthook(*sys.exc_info())
    assert len(seen) == 1 and not os.path.exists(forensics.path)


def test_hook_survives_an_exception_that_cannot_be_printed(forensics, monkeypatch):
    class Unprintable(RuntimeError):
        def __str__(self):
            raise ValueError("no text")

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *info: seen.append(info))
    forensics.install()
    sys.excepthook(Unprintable, Unprintable(), None)
    assert len(seen) == 1 and forensics.internal_errors == 1


DYING_SCRIPT = """
import sys, torch
sys.path.insert(0, {root!r})
from ascend_tools.profiling.oom import OomForensics
OomForensics(sys.argv[1], current_step=lambda: 3, recent_memory=list).install()

def forward_pass():
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

forward_pass()
"""


def test_an_oom_that_ends_the_script_is_reported(tmp_path):
    script = tmp_path / "train.py"
    script.write_text(DYING_SCRIPT.format(root=ROOT))
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "rank0")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert "OutOfMemoryError: CUDA out of memory" in proc.stderr  # Python's own hook still printed it
    rep = read_json(tmp_path / "rank0" / "oom.json")
    assert rep["step"] == 3 and "in forward_pass" in "".join(rep["error"]["traceback"])
