"""The static scan of check-ops: rules, alias resolution, import following, syntax errors."""

import os
import textwrap

import pytest

from ascend_tools.errors import InputError
from ascend_tools.opcheck.source_rules import RULE_DOCS
from ascend_tools.opcheck.source_scan import SourceFinding, as_report_finding, scan_file, scan_target

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "ascend_tools", "examples", "train_cuda.py")


def line_of(path, snippet):
    """1-based line of the only line of ``path`` that contains ``snippet``."""
    with open(path, encoding="utf-8") as f:
        hits = [i for i, line in enumerate(f, 1) if snippet in line]
    assert len(hits) == 1, (snippet, hits)
    return hits[0]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def rules_at(findings):
    return {(f.rule, f.line) for f in findings}


def scan_src(tmp_path, text):
    return scan_file(write(tmp_path, "t.py", text))


# ---------------------------------------------------------------- the example script


@pytest.mark.parametrize(
    "rule,severity,snippet",
    [
        ("lib-flash-attn", "warning", "from flash_attn import flash_attn_func"),
        ("lib-flash-attn", "warning", "out = flash_attn_func(q, k, v"),
        ("float64", "warning", "gram = (w @ w.t()).double()"),
        ("nccl-env", "warning", 'os.environ["NCCL_SOCKET_IFNAME"]'),
        ("nccl-env", "warning", 'os.environ["NCCL_DEBUG"]'),
        ("nccl-env", "warning", 'os.environ.setdefault("NCCL_IB_DISABLE"'),
        ("nccl-backend", "info", 'dist.init_process_group("nccl")'),
        ("cuda-call", "info", "torch.cuda.set_device(local_rank)"),
        ("cudnn-flags", "info", "torch.backends.cudnn.benchmark = True"),
        ("cuda-backend-flags", "info", "torch.backends.cuda.matmul.allow_tf32 = True"),
        ("cuda-device-string", "info", 'def batches(steps, batch, device="cuda")'),
        ("cuda-method", "info", "model = build_model().cuda()"),
        ("cuda-amp", "warning", "scaler = torch.cuda.amp.GradScaler()"),
        ("cuda-amp", "warning", "with torch.cuda.amp.autocast("),
        ("cuda-call", "info", "torch.cuda.synchronize()"),
        ("cuda-call", "info", "torch.cuda.max_memory_allocated()"),
    ],
)
def test_example_findings_at_their_lines(rule, severity, snippet):
    findings = scan_target(EXAMPLE)
    line = line_of(EXAMPLE, snippet)
    here = [f for f in findings if f.line == line and f.rule == rule]
    assert here, (rule, line, [(f.rule, f.line) for f in findings])
    assert {f.severity for f in here} == {severity}
    assert all(f.file == EXAMPLE and f.message and f.suggestion for f in here)


def test_example_specific_replacements():
    by_rule = {}
    for f in scan_target(EXAMPLE):
        by_rule.setdefault(f.rule, []).append(f)
    assert any(f.suggestion == "torch.npu.synchronize()" for f in by_rule["cuda-call"])
    assert by_rule["nccl-backend"][0].suggestion == '"hccl"'
    env = {f.message.split()[0]: f.suggestion for f in by_rule["nccl-env"]}
    assert env["NCCL_SOCKET_IFNAME"].startswith("HCCL_SOCKET_IFNAME")
    call = next(f for f in by_rule["lib-flash-attn"] if "flash_attn_func()" in f.message)
    for trap in ("scale=1/sqrt(head_dim)", "keep_prob=1-dropout_p", "True = masked out", "sparse_mode=3"):
        assert trap in call.message
    assert 'input_layout="BSND"' in call.suggestion


def test_example_log_string_cuda_is_not_a_device():
    line = line_of(EXAMPLE, 'backend:", "cuda"')
    assert not [f for f in scan_target(EXAMPLE) if f.line == line]


def test_findings_sorted_unique_and_known_rules():
    findings = scan_target(EXAMPLE)
    assert findings == sorted(findings, key=lambda f: (f.file, f.line, f.col, f.rule, f.message))
    assert len(set(findings)) == len(findings)
    for f in findings:
        assert f.rule in RULE_DOCS and f.severity in ("error", "warning", "info")
        assert f.col >= 1 and "\n" not in f.message


def test_report_finding_location():
    f = SourceFinding("a.py", 3, 7, "cuda-method", "info", "m", "s")
    assert as_report_finding(f).location == "a.py:3:7"


# ---------------------------------------------------------------- alias resolution and rules


