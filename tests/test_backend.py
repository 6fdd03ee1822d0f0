"""ascend_tools.backend on a CPU-only machine (no torch_npu, no CUDA)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from ascend_tools import backend

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv(backend.ENV_FORCE, raising=False)
    backend.reset_cache()
    yield
    backend.reset_cache()


def test_detect_cpu_names_import_problem():
    info = backend.detect()
    assert info.name == "cpu" and info.device_type == "cpu"
    assert info.device_count == 1
    assert info.dist_backend == "gloo"
    assert info.torch_npu_version is None
    assert "torch_npu" in info.torch_npu_error
    assert info.device_name
    assert backend.detect() is info  # cached


def test_torch_npu_status_reason():
    mod, why = backend.torch_npu_status()
    assert mod is None
    assert "not installed" in why


@pytest.mark.parametrize("value", ["cpu", "CPU", " cpu "])
def test_force_cpu(monkeypatch, value):
    monkeypatch.setenv(backend.ENV_FORCE, value)
    info = backend.detect()
    assert info.name == "cpu"
    assert info.forced == value.strip()
    assert info.note is None


@pytest.mark.parametrize("value", ["npu", "cuda"])
def test_force_unavailable_falls_back_to_cpu(monkeypatch, value):
    monkeypatch.setenv(backend.ENV_FORCE, value)
    info = backend.detect()
    assert info.name == "cpu"
    assert f"{backend.ENV_FORCE}={value}" in info.note
    assert "unavailable" in info.note


def test_force_unknown_value_is_noted(monkeypatch):
    monkeypatch.setenv(backend.ENV_FORCE, "tpu")
    info = backend.detect()
    assert info.name == "cpu"
    assert "'tpu'" in info.note


def test_cpu_helpers():
    assert backend.device() == torch.device("cpu")
    assert backend.device(3) == torch.device("cpu")
    assert backend.dist_backend() == "gloo"
    assert backend.accelerator_module() is None
    assert backend.memory_stats() == {}
    assert backend.memory_snapshot() is None
    assert backend.event() is None
    backend.synchronize()  # no-op


def test_host_memory():
    mem = backend.host_memory()
    assert mem["rss"] > 0
    assert mem["vms"] >= mem["rss"]


def test_normalise_memory_stats():
    raw = {
        "allocated_bytes.all.current": 10,
        "allocated_bytes.all.peak": 30,
        "reserved_bytes.all.current": 64,
        "reserved_bytes.all.peak": 128,
        "active_bytes.all.current": 12,
        "num_alloc_retries": 1,
        "num_ooms": 0,
        "segment.all.current": 5,
    }
    assert backend.normalise_memory_stats(raw) == {
        "allocated_bytes": 10,
        "peak_allocated_bytes": 30,
        "reserved_bytes": 64,
        "peak_reserved_bytes": 128,
        "active_bytes": 12,
        "num_alloc_retries": 1,
        "num_ooms": 0,
    }
    assert backend.normalise_memory_stats({}) == {}


def test_broken_torch_npu_is_reported(tmp_path):
    """A torch_npu that raises at import (no CANN) is reported with its reason, in a subprocess
    so that nothing leaks into this process's sys.modules."""
    pkg = tmp_path / "torch_npu"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        'raise OSError("libascendcl.so: cannot open shared object file: No such file or directory")\n'
    )
    code = textwrap.dedent("""
        import json, torch
        from ascend_tools import backend
        info = backend.detect()
        mod, why = backend.torch_npu_status()
        print(json.dumps({"info": info.as_dict(), "why": why, "device": str(backend.device()),
                          "stats": backend.memory_stats(), "event": backend.event() is None}))
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), REPO, env.get("PYTHONPATH", "")])
    env["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    env.pop(backend.ENV_FORCE, None)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"]["name"] == "cpu"
    assert out["info"]["torch_npu_error"].startswith(
        "OSError: libascendcl.so: cannot open shared object file"
    )
    assert out["why"] == out["info"]["torch_npu_error"]
    assert out["device"] == "cpu"
    assert out["stats"] == {}
    assert out["event"] is True


def test_as_dict_is_json():
    assert json.loads(json.dumps(backend.detect().as_dict()))["dist_backend"] == "gloo"
