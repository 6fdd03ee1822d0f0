"""Mixture-of-experts models: transformers 5 runs their experts through ``torch._grouped_mm``, whose meta
kernel cannot run here; the trace goes on with a shape rule and reports the op honestly."""

import json

import pytest
import torch
import transformers
from click.testing import CliRunner

from ascend_tools.cli import main
from ascend_tools.opcheck.trace import SHAPE_FALLBACKS


@pytest.mark.parametrize(
    "a_shape,b_shape,grouped_k",
    [((16, 16), (4, 16, 8), False), ((4, 8, 16), (4, 16, 8), False), ((8, 16), (16, 8), True)],
)
def test_grouped_mm_shape_rule_matches_the_real_op(a_shape, b_shape, grouped_k):
    a, b = torch.randn(*a_shape), torch.randn(*b_shape)
    offs = (
        torch.tensor([4, 8, 12, 16], dtype=torch.int32)
        if (len(b_shape) == 3 and len(a_shape) == 2) or grouped_k
        else None
    )
    real = torch._grouped_mm(a, b, offs=offs)  # torch's own CPU implementation
    made = SHAPE_FALLBACKS["aten::_grouped_mm"](a.to("meta"), b.to("meta"), offs)
    assert made.shape == real.shape and made.dtype == real.dtype and made.device.type == "meta"


@pytest.mark.slow
def test_mixtral_trace_completes_and_names_grouped_mm(tmp_path):
    config = transformers.MixtralConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=256,
        num_local_experts=4,
        num_experts_per_tok=2,
        architectures=["MixtralForCausalLM"],
    )
    config.save_pretrained(str(tmp_path))
    result = CliRunner().invoke(main, ["check-ops", str(tmp_path), "--seq-len", "16", "-f", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["trace"]["complete"], report["trace"]["stopped"]
    ops = {row["op"]: row for row in report["ops"]}
    if "aten::_grouped_mm" not in ops:
        pytest.skip("this transformers runs Mixtral's experts without torch._grouped_mm")
    assert ops["aten::_grouped_mm"]["status"] == "composite"
    assert "data-dependent" in ops["aten::_grouped_mm"]["reason"]
