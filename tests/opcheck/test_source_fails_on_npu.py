"""Code that fails on NPU although no CUDA library call is on its line (blind batch 5's misses): a raise taken
unless the device is CUDA (torchtune's activation offloading), an assert that a flash-attn import succeeded
after its ImportError fallback ran and the constructions of the class whose ``__init__`` holds it (BELLE),
and vLLM generation in TRL. Each case is written to its known answer, not copied from a corpus file."""

import textwrap

import pytest

from ascend_tools.opcheck.source_scan import scan_file


def scan(tmp_path, text):
    path = tmp_path / "m.py"
    path.write_text(textwrap.dedent(text))
    return {(f.line, f.rule, f.severity) for f in scan_file(path)}


@pytest.mark.parametrize(
    "test, raises_on_npu",
    [
        ('device.type != "cuda" and device.type != "xpu"', True),
        ('device.type not in ("cuda", "xpu")', True),
        ("not x.is_cuda", True),
        ('device.type != "cuda" or offload', False),  # an `or`: not decided by the device alone
        ('device.type == "cuda"', False),
        ('device.type != "cpu"', False),
    ],
)
def test_a_raise_taken_unless_the_device_is_cuda(tmp_path, test, raises_on_npu):
    found = scan(
        tmp_path, f"def f(device, x, offload):\n    if {test}:\n        raise RuntimeError('cuda only')\n"
    )
    assert ((2, "cuda-assert", "error") in found) is raises_on_npu


BELLE_LIKE = """\
import torch
try:
    from flash_attn.flash_attn_interface import flash_attn_varlen_func
except ImportError:
    flash_attn_varlen_func = None


class FlashSelfAttention(torch.nn.Module):
    def __init__(self, causal=False):
        super().__init__()
        assert flash_attn_varlen_func is not None, "install flash-attn"
        self.causal = causal


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.flash = FlashSelfAttention(causal=True)


def optional():
    try:
        import xformers.ops as xops
    except ImportError:
        xops = None
    assert xops is not None or True
    assert xops
"""


def test_an_assert_on_a_fallen_back_import_and_the_constructions_it_fails(tmp_path):
    found = scan(tmp_path, BELLE_LIKE)
    assert (3, "lib-flash-attn", "warning") in found  # the guarded import itself has a fallback
    assert (11, "lib-flash-attn", "error") in found  # the assert: AssertionError on NPU
    assert (18, "lib-flash-attn", "error") in found  # building FlashSelfAttention runs that assert
    assert (26, "lib-xformers", "error") not in found  # `or True`: the assert does not require xops
    assert (27, "lib-xformers", "error") in found


def test_a_constructor_that_fails_only_in_a_branch_fails_no_caller(tmp_path):
    text = BELLE_LIKE.replace(
        '        assert flash_attn_varlen_func is not None, "install flash-attn"\n',
        '        if causal:\n            assert flash_attn_varlen_func is not None, "install flash-attn"\n',
    )
    found = scan(tmp_path, text)
    assert (12, "lib-flash-attn", "error") in found
    assert not any(line == 19 for line, _, _ in found)


def test_vllm(tmp_path):
    found = scan(
        tmp_path,
        "import vllm\nfrom trl import GRPOConfig\nGRPOConfig(use_vllm=True)\nGRPOConfig(use_vllm=False)\n",
    )
    assert found == {(1, "lib-vllm", "warning"), (3, "lib-vllm", "warning")}
