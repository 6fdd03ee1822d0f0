"""ascend_tools.opcheck.support against torch_npu's own op_plugin yaml (parsed independently here) and torch."""

import os
import re

import pytest
import torch

from ascend_tools.errors import InputError
from ascend_tools.opcheck import support

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OP_PLUGIN = os.path.join(os.path.dirname(REPO), "shared", "data", "torch_npu", "op_plugin_functions.yaml")


@pytest.fixture(scope="module")
def yaml_gates():
    """op name -> set of releases, from a line-based parse of op_plugin_functions.yaml (no yaml library)."""
    if not os.path.exists(OP_PLUGIN):
        pytest.skip(f"{OP_PLUGIN} absent: CI keeps ../shared beside the clone")
    with open(OP_PLUGIN, encoding="utf-8") as f:
        text = f.read()
    all_versions = re.search(r"^all_version:\s*\[(.*)\]", text, re.M).group(1)
    allv = [v.strip().lstrip("v") for v in all_versions.split(",")]
    gates = {}
    current = None
    for line in text.splitlines():
        m = re.match(r"\s*- func:\s*([\w.]+)\(", line)
        if m:
            current = gates.setdefault(m.group(1), set())
            continue
        m = re.match(r"\s+(acl_op|op_api|dvm|internal_format_opapi):\s*(.+?)\s*$", line)
        if m and current is not None:
            val = m.group(2)
            if val == "all_version":
                current.update(allv)
            elif val.startswith("["):
                lo, hi = (x.strip().lstrip("v") for x in val.strip("[]").split(","))
                hi = allv[-1] if hi == "newest" else hi
                current.update(allv[allv.index(lo) : allv.index(hi) + 1])
            else:
                current.update(x.strip().lstrip("v") for x in val.split(","))
    return allv, gates


def test_versions_match_yaml(yaml_gates):
    allv, _ = yaml_gates
    assert tuple(allv) == support.VERSIONS
    assert allv[-1] == support.DEFAULT_VERSION


def test_mm_has_kernel_in_2_14(yaml_gates):
    _, gates = yaml_gates
    assert "2.14" in gates["mm"]
    assert support.has_npu_kernel("aten::mm", "2.14")
    assert support.op_verdict("aten::mm", [torch.float32], "2.14.0").status == "npu"


@pytest.mark.parametrize("op", ["aten::_linalg_eigh", "aten::cummax", "aten::logcumsumexp"])
def test_no_kernel_in_2_14(yaml_gates, op):
    _, gates = yaml_gates
    assert "2.14" not in gates.get(op.split("::")[1], set())
    assert not support.has_npu_kernel(op, "2.14")
    assert support.op_verdict(op, [torch.float32], "2.14").status in ("composite", "cpu_fallback")


def test_gate_up_to_2_12(yaml_gates):
    # cat.names: acl_op/op_api [v2.1, v2.12]
    _, gates = yaml_gates
    assert max(gates["cat.names"], key=lambda v: tuple(map(int, v.split(".")))) == "2.12"
    assert support.has_npu_kernel("aten::cat.names", "2.12")
    assert not support.has_npu_kernel("aten::cat.names", "2.13")


def test_gate_from_2_7(yaml_gates):
    # _fused_sgd_: op_api [v2.7, newest]
    _, gates = yaml_gates
    assert min(gates["_fused_sgd_"], key=lambda v: tuple(map(int, v.split(".")))) == "2.7"
    assert not support.has_npu_kernel("aten::_fused_sgd_", "2.6")
    assert support.has_npu_kernel("aten::_fused_sgd_", "2.7")
    assert support.has_npu_kernel("aten::_fused_sgd_", "2.15")


def test_npu_namespace_and_name_forms():
    assert support.has_npu_kernel("npu::npu_rms_norm", "2.14")
    assert support.has_npu_kernel("npu_rms_norm", "2.14")
    assert not support.has_npu_kernel("aten::npu_rms_norm", "2.14")
    assert support.has_npu_kernel("aten.add.Tensor", "2.14")
    assert support.has_npu_kernel("aten.mm.default", "2.14")
    assert support.has_npu_kernel("add.Tensor", "2.14")
    v = support.op_verdict("npu::npu_no_such_op", [], "2.14")
    assert v.status == "unsupported"


def test_core_ops_present_everywhere():
    for v in support.VERSIONS:
        assert support.has_npu_kernel("aten::view", v)
        assert support.has_npu_kernel("aten::_to_copy", v)


def test_structured_functional_follows_out_variant():
    # op_plugin lists gelu.out but not gelu / gelu_: torch's structured wrapper calls gelu.out on the NPU.
    assert support.has_npu_kernel("aten::gelu.out", "2.14")
    assert support.has_npu_kernel("aten::gelu", "2.14")
    assert support.has_npu_kernel("aten::gelu_", "2.14")