def test_alias_resolution(tmp_path):
    findings = scan_src(
        tmp_path,
        """\
        import torch as T
        from torch import cuda
        from torch.cuda.amp import autocast as ac
        import flash_attn.flash_attn_interface as fai
        T.cuda.synchronize()
        cuda.empty_cache()
        with ac():
            pass
        fai.flash_attn_varlen_func(q, k, v, cu, cu, 8, 8)
        """,
    )
    assert ("cuda-call", 5) in rules_at(findings)
    assert ("cuda-call", 6) in rules_at(findings)
    assert ("cuda-amp", 7) in rules_at(findings)
    assert ("lib-flash-attn", 4) in rules_at(findings)
    varlen = [f for f in findings if f.line == 9]
    assert varlen and varlen[0].severity == "error" and 'input_layout="TND"' in varlen[0].suggestion
    assert "actual_seq_qlen" in varlen[0].message
    sync = next(f for f in findings if f.line == 5)
    assert sync.suggestion == "torch.npu.synchronize()" and sync.col == 1


def test_unguarded_import_is_error_guarded_is_warning(tmp_path):
    findings = scan_src(
        tmp_path,
        """\
        import xformers.ops as xops
        try:
            import apex.normalization
        except ImportError:
            apex = None
        try:
            import bitsandbytes
        finally:
            pass
        import triton
        import mamba_ssm, causal_conv1d, cupy, pynvml
        from deepspeed.ops.adam import FusedAdam
        from deepspeed.ops.transformer import DeepSpeedTransformerLayer
        """,
    )
    sev = {(f.rule, f.line): f.severity for f in findings}
    assert sev[("lib-xformers", 1)] == "error"
    assert sev[("lib-apex", 3)] == "warning"
    assert sev[("lib-bitsandbytes", 7)] == "error"  # try without an ImportError handler
    assert sev[("lib-triton", 10)] == "warning"
    for rule in ("lib-mamba-ssm", "lib-causal-conv1d", "lib-cupy", "lib-pynvml"):
        assert sev[(rule, 11)] == "error"
    assert sev[("lib-deepspeed-ops", 12)] == "warning"
    assert sev[("lib-deepspeed-ops", 13)] == "error"


def test_device_strings_only_where_they_are_devices(tmp_path):
    findings = scan_src(
        tmp_path,
        """\
        import logging
        import torch
        logging.info("moving model to %s", "cuda")
        print("cuda")
        name = "cuda"
        x = torch.zeros(2, device="cuda:1")
        y = x.to("cuda")
        dev = torch.device("cuda", 0)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        with torch.autocast("cuda", dtype=torch.bfloat16):
            pass
        with torch.autocast(device_type="cuda"):
            pass
        if x.device.type == "cuda":
            pass
        """,
    )
    lines = {f.line for f in findings if f.rule == "cuda-device-string"}
    assert lines == {6, 7, 8, 9, 10, 12}
    assert [f.suggestion for f in findings if f.line == 6] == ['"npu:1"']


def test_float64_and_jit_and_extensions(tmp_path):
    findings = scan_src(
        tmp_path,
        """\
        import torch
        from torch.utils.cpp_extension import CUDAExtension, load
        torch.set_default_dtype(torch.float64)
        x = torch.ones(3, dtype=torch.double)
        if x.dtype == torch.float64:
            x = x.float()
        f = torch.jit.script(lambda t: t)
        @torch.jit.script
        def g(t):
            return t
        ext = CUDAExtension("k", ["k.cu"])
        mod = load("k", sources=["k.cpp", "k_kernel.cu"])
        cpu_mod = load("c", sources=["c.cpp"])
        """,
    )
    got = rules_at(findings)
    assert {("float64", 3), ("float64", 4), ("jit-script", 7), ("jit-script", 8)} <= got
    assert ("float64", 5) not in got  # a dtype check is not float64 compute
    assert {("cuda-extension", 11), ("cuda-extension", 12)} <= got
    assert ("cuda-extension", 13) not in got
    assert {f.severity for f in findings if f.rule == "cuda-extension"} == {"error"}


def test_sdp_nvtx_and_nccl_kwargs(tmp_path):
    findings = scan_src(
        tmp_path,
        """\
        import os
        import torch
        import torch.distributed as dist
        from torch.nn.attention import sdpa_kernel, SDPBackend
        with torch.backends.cuda.sdp_kernel(enable_flash=True):
            pass
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            pass
        with sdpa_kernel(SDPBackend.MATH):
            pass
        torch.cuda.nvtx.range_push("step")
        dist.init_process_group(backend="nccl", timeout=None)
        os.environ.update({"NCCL_TIMEOUT": "600", "CUDA_VISIBLE_DEVICES": "0,1"})
        os.environ["MASTER_ADDR"] = "localhost"
        torch.cuda.CUDAGraph()
        """,
    )
    sev = {(f.rule, f.line): f for f in findings}
    assert sev[("sdp-kernel-switch", 5)].severity == "warning"
    assert sev[("sdp-kernel-switch", 7)].severity == "warning"
    assert ("sdp-kernel-switch", 9) not in sev
    assert sev[("cuda-call", 11)].severity == "warning" and "mstx" in sev[("cuda-call", 11)].suggestion
    assert sev[("nccl-backend", 12)].suggestion == '"hccl"'
    assert "HCCL_EXEC_TIMEOUT" in sev[("nccl-env", 13)].suggestion
    assert sev[("cuda-env", 13)].suggestion.startswith("ASCEND_RT_VISIBLE_DEVICES")
    assert not [f for f in findings if f.line == 14]
    assert sev[("cuda-call", 15)].suggestion == "torch.npu.NPUGraph()"


