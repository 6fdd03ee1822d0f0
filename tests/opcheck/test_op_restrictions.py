"""Per-op dtype and argument limits from torch_npu's native API docs (issue 12, op verdict depth)."""

import json
import os
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.opcheck import restrictions

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "..", "shared", "data", "torch_npu", "native_api_2.13")

# a DeepSeek-V3-style router (sigmoid scores, topk(sorted=False)), an expert-load histc on int32 and the
# Llama reference RoPE (torch.polar in __init__, view_as_complex / complex multiply / view_as_real)
ROUTER = """
import torch


def precompute_freqs_cis(dim, end, theta=10000.0):
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 2)[: (dim // 2)].float() / dim))
    t = torch.arange(end, dtype=torch.float32)
    freqs = torch.outer(t, freqs)
    return torch.polar(torch.ones_like(freqs), freqs)


class Block(torch.nn.Module):
    def __init__(self, dim=16, experts=8, top_k=2, seq=4):
        super().__init__()
        self.gate = torch.nn.Linear(dim, experts, bias=False)
        self.proj = torch.nn.Linear(dim, dim)
        self.top_k = top_k
        self.experts = experts
        self.register_buffer("freqs_cis", precompute_freqs_cis(dim, seq), persistent=False)

    def forward(self, x):
        xc = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
        x = torch.view_as_real(xc * self.freqs_cis).flatten(-2)
        scores = self.gate(x).sigmoid()
        weights, idx = torch.topk(scores, self.top_k, dim=-1, sorted=False)
        sorted_w, _ = torch.topk(scores, self.top_k, dim=-1)
        counts = torch.histc(idx.flatten().int(), bins=self.experts, min=0, max=self.experts - 1)
        load = torch.histc(scores.flatten(), bins=self.experts, min=0, max=1)
        return self.proj(x) * (weights + sorted_w).sum(-1, keepdim=True) + counts.sum() + load.sum()


def build_model():
    return Block()


def example_inputs():
    return (torch.randn(2, 4, 16),)
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    path = tmp_path_factory.mktemp("router") / "router.py"
    path.write_text(textwrap.dedent(ROUTER).lstrip(), encoding="utf-8")
    result = CliRunner().invoke(main, ["check-ops", str(path), "--format", "json", "--fail-on", "never"])
    assert result.exit_code == 0, result.output
    rows = {r["op"]: r for r in json.loads(result.output)["ops"]}
    return path, rows


def line_of(path, text):
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_topk_sorted_false_is_a_risk_at_its_call(report):
    path, rows = report
    topk = rows["aten::topk"]
    # torch.md, torch.topk: "不支持`sorted=False`场景" (sorted=False not supported)
    assert topk["dtype_risks"] == [
        "topk called with sorted=False: not supported on the NPU per torch_npu's docs (Tensor.topk, torch.topk)"
    ]
    # the site is the sorted=False call, not the first topk call of the same dtypes
    assert topk["risk_site"] == f"{path}:{line_of(path, 'sorted=False')} in forward"


def test_histc_on_int32_is_a_risk_and_float32_is_not(report):
    path, rows = report
    histc = rows["aten::histc"]
    assert histc["dtypes"] == ["float32", "int32"]
    # torch.md and torch-Tensor.md, histc: "`input`/`self`仅支持fp16，fp32"
    assert histc["dtype_risks"] == [
        "histc `self` is int32: torch_npu's docs (Tensor.histc, torch.histc) list only float16, float32"
    ]
    assert histc["risk_site"] == f"{path}:{line_of(path, 'idx.flatten().int()')} in forward"


def test_complex64_on_ops_the_docs_list_it_for_is_no_risk(report):
    _, rows = report
    # Tensor.mul lists complex64; view_as_complex lists fp32; view_as_real lists complex64
    assert "complex64" in rows["aten::mul.Tensor"]["dtypes"]
    for op in ("aten::mul.Tensor", "aten::view_as_complex", "aten::view_as_real", "aten::sigmoid"):
        assert rows[op]["dtype_risks"] == [], op


def test_generic_complex_risk_stays_where_the_docs_say_nothing():
    from ascend_tools.opcheck.events import OpEvent
    from ascend_tools.opcheck.verdicts import op_rows

    call = OpEvent("aten::_fft_c2c", "forward", "", ("complex64",), ((4,),))
    row = op_rows([call], "2.5")[0]
    assert restrictions.entry("aten::_fft_c2c") is None
    assert any(r.startswith("complex input") for r in row["dtype_risks"])


def test_call_flags_read_positional_and_keyword_arguments():
    import torch

    x = torch.zeros(3)
    assert restrictions.call_flags("aten::topk", (x, 2, -1, True, False), {}) == ("sorted=False",)
    assert restrictions.call_flags("aten::topk", (x, 2), {"sorted": False}) == ("sorted=False",)
    assert restrictions.call_flags("aten::topk", (x, 2), {}) == ()  # default sorted=True
    assert restrictions.call_flags("aten::topk", (x, 2, -1, True, True), {}) == ()


@pytest.mark.skipif(not os.path.isdir(DOCS), reason="needs ../shared/data/torch_npu/native_api_2.13")
def test_shipped_table_is_what_the_generator_produces():
    gen = os.path.join(ROOT, "tools", "gen_npu_op_restrictions.py")
    done = subprocess.run([sys.executable, gen, "--check"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_generator_reads_the_doc_sentences():
    sys.path.insert(0, os.path.join(ROOT, "tools"))
    try:
        import gen_npu_op_restrictions as gen
    finally:
        sys.path.pop(0)
    prose = (
        "\n- `input`仅支持bf16，fp16，fp32\n- 不支持`sorted=False`场景\n"
        "- 针对<term>Ascend 950DT</term>，`stable`仅支持True\n"
    )
    assert gen.parse("torch.topk", prose) == {
        "dtypes": {"input": ["bfloat16", "float16", "float32"]},
        "args": {"sorted": False},
    }
    # Tensor.topk's wording of the same limit
    assert gen.parse("Tensor.topk", "当前NPU仅支持返回`sorted`为true的计算结果")["args"] == {"sorted": False}
    # a list with a word that is not a dtype is not a dtype limit
    assert gen.parse("torch.x", "`input`仅支持fp32，NCHW格式")["dtypes"] == {}
    assert gen.aten_name("torch.linalg.vector_norm") == "linalg_vector_norm"
    assert gen.aten_name("torch.not_an_op") is None
    # a class's method is not the aten op its last name spells (ParameterDict.copy put an fp32-only
    # limit on aten::copy; GradBucket.index one on aten::index)
    assert gen.aten_name("torch.nn.ParameterDict.copy") is None
    assert gen.aten_name("torch.distributed.GradBucket.index") is None
    assert gen.aten_name("torch.nn.Module.to") is None
    assert gen.aten_name("torch.nn.init.normal_") == "normal_"