@pytest.mark.parametrize(
    "v",
    ["2.1", "2.2", "2.3", "2.4", "2.5", "2.6", "2.7", "2.8", "2.9", "2.10", "2.11", "2.12", "2.13", "2.14"],
)
def test_normalize_version_accepts_known(v):
    assert support.normalize_version(v) == v
    assert support.normalize_version(f"v{v}") == v
    assert support.normalize_version(f"{v}.0") == v
    assert support.normalize_version(f"{v}.0.post2") == v


@pytest.mark.parametrize("bad", ["3.0", "2.16", "1.11", "latest", ""])
def test_normalize_version_rejects_unknown(bad):
    with pytest.raises(InputError) as e:
        support.normalize_version(bad)
    msg = str(e.value)
    assert msg.startswith(f"--torch-npu-version {bad}: unknown")
    assert "2.1" in msg and "2.15" in msg
    with pytest.raises(InputError):
        support.op_verdict("aten::mm", [], bad)


def test_has_composite_explicit_from_torch():
    assert support.has_composite_explicit("aten::cummax")
    # mm has only backend kernels (its NonFunctional wrapper just calls mm.out, not counted)
    assert not support.has_composite_explicit("aten::mm")
    assert not support.has_composite_explicit("aten::view")
    assert not support.has_composite_explicit("aten::no_such_op")
    assert not support.has_composite_explicit("mylib::no_such_op")


def test_verdict_composite_for_cummax():
    v = support.op_verdict("aten::cummax", [torch.float32], "2.14")
    assert v.status == "composite"
    assert "2.14" in v.reason


def test_verdict_cpu_fallback():
    v = support.op_verdict("aten::_linalg_eigh", [torch.float32], "2.14")
    assert v.status == "cpu_fallback"
    assert "CPU" in v.reason and "2.14" in v.reason


def test_dtype_risks():
    v = support.op_verdict("aten::mm", [torch.float64], "2.14")
    assert v.status == "npu"
    assert any("float64" in r for r in v.dtype_risks)
    v = support.op_verdict("aten::mm", ["torch.complex64"], "2.14")
    assert any("complex" in r for r in v.dtype_risks)
    assert support.op_verdict("aten::mm", [torch.bfloat16], "2.14").dtype_risks == []
    # skip-list note: torch_npu's OpInfo tests skip mm's CPU comparison in float32
    assert any(
        "compare" in r or "CPU" in r
        for r in support.op_verdict("aten::mm", [torch.float32], "2.14").dtype_notes
    )


def test_sparse_is_unsupported():
    v = support.op_verdict("aten::mm", [torch.float32], "2.14", sparse=True)
    assert v.status == "unsupported"
    assert "sparse" in v.reason
    # sparse-only op in torch
    assert support.op_verdict("aten::_coalesce", [torch.float32], "2.14").status == "unsupported"


def test_other_namespaces():
    assert support.op_verdict("c10d::allreduce_", [torch.float32], "2.14").status == "npu"
    assert support.op_verdict("_c10d_functional::all_reduce", [torch.float32], "2.14").status == "npu"
    v = support.op_verdict("mylib::fancy_op", [torch.float32], "2.14")
    assert v.status == "cpu_fallback" and "mylib" in v.reason
    assert support.op_verdict("quantized::linear", [], "2.14").status == "unsupported"


def test_a_custom_op_torch_registers_for_privateuse1_runs_on_the_npu():
    """torch_npu's device is PyTorch's PrivateUse1 backend: an op torch itself registers there (FSDP2's
    fsdp::all_gather_copy_in, written in torch ops) runs on the NPU; one with a CPU kernel only falls back."""
    lib = torch.library.Library("ascend_doctor_test", "DEF")  # (its ops live as long as this object)
    lib.define("both(Tensor x) -> Tensor")
    lib.define("host(Tensor x) -> Tensor")
    lib.impl("both", lambda x: x.clone(), "PrivateUse1")
    lib.impl("both", lambda x: x.clone(), "CPU")
    lib.impl("host", lambda x: x.clone(), "CPU")
    v = support.op_verdict("ascend_doctor_test::both", [torch.float32], "2.14")
    assert v.status == "npu" and "PrivateUse1" in v.reason
    assert support.op_verdict("ascend_doctor_test::host", [torch.float32], "2.14").status == "cpu_fallback"


def test_device_only_op_is_unsupported():
    # CUDA-only kernel in torch: the CPU fallback has nothing to call
    assert (
        support.op_verdict("aten::_flash_attention_forward", [torch.float16], "2.14").status == "unsupported"
    )