def test_identical_findings_are_deduplicated(tmp_path):
    findings = scan_src(
        tmp_path,
        """\
        from flash_attn.bert_padding import pad_input, unpad_input
        """,
    )
    assert len(findings) == 1 and findings[0].rule == "lib-flash-attn"


# ---------------------------------------------------------------- files, imports, errors


def test_sibling_module_is_followed(tmp_path):
    write(tmp_path, "pkg/__init__.py", "")
    write(tmp_path, "pkg/helpers.py", "def to_gpu(m):\n    return m.cuda()\n")
    target = write(
        tmp_path, "pkg/train.py", "import numpy\nfrom . import helpers\nfrom pkg.helpers import to_gpu\n"
    )
    findings = scan_target(target)
    sibling = [f for f in findings if f.file.endswith(os.path.join("pkg", "helpers.py"))]
    assert [(f.rule, f.line, f.col) for f in sibling] == [("cuda-method", 2, 14)]
    assert not scan_target(target, follow_imports=False)


def test_plain_script_imports_sibling_by_name(tmp_path):
    write(tmp_path, "model.py", "import torch\nx = torch.ones(1).double()\n")
    target = write(tmp_path, "train.py", "import model\nimport os, json\n")
    assert [(os.path.basename(f.file), f.rule) for f in scan_target(target)] == [("model.py", "float64")]


def test_site_packages_are_not_followed(tmp_path):
    target = write(tmp_path, "train.py", "import numpy\nimport torch\nimport json\n")
    assert scan_target(target) == []


def test_site_packages_dir_next_to_target_is_not_followed(tmp_path):
    write(tmp_path, "lib/site-packages/evil.py", "x.cuda()\n")
    target = write(tmp_path, "lib/site-packages/run.py", "import evil\n")
    assert [f.file for f in scan_target(target)] == []


def test_import_cycles_terminate_and_each_file_once(tmp_path):
    write(tmp_path, "a.py", "import b\nx.cuda()\n")
    write(tmp_path, "b.py", "import a\nimport c\ny.cuda()\n")
    write(tmp_path, "c.py", "import b\nimport a\nz.cuda()\n")
    findings = scan_target(str(tmp_path / "a.py"))
    assert sorted(os.path.basename(f.file) for f in findings) == ["a.py", "b.py", "c.py"]


def test_syntax_error_in_target_raises_with_line(tmp_path):
    target = write(tmp_path, "bad.py", "import torch\n\ndef f(:\n    pass\n")
    with pytest.raises(InputError, match=r"bad\.py:3: syntax error: "):
        scan_target(target)
    with pytest.raises(InputError, match=r"bad\.py:3: syntax error"):
        scan_file(target)


def test_syntax_error_in_imported_file_is_a_finding(tmp_path):
    write(tmp_path, "broken.py", "x = 1\ny = (\n")
    target = write(tmp_path, "train.py", "import broken\nm.cuda()\n")
    findings = scan_target(target)
    errs = [f for f in findings if f.rule == "syntax-error"]
    assert len(errs) == 1 and errs[0].severity == "warning" and errs[0].file.endswith("broken.py")
    assert errs[0].line >= 2
    assert ("cuda-method", 2) in rules_at(findings)


def test_missing_file_is_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        scan_target(str(tmp_path / "nope.py"))


def test_flash_attn_extensions_ring_and_liger_imports(tmp_path):
    # spellings from flash_attn/layers/rotary.py, flash_attn/losses/cross_entropy.py,
    # flash_attn/ops/layer_norm.py, zhuzilin/ring-flash-attention and linkedin/Liger-Kernel
    findings = scan_src(
        tmp_path,
        """\
        import rotary_emb
        import xentropy_cuda_lib
        import dropout_layer_norm
        from ring_flash_attn import zigzag_ring_flash_attn_func
        from liger_kernel.transformers import apply_liger_kernel_to_llama
        try:
            import dropout_layer_norm
        except ImportError:
            dropout_layer_norm = None
        import rotary_embedding_torch
        """,
    )
    sev = {(f.rule, f.line): f.severity for f in findings}
    for line in (1, 2, 3, 4):
        assert sev[("lib-flash-attn", line)] == "error"
    assert sev[("lib-triton", 5)] == "warning"
    assert sev[("lib-flash-attn", 7)] == "warning"  # ImportError fallback
    assert not [f for f in findings if f.line == 10]  # a pure-PyTorch package of a similar name
