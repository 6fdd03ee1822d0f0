"""ascend_tools.env: CANN/driver version files, env-var table, problems, report payload."""

import json
import platform

import pytest

from ascend_tools import backend, env
from ascend_tools.report.model import Report

INSTALL_INFO = """package_name=Ascend-cann-toolkit
version=8.0.RC3
innerversion=V100R001C19SPC001B155
compatible_version=[V100R001C13,V100R001C19],[V100R001C30]
arch={arch}
os=linux
path=/usr/local/Ascend/ascend-toolkit/8.0.RC3/{arch}-linux
"""
VERSION_CFG = """# version: 1.0
runtime_running_version=[7.6.0.1.220:8.0.0]
compiler_running_version=[7.6.0.1.220:8.0.0]
hccl_running_version=[7.6.0.1.220:8.0.0]
"""
COMPILER_VERSION_INFO = "Version=7.6.0.1.220\nversion_dir=8.0.0\ntimestamp=20241210_000000\n"
DRIVER_VERSION_INFO = "Version=24.1.rc2\nascendhal_version=7.35.19\naicpu_version=1.0\n"


@pytest.fixture(autouse=True)
def clean(monkeypatch, tmp_path):
    for name in [*env.ENV_VARS, "ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", backend.ENV_FORCE]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(env, "DEFAULT_CANN_ROOTS", [])
    monkeypatch.setattr(env, "DRIVER_VERSION_FILES", [str(tmp_path / "no-driver" / "version.info")])
    backend.reset_cache()
    yield
    backend.reset_cache()


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_parsers():
    assert env.parse_install_info(INSTALL_INFO.format(arch="x86_64")) == "8.0.RC3"
    assert env.parse_version_cfg(VERSION_CFG) == "8.0.0"
    assert env.parse_version_cfg("# version: 1.0\nopp_running_version=[7.5.0.1.129:8.0.RC3]\n") == "8.0.RC3"
    assert env.parse_version_info(COMPILER_VERSION_INFO) == "8.0.0"
    assert env.parse_version_info("Version=7.5.0.1.129\n") == "7.5.0.1.129"
    assert env.parse_install_info("nothing here") is None
    assert env.parse_version_cfg("runtime_running_version=broken") is None


def test_cann_from_install_info_via_ascend_home_path(monkeypatch, tmp_path):
    root = tmp_path / "ascend-toolkit" / "latest"
    arch = platform.machine()
    info_file = _write(root / f"{arch}-linux" / "ascend_toolkit_install.info", INSTALL_INFO.format(arch=arch))
    _write(root / "version.cfg", VERSION_CFG)  # lower priority
    monkeypatch.setenv("ASCEND_HOME_PATH", str(root))
    cann = env.find_cann()
    assert cann["version"] == "8.0.RC3"
    assert cann["file"] == str(info_file)
    assert cann["root"] == str(root)


def test_cann_from_other_arch_dir(monkeypatch, tmp_path):
    root = tmp_path / "cann-8.5.0"
    _write(
        root / "aarch64-linux" / "ascend_toolkit_install.info",
        INSTALL_INFO.replace("8.0.RC3", "8.5.0").format(arch="aarch64"),
    )
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(root))
    assert env.find_cann()["version"] == "8.5.0"


def test_cann_from_version_cfg(monkeypatch, tmp_path):
    root = tmp_path / "latest"
    _write(root / "version.cfg", VERSION_CFG)
    monkeypatch.setenv("ASCEND_TOOLKIT_HOME", str(root))
    cann = env.find_cann()
    assert cann["version"] == "8.0.0"
    assert cann["file"].endswith("version.cfg")


def test_cann_from_compiler_version_info(monkeypatch, tmp_path):
    root = tmp_path / "latest"
    _write(root / "compiler" / "version.info", COMPILER_VERSION_INFO)
    monkeypatch.setenv("ASCEND_HOME_PATH", str(root))
    assert env.find_cann()["version"] == "8.0.0"


def test_cann_default_root_glob(monkeypatch, tmp_path):
    for v in ("8.3.RC1", "8.5.0"):
        _write(tmp_path / f"cann-{v}" / "version.cfg", f"runtime_running_version=[7.0:{v}]\n")
    monkeypatch.setattr(env, "DEFAULT_CANN_ROOTS", [str(tmp_path / "cann-*")])
    assert env.find_cann()["version"] == "8.5.0"  # newest name first


def test_cann_missing():
    cann = env.find_cann()
    assert cann["version"] is None and cann["file"] is None


def test_driver_version(monkeypatch, tmp_path):
    f = _write(tmp_path / "driver" / "version.info", DRIVER_VERSION_INFO)
    monkeypatch.setattr(env, "DRIVER_VERSION_FILES", [str(f)])
    assert env.find_driver() == {"version": "24.1.rc2", "file": str(f)}


def test_npu_smi_absent(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert env.run_npu_smi()["error"] == "npu-smi not found on PATH"


def test_npu_smi_fake_binary(monkeypatch, tmp_path):
    exe = _write(tmp_path / "bin" / "npu-smi", '#!/bin/sh\necho "npu-smi 24.1.rc2 $1"\n')
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", str(exe.parent))
    out = env.run_npu_smi()
    assert out["returncode"] == 0 and out["output"] == "npu-smi 24.1.rc2 info" and out["error"] is None


def test_env_vars_only_set_ones_with_descriptions(monkeypatch):
    monkeypatch.setenv("HCCL_CONNECT_TIMEOUT", "1200")
    monkeypatch.setenv("PYTORCH_NPU_ALLOC_CONF", "expandable_segments:True")
    monkeypatch.setenv("HCCL_MADE_UP_KNOB", "7")
    rows = {r["name"]: r for r in env.collect_env_vars()}
    assert rows["HCCL_CONNECT_TIMEOUT"]["value"] == "1200"
    assert "120, 7200" in rows["HCCL_CONNECT_TIMEOUT"]["description"]
    assert rows["HCCL_CONNECT_TIMEOUT"]["documented"] is True
    assert rows["PYTORCH_NPU_ALLOC_CONF"]["source"]
    assert rows["HCCL_MADE_UP_KNOB"]["description"] == "set, not documented here"
    assert "HCCL_EXEC_TIMEOUT" not in rows
    assert "PATH" not in rows


def test_every_described_var_has_a_source():
    for name, (desc, src) in env.ENV_VARS.items():
        assert desc and src in env.SOURCES, name


def _rules(info, environ):
    return {p["rule"]: p for p in env.find_problems(info, environ)}


def test_problem_torch_npu_mismatch():
    info = {
        "packages": {"torch": "2.9.0+cpu"},
        "torch_npu": {"installed_version": "2.8.0.post2"},
        "cann": {"version": "8.5.0"},
        "driver": {"version": "25.0"},
    }
    rules = _rules(info, {})
    assert rules["torch-npu-mismatch"]["severity"] == "error"
    assert "2.8.0" in rules["torch-npu-mismatch"]["message"]
    info["packages"]["torch"] = "2.8.0"
    assert "torch-npu-mismatch" not in _rules(info, {})


def test_problem_torch_npu_without_cann():
    info = {
        "packages": {"torch": "2.8.0"},
        "torch_npu": {"installed_version": "2.8.0.post2", "error": "OSError: libascendcl.so: cannot open"},
        "cann": {"version": None},
        "driver": {"version": None},
    }
    rules = _rules(info, {})
    assert {"cann-missing", "torch-npu-import", "driver-version-unknown"} <= set(rules)


def test_problems_from_env_values():
    info = {"packages": {}, "torch_npu": {}, "cann": {}, "driver": {}}
    environ = {
        "HCCL_CONNECT_TIMEOUT": "60",
        "HCCL_EXEC_TIMEOUT": "0",
        "HCCL_INTRA_PCIE_ENABLE": "1",
        "HCCL_INTRA_ROCE_ENABLE": "1",
        "HCCL_WHITELIST_DISABLE": "0",
        "PYTORCH_ALLOC_CONF": "a",
        "PYTORCH_NPU_ALLOC_CONF": "b",
        "INF_NAN_MODE_ENABLE": "0",
        "TORCH_HCCL_ASYNC_ERROR_HANDLING": "1",
        "HCCL_ASYNC_ERROR_HANDLING": "0",
    }
    rules = _rules(info, environ)
    assert {
        "hccl-connect-timeout-range",
        "hccl-exec-timeout-zero",
        "hccl-intra-link",
        "hccl-whitelist-file",
        "alloc-conf-both",
        "saturation-mode",
        "hccl-async-error-handling",
    } <= set(rules)
    assert _rules(info, {"HCCL_CONNECT_TIMEOUT": "1200", "HCCL_EXEC_TIMEOUT": "1800"}) == {}


def test_problem_event_timeout_vs_exec_timeout():
    info = {"packages": {}, "torch_npu": {}, "cann": {}, "driver": {}}
    assert "hccl-event-timeout" in _rules(info, {"HCCL_EVENT_TIMEOUT": "600", "HCCL_EXEC_TIMEOUT": "1200"})
    assert "hccl-event-timeout" in _rules(info, {"HCCL_EVENT_TIMEOUT": "1800"})  # default exec is 1836
    assert "hccl-event-timeout" not in _rules(
        info, {"HCCL_EVENT_TIMEOUT": "1900", "HCCL_EXEC_TIMEOUT": "1800"}
    )


def test_porting_hints_only_with_torch_npu():
    environ = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True", "CUDA_VISIBLE_DEVICES": "0,1"}
    gpu = {"packages": {}, "torch_npu": {}, "cann": {}, "driver": {}}
    assert _rules(gpu, environ) == {}
    npu = {
        "packages": {"torch": "2.8.0"},
        "torch_npu": {"installed_version": "2.8.0"},
        "cann": {"version": "8.5.0"},
        "driver": {"version": "25.0"},
    }
    rules = _rules(npu, environ)
    assert "PYTORCH_NPU_ALLOC_CONF=expandable_segments:True" in rules["cuda-alloc-conf-on-npu"]["suggestion"]
    assert "ASCEND_RT_VISIBLE_DEVICES=0,1" in rules["cuda-visible-devices-on-npu"]["suggestion"]


def test_release():
    assert env.release("2.8.0+cpu") == (2, 8, 0)
    assert env.release("2.1.0.post17") == (2, 1, 0)
    assert env.release("2.10") == (2, 10, 0)
    assert env.release(None) is None


def test_collect_and_report(monkeypatch, tmp_path):
    root = tmp_path / "latest"
    _write(root / "version.cfg", VERSION_CFG)
    drv = _write(tmp_path / "driver" / "version.info", DRIVER_VERSION_INFO)
    monkeypatch.setattr(env, "DRIVER_VERSION_FILES", [str(drv)])
    monkeypatch.setenv("ASCEND_HOME_PATH", str(root))
    monkeypatch.setenv("HCCL_EXEC_TIMEOUT", "0")
    monkeypatch.setenv("PATH", "/nonexistent")
    info = env.collect()
    assert info["cann"]["version"] == "8.0.0"
    assert info["driver"]["version"] == "24.1.rc2"
    assert info["backend"]["name"] == "cpu" and info["backend"]["dist_backend"] == "gloo"
    assert info["torch_npu"]["installed_version"] is None
    assert "not installed" in info["torch_npu"]["error"]
    assert info["packages"]["torch"] and info["packages"]["numpy"]
    names = {r["name"] for r in info["env"]}
    assert {"HCCL_EXEC_TIMEOUT", "ASCEND_HOME_PATH"} <= names
    assert any(p["rule"] == "hccl-exec-timeout-zero" for p in info["problems"])
    json.dumps(info)  # JSON-ready

    report = env.build_report(info)
    assert isinstance(report, Report)
    assert report.schema == "ascend-doctor/env/1"
    assert report.data is info
    assert dict(report.summary)["CANN"] == "8.0.0"
    titles = [s.title for s in report.sections]
    assert titles == ["Versions", "Backend", "Environment variables", "npu-smi info", "Problems"]
    problems = report.sections[-1]
    assert any(f.rule == "hccl-exec-timeout-zero" for f in problems.findings)
